"""Synthetic chest X-ray phantoms: the project's built-in dataset, with exact masks.

A phantom is made in three steps, all from ``np.random.default_rng(seed)``:

1. a *patient* (anatomy: body and soft-tissue outline, two lungs, heart and mediastinum, trachea,
   spine, clavicles, ribs, diaphragm domes, vessel markings fading towards the lung edge) and an
   *acquisition* (patient size, position and rotation, exposure, contrast window, gamma, fog,
   uneven exposure, blur and noise level);
2. a *density* map (the projected attenuation: larger = more tissue along the beam) drawn with
   soft-edged shapes in normalised patient coordinates, so the same seed gives the same patient
   at every size from 32 to 256 (sizes under 64 are rendered at twice the size and averaged);
3. the *exposure*: ``1 - exp(-k * density)``, window with a film-like shoulder, gamma, fog, blur
   and pixel noise.

An anomaly is a local density change added on top of the normal patient of the same seed: the
anatomy, the acquisition and the pixel noise come from generators that the anomaly's own random
draws never touch, so ``abnormal - normal`` is confined to the anomaly (plus the blur's few
pixels). The types, all inside the lungs, heart or body:

- ``opacity``: patchy consolidation, air spaces of a lobe-sized region filled (pneumonia-like);
- ``nodule``: a round, slightly lobulated nodule or mass;
- ``effusion``: fluid at a lung base, a meniscus rising laterally, the costophrenic angle blunted;
- ``cardiomegaly``: an enlarged heart shadow, grown to the patient's left and upwards;
- ``pneumothorax``: an apical-lateral rim of a lung without markings, darker, with a pleural line;
- ``foreign_object``: a tracheal or gastric tube, a central line, or a pacemaker with its lead.

The mask is where the image changed: where the anomaly's soft shape reaches one half, or where the
density changed by at least a tenth of its largest change; always inside :func:`body_mask`.

``difficulty`` runs from 0 (large, high-contrast anomalies) to 1 (small, faint ones); the default,
0.25, was chosen by measurement: a plain convolutional autoencoder scored by mean L1 error reaches
about 0.75 AUROC on the default test set, the maximum of its smoothed error map about 0.88, while
trivial intensity detectors stay near 0.5. The size and the contrast of every anomaly type both
shrink as difficulty grows.

Example:
    >>> p = make_phantom(64, seed=3, anomaly="nodule")
    >>> p.image.shape, p.image.dtype, bool(p.mask.any())
    ((64, 64), dtype('float32'), True)
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

logger = logging.getLogger(__name__)

DEFAULT_DIFFICULTY = 0.25
ANOMALY_TYPES: tuple[str, ...] = (
    "opacity",
    "nodule",
    "effusion",
    "cardiomegaly",
    "pneumothorax",
    "foreign_object",
)
"""The anomaly type names, in the order the dataset factory cycles through them."""

SPLITS: tuple[str, ...] = ("train", "val_normal", "test")
"""The split names of :func:`synthetic_items`."""

MIN_SIZE = 32
MAX_SIZE = 256

FloatArray = npt.NDArray[np.floating[Any]]
BoolArray = npt.NDArray[np.bool_]

# Side 0 is the patient's right (image left, u < 0); side 1 the patient's left (image right).
_SIDES: tuple[float, float] = (-1.0, 1.0)
_VESSEL_BINS = 512
_SHOULDER = 0.75
_MASK_CHANGE = 0.1
_FIELD_GRID = 24


@dataclass(frozen=True)
class Phantom:
    """One synthetic chest X-ray.

    Attributes:
        image: ``(size, size)`` float32 in ``[0, 1]``; bright = dense (bone, heart), dark = air.
        mask: ``(size, size)`` bool, where the anomaly changed the image; all False when normal.
        anomaly: one of :data:`ANOMALY_TYPES`, or ``None`` for a normal image.
    """

    image: npt.NDArray[np.float32]
    mask: BoolArray
    anomaly: str | None


@dataclass(frozen=True, eq=False)
class _Patient:
    """Anatomy and acquisition parameters of one seed (lengths in normalised patient units).

    Pairs are ``(patient right, patient left)``, i.e. ``(image left, image right)``.
    """

    # Pose of the patient in the image (image coords = shift + scale * rotate(patient coords)).
    scale: float
    shift_x: float
    shift_y: float
    angle: float
    # Body outline.
    body_half_width: float
    shoulder_y: float
    neck_half_width: float
    # Lungs and diaphragm.
    lung_cx: tuple[float, float]
    lung_cy: tuple[float, float]
    lung_a: tuple[float, float]
    lung_b: tuple[float, float]
    lung_taper: float
    air: float
    dome_y: tuple[float, float]
    dome_peak: tuple[float, float]
    dome_curv: float
    # Heart and mediastinum.
    heart_cx: float
    heart_cy: float
    heart_left: float
    heart_right: float
    heart_ry: float
    heart_density: float
    mediastinum_half_width: float
    # Bones.
    spine_half_width: float
    vert_period: float
    vert_phase: float
    clav_y0: float
    clav_slope: float
    clav_curv: float
    clav_half_width: float
    rib_spacing: float
    rib_phase: float
    rib_curv: float
    rib_top: float
    rib_density: float
    # Hila and vessel markings: angular profiles of vessels around each hilum.
    hilum_x: float
    hilum_y: tuple[float, float]
    vessel_main: FloatArray
    vessel_branch: FloatArray
    vessel_curl: tuple[float, float]
    vessel_density: float
    # Gastric bubble (density 0 when absent).
    bubble: float
    # Smooth random fields on a coarse image grid: lung texture, soft tissue, bowel gas, wobble.
    fields: FloatArray
    # Acquisition.
    exposure: float
    window_lo: float
    window_hi: float
    gamma: float
    fog: float
    grad_x: float
    grad_y: float
    blur: float
    noise: float


class _Draws:
    """Uniform draws from one block of random numbers (one generator call instead of many)."""

    def __init__(self, rng: np.random.Generator, count: int = 80) -> None:
        self._values = rng.random(count)
        self._next = 0

    def __call__(self, low: float, high: float) -> float:
        value = low + (high - low) * float(self._values[self._next])
        self._next += 1
        return value


def _angular_profiles(
    rng: np.random.Generator, count: int, low: float, high: float, width: tuple[float, float]
) -> FloatArray:
    """Two periodic tables over ``[-pi, pi)``, each with ``count`` random peaks in [low, high]."""
    grid = np.linspace(-math.pi, math.pi, _VESSEL_BINS, endpoint=False)
    centres = rng.uniform(low, high, (2, count, 1))
    widths = rng.uniform(width[0], width[1], (2, count, 1))
    heights = rng.uniform(0.6, 1.0, (2, count, 1))
    bumps = heights * np.exp(-(((grid - centres) / widths) ** 2))
    profiles: FloatArray = bumps.max(axis=1).astype(np.float32)
    return profiles


def _smooth_noise(rng: np.random.Generator, sigmas: tuple[float, ...]) -> FloatArray:
    """Unit-variance smooth random fields on a ``_FIELD_GRID`` square grid, one per sigma."""
    raw = rng.standard_normal((len(sigmas), _FIELD_GRID, _FIELD_GRID))
    out = np.empty_like(raw)
    for i, sigma in enumerate(sigmas):
        smooth = ndimage.gaussian_filter(raw[i], sigma, mode="wrap") if sigma > 0 else raw[i]
        out[i] = (smooth - smooth.mean()) / (smooth.std() + 1e-9)
    fields: FloatArray = out.astype(np.float32)
    return fields


def _draw_patient(rng: np.random.Generator) -> _Patient:
    """Draw every normal-image parameter; the number of draws never depends on anything else."""
    u = _Draws(rng)
    build = u(-1.0, 1.0)  # a common "build" factor so the lungs and heart scale together
    lung_b = 0.72 + 0.04 * build
    lung_a = 0.31 + 0.02 * build
    dome_right = u(0.30, 0.42)
    dome_left = dome_right + u(0.02, 0.08)
    hilum_right = u(-0.10, -0.02)
    return _Patient(
        scale=u(0.86, 1.04),
        shift_x=u(-0.06, 0.06),
        shift_y=u(-0.02, 0.08),
        angle=math.radians(u(-7.0, 7.0)),
        body_half_width=u(0.88, 0.98),
        shoulder_y=u(-1.22, -1.05),
        neck_half_width=u(0.22, 0.28),
        lung_cx=(u(0.45, 0.49), u(0.46, 0.50)),
        lung_cy=(u(-0.08, -0.03), u(-0.08, -0.02)),
        lung_a=(lung_a + u(-0.01, 0.01), lung_a),
        lung_b=(lung_b, lung_b + u(0.0, 0.03)),
        lung_taper=u(0.16, 0.28),
        air=u(0.62, 0.8),
        dome_y=(dome_right, dome_left),
        dome_peak=(u(0.34, 0.42), u(0.34, 0.42)),
        dome_curv=u(0.10, 0.18),
        heart_cx=u(0.02, 0.07),
        heart_cy=dome_left + u(-0.04, 0.02),
        heart_left=u(0.36, 0.42) + 0.02 * build,
        heart_right=u(0.20, 0.26),
        heart_ry=u(0.32, 0.40),
        heart_density=u(0.12, 0.18),
        mediastinum_half_width=u(0.08, 0.11),
        spine_half_width=u(0.055, 0.07),
        vert_period=u(0.12, 0.15),
        vert_phase=u(0.0, 1.0),
        clav_y0=u(-0.70, -0.60),
        clav_slope=u(-0.25, -0.10),
        clav_curv=u(-0.12, 0.05),
        clav_half_width=u(0.026, 0.036),
        rib_spacing=u(0.125, 0.15),
        rib_phase=u(0.0, 1.0),
        rib_curv=u(0.9, 1.4),
        rib_top=u(0.18, 0.28),
        rib_density=u(0.08, 0.14),
        hilum_x=u(0.19, 0.24),
        hilum_y=(hilum_right, hilum_right - u(0.0, 0.06)),
        vessel_curl=(u(-0.8, 0.8), u(-0.8, 0.8)),
        vessel_density=u(0.22, 0.32),
        bubble=u(0.0, 0.3) * float(u(0.0, 1.0) < 0.7),
        exposure=u(1.0, 1.9),
        window_lo=u(-0.06, 0.14),
        window_hi=u(0.86, 1.04),
        gamma=u(0.8, 1.5),
        fog=u(0.0, 0.12),
        grad_x=u(-0.06, 0.06),
        grad_y=u(-0.06, 0.06),
        blur=u(0.002, 0.010),
        noise=u(0.005, 0.025),
        vessel_main=_angular_profiles(rng, 11, -2.1, 1.7, (0.05, 0.1)),
        vessel_branch=_angular_profiles(rng, 30, -2.2, 1.8, (0.02, 0.04)),
        # texture (fine), soft tissue (very smooth), bowel gas, vessel wobble
        fields=_smooth_noise(rng, (0.6, 4.0, 1.2, 1.5)),
    )


@dataclass(eq=False)
class _Scene:
    """The rendered normal density map and the pieces anomalies are built from.

    Fields are at the internal resolution ``size * supersample``; ``u, v`` are patient coordinates
    (``u`` to the image right = the patient's left, ``v`` down).
    """

    p: _Patient
    size: int
    supersample: int
    u: FloatArray
    v: FloatArray
    edge: float
    px: float
    body: FloatArray
    lung: FloatArray
    air: FloatArray
    vessels: FloatArray
    texture: FloatArray
    heart: FloatArray
    fields: FloatArray
    density: FloatArray

    def side(self, field: FloatArray, side: int) -> FloatArray:
        """The part of a field on one side of the midline (0 = patient right, 1 = left)."""
        keep = self.u > 0 if side else self.u <= 0
        out: FloatArray = field * keep
        return out


def _clip01(x: FloatArray) -> FloatArray:
    """Clip to [0, 1] in place (cheaper than ``np.clip`` on small arrays)."""
    np.maximum(x, 0.0, out=x)
    np.minimum(x, 1.0, out=x)
    return x


def _inside(dist: FloatArray, width: float) -> FloatArray:
    """Soft indicator of ``dist < 0``: 1 inside, 0 outside, a linear ramp ``width`` wide."""
    return _clip01(0.5 - dist * (1.0 / width))


@functools.lru_cache(maxsize=32)
def _upsampler(grid: int, n: int) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Left neighbours and weights for linear interpolation from a ``grid`` axis to ``n`` pixels."""
    pos = (np.arange(n) + 0.5) / n * (grid - 1)
    lo = np.minimum(pos.astype(np.int64), grid - 2)
    frac = (pos - lo).astype(np.float32)
    lo.setflags(write=False)
    frac.setflags(write=False)
    return lo, frac


def _upsample(fields: FloatArray, n: int) -> FloatArray:
    """Bilinearly upsample ``(k, g, g)`` coarse fields spanning the image to ``(k, n, n)``.

    Plain gathers rather than interpolation matrices: a threaded BLAS call per image costs far
    more than it saves on a busy machine.
    """
    lo, frac = _upsampler(fields.shape[-1], n)
    top, bottom = fields[:, lo, :], fields[:, lo + 1, :]
    rows = top + (bottom - top) * frac[None, :, None]
    left, right = rows[:, :, lo], rows[:, :, lo + 1]
    out: FloatArray = left + (right - left) * frac
    return out


@functools.lru_cache(maxsize=32)
def _axis(n: int) -> FloatArray:
    """Pixel centres of an ``n``-pixel axis in normalised units [-1, 1]."""
    lin = ((np.arange(n) + 0.5) / n * 2.0 - 1.0).astype(np.float32)
    lin.setflags(write=False)
    return lin


def _pose_grid(p: _Patient, n: int) -> tuple[FloatArray, FloatArray]:
    """Patient coordinates ``(u, v)`` of the ``n x n`` image grid."""
    lin = _axis(n)
    ca, sa = math.cos(p.angle) / p.scale, math.sin(p.angle) / p.scale
    dx = (lin - p.shift_x)[None, :]
    dy = (lin - p.shift_y)[:, None]
    u: FloatArray = ca * dx + sa * dy
    v: FloatArray = ca * dy - sa * dx
    return u, v


def _segment_dist(
    u: FloatArray, v: FloatArray, a: tuple[float, float], b: tuple[float, float]
) -> FloatArray:
    """Distance from every point to the segment ``a``-``b``."""
    bx, by = b[0] - a[0], b[1] - a[1]
    du, dv = u - a[0], v - a[1]
    t = _clip01((du * bx + dv * by) * (1.0 / max(bx * bx + by * by, 1e-12)))
    out: FloatArray = np.hypot(du - t * bx, dv - t * by)
    return out


def _polyline_dist(u: FloatArray, v: FloatArray, points: FloatArray) -> FloatArray:
    """Distance from every point to a polyline given as ``(k, 2)`` vertices."""
    dist = _segment_dist(u, v, (points[0, 0], points[0, 1]), (points[1, 0], points[1, 1]))
    for i in range(1, len(points) - 1):
        a = (float(points[i, 0]), float(points[i, 1]))
        b = (float(points[i + 1, 0]), float(points[i + 1, 1]))
        np.minimum(dist, _segment_dist(u, v, a, b), out=dist)
    return dist


def _bezier(*control: tuple[float, float], count: int = 10) -> FloatArray:
    """Points on a quadratic or cubic Bezier curve with the given control points."""
    t = np.linspace(0.0, 1.0, count)[:, None]
    c = np.asarray(control, dtype=np.float64)
    if len(c) == 3:
        pts = (1 - t) ** 2 * c[0] + 2 * (1 - t) * t * c[1] + t**2 * c[2]
    else:
        pts = (
            (1 - t) ** 3 * c[0]
            + 3 * (1 - t) ** 2 * t * c[1]
            + 3 * (1 - t) * t**2 * c[2]
            + t**3 * c[3]
        )
    out: FloatArray = pts
    return out


def _dome_at(p: _Patient, side: int, xs: float) -> float:
    """Height of one diaphragm dome at lateral coordinate ``xs`` (down = larger)."""
    return p.dome_y[side] + p.dome_curv * ((xs - p.dome_peak[side]) / 0.32) ** 2


def _lung_outline(
    xs: FloatArray,
    v: FloatArray,
    cx: FloatArray | float,
    cy: FloatArray | float,
    a: FloatArray | float,
    b: FloatArray | float,
    taper: float,
) -> FloatArray:
    """Approximate signed distance to a lung's outer outline (negative inside).

    The outline is a superellipse of power 2.5, wider at the base than at the apex.
    """
    ry = (v - cy) / b
    a_eff = a * (1.0 + taper * np.minimum(np.maximum(ry, -1.0), 1.0))
    xl = np.abs((xs - cx) / a_eff)
    yl = np.abs(ry)
    level = xl * xl * np.sqrt(xl) + yl * yl * np.sqrt(yl)
    out: FloatArray = (level - 1.0) * (a_eff / 2.5)
    return out


def _body(p: _Patient, u: FloatArray, v: FloatArray, edge: float) -> FloatArray:
    """Soft body outline: torso below sloping shoulders, united with the neck."""
    au = np.abs(u)
    bw, nw = p.body_half_width, p.neck_half_width
    width = bw * (1.0 - 0.05 * (v - 0.2) ** 2)  # chest wall bulging at the lower ribs
    t = _clip01((au - nw) * (1.0 / (bw - nw)))
    t2 = t * t
    shoulder = p.shoulder_y + 0.16 * t * np.sqrt(t) + 0.25 * (t2 * t2) ** 2
    torso = _inside(au - width, edge) * _inside(shoulder - v, 2.0 * edge)
    out: FloatArray = np.maximum(torso, _inside(au - nw, edge))
    return out


def _heart(p: _Patient, u: FloatArray, v: FloatArray, edge: float, grow: float = 1.0) -> FloatArray:
    """Soft cardiac silhouette: a half-ellipse on the diaphragm, wider to the patient's left.

    ``grow`` > 1 enlarges it, mostly to the left and upwards (cardiomegaly).
    """
    hu = u - p.heart_cx
    left, right = p.heart_left * grow, p.heart_right * (1.0 + 0.4 * (grow - 1.0))
    half = np.where(hu > 0, np.float32(left), np.float32(right))
    ry = p.heart_ry * (1.0 + 0.6 * (grow - 1.0))
    r = np.hypot(hu / half, (v - p.heart_cy) * (1.0 / ry))
    # The diaphragm hides the lower half.
    out: FloatArray = _inside((r - 1.0) * np.minimum(half, ry), edge)
    out *= _inside(v - (p.heart_cy + 0.08), 0.12)
    return out


def _supersample(size: int) -> int:
    """Small images are rendered at twice the size and averaged down, against aliasing."""
    return 2 if size < 64 else 1


def _render(p: _Patient, size: int) -> _Scene:
    """Render the normal density map of a patient at an image size."""
    ss = _supersample(size)
    n = size * ss
    u, v = _pose_grid(p, n)
    px = 2.0 / (n * p.scale)
    edge = 1.2 * px
    au = np.abs(u)
    fields = _upsample(p.fields, n)
    texture, tissue, bowel, wobble = fields

    # Soft tissue: thicker (denser) in the middle of the chest, as through a cylinder.
    body = _body(p, u, v, edge)
    bw = p.body_half_width + 0.04
    thickness = np.sqrt(_clip01(1.0 - u * u * (1.0 / (bw * bw))))
    density = body * (0.22 + 0.78 * thickness) * (1.0 + 0.07 * tissue)

    # Heart and mediastinum form one central shadow.
    heart = _heart(p, u, v, edge)
    mw = p.mediastinum_half_width + 0.03 * _clip01(v + 0.5)
    mw += 0.1 * _clip01((v - (p.heart_cy - p.heart_ry)) * (1.0 / 0.3)) ** 2
    med = _inside(au - mw, 1.5 * edge) * _clip01((v + 0.95) * (1.0 / 0.3))
    med = np.maximum(med, _inside(np.hypot(u - 0.1, v + 0.3) - 0.06, edge))  # aortic knob
    density += p.heart_density * np.maximum(heart, med) + 0.06 * med

    # Trachea and main bronchi (air columns).
    tw = 0.028
    trachea = _inside(np.hypot(u, v - np.clip(v, -1.4, -0.32)) - tw, edge)
    bronchi = _inside(_segment_dist(au, v, (0.0, -0.32), (0.13, -0.18)) - 0.8 * tw, edge)
    density -= 0.2 * np.maximum(trachea, 0.7 * bronchi)

    # Spine: vertebral bodies brighter than the discs, brighter cortical edges.
    spine = _inside(au - p.spine_half_width, edge)
    phase = (2.0 * math.pi / p.vert_period) * v + 2.0 * math.pi * p.vert_phase
    edge_ratio = _clip01(au * (1.0 / p.spine_half_width))
    vert = 0.7 + 0.3 * np.cos(phase) + 0.25 * (edge_ratio * edge_ratio) ** 2
    density += 0.14 * spine * vert

    # Lungs, both sides at once: per-side parameters blend across the midline.
    w_side = _clip01(0.5 + 10.0 * u)

    def mix(pair: tuple[float, float]) -> FloatArray | float:
        if pair[0] == pair[1]:
            return pair[0]
        out: FloatArray = pair[0] + (pair[1] - pair[0]) * w_side
        return out

    cx, cy, a, b = mix(p.lung_cx), mix(p.lung_cy), mix(p.lung_a), mix(p.lung_b)
    outline = _lung_outline(au, v, cx, cy, a, b, p.lung_taper)
    dome = mix(p.dome_y) + p.dome_curv * ((au - mix(p.dome_peak)) * (1.0 / 0.32)) ** 2
    dist = np.maximum(outline, v - dome)
    lung = _inside(dist, edge)
    depth = _clip01(dist * (-1.0 / 0.14))
    air = (p.air * lung) * (0.55 + 0.45 * depth) * (1.0 - 0.7 * heart) * (1.0 - 0.9 * med)

    # Ribs: posterior ribs arch up from the spine and fall towards the chest wall; anterior ribs
    # run obliquely down towards the sternum, fainter. Both only inside the rib cage.
    cage = (
        _inside(outline - 0.05, 0.05)
        * _inside(v - dome - 0.1, 0.06)
        * _clip01((au - 0.02) * (1.0 / 0.06))
    )
    q = v - p.rib_curv * (au - p.rib_top) ** 2 + 0.012 * wobble
    q = q / (1.0 + 0.22 * np.clip(q + 0.6, 0.0, 1.5))  # ribs spread apart lower down
    wave = np.cos((2.0 * math.pi / p.rib_spacing) * q + 2.0 * math.pi * p.rib_phase)
    post = _clip01((wave - 0.3) * (1.0 / 0.4))
    q2 = v + 0.55 * au
    wave2 = np.cos((2.0 * math.pi / (1.3 * p.rib_spacing)) * q2 + 2.0 * math.pi * p.rib_phase)
    ant = _clip01((wave2 - 0.5) * (1.0 / 0.35)) * _clip01((au - 0.15) * (1.0 / 0.2))
    ribs = cage * (post + 0.4 * ant)

    # Clavicles.
    cxs = np.minimum(au, 0.75)
    clav_y = p.clav_y0 + p.clav_slope * cxs + p.clav_curv * cxs * cxs
    clav_w = p.clav_half_width * (1.0 + 0.5 * _clip01(1.0 - au * 4.0))
    clav = _inside(np.abs(v - clav_y) - clav_w, edge) * _inside(0.07 - au, edge)
    clav *= _inside(au - 0.74, 0.05)

    # Vessel markings fanning out of each hilum, thinning and fading towards the lung edge.
    hu = au - p.hilum_x
    hv = v - mix(p.hilum_y)
    r = np.hypot(hu, hv)
    ang = np.arctan2(hv, hu) + mix(p.vessel_curl) * r + (0.05 + 0.25 * r) * wobble
    scale = _VESSEL_BINS / (2.0 * math.pi)
    idx = ((ang + math.pi) * scale).astype(np.int64) % _VESSEL_BINS
    idx += _VESSEL_BINS * (u > 0)
    level = np.minimum(0.12 + 0.9 * r, 0.7)
    inv = 1.0 / (1.0 - level)
    main = _clip01((p.vessel_main.ravel()[idx] - level) * inv)
    branch = _clip01((p.vessel_branch.ravel()[idx] - level) * inv)
    branch *= _clip01((r - 0.08) * (1.0 / 0.1))
    fade = _clip01(1.0 - r * (1.0 / 1.0)) ** 2 * _clip01(dist * (-1.0 / 0.1))
    vessels = (p.vessel_density * lung) * fade * np.maximum(main, 0.7 * branch)
    hilum = 0.14 * _clip01(1.0 - r * r * (1.0 / 0.026)) ** 2 * lung

    # The abdomen below the domes (no air), with some bowel gas.
    abdomen = _inside(dome - v, 0.04)
    gas = _clip01(bowel - 0.3) * _clip01((v - 0.3) * (1.0 / 0.3))
    gas *= abdomen * (1.0 - heart)

    lung_texture = 0.035 * texture * lung
    density += p.rib_density * ribs + 0.3 * clav + vessels + hilum + lung_texture - air
    density += body * (0.1 * abdomen - 0.12 * gas)
    if p.bubble > 0:
        by = _dome_at(p, 1, 0.36) + 0.1
        bubble = _inside(np.hypot((u - 0.36) * (1.0 / 1.4), v - by) - 0.055, edge)
        density -= p.bubble * bubble * body
    np.maximum(density, 0.0, out=density)
    return _Scene(
        p=p,
        size=size,
        supersample=ss,
        u=u,
        v=v,
        edge=edge,
        px=px,
        body=body,
        lung=lung,
        air=air,
        vessels=vessels,
        texture=lung_texture,
        heart=heart,
        fields=fields,
        density=density,
    )


def _downsample(a: FloatArray, factor: int) -> FloatArray:
    if factor == 1:
        return a
    n = a.shape[0] // factor
    out: FloatArray = a.reshape(n, factor, n, factor).mean(axis=(1, 3))
    return out


def _expose(scene: _Scene, density: FloatArray, noise: FloatArray) -> npt.NDArray[np.float32]:
    """Turn a density map into a radiograph: exposure, window, gamma, fog, blur and noise."""
    p, size = scene.p, scene.size
    signal = 1.0 - np.exp(-p.exposure * density)
    signal = _downsample(signal, scene.supersample)
    img = np.maximum((signal - p.window_lo) * (1.0 / (p.window_hi - p.window_lo)), 0.0)
    # A film-like shoulder instead of a hard clip: dense regions compress but never saturate, so
    # an anomaly over the heart or the neck still changes the pixels.
    knee = _SHOULDER
    img = np.where(img > knee, knee + (1.0 - knee) * np.tanh((img - knee) / (1.0 - knee)), img)
    img = img**p.gamma
    lin = _axis(size)
    img = p.fog + (1.0 - p.fog) * img + (p.grad_x * lin[None, :] + p.grad_y * lin[:, None])
    sigma = p.blur * size / 2.0 + 0.3
    img = ndimage.gaussian_filter(img, sigma, truncate=3.0)
    img += p.noise * (0.4 + 0.6 * np.sqrt(np.maximum(img, 0.0))) * noise
    return _clip01(img).astype(np.float32, copy=False)


# ------------------------------------------------------------------------------------- anomalies
#
# Each anomaly returns ``(delta, shape)`` at the internal resolution: a density change added to the
# normal density map, and a soft shape in [0, 1] whose >= 0.5 region is the mask. Every random
# choice comes from the anomaly's own generator, so the normal part of the image is unchanged.


def _strength(difficulty: float) -> tuple[float, float]:
    """``(size factor, contrast factor)`` for a difficulty in [0, 1]: both shrink as it grows."""
    return 1.45 - 0.8 * difficulty, 1.8 - 1.3 * difficulty


def _lung_point(
    p: _Patient, rng: np.random.Generator, side: int, margin: float
) -> tuple[float, float]:
    """A point well inside one lung, as lateral/vertical patient coordinates ``(xs, v)``."""
    cx, cy, a, b = p.lung_cx[side], p.lung_cy[side], p.lung_a[side], p.lung_b[side]
    xs = cx + a * float(rng.uniform(-0.45, 0.5)) * (1.0 - margin)
    top = cy - b * (0.55 - margin)
    bottom = _dome_at(p, side, xs) - 0.1 - margin * 0.2
    v = float(rng.uniform(top, max(bottom, top + 0.05)))
    return xs, v


def _opacity(
    scene: _Scene, rng: np.random.Generator, difficulty: float
) -> tuple[FloatArray, FloatArray]:
    """Patchy consolidation: the air spaces of a lobe-sized region fill with fluid."""
    size_f, contrast = _strength(difficulty)
    side = int(rng.integers(2))
    xs0, v0 = _lung_point(scene.p, rng, side, 0.15)
    rx = 0.13 * size_f * float(rng.uniform(0.8, 1.25))
    ry = 0.16 * size_f * float(rng.uniform(0.8, 1.25))
    angle = float(rng.uniform(-0.6, 0.6))
    # The fraction of the air replaced: saturating smoothly, never more than all of it.
    strength = 1.0 - math.exp(-float(rng.uniform(0.7, 1.0)) * contrast)
    patchy = _upsample(_smooth_noise(rng, (1.0,)), scene.u.shape[0])[0]
    du, dv = _SIDES[side] * scene.u - xs0, scene.v - v0
    ca, sa = math.cos(angle), math.sin(angle)
    r = np.hypot((ca * du + sa * dv) * (1.0 / rx), (ca * dv - sa * du) * (1.0 / ry))
    r += 0.25 * patchy
    blob = _inside((r - 1.0) * min(rx, ry), 2.0 * scene.edge + 0.02)
    lung = scene.side(scene.lung, side)
    fill = np.clip(0.65 + 0.35 * patchy, 0.3, 1.0)
    delta = strength * blob * fill * (scene.side(scene.air, side) + 0.12 * lung)
    return delta, blob * lung


def _nodule(
    scene: _Scene, rng: np.random.Generator, difficulty: float
) -> tuple[FloatArray, FloatArray]:
    """A round, slightly lobulated nodule or mass inside a lung."""
    size_f, contrast = _strength(difficulty)
    side = int(rng.integers(2))
    xs0, v0 = _lung_point(scene.p, rng, side, 0.3)
    radius = 0.075 * size_f * float(rng.uniform(0.7, 1.4))
    radius = max(radius, 1.6 * scene.px * scene.supersample)
    lobes = rng.uniform(-1.0, 1.0, 2)
    strength = float(rng.uniform(0.28, 0.4)) * contrast
    du, dv = _SIDES[side] * scene.u - xs0, scene.v - v0
    theta = np.arctan2(dv, du)
    rr = radius * (1.0 + 0.12 * (lobes[0] * np.cos(2 * theta) + lobes[1] * np.sin(3 * theta)))
    r = np.hypot(du, dv)
    shape = _inside(r - rr, scene.edge)
    ball = np.sqrt(_clip01(1.0 - (r / (rr + scene.edge)) ** 2))
    lung = scene.side(scene.lung, side)
    delta = strength * shape * (0.5 + 0.5 * ball) * (0.4 + 0.6 * lung)
    return delta, shape * _clip01(lung * 2.0)


def _effusion(
    scene: _Scene, rng: np.random.Generator, difficulty: float
) -> tuple[FloatArray, FloatArray]:
    """Pleural fluid at a lung base: a meniscus rising laterally, the costophrenic angle blunted."""
    p = scene.p
    size_f, contrast = _strength(difficulty)
    side = int(rng.integers(2))
    height = 0.24 * size_f * float(rng.uniform(0.8, 1.25))
    rise = float(rng.uniform(0.06, 0.14)) * size_f
    fill = 1.0 - math.exp(-float(rng.uniform(0.8, 1.2)) * contrast)  # fraction of air replaced
    xs = _SIDES[side] * scene.u
    lateral = p.lung_cx[side] + p.lung_a[side] * 1.2
    base = _dome_at(p, side, lateral - 0.05)
    across = np.clip((xs - p.lung_cx[side]) * (1.0 / p.lung_a[side]), -1.0, 1.2)
    level = base - height - rise * across
    lung = scene.side(scene.lung, side)
    fluid = _inside(level - scene.v, 0.03) * lung
    delta = fill * fluid * (scene.side(scene.air, side) + 0.1 * lung)
    return delta, fluid


def _cardiomegaly(
    scene: _Scene, rng: np.random.Generator, difficulty: float
) -> tuple[FloatArray, FloatArray]:
    """An enlarged heart shadow, grown mostly to the patient's left and thicker in the beam."""
    p = scene.p
    size_f, contrast = _strength(difficulty)
    grow = 1.0 + 0.22 * size_f * float(rng.uniform(0.85, 1.15))
    big = np.maximum(_heart(p, scene.u, scene.v, scene.edge, grow), scene.heart)
    extra = big - scene.heart
    air_behind = scene.air / np.maximum(1.0 - 0.7 * scene.heart, 0.3)
    delta = p.heart_density * extra + 0.7 * air_behind * extra
    delta += 0.12 * contrast * (grow - 1.0) / 0.22 * big
    delta *= min(1.0, 0.5 + 0.5 * contrast)
    return delta, big


def _pneumothorax(
    scene: _Scene, rng: np.random.Generator, difficulty: float
) -> tuple[FloatArray, FloatArray]:
    """Air in the pleural space: an apical-lateral rim without markings, and a pleural line."""
    p = scene.p
    size_f, contrast = _strength(difficulty)
    side = int(rng.integers(2))
    collapse = min(0.45, 0.2 * size_f * float(rng.uniform(0.8, 1.25)))
    lucency = float(rng.uniform(0.14, 0.22)) * contrast
    xs = _SIDES[side] * scene.u
    hx, hy = p.hilum_x, p.hilum_y[side]
    xs_c = hx + (xs - hx) * (1.0 / (1.0 - collapse))
    v_c = hy + (scene.v - hy) * (1.0 / (1.0 - collapse))
    outline = _lung_outline(
        xs_c, v_c, p.lung_cx[side], p.lung_cy[side], p.lung_a[side], p.lung_b[side], p.lung_taper
    )
    dome = p.dome_y[side] + p.dome_curv * ((xs_c - p.dome_peak[side]) * (1.0 / 0.32)) ** 2
    dist_c = np.maximum(outline, v_c - dome) * (1.0 - collapse)
    collapsed = _inside(dist_c, scene.edge)
    where = _inside(scene.v - p.lung_cy[side] - 0.2, 0.2) * _clip01((xs - hx) * (1.0 / 0.08))
    lung = scene.side(scene.lung, side)
    rim = _clip01(lung - collapsed) * where
    line_w = max(0.012, 0.7 * scene.px)
    line = np.exp(-((dist_c * (1.0 / line_w)) ** 2)) * where * lung
    markings = scene.side(scene.vessels, side) + scene.side(scene.texture, side)
    delta = 0.12 * contrast * line - rim * (markings + lucency * lung)
    return delta, _clip01(rim + line)


def _foreign_object(
    scene: _Scene, rng: np.random.Generator, difficulty: float
) -> tuple[FloatArray, FloatArray]:
    """A radiopaque tube, line or device: tracheal or gastric tube, central line, pacemaker."""
    p = scene.p
    size_f, contrast = _strength(difficulty)
    kind = int(rng.integers(4))
    s = _SIDES[int(rng.integers(2))]
    jitter = rng.uniform(-0.03, 0.03, 6)
    strength = float(rng.uniform(0.45, 0.65)) * contrast
    half_w = max(0.014 * size_f, 0.6 * scene.px * scene.supersample)
    u, v = scene.u, scene.v
    if kind == 0:  # endotracheal tube ending above the carina
        tip = -0.45 + jitter[0]
        pts = _bezier((jitter[1], -1.4), (jitter[2], -0.9), (jitter[3] * 0.5, tip), count=6)
        shape = _inside(_polyline_dist(u, v, pts) - 1.4 * half_w, scene.edge)
        delta = strength * shape
    elif kind == 1:  # nasogastric tube down the oesophagus into the stomach
        stomach_y = _dome_at(p, 1, 0.3) + 0.12
        pts = _bezier(
            (0.02 + jitter[0], -1.4),
            (0.04 + jitter[1], -0.2),
            (0.06 + jitter[2], stomach_y + 0.15),
            (0.32 + jitter[3], stomach_y),
            count=14,
        )
        shape = _inside(_polyline_dist(u, v, pts) - half_w, scene.edge)
        delta = strength * shape
    elif kind == 2:  # central venous line from a subclavian vein into the superior vena cava
        pts = _bezier(
            (s * (0.62 + jitter[0]), -0.78 + jitter[1]),
            (s * 0.2, -0.62 + jitter[2]),
            (s * 0.04 - 0.06, -0.5),
            (-0.07 + jitter[3], -0.05 + jitter[4]),
            count=12,
        )
        shape = _inside(_polyline_dist(u, v, pts) - half_w, scene.edge)
        delta = strength * shape
    else:  # pacemaker generator below a clavicle, its lead into the right ventricle
        gx, gy = s * (0.5 + jitter[0]), -0.5 + jitter[1]
        w, h = 0.08 * size_f, 0.055 * size_f
        box = np.maximum(np.abs(u - gx) - w, np.abs(v - gy) - h)
        device = _inside(box - 0.5 * h, scene.edge)
        pts = _bezier(
            (gx, gy),
            (s * 0.15, -0.7 + jitter[2]),
            (-0.08, -0.3),
            (jitter[3], 0.25 + jitter[4]),
            count=12,
        )
        lead = _inside(_polyline_dist(u, v, pts) - 0.8 * half_w, scene.edge)
        shape = np.maximum(device, lead)
        delta = strength * np.maximum(2.5 * device, lead)
    return delta * scene.body, shape * scene.body


_AnomalyFn = Callable[[_Scene, np.random.Generator, float], tuple[FloatArray, FloatArray]]
_ANOMALIES: dict[str, _AnomalyFn] = {
    "opacity": _opacity,
    "nodule": _nodule,
    "effusion": _effusion,
    "cardiomegaly": _cardiomegaly,
    "pneumothorax": _pneumothorax,
    "foreign_object": _foreign_object,
}


# ----------------------------------------------------------------------------------- public API


def _check(size: int, anomaly: str | None, difficulty: float) -> None:
    if not isinstance(size, int | np.integer) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    if anomaly is not None and anomaly not in ANOMALY_TYPES:
        raise ValueError(f"unknown anomaly {anomaly!r}; valid: None or one of {ANOMALY_TYPES}")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty!r}")


def _anomaly_mask(scene: _Scene, shape: FloatArray, change: FloatArray) -> BoolArray:
    """Where the anomaly is: its shape reaches one half, or the density changed by at least
    ``_MASK_CHANGE`` of the largest change; always inside the body."""
    ss = scene.supersample
    body = _downsample(scene.body, ss) >= 0.5
    shape = _downsample(shape * scene.body, ss)
    change = np.abs(_downsample(change, ss))
    in_shape = (shape >= min(0.5, 0.5 * float(shape.max()))) & (shape > 0)
    changed = (change >= _MASK_CHANGE * float(change.max())) & (change > 0)
    mask: BoolArray = (in_shape | changed) & body
    return mask


def make_phantom(
    size: int, seed: int, anomaly: str | None = None, difficulty: float = DEFAULT_DIFFICULTY
) -> Phantom:
    """Render one synthetic chest X-ray.

    The image is fully determined by ``(size, seed, anomaly, difficulty)``. The normal image of a
    seed is the abnormal one without the anomaly: same patient, acquisition and pixel noise.

    Args:
        size: image side in pixels, 32 to 256.
        seed: the patient; any non-negative integer.
        anomaly: ``None`` for a normal image, else one of :data:`ANOMALY_TYPES`.
        difficulty: 0 (large, obvious anomaly) to 1 (small, subtle one); ignored when normal.

    Returns:
        The phantom: image, mask (empty when normal) and anomaly name.

    Raises:
        ValueError: on a size outside [32, 256], an unknown anomaly or a difficulty outside [0, 1].
    """
    _check(size, anomaly, difficulty)
    size = int(size)
    rng = np.random.default_rng(seed)
    patient = _draw_patient(rng)
    noise_rng, anomaly_rng = rng.spawn(2)
    scene = _render(patient, size)
    noise = noise_rng.standard_normal((size, size), dtype=np.float32)
    if anomaly is None:
        return Phantom(_expose(scene, scene.density, noise), np.zeros((size, size), bool), None)
    delta, shape = _ANOMALIES[anomaly](scene, anomaly_rng, float(difficulty))
    density = np.maximum(scene.density + delta * scene.body, 0.0)
    mask = _anomaly_mask(scene, shape, density - scene.density)
    return Phantom(_expose(scene, density, noise), mask, anomaly)


def body_mask(size: int, seed: int) -> BoolArray:
    """The patient's body (soft tissue outline) in a phantom of this size and seed.

    Every anomaly mask lies inside it; outside it is the dark background.

    Args:
        size: image side in pixels, 32 to 256.
        seed: the patient, as given to :func:`make_phantom`.

    Returns:
        ``(size, size)`` bool array.
    """
    _check(size, None, 0.5)
    patient = _draw_patient(np.random.default_rng(seed))
    ss = _supersample(int(size))
    u, v = _pose_grid(patient, int(size) * ss)
    edge = 1.2 * 2.0 / (int(size) * ss * patient.scale)
    mask: BoolArray = _downsample(_body(patient, u, v, edge), ss) >= 0.5
    return mask


# ------------------------------------------------------------------------------- dataset factory


@dataclass(frozen=True)
class SyntheticSpec:
    """A labelled synthetic dataset, fully determined by these numbers.

    Attributes:
        n_train: normal training images.
        n_val_normal: normal validation images (early stopping, calibration).
        n_test_normal: normal test images.
        n_test_abnormal: abnormal test images; the anomaly types are cycled evenly.
        difficulty: anomaly difficulty, 0 (obvious) to 1 (subtle).
        seed: master seed; every image's own seed is derived from it.
    """

    n_train: int = 1000
    n_val_normal: int = 200
    n_test_normal: int = 200
    n_test_abnormal: int = 200
    difficulty: float = DEFAULT_DIFFICULTY
    seed: int = 0


@dataclass(frozen=True)
class SyntheticItem:
    """One image of a :class:`SyntheticSpec`, before rendering.

    Attributes:
        item_id: ``"<split>-<index:05d>"``, e.g. ``"train-00000"`` or ``"test-00007"``.
        split: ``"train"``, ``"val_normal"`` or ``"test"``.
        seed: the image's seed for :func:`make_phantom`; distinct across all items of a spec.
        anomaly: ``None`` for a normal image, else one of :data:`ANOMALY_TYPES`.
    """

    item_id: str
    split: str
    seed: int
    anomaly: str | None

    @property
    def is_normal(self) -> bool:
        """Whether the image has no anomaly."""
        return self.anomaly is None


def _item_seed(master: int, stream: str, index: int, attempt: int = 0) -> int:
    """A 63-bit seed from a hash of ``(master seed, stream, index)``: stable and collision-free
    in practice; the rare collision is resolved with ``attempt``."""
    key = f"cxr-phantom|{master}|{stream}|{index}|{attempt}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def synthetic_items(spec: SyntheticSpec) -> list[SyntheticItem]:
    """List the images of a spec (no rendering): train, val_normal, then test items.

    The test split mixes normal and abnormal images in a seeded order. Image seeds come from a hash
    of the spec seed, the stream and the index, so the test patients never reappear in training,
    and changing one split's count leaves the other splits' images unchanged.

    Args:
        spec: the dataset description.

    Returns:
        The items, ``n_train + n_val_normal + n_test_normal + n_test_abnormal`` of them.
    """
    counts = (spec.n_train, spec.n_val_normal, spec.n_test_normal, spec.n_test_abnormal)
    if min(counts) < 0:
        raise ValueError(f"item counts must be non-negative, got {counts}")
    used: set[int] = set()

    def seed_of(stream: str, index: int) -> int:
        attempt = 0
        seed = _item_seed(spec.seed, stream, index)
        while seed in used:
            attempt += 1
            seed = _item_seed(spec.seed, stream, index, attempt)
        used.add(seed)
        return seed

    items = [
        SyntheticItem(f"train-{i:05d}", "train", seed_of("train", i), None)
        for i in range(spec.n_train)
    ]
    items += [
        SyntheticItem(f"val_normal-{i:05d}", "val_normal", seed_of("val_normal", i), None)
        for i in range(spec.n_val_normal)
    ]
    test: list[tuple[int, str | None]] = [
        (seed_of("test_normal", i), None) for i in range(spec.n_test_normal)
    ]
    test += [
        (seed_of("test_abnormal", i), ANOMALY_TYPES[i % len(ANOMALY_TYPES)])
        for i in range(spec.n_test_abnormal)
    ]
    order = np.random.default_rng(_item_seed(spec.seed, "test_order", 0)).permutation(len(test))
    items += [
        SyntheticItem(f"test-{k:05d}", "test", test[j][0], test[j][1])
        for k, j in enumerate(order.tolist())
    ]
    return items


def render_item(item: SyntheticItem, size: int, difficulty: float) -> Phantom:
    """Render one item of :func:`synthetic_items` (see :func:`make_phantom`)."""
    return make_phantom(size, item.seed, item.anomaly, difficulty)


def render_items(
    items: list[SyntheticItem], size: int, difficulty: float
) -> tuple[npt.NDArray[np.float32], BoolArray]:
    """Render many items into stacked arrays.

    Args:
        items: from :func:`synthetic_items`.
        size: image side in pixels.
        difficulty: anomaly difficulty in [0, 1].

    Returns:
        ``(images, masks)``: ``(n, size, size)`` float32 and bool.
    """
    images = np.empty((len(items), size, size), np.float32)
    masks = np.zeros((len(items), size, size), bool)
    for i, item in enumerate(items):
        phantom = render_item(item, size, difficulty)
        images[i] = phantom.image
        masks[i] = phantom.mask
    logger.debug("rendered %d phantoms at %dx%d", len(items), size, size)
    return images, masks
