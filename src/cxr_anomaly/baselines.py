"""Trivial detectors that every model must beat to show it learned normal anatomy.

They look only at one global statistic of an image: its intensity histogram, or how much fine
detail it holds. On data where an abnormality changes the overall brightness or blurs the lungs
(pediatric pneumonia, for instance) they already separate the classes well; a model that does
not beat them has learned nothing about anatomy beyond that statistic.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

HISTOGRAM_BINS = 32


def intensity_histograms(images: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Normalised intensity histograms (N, bins) of images (N, ...) in [0, 1]."""
    flat = np.clip(images.reshape(len(images), -1), 0.0, 1.0)
    index = np.minimum((flat * bins).astype(np.int64), bins - 1)
    counts = np.stack([np.bincount(row, minlength=bins) for row in index])
    return counts / flat.shape[1]


class HistogramDistance:
    """L1 distance between an image's intensity histogram and the mean normal histogram.

    Example:
        >>> detector = HistogramDistance().fit(train_images)  # doctest: +SKIP
        >>> scores = detector.score(test_images)  # doctest: +SKIP
    """

    name = "histogram"

    def __init__(self, bins: int = HISTOGRAM_BINS) -> None:
        self.bins = bins
        self.reference: np.ndarray | None = None

    def fit(self, normal_images: np.ndarray) -> HistogramDistance:
        self.reference = intensity_histograms(normal_images, self.bins).mean(axis=0)
        return self

    def score(self, images: np.ndarray) -> np.ndarray:
        if self.reference is None:
            raise RuntimeError("fit the detector on normal images first")
        return np.abs(intensity_histograms(images, self.bins) - self.reference).sum(axis=1)


def detail_energy(images: np.ndarray) -> np.ndarray:
    """Mean absolute Laplacian of each image (N, ...) of shape (..., H, W): its fine detail."""
    flat = images.reshape(-1, *images.shape[-2:]).astype(np.float32)
    return np.array([np.abs(ndimage.laplace(image)).mean() for image in flat])


class SharpnessDistance:
    """Distance of an image's fine-detail energy (mean absolute Laplacian) to the normal mean,
    in normal standard deviations; both a blurred (hazy) and an unusually sharp image score high.

    Example:
        >>> detector = SharpnessDistance().fit(train_images)  # doctest: +SKIP
        >>> scores = detector.score(test_images)  # doctest: +SKIP
    """

    name = "sharpness"

    def __init__(self) -> None:
        self.mean: float | None = None
        self.spread = 1.0

    def fit(self, normal_images: np.ndarray) -> SharpnessDistance:
        energy = detail_energy(normal_images)
        self.mean = float(energy.mean())
        self.spread = float(energy.std()) or 1.0
        return self

    def score(self, images: np.ndarray) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError("fit the detector on normal images first")
        return np.abs(detail_energy(images) - self.mean) / self.spread


TRIVIAL_DETECTORS = (HistogramDistance, SharpnessDistance)
"""Every trivial detector, each reported beside the models."""
