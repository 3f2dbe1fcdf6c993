"""Is an input like anything the model was calibrated on? A distance of global image statistics.

An anomaly score says how far an image is from normal *as the model sees it*; for an image from
another population (an adult DICOM scored by a model trained on children, a CT slice, a
photograph of a screen) it is large too, and "abnormal, percentile 100" says nothing useful. This
module measures the input itself: twelve global statistics of the preprocessed image (mean,
spread, seven intensity percentiles, fine-detail energy, and the fractions of black and white
pixels), whose normal distribution is fitted on the normal validation images at calibration
(mean and Ledoit-Wolf precision). ``predict`` reports the Mahalanobis distance of each input's
statistics (``input_distance``) and flags ``out_of_distribution`` when it exceeds the largest
distance of any normal validation image: the model has seen nothing like this input, and its
score should not be read as a diagnosis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

import numpy as np
import torch

from cxr_anomaly.models.components.gaussian import ledoit_wolf, mahalanobis
from cxr_anomaly.postprocess.baselines import detail_energy

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
FEATURES = (
    "mean",
    "std",
    *(f"p{p}" for p in PERCENTILES),
    "detail",
    "black",
    "white",
)


def image_statistics(images: np.ndarray) -> np.ndarray:
    """The statistics of :data:`FEATURES` for images (N, S, S) or (N, 1, S, S) in [0, 1]."""
    array = np.asarray(images, dtype=np.float64)
    squares = array.reshape(len(array), array.shape[-2], array.shape[-1])
    flat = squares.reshape(len(array), -1)
    detail = detail_energy(squares)
    return np.column_stack(
        [
            flat.mean(1),
            flat.std(1),
            np.percentile(flat, PERCENTILES, axis=1).T,
            detail,
            (flat <= 0.02).mean(1),
            (flat >= 0.98).mean(1),
        ]
    )


class InputStatisticsJson(TypedDict):
    """:class:`InputStatistics` as a post-processor's JSON holds it."""

    features: list[str]
    mean: list[float]
    precision: list[list[float]]
    limit: float
    n_images: int


@dataclass
class InputStatistics:
    """The normal distribution of :func:`image_statistics` and the distance that flags novelty."""

    mean: list[float]
    precision: list[list[float]]
    limit: float
    n_images: int

    @classmethod
    def fit(cls, images: np.ndarray) -> InputStatistics:
        """Fit on normal images (N, ...) — at least three; ``limit`` is their largest distance."""
        if len(images) < 3:
            raise ValueError("input statistics need at least three normal images")
        features = image_statistics(images)
        mean, precision = ledoit_wolf(features)
        fitted = cls(
            mean=mean.tolist(),
            precision=precision.tolist(),
            limit=0.0,
            n_images=len(images),
        )
        fitted.limit = float(fitted.distance_of(features).max())
        return fitted

    def distance_of(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distances of feature rows (N, F) to the normal images."""
        distances = mahalanobis(
            torch.as_tensor(np.asarray(features, np.float64)),
            torch.tensor(self.mean, dtype=torch.float64),
            torch.tensor(self.precision, dtype=torch.float64),
        )
        return distances.double().numpy()

    def distance(self, images: np.ndarray) -> np.ndarray:
        """Mahalanobis distances of images (N, S, S) to the normal images."""
        return self.distance_of(image_statistics(images))

    def novel(self, distances: np.ndarray) -> np.ndarray:
        """Whether each distance lies beyond every normal validation image's."""
        return np.asarray(distances) > self.limit

    def to_dict(self) -> InputStatisticsJson:
        return InputStatisticsJson(
            features=list(FEATURES),
            mean=self.mean,
            precision=self.precision,
            limit=self.limit,
            n_images=self.n_images,
        )

    @classmethod
    def from_dict(cls, stored: InputStatisticsJson) -> InputStatistics:
        if list(stored["features"]) != list(FEATURES):
            raise ValueError("input statistics were stored with other features")
        return cls(
            mean=stored["mean"],
            precision=stored["precision"],
            limit=float(stored["limit"]),
            n_images=int(stored["n_images"]),
        )
