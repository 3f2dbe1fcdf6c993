"""Trivial detectors that every model must beat to show it learned normal anatomy.

They look only at one global statistic of an image: its intensity histogram, or how much fine
detail it holds. On data where an abnormality changes the overall brightness or blurs the lungs
(pediatric pneumonia, for instance) they already separate the classes well; a model that does
not beat them has learned nothing about anatomy beyond that statistic. Both fit and score a
batch at a time, so a split of any size passes through in the memory of one batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from scipy import ndimage

HISTOGRAM_BINS = 32
BATCH = 256
"""Images per step: the detectors never hold more of a split than this, whatever its size."""

Images = np.ndarray | Iterable[Any]
"""Images (N, ...) in [0, 1], as one array or as batches of them (arrays or tensors)."""


def image_batches(images: Images) -> Iterator[np.ndarray]:
    """``images`` a batch at a time (an array in steps of :data:`BATCH`)."""
    if isinstance(images, np.ndarray):
        for start in range(0, len(images), BATCH):
            yield images[start : start + BATCH]
        return
    for batch in images:
        yield np.asarray(batch)


def intensity_histograms(images: np.ndarray, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Normalised intensity histograms (N, bins) of images (N, ...) in [0, 1]."""
    flat = np.clip(images.reshape(len(images), -1), 0.0, 1.0)
    index = np.minimum((flat * bins).astype(np.int32), bins - 1)
    index += np.arange(len(flat), dtype=np.int32)[:, None] * bins
    counts = np.bincount(index.ravel(), minlength=len(flat) * bins).reshape(len(flat), bins)
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

    def fit(self, normal_images: Images) -> HistogramDistance:
        total, count = np.zeros(self.bins), 0
        for batch in image_batches(normal_images):
            total += intensity_histograms(batch, self.bins).sum(axis=0)
            count += len(batch)
        if count == 0:
            raise ValueError("fit the detector on at least one normal image")
        self.reference = total / count
        return self

    def score(self, images: Images) -> np.ndarray:
        if self.reference is None:
            raise RuntimeError("fit the detector on normal images first")
        parts = [
            np.abs(intensity_histograms(batch, self.bins) - self.reference).sum(axis=1)
            for batch in image_batches(images)
        ]
        return np.concatenate(parts) if parts else np.zeros(0)


def detail_energy(images: Images) -> np.ndarray:
    """Mean absolute Laplacian of each image (N, ...) of shape (..., H, W): its fine detail."""
    energies = [
        np.abs(ndimage.laplace(image)).mean()
        for batch in image_batches(images)
        for image in batch.reshape(-1, *batch.shape[-2:]).astype(np.float32)
    ]
    return np.array(energies, dtype=np.float64)


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

    def fit(self, normal_images: Images) -> SharpnessDistance:
        energy = detail_energy(normal_images)
        self.mean = float(energy.mean())
        self.spread = float(energy.std()) or 1.0
        return self

    def score(self, images: Images) -> np.ndarray:
        if self.mean is None:
            raise RuntimeError("fit the detector on normal images first")
        return np.abs(detail_energy(images) - self.mean) / self.spread


TRIVIAL_DETECTORS = (HistogramDistance, SharpnessDistance)
"""Every trivial detector, each reported beside the models."""
