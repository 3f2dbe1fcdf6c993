"""The six findings a phantom can carry, each a local density change on the normal patient.

Each finding returns ``(delta, shape)`` at the internal resolution: a density change added to the
normal density map, and a soft shape in [0, 1] whose >= 0.5 region is the mask. Every random
choice comes from the finding's own generator, so the normal part of the image is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from cxr_anomaly.data.phantoms.anatomy import (
    _SIDES,
    FloatArray,
    _bezier,
    _clip01,
    _dome_at,
    _heart,
    _inside,
    _lung_outline,
    _Patient,
    _polyline_dist,
    _Scene,
    _smooth_noise,
    _upsample,
)

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

_AnomalyFn = Callable[[_Scene, np.random.Generator, float], tuple[FloatArray, FloatArray]]


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


_ANOMALIES: dict[str, _AnomalyFn] = {
    "opacity": _opacity,
    "nodule": _nodule,
    "effusion": _effusion,
    "cardiomegaly": _cardiomegaly,
    "pneumothorax": _pneumothorax,
    "foreign_object": _foreign_object,
}
