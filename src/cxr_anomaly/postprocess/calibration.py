"""Score calibration on normal validation images, stored with the model.

The scores of the held-out normal images (never a test split) give each new score a
percentile of normal, thresholds at chosen specificities, and the mean and spread used to
z-normalise scores before they are combined.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxr_anomaly.core.normalise import zscore
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.postprocess.maps import MAP_FLOOR_PERCENTILE, MAP_SCALE_PERCENTILE
from cxr_anomaly.postprocess.novelty import InputStatistics
from cxr_anomaly.runtime.inference import infer_arrays

DEFAULT_SPECIFICITIES = (0.9, 0.95, 0.99)
MAP_SAMPLE_PIXELS = 2_000_000


def score_images(
    model: AnomalyModel, images: np.ndarray, batch_size: int = 64
) -> tuple[dict[str, np.ndarray], float, float]:
    """Every score of ``model`` for images (N, 1, S, S) in [0, 1], in one process.

    Also returns the map scale and floor: the 99.5th percentile and the median of the default
    map's pixel values (on at most two million pixels, taken at a fixed stride). Heatmaps draw
    the floor (a typical normal pixel) as no red and the scale as full red, so that a map that
    is never zero on normal images (a feature distance) is not red everywhere.
    """
    if not len(images):
        return {}, 0.0, 0.0
    inferred = infer_arrays(model, images, batch_size)
    pixels = inferred.maps.ravel()
    sample = pixels[:: max(1, pixels.size // MAP_SAMPLE_PIXELS)]
    scale, floor = np.percentile(sample, [MAP_SCALE_PERCENTILE, MAP_FLOOR_PERCENTILE])
    return inferred.scores, float(scale), float(floor)


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


def calibrate(
    model: AnomalyModel,
    normal_images: np.ndarray,
    batch_size: int = 64,
    specificities: Sequence[float] = DEFAULT_SPECIFICITIES,
) -> dict[str, Any]:
    """Calibration of every score of ``model`` on normal validation images (JSON-ready)."""
    return calibrate_with_scores(model, normal_images, batch_size, specificities)[0]


def calibrate_with_scores(
    model: AnomalyModel,
    normal_images: np.ndarray,
    batch_size: int = 64,
    specificities: Sequence[float] = DEFAULT_SPECIFICITIES,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """:func:`calibrate`, and every score of each normal validation image, in order."""
    scores, map_scale, map_floor = score_images(model, normal_images, batch_size)
    if model.config.fuse:
        # The fused score's statistics come from its members' scores on these same images.
        members = [scores[name] for name in model.config.fuse]
        model.set_fusion_stats(
            [float(s.mean()) for s in members],
            [float(s.std(ddof=1)) if len(s) > 1 else 0.0 for s in members],
        )
        scores, map_scale, map_floor = score_images(model, normal_images, batch_size)
    calibration = {
        "n_images": len(normal_images),
        "split": "val_normal",
        "map_scale": map_scale,
        "map_floor": map_floor,
        "input_statistics": (
            InputStatistics.fit(normal_images).to_dict() if len(normal_images) >= 3 else None
        ),
        "scores": {
            name: ScoreCalibration.fit(values, specificities).__dict__
            for name, values in scores.items()
        },
    }
    return calibration, scores


def calibration_for(metadata_calibration: dict[str, Any], score: str) -> ScoreCalibration:
    """The stored calibration of ``score`` (raises KeyError naming what exists)."""
    scores = metadata_calibration.get("scores", {})
    if score not in scores:
        raise KeyError(f"no calibration for score {score!r}; calibrated: {', '.join(scores)}")
    return ScoreCalibration(**scores[score])
