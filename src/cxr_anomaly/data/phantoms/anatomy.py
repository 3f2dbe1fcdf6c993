"""A phantom's normal patient and acquisition: anatomy drawn as a density map, then exposed."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

MIN_SIZE = 32


MAX_SIZE = 256


FloatArray = npt.NDArray[np.floating[Any]]


BoolArray = npt.NDArray[np.bool_]


# Side 0 is the patient's right (image left, u < 0); side 1 the patient's left (image right).
_SIDES: tuple[float, float] = (-1.0, 1.0)


_VESSEL_BINS = 512


_SHOULDER = 0.75


_FIELD_GRID = 24


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
