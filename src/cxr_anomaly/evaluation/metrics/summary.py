"""An image-level summary with patient-bootstrap intervals: what a study reports per score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from numpy.typing import ArrayLike

from cxr_anomaly.evaluation.metrics.image import (
    _check_binary,
    auroc,
    average_precision,
    per_class_auroc,
    sensitivity_at_specificity,
)
from cxr_anomaly.evaluation.metrics.intervals import N_BOOTSTRAP, bootstrap_ci


class ImageMetricsJson(TypedDict):
    """:class:`ImageMetrics` as results files hold it (intervals as 2-element lists)."""

    auroc: float
    auroc_ci: list[float]
    ap: float
    ap_ci: list[float]
    sens_at_90spec: float
    sens_at_95spec: float
    n_normal: int
    n_abnormal: int
    per_class: dict[str, float]


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

    def to_dict(self) -> ImageMetricsJson:
        """A JSON-ready dict (intervals as 2-element lists)."""
        return ImageMetricsJson(
            auroc=float(self.auroc),
            auroc_ci=[float(v) for v in self.auroc_ci],
            ap=float(self.ap),
            ap_ci=[float(v) for v in self.ap_ci],
            sens_at_90spec=float(self.sens_at_90spec),
            sens_at_95spec=float(self.sens_at_95spec),
            n_normal=int(self.n_normal),
            n_abnormal=int(self.n_abnormal),
            per_class={k: float(v) for k, v in self.per_class.items()},
        )


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
