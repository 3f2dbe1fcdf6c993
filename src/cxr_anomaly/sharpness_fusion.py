"""A model's score fused with the sharpness detector, stored with the model for ``predict``.

Pneumonia lowers an image's fine-detail energy, on ZhangLab's ``train/`` and on its official test
images alike (docs/results.md), and a model that reads anatomy misses part of that cue when its
inputs are locally normalised. The fusion is the mean of two z-scores, each against the normal
validation images: the model's default score, and the sharpness detector's distance
(:class:`~cxr_anomaly.baselines.SharpnessDistance`, fitted on the normal training images) of the
image at its *stored* intensities, whatever the model's own intensity standardisation. That is
the fusion ``benchmarks/ablation.py`` measures (``sharpness: true``), here fitted once at training
time, calibrated on the same normal validation images, and kept in ``model.json``.

Example:
    >>> fusion = fit_sharpness_fusion(train, val, val_scores, "l1")  # doctest: +SKIP
    >>> fusion.fused(scores, stored_images)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cxr_anomaly import scoring
from cxr_anomaly.baselines import SharpnessDistance
from cxr_anomaly.calibration import ScoreCalibration

CALIBRATION_KEY = "sharpness_fusion"
"""Where the fusion is kept in a model's calibration (``model.json``, export descriptions)."""
STORED_INTENSITY = "none"
"""The intensity standardisation of the images the sharpness detector sees."""


@dataclass(frozen=True)
class FusionStatistics:
    """The statistics the fused score is computed from (all fitted on normal images)."""

    score: str
    #: The model's ``score`` on normal validation images: mean and spread (ddof 1).
    score_mean: float
    score_std: float
    #: The sharpness detector fitted on the normal training images (stored intensities).
    energy_mean: float
    energy_spread: float
    #: The detector's distances on normal validation images: mean and spread (ddof 1).
    sharpness_mean: float
    sharpness_std: float

    def fused(self, scores: np.ndarray, stored_images: np.ndarray) -> np.ndarray:
        """The fused score of images whose model scores are ``scores`` (N,) and whose stored-
        intensity versions, at the model's size, are ``stored_images`` (N, S, S) in [0, 1]."""
        if len(scores) != len(stored_images):
            raise ValueError(f"{len(scores)} scores for {len(stored_images)} images")
        detector = SharpnessDistance()
        detector.mean, detector.spread = self.energy_mean, self.energy_spread
        model_z = scoring.zscore(np.asarray(scores, np.float64), self.score_mean, self.score_std)
        sharp_z = scoring.zscore(
            detector.score(np.asarray(stored_images)), self.sharpness_mean, self.sharpness_std
        )
        return np.asarray((model_z + sharp_z) / 2.0, dtype=np.float64)


@dataclass
class SharpnessFusion:
    """A model's score fused with sharpness, and the fused score's normal calibration."""

    statistics: FusionStatistics
    calibration: ScoreCalibration

    @property
    def name(self) -> str:
        """The fused score's name, e.g. ``mahalanobis+sharpness``."""
        return f"{self.statistics.score}+sharpness"

    def fused(self, scores: np.ndarray, stored_images: np.ndarray) -> np.ndarray:
        """See :meth:`FusionStatistics.fused`."""
        return self.statistics.fused(scores, stored_images)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``from_dict`` reads it back)."""
        return {"statistics": asdict(self.statistics), "calibration": asdict(self.calibration)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SharpnessFusion:
        return cls(FusionStatistics(**raw["statistics"]), ScoreCalibration(**raw["calibration"]))


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def fit_sharpness_fusion(
    stored_train: Iterable[Any],
    stored_normal_val: np.ndarray,
    normal_val_scores: np.ndarray,
    score: str,
) -> SharpnessFusion:
    """Fit the fusion of ``score`` with sharpness.

    Args:
        stored_train: the normal training images at stored intensities, in batches (N, ...).
        stored_normal_val: the normal validation images at stored intensities (N, S, S).
        normal_val_scores: the model's ``score`` on the same normal validation images, in order.
        score: the name of the model's score.
    """
    if len(stored_normal_val) != len(normal_val_scores):
        raise ValueError(
            f"{len(normal_val_scores)} scores for {len(stored_normal_val)} normal validation images"
        )
    if len(normal_val_scores) < 2:
        raise ValueError("the sharpness fusion needs at least two normal validation images")
    detector = SharpnessDistance().fit(stored_train)
    assert detector.mean is not None  # fit sets it
    score_mean, score_std = _mean_std(np.asarray(normal_val_scores, np.float64))
    sharpness_mean, sharpness_std = _mean_std(detector.score(stored_normal_val))
    statistics = FusionStatistics(
        score, score_mean, score_std, detector.mean, detector.spread, sharpness_mean, sharpness_std
    )
    fused = statistics.fused(normal_val_scores, stored_normal_val)
    return SharpnessFusion(statistics, ScoreCalibration.fit(fused))


def stored_fusion(calibration: dict[str, Any]) -> SharpnessFusion | None:
    """The fusion kept in a model's calibration, or ``None`` if it was trained without one."""
    raw = calibration.get(CALIBRATION_KEY)
    return SharpnessFusion.from_dict(raw) if raw else None
