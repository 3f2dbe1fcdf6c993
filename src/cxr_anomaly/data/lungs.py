"""Lung masks by thresholding, and the AnatPaste augmentation that pastes patches inside them.

Both are plain functions on arrays, so they can be tested and reused without a model:

* :func:`lung_mask` finds the two lungs of one grey image (H, W) in [0, 1]: histogram
  equalisation, then dark-region thresholds (quantiles of a central box, from loose to strict:
  a strict threshold cuts the thin dark bridges that join a lung to the background), a
  morphological opening, on each side of the midline the largest dark component that does not
  touch the image border, closing and hole filling. Each side keeps the loosest threshold that
  gives a plausible lung (area, height); a side that never does is the mirror image of the
  other, and an image where neither does gets a pair of central ellipses.
* :func:`anat_paste` cuts a random rectangle out of an image of the batch, jitters its intensity
  and pastes it at a random lung pixel, blended through a soft mask (a rectangle or an ellipse,
  cut to the lung, Gaussian-blurred, cut to the lung again), so the pasted content appears only
  inside the lungs, with soft edges: a synthetic in-lung anomaly (Sato et al. 2023).

Example:
    >>> import numpy as np
    >>> from cxr_anomaly.data.phantoms import make_phantom
    >>> mask = lung_mask(make_phantom(64, seed=0).image)
    >>> mask.shape, mask.dtype
    ((64, 64), dtype('bool'))
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage

BoolArray = npt.NDArray[np.bool_]


# The central box in which the dark/bright threshold is chosen (fractions of the side).
_BOX_ROWS = (0.15, 0.75)


_BOX_COLS = (0.12, 0.88)


# Plausible area of one lung, as a fraction of the image.
_LUNG_AREA = (0.025, 0.30)


# Fallback ellipses: centre row, centre column offset from the midline, semi-axes (fractions).
_ELLIPSE = (0.45, 0.22, 0.28, 0.12)


_MIN_HEIGHT = 0.2


# Dark thresholds tried, from the loosest down: quantiles of the central box.
_QUANTILES = (0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2)


_CROSS = ndimage.generate_binary_structure(2, 1)


_SQUARE = np.ones((3, 3), bool)


def equalize(image: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Histogram equalisation: each pixel's mid-rank among the image's pixels, in [0, 1].

    Equal values get equal ranks, so a constant image stays constant (at 0.5).
    """
    pixels = np.asarray(image, np.float32)
    _, inverse, counts = np.unique(pixels.ravel(), return_inverse=True, return_counts=True)
    mid_ranks = (np.cumsum(counts) - 0.5 * counts) / pixels.size
    return mid_ranks[inverse].astype(np.float32).reshape(pixels.shape)


def ellipse_lungs(height: int, width: int) -> BoolArray:
    """The fallback: a pair of upright ellipses left and right of the midline."""
    cy, dx, ry, rx = _ELLIPSE
    rows = (np.arange(height)[:, None] + 0.5) / height
    cols = (np.arange(width)[None, :] + 0.5) / width
    mask = np.zeros((height, width), bool)
    for cx in (0.5 - dx, 0.5 + dx):
        mask |= ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1.0
    return mask


def _plausible(side: BoolArray) -> bool:
    """One lung: a plausible area, and taller than a fifth of the image."""
    fraction = float(side.mean())
    if not _LUNG_AREA[0] <= fraction <= _LUNG_AREA[1]:
        return False
    rows = np.flatnonzero(side.any(axis=1))
    return bool(rows[-1] - rows[0] + 1 >= _MIN_HEIGHT * side.shape[0])


def _best_sides(dark: BoolArray) -> list[BoolArray | None]:
    """The largest dark component on each side of the midline, away from the image border."""
    height, width = dark.shape
    labels, count = ndimage.label(ndimage.binary_opening(dark, _CROSS), _CROSS)
    if count == 0:
        return [None, None]
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[np.unique(border)] = 0
    index = np.arange(1, count + 1)
    centres = np.asarray(ndimage.center_of_mass(dark, labels, index)).reshape(-1, 2)
    central = (centres[:, 0] > 0.15 * height) & (centres[:, 0] < 0.85 * height)
    out: list[BoolArray | None] = []
    for left in (True, False):
        on_side = (centres[:, 1] < width / 2) if left else (centres[:, 1] >= width / 2)
        candidates = np.where(on_side & central, sizes[1:], 0)
        out.append(labels == int(np.argmax(candidates)) + 1 if candidates.max() > 0 else None)
    return out


def lung_mask(image: npt.NDArray[np.floating]) -> BoolArray:
    """The lungs of one grey chest X-ray (H, W) in [0, 1] (bright = dense), as a bool mask.

    The result always has a lung on each side of the midline; see the module docstring for
    the steps and the fallbacks.
    """
    return find_lungs(image)[0]


def find_lungs(image: npt.NDArray[np.floating]) -> tuple[BoolArray, str]:
    """:func:`lung_mask` and how it was found: ``"threshold"``, ``"mirror"`` or ``"ellipse"``."""
    pixels = np.asarray(image, np.float32)
    if pixels.ndim != 2:
        raise ValueError(f"expected an (H, W) image, got shape {pixels.shape}")
    height, width = pixels.shape
    eq = equalize(pixels)
    r0, r1 = (round(f * height) for f in _BOX_ROWS)
    c0, c1 = (round(f * width) for f in _BOX_COLS)
    box = np.sort(eq[r0:r1, c0:c1].ravel())
    found: list[BoolArray | None] = [None, None]
    for q in _QUANTILES:
        threshold = box[min(int(q * len(box)), len(box) - 1)]
        for i, side in enumerate(_best_sides(eq < threshold)):
            if found[i] is None and side is not None:
                side = ndimage.binary_fill_holes(ndimage.binary_closing(side, _SQUARE))
                if _plausible(side):
                    found[i] = side
        if found[0] is not None and found[1] is not None:
            return found[0] | found[1], "threshold"
    kept = found[0] if found[0] is not None else found[1]
    if kept is not None:
        return kept | kept[:, ::-1], "mirror"
    return ellipse_lungs(height, width), "ellipse"


def lung_masks(images: torch.Tensor) -> torch.Tensor:
    """:func:`lung_mask` of each image of a batch (N, 1, H, W) -> bool (N, 1, H, W), same device."""
    pixels = images.detach().float().cpu().numpy()
    masks = np.stack([lung_mask(p[0]) for p in pixels])[:, None]
    return torch.from_numpy(masks).to(images.device)
