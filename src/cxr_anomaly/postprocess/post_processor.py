"""The post-processor: everything between a model's raw outputs and what a user reads.

It is fitted once, on the normal validation images (never a test split), saved with the model
(``model.json``; an export copies it into ``export.json``), and it is the one place where
scores become decisions, for ``evaluate``, ``predict`` and exported models alike:

* each score's normal distribution (:class:`ScoreCalibration`): percentiles, thresholds at
  chosen specificities, and the mean and spread that z-normalise it for fusions;
* the heatmap's colour scale: no red at ``map_floor`` (a typical normal pixel), full red at
  ``map_scale`` (see :mod:`cxr_anomaly.postprocess.maps`);
* the input statistics that flag an image unlike every normal one (:mod:`.novelty`);
* optionally, the fusion of the default score with the sharpness detector
  (:mod:`.sharpness_fusion`), which then becomes the reported score.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypedDict

import numpy as np

from cxr_anomaly.postprocess.baselines import Images
from cxr_anomaly.postprocess.calibration import ScoreCalibration
from cxr_anomaly.postprocess.novelty import InputStatistics, InputStatisticsJson
from cxr_anomaly.postprocess.sharpness_fusion import SharpnessFusion, SharpnessFusionJson

NORMAL_SPLIT = "val_normal"


class ScoreCalibrationJson(TypedDict):
    normal_scores: list[float]
    mean: float
    std: float
    thresholds: dict[str, float]


class PostProcessorJson(TypedDict):
    """A :class:`PostProcessor` as ``model.json`` and ``export.json`` hold it."""

    split: str
    n_images: int
    map_scale: float
    map_floor: float
    scores: dict[str, ScoreCalibrationJson]
    input_statistics: InputStatisticsJson | None
    sharpness: SharpnessFusionJson | None


@dataclass(frozen=True)
class PostProcessor:
    """A model's post-processing, fitted on ``n_images`` normal images of ``split``."""

    scores: dict[str, ScoreCalibration]
    map_scale: float
    map_floor: float
    n_images: int
    input_statistics: InputStatistics | None = None
    sharpness: SharpnessFusion | None = None
    split: str = NORMAL_SPLIT

    def calibration(self, score: str) -> ScoreCalibration:
        """The normal distribution of ``score`` (raises KeyError naming the calibrated ones)."""
        if score not in self.scores:
            raise KeyError(
                f"no calibration for score {score!r}; calibrated: {', '.join(self.scores)}"
            )
        return self.scores[score]

    def zscores(self, values: np.ndarray, score: str) -> np.ndarray:
        """``values`` of ``score`` as z-scores against its normal distribution."""
        return np.asarray(self.calibration(score).zscore(values), dtype=np.float64)

    def reported_score(self, model_score: str) -> str:
        """The score users read: the model's ``model_score``, or its sharpness fusion."""
        if self.sharpness is None:
            return model_score
        if self.sharpness.score != model_score:
            raise ValueError(
                f"the sharpness fusion is of score {self.sharpness.score!r}, "
                f"the model's is {model_score!r}"
            )
        return self.sharpness.name

    def reported_values(self, model_scores: np.ndarray, stored: Images | None) -> np.ndarray:
        """The reported scores of images whose model scores are ``model_scores`` (fused with
        the sharpness of ``stored``, the same images at their stored intensities, if kept)."""
        if self.sharpness is None:
            return np.asarray(model_scores)
        if stored is None:
            raise ValueError("a sharpness fusion needs the images at their stored intensities")
        return self.sharpness.fused(model_scores, stored)

    def with_sharpness(self, fusion: SharpnessFusion, normal_fused: np.ndarray) -> PostProcessor:
        """This post-processor keeping ``fusion``, calibrated on its ``normal_fused`` scores."""
        scores = {**self.scores, fusion.name: ScoreCalibration.fit(normal_fused)}
        return replace(self, scores=scores, sharpness=fusion)

    def to_dict(self) -> PostProcessorJson:
        """JSON-ready form (:meth:`from_dict` reads it back)."""
        fusion = self.sharpness
        return PostProcessorJson(
            split=self.split,
            n_images=self.n_images,
            map_scale=self.map_scale,
            map_floor=self.map_floor,
            scores={
                name: ScoreCalibrationJson(
                    normal_scores=found.normal_scores,
                    mean=found.mean,
                    std=found.std,
                    thresholds=found.thresholds,
                )
                for name, found in self.scores.items()
            },
            input_statistics=(
                None if self.input_statistics is None else self.input_statistics.to_dict()
            ),
            sharpness=None if fusion is None else fusion.to_dict(),
        )

    @classmethod
    def from_dict(cls, raw: PostProcessorJson) -> PostProcessor:
        statistics = raw["input_statistics"]
        sharpness = raw["sharpness"]
        return cls(
            scores={name: ScoreCalibration(**found) for name, found in raw["scores"].items()},
            map_scale=float(raw["map_scale"]),
            map_floor=float(raw["map_floor"]),
            n_images=int(raw["n_images"]),
            input_statistics=InputStatistics.from_dict(statistics) if statistics else None,
            sharpness=SharpnessFusion(**sharpness) if sharpness else None,
            split=raw["split"],
        )
