"""Pixel-level metrics of anomaly maps against lesion masks: pixel AUROC and AP, best Dice, the
pointing game.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypedDict, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from cxr_anomaly.core.sizes import at_side
from cxr_anomaly.evaluation.metrics.image import auroc, average_precision

logger = logging.getLogger(__name__)

#: Pooled pixel metrics use at most this many pixels (a fixed-seed uniform sample beyond it).
MAX_PIXELS = 2_000_000


class PixelMetricsJson(TypedDict):
    """:class:`PixelMetrics` as results files hold it."""

    pixel_auroc: float
    pixel_ap: float
    best_dice: float
    dice_threshold: float
    pointing_game: float
    n_images: int
    n_annotated: int


#: The pointing game smooths maps with this sigma, in pixels at 64x64 (scaled with the side).
POINTING_SIGMA = 2.0


def _as_stack(arr: ArrayLike, name: str) -> NDArray[Any]:
    """Return ``arr`` as (N, H, W); a singleton channel axis (N, 1, H, W) is dropped."""
    a = np.asarray(arr)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"{name} must be (N, H, W) or (N, 1, H, W), got shape {a.shape}")
    return a


def _check_pixels(maps: ArrayLike, masks: ArrayLike) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Validate (N, H, W) finite maps and boolean masks of the same shape."""
    m = _as_stack(maps, "maps")
    k = _as_stack(masks, "masks")
    if m.shape != k.shape:
        raise ValueError(f"maps and masks differ in shape: {m.shape} vs {k.shape}")
    if not np.isfinite(m).all():
        raise ValueError("maps contain NaN or infinite values")
    if k.dtype != np.bool_:
        if not np.isin(k, (0, 1)).all():
            raise ValueError("masks must be boolean (or 0/1)")
        k = k.astype(bool)
    return m, k


def _pooled_pixels(
    maps: ArrayLike, masks: ArrayLike, max_pixels: int, seed: int
) -> tuple[NDArray[np.int8], NDArray[Any]]:
    """Flatten all pixels of the set, subsampling beyond ``max_pixels``."""
    m, k = _check_pixels(maps, masks)
    flat_m = m.reshape(-1)
    flat_k = k.reshape(-1)
    if flat_m.size > max_pixels:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.integers(0, flat_m.size, size=max_pixels))
        logger.debug("pixel metrics: using %d of %d pixels", max_pixels, flat_m.size)
        flat_m = flat_m[idx]
        flat_k = flat_k[idx]
    return flat_k.astype(np.int8), flat_m


def pixel_auroc(
    maps: ArrayLike, masks: ArrayLike, *, max_pixels: int = MAX_PIXELS, seed: int = 0
) -> float:
    """Pixel AUROC pooled over every pixel of every image.

    Normal images take part with all-zero masks (their pixels are all negatives). Beyond
    ``max_pixels`` pixels, a uniform sample (with replacement) of ``max_pixels`` pixels drawn with
    ``np.random.default_rng(seed)`` is used, so the result is deterministic and memory is bounded.

    Args:
        maps: (N, H, W) (or (N, 1, H, W)) anomaly maps, larger = more anomalous.
        masks: boolean masks of the same shape.
        max_pixels: pixel budget before subsampling.
        seed: seed of the subsample.

    Raises:
        ValueError: on shape mismatch, non-finite maps, or masks that are all False / all True.
    """
    y, s = _pooled_pixels(maps, masks, max_pixels, seed)
    return auroc(y, s)


def pixel_ap(
    maps: ArrayLike, masks: ArrayLike, *, max_pixels: int = MAX_PIXELS, seed: int = 0
) -> float:
    """Pixel average precision pooled over all pixels (subsampled as in :func:`pixel_auroc`)."""
    y, s = _pooled_pixels(maps, masks, max_pixels, seed)
    return average_precision(y, s)


def best_dice(maps: ArrayLike, masks: ArrayLike, n_thresholds: int = 100) -> tuple[float, float]:
    """Best pooled Dice over a grid of thresholds, and the threshold reaching it.

    A pixel is predicted abnormal when ``map >= t``. Dice is pooled over the whole set:
    ``2 TP / (2 TP + FP + FN)`` with counts summed over all images (so normal images add false
    positives only). The threshold grid is the union of ``n_thresholds`` evenly spaced values
    between the smallest and largest map value and ``n_thresholds`` quantiles of the map values
    (the quantiles keep the grid fine where the values are dense, even when a few outliers stretch
    the range). All pixels are counted exactly (histogram counts, no subsampling).

    Args:
        maps: (N, H, W) anomaly maps.
        masks: boolean masks of the same shape, with at least one True pixel.
        n_thresholds: size of each half of the grid (>= 2).

    Returns:
        ``(dice, threshold)``; the lowest such threshold when several tie.

    Raises:
        ValueError: on bad inputs or masks with no True pixel.
    """
    m, k = _check_pixels(maps, masks)
    if not k.any():
        raise ValueError("masks have no abnormal pixel: Dice is undefined")
    flat_m = m.reshape(-1)
    return best_dice_of_pixels(flat_m, k.reshape(-1), n_thresholds)


def best_dice_of_pixels(
    values: NDArray[Any], positive: NDArray[np.bool_], n_thresholds: int = 100
) -> tuple[float, float]:
    """:func:`best_dice` of pooled pixels: map ``values`` (P,) and their mask labels (P,)."""
    if n_thresholds < 2:
        raise ValueError(f"n_thresholds must be >= 2, got {n_thresholds}")
    n_true = int(positive.sum())
    if n_true == 0:
        raise ValueError("masks have no abnormal pixel: Dice is undefined")
    flat_m = values.astype(np.float64, copy=False)
    lo, hi = float(flat_m.min()), float(flat_m.max())
    sample = flat_m
    if sample.size > MAX_PIXELS:
        sample = sample[np.random.default_rng(0).integers(0, sample.size, size=MAX_PIXELS)]
    grid = np.unique(
        np.r_[
            np.linspace(lo, hi, n_thresholds),
            np.quantile(sample, np.linspace(0.0, 1.0, n_thresholds)),
        ]
    )
    # For each pixel, the index of the highest threshold it reaches; it is predicted abnormal at
    # every threshold up to that index. Counting in chunks keeps memory bounded.
    pos_hist = np.zeros(grid.size, dtype=np.int64)
    all_hist = np.zeros(grid.size, dtype=np.int64)
    chunk = 1 << 22
    for start in range(0, flat_m.size, chunk):
        vals = flat_m[start : start + chunk]
        top = np.searchsorted(grid, vals, side="right") - 1
        all_hist += np.bincount(top, minlength=grid.size)
        pos_hist += np.bincount(top[positive[start : start + chunk]], minlength=grid.size)
    tp = np.cumsum(pos_hist[::-1])[::-1]  # pixels with map >= grid[i] and in the mask
    predicted = np.cumsum(all_hist[::-1])[::-1]
    dice = 2.0 * tp / (predicted + n_true)
    best = int(np.argmax(dice))
    return float(dice[best]), float(grid[best])


def pointing_sigma(side: int) -> float:
    """The pointing game's smoothing at an image side: :data:`POINTING_SIGMA` pixels at 64x64."""
    return at_side(POINTING_SIGMA, side)


def points_inside(amap: NDArray[Any], mask: NDArray[np.bool_], sigma: float) -> bool:
    """Whether the map (H, W), smoothed with ``sigma``, peaks inside the mask (first argmax)."""
    smoothed = amap.astype(np.float64)
    if sigma > 0:
        smoothed = ndimage.gaussian_filter(smoothed, sigma=sigma, mode="nearest")
    return bool(mask.reshape(-1)[int(np.argmax(smoothed))])


def pointing_game(maps: ArrayLike, masks: ArrayLike, sigma: float | None = None) -> float:
    """Fraction of annotated images whose smoothed map peaks inside the mask.

    Only images with a non-empty mask count. Each map is smoothed with
    ``scipy.ndimage.gaussian_filter(map, sigma)`` (``sigma=0``: no smoothing; ``None``:
    :func:`pointing_sigma` of the maps' side) and its argmax (the first one in row-major order
    on ties) is a hit when it falls on a True mask pixel.

    Raises:
        ValueError: on bad inputs or when no mask has a True pixel.
    """
    return float(pointing_hits(maps, masks, sigma).mean())


def pointing_hits(
    maps: ArrayLike, masks: ArrayLike, sigma: float | None = None
) -> NDArray[np.bool_]:
    """Per annotated image, in order: whether its smoothed map peaks inside its mask (see
    :func:`pointing_game`, their mean)."""
    m, k = _check_pixels(maps, masks)
    sigma = pointing_sigma(m.shape[-1]) if sigma is None else sigma
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    annotated = np.flatnonzero(k.reshape(k.shape[0], -1).any(axis=1))
    if annotated.size == 0:
        raise ValueError("no image has a non-empty mask: the pointing game is undefined")
    return np.array([points_inside(m[i], k[i], sigma) for i in annotated], dtype=bool)


@dataclass
class PixelMetrics:
    """Pixel-level (localization) results of one model on one test set.

    Attributes:
        pixel_auroc: pooled pixel AUROC.
        pixel_ap: pooled pixel average precision.
        best_dice: best pooled Dice over thresholds.
        dice_threshold: the map threshold reaching ``best_dice``.
        pointing_game: fraction of annotated images whose smoothed map peaks inside the mask.
        n_images: images evaluated.
        n_annotated: images with a non-empty mask.
    """

    pixel_auroc: float
    pixel_ap: float
    best_dice: float
    dice_threshold: float
    pointing_game: float
    n_images: int
    n_annotated: int

    def to_dict(self) -> PixelMetricsJson:
        """A JSON-ready dict."""
        return cast(PixelMetricsJson, asdict(self))


def pixel_metrics(maps: ArrayLike, masks: ArrayLike, sigma: float | None = None) -> PixelMetrics:
    """All pixel-level metrics of one model (see the single functions for definitions).

    Args:
        maps: (N, H, W) anomaly maps (normal images included, with all-zero masks).
        masks: boolean masks of the same shape.
        sigma: smoothing of the pointing game (default: :func:`pointing_sigma`).
    """
    m, k = _check_pixels(maps, masks)
    dice, threshold = best_dice(m, k)
    return PixelMetrics(
        pixel_auroc=pixel_auroc(m, k),
        pixel_ap=pixel_ap(m, k),
        best_dice=dice,
        dice_threshold=threshold,
        pointing_game=pointing_game(m, k, sigma=sigma),
        n_images=int(m.shape[0]),
        n_annotated=int(k.reshape(k.shape[0], -1).any(axis=1).sum()),
    )


def _binned_ap(positives: NDArray[Any], negatives: NDArray[Any]) -> float:
    """AP of pixels counted per value bin (bins in increasing order; a bin's pixels are tied)."""
    pos, neg = positives[::-1], negatives[::-1]  # from the highest bin down
    total = float(pos.sum())
    if total == 0:
        return float("nan")
    cum_pos, cum_all = np.cumsum(pos), np.cumsum(pos + neg)
    precision = np.divide(cum_pos, cum_all, out=np.zeros_like(cum_pos, float), where=cum_all > 0)
    return float((pos / total * precision).sum())


def _binned_best_dice(positives: NDArray[Any], negatives: NDArray[Any]) -> float:
    """Best pooled Dice of pixels counted per value bin, thresholds between the bins."""
    total = float(positives.sum())
    if total == 0:
        return float("nan")
    true_positive = np.cumsum(positives[::-1])
    predicted = np.cumsum((positives + negatives)[::-1])
    return float((2.0 * true_positive / (predicted + total)).max())


PooledStatistic = Callable[[NDArray[Any], NDArray[Any]], float]
"""(positive pixels per value bin, negative pixels per bin) -> a pooled pixel statistic."""


def _binned_bootstrap_ci(
    statistic: PooledStatistic,
    maps: Sequence[ArrayLike],
    masks: Sequence[ArrayLike],
    groups: Sequence[Sequence[Any]],
    n_boot: int,
    bins: int,
    seed: int,
) -> tuple[float, float]:
    """95% patient-bootstrap interval of the mean over several image sets of ``statistic``.

    Each set ``i`` (a finding, say: ``maps[i]`` (N_i, H, W) with ``masks[i]`` and ``groups[i]``,
    one patient per image) is tallied per image into value bins (``bins`` quantiles of its
    maps, and as many of its mask's pixels);
    each replicate draws the patients once, with replacement, takes every image of a drawn
    patient from every set, and averages the sets' statistics. Ties within a bin make each
    statistic a close approximation of its exact, unbinned value, not the same number.
    """
    tallies, codes_of = [], []
    everyone = np.unique(np.concatenate([np.asarray(g) for g in groups]))
    for amap, mask, group in zip(maps, masks, groups, strict=True):
        m, k = _check_pixels(amap, mask)
        # Quantiles of every pixel and of the finding's pixels: the few abnormal pixels of a
        # sparse mask get bins of their own rather than sharing the top bins of the whole set.
        levels = np.linspace(0, 1, bins + 1)[1:-1]
        edges = np.unique(
            np.r_[np.quantile(m, levels), np.quantile(m[k], levels) if k.any() else []]
        )
        index = np.searchsorted(edges, m.reshape(m.shape[0], -1), side="right")
        n_bins, n_images = len(edges) + 1, m.shape[0]
        cell = (index + n_bins * np.arange(n_images)[:, None]).reshape(-1)
        positive = k.reshape(-1)
        size = n_images * n_bins
        pos = np.bincount(cell[positive], minlength=size).reshape(n_images, n_bins)
        neg = np.bincount(cell[~positive], minlength=size).reshape(n_images, n_bins)
        tallies.append((pos, neg))
        codes_of.append(np.searchsorted(everyone, np.asarray(group)))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        weight = np.bincount(rng.integers(0, everyone.size, everyone.size), minlength=everyone.size)
        found = [
            statistic(weight[codes] @ pos, weight[codes] @ neg)
            for (pos, neg), codes in zip(tallies, codes_of, strict=True)
        ]
        if not np.isnan(found).any():
            values.append(float(np.mean(found)))
    if not values:
        raise ValueError("no bootstrap replicate held a positive pixel in every set")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def pixel_ap_ci(
    maps: Sequence[ArrayLike],
    masks: Sequence[ArrayLike],
    groups: Sequence[Sequence[Any]],
    n_boot: int = 1000,
    bins: int = 512,
    seed: int = 0,
) -> tuple[float, float]:
    """95% patient-bootstrap interval of the mean pooled pixel AP of several image sets (binned:
    a close approximation of :func:`pixel_ap`'s interval; see :func:`_binned_bootstrap_ci`)."""
    return _binned_bootstrap_ci(_binned_ap, maps, masks, groups, n_boot, bins, seed)


def best_dice_ci(
    maps: Sequence[ArrayLike],
    masks: Sequence[ArrayLike],
    groups: Sequence[Sequence[Any]],
    n_boot: int = 1000,
    bins: int = 512,
    seed: int = 0,
) -> tuple[float, float]:
    """95% patient-bootstrap interval of the mean best pooled Dice of several image sets
    (binned thresholds: a close approximation of :func:`best_dice`'s interval)."""
    return _binned_bootstrap_ci(_binned_best_dice, maps, masks, groups, n_boot, bins, seed)
