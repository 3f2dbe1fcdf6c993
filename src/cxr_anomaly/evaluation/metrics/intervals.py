"""Bootstrap intervals resampled by patient: of one metric, and of paired differences."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cxr_anomaly.evaluation.metrics.image import Metric, _check_binary, auroc

logger = logging.getLogger(__name__)

#: Replicates of every patient-level bootstrap interval the project reports.
N_BOOTSTRAP = 1000


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


def mean_ci(
    values: ArrayLike,
    groups: Sequence[Any] | ArrayLike,
    n_boot: int = N_BOOTSTRAP,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-image ``values`` (a pointing game's
    hits), resampling ``groups`` (patients) with replacement, every image of a drawn group
    taken along."""
    _check_confidence(confidence)
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    g = np.asarray(groups).reshape(-1)
    if v.size == 0 or v.shape != g.shape:
        raise ValueError(f"need one group per value, got {v.size} values and {g.size} groups")
    _, codes = np.unique(g, return_inverse=True)
    sums, counts = np.bincount(codes, weights=v), np.bincount(codes)
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, counts.size, size=(n_boot, counts.size))
    means = sums[chosen].sum(axis=1) / counts[chosen].sum(axis=1)
    return _percentile_interval(means.tolist(), confidence)
