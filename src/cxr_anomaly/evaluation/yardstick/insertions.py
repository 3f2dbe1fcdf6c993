"""Findings inserted into real normal radiographs, with exact masks: the yardstick's real anatomy.

Each finding is a change of the *projected attenuation* (density), added to the density of a
real normal image and exposed back, as the phantoms are made (:mod:`cxr_anomaly.data.phantoms`):
an image ``I`` in [0, 1] (bright = dense) is read as ``density = -log(1 - A * I)`` with
``A = 0.99``, so the same density change brightens dark lung more than bone that is already
bright, as an opacity superimposed on anatomy does. Findings sit inside the lungs found on the
real image (:func:`smooth_lungs`), one lung drawn at random.

Contrasts are in units of the image's own soft-tissue contrast ``U``: the median density of the
mediastinum between the lungs minus the median density of the lungs, i.e. what replacing the
air of the lung by soft tissue through its whole thickness adds. A dense consolidation replaces
the air of the affected lung and approaches ``U`` (the silhouette sign); a solid nodule of
diameter ``D`` in a lung ``T`` thick adds about ``D / T`` of ``U`` at its centre; radiopaque
tubes and lines are denser than soft tissue. The sizes and profiles follow the radiology and
lesion-simulation descriptions named beside each finding; they were fixed, with the three
difficulty levels below, before any model was scored on them (the trivial detectors were the
only check: they must stay near chance).

The findings (:data:`FINDINGS`):

- ``nodule``: a round, slightly lobulated solid nodule or small mass, the contrast profile
  ``(1 - (r / R)^2)^1.5`` of the simulated nodules of Samei et al. (Radiology 1999); diameter
  16% of the lung's height at the most conspicuous level (about 2 cm in a child's chest).
- ``consolidation``: a focal, lobe-segment-sized patchy opacity (air replaced by fluid), its
  edge irregular, cut to the lung; about 0.8 ``U`` where it is dense.
- ``effusion``: fluid at one lung base, a meniscus rising laterally, the costophrenic angle
  blunted; densest at the base.
- ``pneumothorax``: an apical-lateral rim of one lung without lung markings (the texture
  there smoothed away and the density lowered: air, no lung tissue) and a thin bright visceral
  pleural line at its inner edge.
- ``foreign_body``: one of a central venous line crossing the lung apex towards the
  mediastinum, an intercostal chest drain with its radiopaque stripe, or two or three ECG
  electrodes (a ring with a bright central snap) with their wires.

Difficulty levels (:data:`LEVELS`) shrink every size and every contrast together: the same
draw (place, shape, orientation) at three scales, so the sweep isolates conspicuity.
The mask is where the density changed by at least a tenth of the largest change, inside the
body (for the pneumothorax: the rim and the pleural line).

Example:
    >>> import numpy as np
    >>> from cxr_anomaly.data.phantoms import make_phantom
    >>> image = make_phantom(128, seed=1).image
    >>> out = insert_finding(image, "nodule", "conspicuous", np.random.default_rng(0))
    >>> out.image.shape, bool(out.mask.any()), bool((out.image > image)[out.mask].all())
    ((128, 128), True, True)
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from cxr_anomaly.data.lungs import lung_mask
from cxr_anomaly.data.preprocess import resize_image

FloatArray = npt.NDArray[np.floating[Any]]
BoolArray = npt.NDArray[np.bool_]

FINDINGS: tuple[str, ...] = ("nodule", "consolidation", "effusion", "pneumothorax", "foreign_body")
"""The inserted finding types, in the order the yardstick reports them."""

LEVELS: dict[str, tuple[float, float]] = {
    "conspicuous": (1.0, 1.0),
    "middle": (0.75, 0.65),
    "faint": (0.55, 0.4),
}
"""Difficulty level -> (size factor, contrast factor) applied to every finding."""

ATTENUATION_SCALE = 0.99
_MASK_CHANGE = 0.1
_MIN_UNIT = 0.1
LUNG_FINDER_SIZE = 64


@dataclass(frozen=True)
class Inserted:
    """One real image with one inserted finding.

    Attributes:
        image: (H, W) float32 in [0, 1], the image with the finding.
        mask: (H, W) bool, where the finding changed the image.
        finding: one of :data:`FINDINGS`.
        level: one of :data:`LEVELS`.
    """

    image: npt.NDArray[np.float32]
    mask: BoolArray
    finding: str
    level: str


@dataclass(frozen=True)
class _Anatomy:
    """What the findings are placed by: the lungs, one chosen lung, and the density units."""

    density: FloatArray
    lungs: BoolArray
    side: BoolArray
    unit: float
    rows: FloatArray
    cols: FloatArray
    lateral: float
    """+1 when the chosen lung's outer edge lies towards larger columns, else -1."""

    @property
    def size(self) -> int:
        return int(self.density.shape[0])

    def extent(self) -> tuple[float, float, float, float]:
        """The chosen lung's (top, bottom, left, right) in pixels."""
        rows = np.flatnonzero(self.side.any(axis=1))
        cols = np.flatnonzero(self.side.any(axis=0))
        return float(rows[0]), float(rows[-1]), float(cols[0]), float(cols[-1])

    def point(self, rng: np.random.Generator, margin: float) -> tuple[float, float]:
        """A pixel (row, col) of the chosen lung at least ``margin`` px from its edge."""
        inner = ndimage.binary_erosion(self.side, iterations=max(1, round(margin)))
        candidates = np.argwhere(inner if inner.any() else self.side)
        row, col = candidates[int(rng.integers(len(candidates)))]
        return float(row), float(col)


def to_density(image: FloatArray) -> FloatArray:
    """Image intensities (bright = dense) -> projected attenuation."""
    return -np.log1p(-ATTENUATION_SCALE * np.clip(image, 0.0, 1.0))


def to_image(density: FloatArray) -> npt.NDArray[np.float32]:
    """Projected attenuation -> image intensities in [0, 1] (the inverse of :func:`to_density`)."""
    image = -np.expm1(-np.maximum(density, 0.0)) / ATTENUATION_SCALE
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def soft_tissue_unit(density: FloatArray, lungs: BoolArray) -> float:
    """Median mediastinal density (between the lungs) minus median lung density."""
    rows = np.flatnonzero(lungs.any(axis=1))
    middle = rows[len(rows) // 4 : max(len(rows) * 3 // 4, len(rows) // 4 + 1)]
    width = lungs.shape[1]
    values = []
    for row in middle:
        left = np.flatnonzero(lungs[row, : width // 2])
        right = np.flatnonzero(lungs[row, width // 2 :]) + width // 2
        if len(left) and len(right) and right[0] - left[-1] > 2:
            values.append(density[row, left[-1] + 1 : right[0]])
    lung = float(np.median(density[lungs]))
    if values:
        soft = float(np.median(np.concatenate(values)))
    else:
        r0, r1 = rows[0], rows[-1] + 1
        soft = float(np.percentile(density[r0:r1], 90))
    return max(soft - lung, _MIN_UNIT)


def smooth_lungs(image: FloatArray) -> BoolArray:
    """The lungs of ``image`` found at 64 px (the size the lung finder was made for), brought
    back to the image's size with smooth outlines (ribs do not cut them into pieces)."""
    side = image.shape[0]
    small = lung_mask(resize_image(np.asarray(image, np.float32), LUNG_FINDER_SIZE))
    zoomed = ndimage.zoom(small.astype(np.float32), side / LUNG_FINDER_SIZE, order=1)
    grown = ndimage.gaussian_filter(zoomed, side / LUNG_FINDER_SIZE) > 0.5
    return np.asarray(ndimage.binary_fill_holes(grown), dtype=bool)


def _anatomy(image: FloatArray, rng: np.random.Generator) -> _Anatomy:
    density = to_density(image)
    lungs = smooth_lungs(image)
    labels, count = ndimage.label(lungs)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    # The largest component on each side stands for that lung.
    half = image.shape[1] / 2
    centres = ndimage.center_of_mass(lungs, labels, np.arange(1, count + 1))
    sides = []
    for left in (True, False):
        ranked = [i for i in np.argsort(-sizes) if (centres[i][1] < half) == left and sizes[i] > 0]
        if ranked:
            sides.append((labels == ranked[0] + 1, -1.0 if left else 1.0))
    side, lateral = sides[int(rng.integers(len(sides)))]
    n = image.shape[0]
    rows, cols = np.mgrid[0:n, 0 : image.shape[1]].astype(np.float64)
    return _Anatomy(density, lungs, side, soft_tissue_unit(density, lungs), rows, cols, lateral)


def _soft(inside: FloatArray, width: float) -> FloatArray:
    """A soft step: 1 where ``inside`` (a signed distance, positive inside) exceeds ``width``."""
    return np.clip(0.5 + inside / max(width, 1e-6), 0.0, 1.0)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> FloatArray:
    """Smooth noise with zero mean and unit spread."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return (field - field.mean()) / (field.std() + 1e-9)


def _nodule(a: _Anatomy, rng: np.random.Generator, size: float, contrast: float) -> FloatArray:
    top, bottom, _, _ = a.extent()
    largest = 0.08 * (bottom - top) * float(rng.uniform(0.85, 1.15))
    radius = max(largest * size, 1.5)
    row, col = a.point(rng, largest * 0.8)  # the same place at every level
    theta = np.arctan2(a.rows - row, a.cols - col)
    lobes = rng.uniform(-1.0, 1.0, 2)
    edge = radius * (1.0 + 0.1 * (lobes[0] * np.cos(2 * theta) + lobes[1] * np.sin(3 * theta)))
    r = np.hypot(a.rows - row, a.cols - col) / edge
    profile = np.clip(1.0 - r**2, 0.0, 1.0) ** 1.5
    return 0.6 * contrast * a.unit * profile


def _consolidation(
    a: _Anatomy, rng: np.random.Generator, size: float, contrast: float
) -> FloatArray:
    top, bottom, _, _ = a.extent()
    height = bottom - top
    radius = 0.2 * height * size
    row, col = a.point(rng, 0.1 * height)  # the same place at every level
    angle = float(rng.uniform(0, math.pi))
    du, dv = a.cols - col, a.rows - row
    ca, sa = math.cos(angle), math.sin(angle)
    stretch = float(rng.uniform(1.0, 1.5))
    r = np.hypot((ca * du + sa * dv) / (radius * stretch), (ca * dv - sa * du) / radius)
    noise = _smooth_field(rng, a.density.shape, 0.04 * a.size)
    r = r + 0.2 * noise
    blob = _soft((1.0 - r) * radius, 0.15 * radius)
    patchy = np.clip(0.75 + 0.25 * _smooth_field(rng, a.density.shape, 0.015 * a.size), 0.4, 1.0)
    lung = ndimage.gaussian_filter(a.side.astype(np.float64), 0.01 * a.size)
    return 0.8 * contrast * a.unit * blob * patchy * lung


def _effusion(a: _Anatomy, rng: np.random.Generator, size: float, contrast: float) -> FloatArray:
    top, bottom, left, right = a.extent()
    height, width = bottom - top, right - left
    fluid_height = 0.22 * height * size * float(rng.uniform(0.85, 1.15))
    # Across the lung, 0 medially and 1 at the lateral edge: the meniscus rises laterally.
    across = (a.cols - left) / max(width, 1.0)
    if a.lateral < 0:
        across = 1.0 - across
    level = bottom - fluid_height - 0.08 * height * size * np.clip(across, 0.0, 1.2)
    depth = a.rows - level
    fluid = _soft(depth, 0.03 * height)
    thickness = np.clip(0.6 + 0.4 * depth / max(fluid_height, 1.0), 0.6, 1.0)
    lung = ndimage.gaussian_filter(a.side.astype(np.float64), 0.005 * a.size)
    return 0.9 * contrast * a.unit * fluid * thickness * lung


def _pneumothorax(
    a: _Anatomy, rng: np.random.Generator, size: float, contrast: float
) -> tuple[FloatArray, BoolArray]:
    top, bottom, left, right = a.extent()
    width = right - left
    rim_width = 0.16 * width * size * float(rng.uniform(0.85, 1.15))
    inside = ndimage.distance_transform_edt(a.side)
    centre_col = (left + right) / 2
    # Apical and lateral: the upper two thirds, the outer half (a soft weight along both).
    lower = top + (bottom - top) * float(rng.uniform(0.55, 0.7))
    apical = _soft(lower - a.rows, 0.05 * (bottom - top))
    lateral = _soft(a.lateral * (a.cols - centre_col) + 0.15 * width, 0.1 * width)
    where = apical * lateral * a.side
    rim = (inside <= rim_width) * where
    # Inside the rim: the lung markings smoothed away and the air of lung tissue gone.
    smooth = ndimage.gaussian_filter(a.density, 0.03 * a.size)
    markings = a.density - smooth
    line_width = max(0.6, 0.005 * a.size)
    line = np.exp(-(((inside - rim_width) / line_width) ** 2)) * where
    delta = -rim * (markings + 0.3 * contrast * a.unit) + 0.5 * contrast * a.unit * line
    mask = (rim > 0.5) | (line > 0.5)
    return delta, mask


def _stroke(a: _Anatomy, points: FloatArray, half_width: float) -> FloatArray:
    """Distance of every pixel to a polyline ``points`` (K, 2 as row, col), as a soft stripe."""
    best = np.full(a.density.shape, np.inf)
    for (r0, c0), (r1, c1) in itertools.pairwise(points):
        dr, dc = r1 - r0, c1 - c0
        length2 = dr * dr + dc * dc or 1e-9
        t = np.clip(((a.rows - r0) * dr + (a.cols - c0) * dc) / length2, 0.0, 1.0)
        best = np.minimum(best, np.hypot(a.rows - r0 - t * dr, a.cols - c0 - t * dc))
    return _soft(half_width - best, 1.0)


def _curve(start: tuple[float, float], end: tuple[float, float], bend: float) -> FloatArray:
    """A quadratic curve from ``start`` to ``end``, bowed by ``bend`` of its length."""
    (r0, c0), (r1, c1) = start, end
    mid_r, mid_c = (r0 + r1) / 2 - bend * (c1 - c0), (c0 + c1) / 2 + bend * (r1 - r0)
    t = np.linspace(0.0, 1.0, 24)[:, None]
    p0, p1, p2 = np.array([r0, c0]), np.array([mid_r, mid_c]), np.array([r1, c1])
    return np.asarray((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2)


def _foreign_body(
    a: _Anatomy, rng: np.random.Generator, size: float, contrast: float
) -> FloatArray:
    top, bottom, left, right = a.extent()
    height, n = bottom - top, a.size
    outer = right if a.lateral > 0 else left
    inner = left if a.lateral > 0 else right
    kind = int(rng.integers(3))
    if kind == 0:  # central venous line: from above the apex laterally, down to the mediastinum
        start = (top - 0.05 * height, outer - a.lateral * 0.25 * (right - left))
        end = (top + 0.45 * height, inner - a.lateral * 0.06 * n)
        path = _curve(start, end, float(rng.uniform(-0.15, 0.15)))
        return 1.2 * contrast * a.unit * _stroke(a, path, max(0.6, 0.006 * n * size))
    if kind == 1:  # chest drain: a wide tube from the lateral chest wall, its stripe radiopaque
        row = top + height * float(rng.uniform(0.5, 0.75))
        start = (row, outer + a.lateral * 0.04 * n)
        end = (top + height * float(rng.uniform(0.1, 0.3)), (left + right) / 2)
        path = _curve(start, end, float(rng.uniform(-0.2, 0.2)))
        tube = _stroke(a, path, max(1.0, 0.014 * n * size))
        stripe = _stroke(a, path, max(0.5, 0.004 * n * size))
        return contrast * a.unit * (0.5 * tube + 1.0 * stripe)
    delta = np.zeros_like(a.density)  # ECG electrodes with their wires
    for _ in range(int(rng.integers(2, 4))):
        row, col = a.point(rng, 0.03 * n)
        r = np.hypot(a.rows - row, a.cols - col)
        radius = 0.035 * n * size
        ring = _soft(1.0 - np.abs(r - radius), 1.0) * 0.5
        snap = _soft(0.35 * radius - r, 1.0)
        wire = _stroke(a, _curve((row, col), (row + 0.4 * n, col + 0.1 * n), 0.2), 0.5)
        delta = np.maximum(delta, contrast * a.unit * (0.6 * ring + 1.5 * snap + 0.6 * wire))
    return delta


def checked_image(
    image: FloatArray, finding: str, level: str, levels: dict[str, tuple[float, float]]
) -> FloatArray:
    """``image`` as float64 once the finding, the level (a key of ``levels``) and the image's
    shape (square, 2-D) are known to be valid; a ValueError names what is not."""
    if finding not in FINDINGS:
        raise ValueError(f"unknown finding {finding!r}; choose from {', '.join(FINDINGS)}")
    if level not in levels:
        raise ValueError(f"unknown level {level!r}; choose from {', '.join(levels)}")
    pixels = np.asarray(image, np.float64)
    if pixels.ndim != 2 or pixels.shape[0] != pixels.shape[1]:
        raise ValueError(f"expected a square (H, W) image, got shape {pixels.shape}")
    return pixels


def insert_finding(
    image: FloatArray, finding: str, level: str, rng: np.random.Generator
) -> Inserted:
    """``image`` (H, W) in [0, 1] with one ``finding`` at difficulty ``level``.

    The same ``rng`` state gives the same place and shape at every level.
    """
    pixels = checked_image(image, finding, level, LEVELS)
    size, contrast = LEVELS[level]
    anatomy = _anatomy(pixels, rng)
    mask: BoolArray | None = None
    if finding == "pneumothorax":
        delta, mask = _pneumothorax(anatomy, rng, size, contrast)
    else:
        draw = {
            "nodule": _nodule,
            "consolidation": _consolidation,
            "effusion": _effusion,
            "foreign_body": _foreign_body,
        }[finding]
        delta = draw(anatomy, rng, size, contrast)
    out = to_image(anatomy.density + delta)
    changed = np.abs(delta) >= _MASK_CHANGE * float(np.abs(delta).max() or 1.0)
    return Inserted(out, changed if mask is None else mask, finding, level)
