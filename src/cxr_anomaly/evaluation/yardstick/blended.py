"""A second, independent generator of findings in real radiographs: blended in the image domain.

The yardstick's own generator (:mod:`.insertions`) adds analytic density profiles in the
attenuation domain. A detector whose settings were chosen on those images may have learned their
look rather than the findings. This generator draws the same five findings another way, and is
used only to judge the chosen defaults once, on images no choice was made on (the held-out test
split's normal images):

- **image domain, blending**: every finding moves pixels *towards a target intensity* read off
  the same radiograph (``out = I + w * (target - I)``, ``w`` in [0, 1]), as natural-blending
  synthetic anomalies do (NSA, Schlüter et al. 2022), instead of adding density. Targets: the
  mediastinum's soft tissue (the median intensity between the lungs), the darkest lung air (the
  lung's 2nd percentile) and metal (brighter than the brightest bone);
- **other shapes and places**: lung zones (upper, middle, lower third) chosen first, blurred
  superellipses instead of the Samei profile, consolidations as clusters of ellipses with air
  bronchograms, an effusion whose meniscus is an exponential rise, a pneumothorax whose rim is
  blurred lung, and other devices (a pacemaker lead, surgical clips, a button).

Sizes follow the same radiology (a nodule up to 3 cm, a segmental consolidation, an effusion
blunting the angle, a rim pneumothorax); the three levels (:data:`LEVELS`) shrink sizes and
weights together. They were fixed with the trivial detectors checked on the labelled validation
split's normals (near chance), before any model was scored on them.

Example:
    >>> import numpy as np
    >>> from cxr_anomaly.data.phantoms import make_phantom
    >>> image = make_phantom(128, seed=1).image
    >>> out = insert_blended(image, "nodule", "conspicuous", np.random.default_rng(0))
    >>> out.image.shape, bool(out.mask.any())
    ((128, 128), True)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cxr_anomaly.evaluation.yardstick.insertions import (
    BoolArray,
    FloatArray,
    Inserted,
    checked_image,
    smooth_lungs,
)

LEVELS: dict[str, tuple[float, float]] = {
    "conspicuous": (1.0, 1.0),
    "middle": (0.8, 0.7),
    "faint": (0.6, 0.45),
}
"""Difficulty level -> (size factor, weight factor)."""

_MASK_CHANGE = 0.1
_MIN_CONTRAST = 0.05


@dataclass(frozen=True)
class _Chest:
    """One radiograph as this generator places findings: a lung, its zones, target intensities."""

    image: FloatArray
    lung: BoolArray
    tissue: float
    air: float
    metal: float
    lateral: float
    """+1 when the lung's outer edge lies towards larger columns, else -1."""

    @property
    def side(self) -> int:
        return int(self.image.shape[0])

    def box(self) -> tuple[float, float, float, float]:
        """(top, bottom, left, right) of the lung, in pixels."""
        rows, cols = np.nonzero(self.lung)
        return float(rows.min()), float(rows.max()), float(cols.min()), float(cols.max())

    def spot(self, rng: np.random.Generator, margin: float) -> tuple[float, float]:
        """A pixel of a zone (upper, middle or lower third, drawn first) at least ``margin``
        pixels inside the lung."""
        top, bottom, _, _ = self.box()
        zone = int(rng.integers(3))
        low, high = top + zone * (bottom - top) / 3, top + (zone + 1) * (bottom - top) / 3
        inner = ndimage.distance_transform_edt(self.lung) >= margin
        rows = np.arange(self.side)[:, None]
        candidates = np.argwhere(inner & (rows >= low) & (rows <= high))
        if not len(candidates):
            candidates = np.argwhere(inner if inner.any() else self.lung)
        row, col = candidates[int(rng.integers(len(candidates)))]
        return float(row), float(col)

    def grid(self) -> tuple[FloatArray, FloatArray]:
        grid = np.indices(self.image.shape, dtype=np.float64)
        return grid[0], grid[1]


def _chest(image: FloatArray, rng: np.random.Generator) -> _Chest:
    lungs = smooth_lungs(image)
    labels, _ = ndimage.label(lungs)
    order = np.argsort(-np.bincount(labels.ravel())[1:])[:2] + 1
    lung = labels == order[int(rng.integers(len(order)))]
    centre = float(np.nonzero(lung)[1].mean())
    lateral = -1.0 if centre < image.shape[1] / 2 else 1.0
    both: BoolArray = np.asarray(lungs.any(axis=0))
    cols = np.flatnonzero(both)
    rows = np.flatnonzero(lungs.any(axis=1))
    gap = [c for c in range(int(cols.min()), int(cols.max()) + 1) if not both[c]]
    band = image[rows.min() : rows.max() + 1, gap] if gap else image[lungs]
    lung_values = image[lung]
    air = float(np.percentile(lung_values, 2))
    tissue = max(float(np.median(band)), float(np.median(lung_values)) + _MIN_CONTRAST)
    metal = max(float(image.max()), tissue + 2 * _MIN_CONTRAST)
    return _Chest(image, lung, tissue, air, min(metal, 1.0), lateral)


def _superellipse(
    chest: _Chest,
    centre: tuple[float, float],
    radii: tuple[float, float],
    angle: float,
    power: float,
) -> FloatArray:
    rows, cols = chest.grid()
    dr, dc = rows - centre[0], cols - centre[1]
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = (ca * dc + sa * dr) / radii[0], (ca * dr - sa * dc) / radii[1]
    return ((np.abs(u) ** power + np.abs(v) ** power) <= 1.0).astype(np.float64)


def _polyline(chest: _Chest, points: FloatArray, width: float) -> FloatArray:
    """A stripe of ``width`` pixels along ``points`` (K, 2 as row, col): the points drawn
    densely on the grid, then a soft profile of the distance to them."""
    dense = []
    for a, b in itertools.pairwise(points):
        steps = max(2, int(np.hypot(*(b - a)) * 2))
        dense.append(a + np.linspace(0.0, 1.0, steps)[:, None] * (b - a))
    drawn = np.ones(chest.image.shape, bool)
    cells = np.round(np.concatenate(dense)).astype(int)
    keep = ((cells >= 0) & (cells < chest.side)).all(axis=1)
    drawn[cells[keep, 0], cells[keep, 1]] = False
    distance = ndimage.distance_transform_edt(drawn)
    return np.clip(1.0 - (distance - width / 2), 0.0, 1.0)


def _nodule(chest: _Chest, rng: np.random.Generator, size: float, weight: float) -> FloatArray:
    top, bottom, _, _ = chest.box()
    largest = 0.065 * (bottom - top) * float(rng.uniform(0.8, 1.2))
    radius = max(largest * size, 1.5)
    centre = chest.spot(rng, largest)
    stretch = float(rng.uniform(0.85, 1.15))
    shape = _superellipse(
        chest,
        centre,
        (radius * stretch, radius / stretch),
        float(rng.uniform(0, math.pi)),
        float(rng.uniform(1.8, 2.6)),
    )
    blurred = ndimage.gaussian_filter(shape, 0.25 * radius)
    return 0.75 * weight * np.clip(blurred / max(float(blurred.max()), 1e-9), 0.0, 1.0)


def _consolidation(
    chest: _Chest, rng: np.random.Generator, size: float, weight: float
) -> FloatArray:
    top, bottom, _, _ = chest.box()
    reach = 0.16 * (bottom - top) * size
    centre = chest.spot(rng, 0.08 * (bottom - top))
    cluster = np.zeros(chest.image.shape)
    for _ in range(int(rng.integers(3, 7))):
        offset = rng.normal(0.0, 0.5 * reach, 2)
        radii = (reach * float(rng.uniform(0.4, 0.8)), reach * float(rng.uniform(0.3, 0.6)))
        place = (centre[0] + offset[0], centre[1] + offset[1])
        cluster = np.maximum(
            cluster, _superellipse(chest, place, radii, float(rng.uniform(0, math.pi)), 2.0)
        )
    # Air bronchograms: a few dark branches through the opacity.
    branches = np.zeros_like(cluster)
    for _ in range(int(rng.integers(2, 4))):
        angle = float(rng.uniform(0, 2 * math.pi))
        start = np.array(centre) + rng.normal(0.0, 0.3 * reach, 2)
        end = start + 1.2 * reach * np.array([math.sin(angle), math.cos(angle)])
        branches = np.maximum(branches, _polyline(chest, np.stack([start, end]), 1.0))
    soft = ndimage.gaussian_filter(cluster, 0.12 * reach) * (1.0 - 0.5 * branches)
    lung = ndimage.gaussian_filter(chest.lung.astype(np.float64), 1.0)
    return 0.85 * weight * np.clip(soft, 0.0, 1.0) * lung


def _effusion(chest: _Chest, rng: np.random.Generator, size: float, weight: float) -> FloatArray:
    top, bottom, left, right = chest.box()
    height, width = bottom - top, right - left
    rows, cols = chest.grid()
    depth = 0.18 * height * size * float(rng.uniform(0.8, 1.2))
    # Distance from the lateral edge, as a share of the lung's width.
    from_edge = (right - cols if chest.lateral > 0 else cols - left) / max(width, 1.0)
    rise = 0.1 * height * size * np.exp(-np.clip(from_edge, 0.0, None) / 0.15)
    surface = bottom - depth - rise
    below = 1.0 / (1.0 + np.exp(-(rows - surface) / max(0.02 * height, 0.5)))
    lung = ndimage.binary_dilation(chest.lung, iterations=2).astype(np.float64)
    return 0.9 * weight * below * ndimage.gaussian_filter(lung, 1.0)


def _pneumothorax(
    chest: _Chest, rng: np.random.Generator, size: float, weight: float
) -> tuple[FloatArray, BoolArray]:
    top, bottom, left, right = chest.box()
    rows, cols = chest.grid()
    inside = ndimage.distance_transform_edt(chest.lung)
    rim_width = 0.13 * (right - left) * size * float(rng.uniform(0.8, 1.2))
    upper = rows <= top + (bottom - top) * float(rng.uniform(0.5, 0.65))
    outer = chest.lateral * (cols - (left + right) / 2) > -0.1 * (right - left)
    rim = (inside > 0) & (inside <= rim_width) & upper & outer
    soft_rim = ndimage.gaussian_filter(rim.astype(np.float64), 1.0)
    # Blurred lung darkened towards air: no markings, no lung tissue.
    blurred = ndimage.gaussian_filter(chest.image, 0.04 * chest.side)
    target = blurred + 0.9 * weight * (chest.air - blurred)
    line = np.exp(-(((inside - rim_width) / 0.8) ** 2)) * upper * outer * (inside > 0)
    change = soft_rim * (target - chest.image) + 0.55 * weight * line * (chest.tissue - chest.image)
    return change, rim | (line > 0.5)


def _foreign_body(
    chest: _Chest, rng: np.random.Generator, size: float, weight: float
) -> FloatArray:
    top, bottom, left, right = chest.box()
    n = chest.side
    kind = int(rng.integers(3))
    if kind == 0:  # pacemaker lead: from above the lung laterally, sinuous, to the heart border
        outer = right if chest.lateral > 0 else left
        inner = left if chest.lateral > 0 else right
        t = np.linspace(0.0, 1.0, 12)[:, None]
        start = np.array([top - 0.03 * n, outer - chest.lateral * 0.2 * (right - left)])
        end = np.array([top + 0.75 * (bottom - top), inner])
        wiggle = 0.04 * n * np.sin(t * math.pi * float(rng.uniform(1.5, 3.0)))
        points = start + t * (end - start) + wiggle * np.array([0.0, 1.0])
        shape = _polyline(chest, points, max(1.0, 0.008 * n * size))
    elif kind == 1:  # two to four surgical clips, clustered
        centre = chest.spot(rng, 0.04 * n)
        shape = np.zeros(chest.image.shape)
        for _ in range(int(rng.integers(2, 5))):
            place = (centre[0] + rng.normal(0, 0.03 * n), centre[1] + rng.normal(0, 0.03 * n))
            radii = (0.022 * n * size, 0.007 * n * size + 0.5)
            angle = float(rng.uniform(0, math.pi))
            shape = np.maximum(shape, _superellipse(chest, place, radii, angle, 6.0))
    else:  # a button: a bright disk with two holes
        centre = chest.spot(rng, 0.05 * n)
        radius = 0.03 * n * size + 1.0
        shape = _superellipse(chest, centre, (radius, radius), 0.0, 2.0)
        for sign in (-1.0, 1.0):
            hole = (centre[0], centre[1] + sign * 0.35 * radius)
            shape = shape * (1.0 - 0.8 * _superellipse(chest, hole, (0.18 * radius,) * 2, 0.0, 2.0))
    return weight * ndimage.gaussian_filter(shape, 0.5)


def insert_blended(
    image: FloatArray, finding: str, level: str, rng: np.random.Generator
) -> Inserted:
    """``image`` (H, W) in [0, 1] with one ``finding`` (of :data:`FINDINGS`) blended in at
    difficulty ``level`` (of :data:`LEVELS`); the same ``rng`` state gives the same place and
    shape at every level."""
    pixels = checked_image(image, finding, level, LEVELS)
    size, weight = LEVELS[level]
    chest = _chest(pixels, rng)
    mask: BoolArray | None = None
    if finding == "pneumothorax":
        change, mask = _pneumothorax(chest, rng, size, weight)
    else:
        draw = {"nodule": _nodule, "consolidation": _consolidation, "effusion": _effusion}
        if finding == "foreign_body":
            change = _foreign_body(chest, rng, size, weight) * (chest.metal - pixels)
        else:
            change = draw[finding](chest, rng, size, weight) * (chest.tissue - pixels)
            change = np.maximum(change, 0.0)  # blending towards tissue never darkens bone
    out = np.clip(pixels + change, 0.0, 1.0).astype(np.float32)
    changed = np.abs(change) >= _MASK_CHANGE * float(np.abs(change).max() or 1.0)
    return Inserted(out, changed if mask is None else mask, finding, level)
