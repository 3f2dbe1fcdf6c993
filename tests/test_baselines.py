"""The trivial detectors: what they notice, and that batching changes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.postprocess.baselines import (
    HistogramDistance,
    SharpnessDistance,
    intensity_histograms,
)


def test_the_sharpness_detector_flags_blurred_and_oversharpened_images() -> None:
    normal = np.stack([make_phantom(64, i).image for i in range(12)])
    detector = SharpnessDistance().fit(normal)
    blurred = np.stack([ndimage.gaussian_filter(image, 1.5) for image in normal[:4]])
    noisy = np.clip(normal[:4] + np.random.default_rng(0).normal(0, 0.05, normal[:4].shape), 0, 1)
    assert detector.score(normal).mean() < 1.5
    assert detector.score(blurred).min() > detector.score(normal).max()
    assert detector.score(noisy).min() > detector.score(normal).max()
    with pytest.raises(RuntimeError, match="fit the detector"):
        SharpnessDistance().score(normal)


def test_intensity_histograms_count_every_pixel_in_its_bin() -> None:
    images = np.array([[[0.0, 0.49], [0.5, 1.0]], [[0.2, 0.2], [0.2, 1.5]]])
    found = intensity_histograms(images, bins=2)
    np.testing.assert_allclose(found, [[0.5, 0.5], [0.75, 0.25]])


@pytest.mark.parametrize("detector_class", [HistogramDistance, SharpnessDistance])
def test_detectors_fitted_and_scored_in_batches_equal_the_whole_arrays(
    detector_class: type[HistogramDistance] | type[SharpnessDistance],
) -> None:
    rng = np.random.default_rng(0)
    normal, tested = rng.random((700, 1, 16, 16)), rng.random((300, 1, 16, 16)) ** 2
    whole = detector_class().fit(normal).score(tested)
    batched = (
        detector_class()
        .fit(torch.from_numpy(normal[i : i + 64]) for i in range(0, 700, 64))
        .score(torch.from_numpy(tested[i : i + 50]) for i in range(0, 300, 50))
    )
    np.testing.assert_allclose(batched, whole, rtol=1e-12)
