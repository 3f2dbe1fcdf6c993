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

The metrics by kind: :mod:`.image` (AUROC, AP, ROC, sensitivity), :mod:`.intervals` (patient
bootstrap intervals, paired differences), :mod:`.pixel` (pixel AUROC and AP, Dice, pointing
game), :mod:`.summary` (the image metrics with their intervals); this package gathers them,
so ``metrics.auroc`` reads as before.
"""

from cxr_anomaly.evaluation.metrics.image import (
    auroc,
    average_precision,
    per_class_auroc,
    roc_curve,
    sensitivity_at_specificity,
)
from cxr_anomaly.evaluation.metrics.intervals import (
    N_BOOTSTRAP,
    bootstrap_ci,
    mean_ci,
    paired_difference_ci,
    paired_mean_difference_ci,
)
from cxr_anomaly.evaluation.metrics.pixel import (
    MAX_PIXELS,
    POINTING_SIGMA,
    PixelMetrics,
    best_dice,
    best_dice_ci,
    best_dice_of_pixels,
    pixel_ap,
    pixel_ap_ci,
    pixel_auroc,
    pixel_metrics,
    pointing_game,
    pointing_hits,
    pointing_sigma,
    points_inside,
)
from cxr_anomaly.evaluation.metrics.summary import ImageMetrics, image_metrics

__all__ = [
    "MAX_PIXELS",
    "N_BOOTSTRAP",
    "POINTING_SIGMA",
    "ImageMetrics",
    "PixelMetrics",
    "auroc",
    "average_precision",
    "best_dice",
    "best_dice_ci",
    "best_dice_of_pixels",
    "bootstrap_ci",
    "image_metrics",
    "mean_ci",
    "paired_difference_ci",
    "paired_mean_difference_ci",
    "per_class_auroc",
    "pixel_ap",
    "pixel_ap_ci",
    "pixel_auroc",
    "pixel_metrics",
    "pointing_game",
    "pointing_hits",
    "pointing_sigma",
    "points_inside",
    "roc_curve",
    "sensitivity_at_specificity",
]
