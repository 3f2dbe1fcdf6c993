"""A model's score fused with the sharpness detector, kept in the model's post-processor.

Pneumonia lowers an image's fine-detail energy, on ZhangLab's ``train/`` and on its official test
images alike (docs/results.md), and a model that reads anatomy misses part of that cue when its
inputs are locally normalised. The fusion is the mean of two z-scores, each against the normal
validation images: the model's default score, and the sharpness detector's distance
(:class:`~cxr_anomaly.postprocess.baselines.SharpnessDistance`, fitted on the normal training
images) of the
image at its *stored* intensities, whatever the model's own intensity standardisation. That is
the fusion ``benchmarks/ablation.py`` measures (``sharpness: true``), here fitted once at training
time, calibrated on the same normal validation images, and kept in the model's post-processor
(:mod:`.post_processor`); ``evaluate`` and ``predict`` report it as the model's score.

Example:
    >>> fusion = fit_sharpness_fusion(train, val, val_scores, "l1")  # doctest: +SKIP
    >>> fusion.fused(scores, stored_images)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TypedDict, cast

import numpy as np

from cxr_anomaly.core.normalise import fuse, zscore
from cxr_anomaly.data.datamodule import PreparedData, SplitView
from cxr_anomaly.postprocess.baselines import Images, SharpnessDistance


class SharpnessFusionJson(TypedDict):
    """A :class:`SharpnessFusion` as a post-processor's JSON holds it."""

    score: str
    score_mean: float
    score_std: float
    energy_mean: float
    energy_spread: float
    sharpness_mean: float
    sharpness_std: float


@dataclass(frozen=True)
class SharpnessFusion:
    """The statistics the fused score is computed from (all fitted on normal images); the fused
    score's calibration is kept beside the model's own scores in the post-processor."""

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

    @property
    def name(self) -> str:
        """The fused score's name, e.g. ``mahalanobis+sharpness``."""
        return f"{self.score}+sharpness"

    def fused(self, scores: np.ndarray, stored_images: Images) -> np.ndarray:
        """The fused score of images whose model scores are ``scores`` (N,) and whose stored-
        intensity versions, at the model's size, are ``stored_images`` (N, ...) in [0, 1] (one
        array or batches of them)."""
        detector = SharpnessDistance()
        detector.mean, detector.spread = self.energy_mean, self.energy_spread
        distances = detector.score(stored_images)
        if len(scores) != len(distances):
            raise ValueError(f"{len(scores)} scores for {len(distances)} images")
        model_z = zscore(np.asarray(scores, np.float64), self.score_mean, self.score_std)
        sharp_z = zscore(distances, self.sharpness_mean, self.sharpness_std)
        return np.asarray(fuse([model_z, sharp_z]), dtype=np.float64)

    def to_dict(self) -> SharpnessFusionJson:
        """JSON-ready form (``SharpnessFusion(**form)`` reads it back)."""
        return cast(SharpnessFusionJson, asdict(self))


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def fit_sharpness_fusion(
    stored_train: Images,
    stored_normal_val: Images,
    normal_val_scores: np.ndarray,
    score: str,
) -> SharpnessFusion:
    """Fit the fusion of ``score`` with sharpness.

    Args:
        stored_train: the normal training images at stored intensities (arrays or batches).
        stored_normal_val: the normal validation images at stored intensities, in order.
        normal_val_scores: the model's ``score`` on the same normal validation images.
        score: the name of the model's score.
    """
    detector = SharpnessDistance().fit(stored_train)
    assert detector.mean is not None  # fit sets it
    distances = detector.score(stored_normal_val)
    if len(distances) != len(normal_val_scores):
        raise ValueError(
            f"{len(normal_val_scores)} scores for {len(distances)} normal validation images"
        )
    if len(distances) < 2:
        raise ValueError("the sharpness fusion needs at least two normal validation images")
    score_mean, score_std = _mean_std(np.asarray(normal_val_scores, np.float64))
    sharpness_mean, sharpness_std = _mean_std(distances)
    return SharpnessFusion(
        score, score_mean, score_std, detector.mean, detector.spread, sharpness_mean, sharpness_std
    )


def stored_intensity_views(data: PreparedData, *splits: str) -> list[SplitView]:
    """The images of each of ``splits`` at their stored intensities (prepared in one second
    cache when the model's own are standardised), each in the order of ``data.view(split)``."""
    stored = data.at_stored_intensity(splits)
    return [stored.view(split) for split in splits]
