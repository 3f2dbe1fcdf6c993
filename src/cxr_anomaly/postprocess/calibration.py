"""One score's distribution on normal validation images, kept in the model's post-processor.

The scores of the held-out normal images (never a test split) give each new score a
percentile of normal, thresholds at chosen specificities, and the mean and spread used to
z-normalise scores before they are combined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cxr_anomaly.core.normalise import zscore

DEFAULT_SPECIFICITIES = (0.9, 0.95, 0.99)


@dataclass
class ScoreCalibration:
    """The distribution of one score on normal validation images."""

    normal_scores: list[float]
    mean: float
    std: float
    thresholds: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fit(
        cls, scores: np.ndarray, specificities: Sequence[float] = DEFAULT_SPECIFICITIES
    ) -> ScoreCalibration:
        ordered = np.sort(np.asarray(scores, dtype=np.float64))
        if len(ordered) == 0:
            raise ValueError("calibration needs at least one normal validation image")
        return cls(
            normal_scores=[float(v) for v in ordered],
            mean=float(ordered.mean()),
            std=float(ordered.std(ddof=1)) if len(ordered) > 1 else 0.0,
            thresholds={f"{s:g}": threshold_at(ordered, s) for s in specificities},
        )

    def percentile(self, score: float | np.ndarray) -> np.ndarray:
        """Percent of normal validation scores at or below ``score`` (0 to 100)."""
        ordered = np.asarray(self.normal_scores)
        return 100.0 * np.searchsorted(ordered, np.asarray(score), side="right") / len(ordered)

    def threshold(self, specificity: float) -> float:
        """The threshold whose specificity on the normal validation images is ``specificity``."""
        key = f"{specificity:g}"
        if key in self.thresholds:
            return self.thresholds[key]
        return threshold_at(np.asarray(self.normal_scores), specificity)

    def zscore(self, score: float | np.ndarray) -> np.ndarray:
        """(score - mean) / std of the normal validation scores."""
        return zscore(np.asarray(score, dtype=np.float64), self.mean, self.std)


def threshold_at(sorted_scores: np.ndarray, specificity: float) -> float:
    """Smallest threshold t with P(normal score <= t) >= ``specificity``; abnormal if > t."""
    if not 0.0 < specificity < 1.0:
        raise ValueError(f"specificity must be between 0 and 1, got {specificity}")
    index = int(np.ceil(specificity * len(sorted_scores))) - 1
    return float(sorted_scores[min(max(index, 0), len(sorted_scores) - 1)])
