"""Image- and pixel-level anomaly-detection metrics, with patient-level bootstrap intervals.

Everything here takes plain numpy arrays and returns floats, tuples or small dataclasses, so the
metrics can be tested and reused without any model in sight.

Conventions:
    * ``labels``: 0 = normal, 1 = abnormal (bools are accepted).
    * ``scores`` / ``maps``: larger = more anomalous.
    * A prediction at threshold ``t`` is "abnormal" when ``score >= t``.
    * ``groups``: one id per image (the patient); the bootstrap resamples groups, so all images of
      a patient move together.

Example:
    >>> import numpy as np
    >>> auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.4, 0.8]))
    0.875
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage, stats
from sklearn import metrics as skm

from cxr_anomaly.core.filters import at_side

logger = logging.getLogger(__name__)

__all__ = [
    "ImageMetrics",
    "PixelMetrics",
    "auroc",
    "average_precision",
    "best_dice",
    "bootstrap_ci",
    "image_metrics",
    "per_class_auroc",
    "pixel_ap",
    "pixel_auroc",
    "pixel_metrics",
    "pointing_game",
    "roc_curve",
    "sensitivity_at_specificity",
]

#: Replicates of every patient-level bootstrap interval the project reports.
N_BOOTSTRAP = 1000
#: Pooled pixel metrics use at most this many pixels (a fixed-seed uniform sample beyond it).
MAX_PIXELS = 2_000_000
#: The pointing game smooths maps with this sigma, in pixels at 64x64 (scaled with the side).
POINTING_SIGMA = 2.0

# Slack for comparing a specificity such as 1 - 1/10 with a target such as 0.9 in floating point.
_SPEC_EPS = 1e-9

Metric = Callable[[NDArray[Any], NDArray[Any]], float]


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _check_binary(labels: ArrayLike, scores: ArrayLike) -> tuple[NDArray[np.int8], NDArray[Any]]:
    """Validate 1-D labels (0/1, both present) and finite scores of the same length."""
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise ValueError(f"labels and scores must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 (normal) or 1 (abnormal), got {np.unique(y)[:10]}")
    if not np.isfinite(s).all():
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN or infinite values")
    y = y.astype(np.int8)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise ValueError(
            f"both classes are needed, got {y.size - n_pos} normal and {n_pos} abnormal images"
        )
    return y, s


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


# --------------------------------------------------------------------------------------------
# Image-level metrics
# --------------------------------------------------------------------------------------------


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve, computed as the Mann-Whitney U statistic.

    Equals P(score of a random abnormal > score of a random normal) + 1/2 P(tie), i.e. ties count
    one half (average ranks). Identical to ``sklearn.metrics.roc_auc_score``.

    Args:
        labels: (N,) 0 normal / 1 abnormal.
        scores: (N,) anomaly scores, larger = more anomalous.

    Returns:
        The AUROC in [0, 1].

    Raises:
        ValueError: on shape mismatch, non-finite scores or a single class.
    """
    y, s = _check_binary(labels, scores)
    ranks = stats.rankdata(s, method="average")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    u = float(ranks[y == 1].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def average_precision(labels: ArrayLike, scores: ArrayLike) -> float:
    """Average precision, as ``sklearn.metrics.average_precision_score``.

    AP = sum_k (R_k - R_{k-1}) P_k over the distinct thresholds (a step-wise area under the
    precision-recall curve, no interpolation). Chance level is the abnormal fraction.

    Raises:
        ValueError: on shape mismatch, non-finite scores or a single class.
    """
    y, s = _check_binary(labels, scores)
    return float(skm.average_precision_score(y, s))


def roc_curve(
    labels: ArrayLike, scores: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """ROC curve points ``(fpr, tpr, thresholds)`` (as ``sklearn.metrics.roc_curve``).

    The curve starts at (0, 0) with threshold ``inf`` and ends at (1, 1). Collinear points are
    dropped (they do not change the curve's shape or area).

    Raises:
        ValueError: on shape mismatch, non-finite scores or a single class.
    """
    y, s = _check_binary(labels, scores)
    fpr, tpr, thresholds = skm.roc_curve(y, s, drop_intermediate=True)
    return (
        np.asarray(fpr, dtype=np.float64),
        np.asarray(tpr, dtype=np.float64),
        np.asarray(thresholds, dtype=np.float64),
    )


def sensitivity_at_specificity(labels: ArrayLike, scores: ArrayLike, specificity: float) -> float:
    """Sensitivity (TPR) at a required specificity.

    Exactly: over every achievable operating point "abnormal iff score >= t" (``t`` running over
    the distinct scores, plus ``t = +inf`` which flags nothing), keep the points whose specificity
    ``TN / n_normal`` is at least ``specificity`` (up to 1e-9 float slack), and return the highest
    TPR ``TP / n_abnormal`` among them. No interpolation between operating points: the value is
    reachable by a real threshold. It is 0.0 when only ``t = +inf`` qualifies.

    Args:
        labels: (N,) 0 normal / 1 abnormal.
        scores: (N,) anomaly scores.
        specificity: the required specificity in [0, 1], e.g. 0.9.

    Raises:
        ValueError: on bad inputs or a specificity outside [0, 1].
    """
    if not 0.0 <= specificity <= 1.0:
        raise ValueError(f"specificity must be in [0, 1], got {specificity}")
    y, s = _check_binary(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order]
    tp = np.cumsum(y_sorted)
    fp = np.cumsum(1 - y_sorted)
    # Operating points exist only at the last index of each run of tied scores.
    last_of_run = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    spec = 1.0 - fp[last_of_run] / n_neg
    ok = spec >= specificity - _SPEC_EPS
    if not ok.any():
        return 0.0
    return float(tp[last_of_run][ok].max()) / n_pos


def per_class_auroc(
    labels: ArrayLike, scores: ArrayLike, classes: Sequence[str] | ArrayLike
) -> dict[str, float]:
    """AUROC of each abnormal class against ALL normal images.

    Args:
        labels: (N,) 0 normal / 1 abnormal.
        scores: (N,) anomaly scores.
        classes: (N,) the class name of each image (e.g. "Normal", "Lung Opacity"). Only the
            names of abnormal images (label 1) define classes; normal images are pooled whatever
            their names.

    Returns:
        ``{class name: AUROC}`` for each abnormal class, sorted by name.

    Raises:
        ValueError: on bad inputs or a ``classes`` of the wrong length.
    """
    y, s = _check_binary(labels, scores)
    c = np.asarray(classes, dtype=object)
    if c.shape != y.shape:
        raise ValueError(f"classes must have one name per image: {c.shape} vs {y.shape}")
    normal = y == 0
    out: dict[str, float] = {}
    for name in sorted({str(v) for v in c[y == 1]}):
        keep = normal | ((y == 1) & (c.astype(str) == name))
        out[name] = auroc(y[keep], s[keep])
    return out


def bootstrap_ci(
    labels: ArrayLike,
    scores: ArrayLike,
    groups: Sequence[Any] | ArrayLike | None,
    metric: Metric = auroc,
    n_boot: int = N_BOOTSTRAP,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval, resampling groups (patients).

    Each replicate draws as many groups as there are, with replacement, and takes all images of
    every drawn group (a group drawn twice contributes its images twice). Replicates with a single
    class are skipped and redrawn (up to ``10 * n_boot`` draws in all). The interval is the
    ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the replicate metrics.

    Args:
        labels: (N,) 0 normal / 1 abnormal.
        scores: (N,) anomaly scores.
        groups: (N,) a group (patient) id per image; ``None`` treats every image as its own group.
        metric: ``metric(labels, scores) -> float``, e.g. :func:`auroc` or
            :func:`average_precision`.
        n_boot: number of valid replicates.
        confidence: the interval's nominal coverage, in (0, 1).
        seed: seed for ``np.random.default_rng``.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: on bad inputs, or when no replicate has both classes.
    """
    y, s = _check_binary(labels, scores)
    _check_confidence(confidence)
    values = [float(metric(y[idx], s[idx])) for idx in _group_resamples(y, groups, n_boot, seed)]
    return _percentile_interval(values, confidence)


def paired_difference_ci(
    labels: ArrayLike,
    scores: ArrayLike,
    other_scores: ArrayLike,
    groups: Sequence[Any] | ArrayLike | None,
    metric: Metric = auroc,
    n_boot: int = N_BOOTSTRAP,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """``metric(scores) - metric(other_scores)`` on the same images, with a paired interval.

    Both scores are measured on each patient resample of :func:`bootstrap_ci` (same draws for the
    same ``seed``), so the interval reflects how much the *difference* varies, which is narrower
    than comparing two separate intervals when the scores agree on most images. An interval that
    excludes 0 says the gain is more than resampling noise on these patients.

    Returns:
        ``(difference, (low, high))``.

    Raises:
        ValueError: on bad inputs (as :func:`bootstrap_ci`), or scores of different lengths.
    """
    return paired_mean_difference_ci(
        labels, [scores], [other_scores], groups, metric, n_boot, confidence, seed
    )


def paired_mean_difference_ci(
    labels: ArrayLike,
    runs: Sequence[ArrayLike],
    other_runs: Sequence[ArrayLike],
    groups: Sequence[Any] | ArrayLike | None,
    metric: Metric = auroc,
    n_boot: int = N_BOOTSTRAP,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, tuple[float, float]]:
    """The mean over paired runs (training seeds, say) of ``metric(run) - metric(other_run)``,
    with a paired patient-bootstrap interval: each resample scores every pair on the same images,
    so the interval is that of the mean gain over seeds, patients being what varies.

    Returns:
        ``(mean difference, (low, high))``.

    Raises:
        ValueError: on bad inputs (as :func:`bootstrap_ci`), no runs, or unpaired runs.
    """
    if not runs or len(runs) != len(other_runs):
        raise ValueError(f"runs must pair up, got {len(runs)} and {len(other_runs)}")
    checked = [_check_binary(labels, run) for run in (*runs, *other_runs)]
    y = checked[0][0]
    own, other = [s for _, s in checked[: len(runs)]], [s for _, s in checked[len(runs) :]]
    _check_confidence(confidence)

    def mean_gain(idx: NDArray[np.intp] | slice) -> float:
        return float(
            np.mean(
                [
                    metric(y[idx], s[idx]) - metric(y[idx], t[idx])
                    for s, t in zip(own, other, strict=True)
                ]
            )
        )

    values = [mean_gain(idx) for idx in _group_resamples(y, groups, n_boot, seed)]
    return mean_gain(slice(None)), _percentile_interval(values, confidence)


def _group_resamples(
    y: NDArray[np.int8], groups: Sequence[Any] | ArrayLike | None, n_boot: int, seed: int
) -> Iterator[NDArray[np.intp]]:
    """Image indices of up to ``n_boot`` patient resamples that hold both classes, one at a time.

    Each replicate draws as many groups as there are, with replacement, and takes all images of
    every drawn group; single-class replicates are redrawn, up to ``10 * n_boot`` draws in all.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if groups is None:
        codes = np.arange(y.size)
    else:
        g = np.asarray(groups)
        if g.shape != y.shape:
            raise ValueError(f"groups must have one id per image: {g.shape} vs {y.shape}")
        _, codes = np.unique(g, return_inverse=True)
        codes = codes.reshape(-1)
    # Images sorted by group: group j owns order[starts[j] : starts[j] + counts[j]].
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    n_groups = counts.size

    rng = np.random.default_rng(seed)
    found = draws = 0
    while found < n_boot and draws < 10 * n_boot:
        draws += 1
        chosen = rng.integers(0, n_groups, size=n_groups)
        c = counts[chosen]
        # Positions within the sorted order: each chosen group's run, concatenated.
        idx = order[np.repeat(starts[chosen] - np.cumsum(c) + c, c) + np.arange(int(c.sum()))]
        n_pos = int(y[idx].sum())
        if n_pos == 0 or n_pos == idx.size:
            continue
        found += 1
        yield idx
    if not found:
        raise ValueError("no bootstrap replicate contained both classes")
    if draws > found:
        logger.debug("bootstrap: skipped %d single-class replicates", draws - found)
    if found < n_boot:
        logger.warning("bootstrap: only %d of %d replicates had both classes", found, n_boot)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _percentile_interval(values: list[float], confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of bootstrap replicate values."""
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(np.asarray(values), [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(lo), float(hi)


@dataclass
class ImageMetrics:
    """Image-level results of one model on one test set.

    Attributes:
        auroc: area under the ROC curve.
        auroc_ci: 95% patient-level bootstrap interval of the AUROC.
        ap: average precision.
        ap_ci: 95% patient-level bootstrap interval of the AP.
        sens_at_90spec: sensitivity at specificity >= 0.90.
        sens_at_95spec: sensitivity at specificity >= 0.95.
        n_normal: number of normal images.
        n_abnormal: number of abnormal images.
        per_class: AUROC of each abnormal class against all normal images.
    """

    auroc: float
    auroc_ci: tuple[float, float]
    ap: float
    ap_ci: tuple[float, float]
    sens_at_90spec: float
    sens_at_95spec: float
    n_normal: int
    n_abnormal: int
    per_class: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (intervals as 2-element lists)."""
        d = asdict(self)
        d["auroc_ci"] = [float(v) for v in self.auroc_ci]
        d["ap_ci"] = [float(v) for v in self.ap_ci]
        d["per_class"] = {k: float(v) for k, v in self.per_class.items()}
        return d


def image_metrics(
    labels: ArrayLike,
    scores: ArrayLike,
    groups: Sequence[Any] | ArrayLike | None,
    classes: Sequence[str] | ArrayLike | None,
    n_boot: int = N_BOOTSTRAP,
    seed: int = 0,
) -> ImageMetrics:
    """All image-level metrics of one model.

    Both intervals use the same seed, hence the same patient resamples.

    Args:
        labels: (N,) 0 normal / 1 abnormal.
        scores: (N,) anomaly scores.
        groups: (N,) patient ids (``None``: one image per patient).
        classes: (N,) class names for :func:`per_class_auroc` (``None``: no per-class results).
        n_boot: bootstrap replicates per interval.
        seed: bootstrap seed.
    """
    y, s = _check_binary(labels, scores)
    return ImageMetrics(
        auroc=auroc(y, s),
        auroc_ci=bootstrap_ci(y, s, groups, auroc, n_boot=n_boot, seed=seed),
        ap=average_precision(y, s),
        ap_ci=bootstrap_ci(y, s, groups, average_precision, n_boot=n_boot, seed=seed),
        sens_at_90spec=sensitivity_at_specificity(y, s, 0.90),
        sens_at_95spec=sensitivity_at_specificity(y, s, 0.95),
        n_normal=int((y == 0).sum()),
        n_abnormal=int((y == 1).sum()),
        per_class={} if classes is None else per_class_auroc(y, s, classes),
    )


# --------------------------------------------------------------------------------------------
# Pixel-level metrics
# --------------------------------------------------------------------------------------------


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
    m, k = _check_pixels(maps, masks)
    sigma = pointing_sigma(m.shape[-1]) if sigma is None else sigma
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    annotated = np.flatnonzero(k.reshape(k.shape[0], -1).any(axis=1))
    if annotated.size == 0:
        raise ValueError("no image has a non-empty mask: the pointing game is undefined")
    hits = sum(points_inside(m[i], k[i], sigma) for i in annotated)
    return hits / annotated.size


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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


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
