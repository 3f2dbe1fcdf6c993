"""Image-level metrics: AUROC, AP, ROC curves, sensitivity at a specificity, per class."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from sklearn import metrics as skm

# Slack for comparing a specificity such as 1 - 1/10 with a target such as 0.9 in floating point.
_SPEC_EPS = 1e-9


Metric = Callable[[NDArray[Any], NDArray[Any]], float]


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
