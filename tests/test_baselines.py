"""The sharpness detector: what it notices."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cxr_anomaly.baselines import SharpnessDistance
from cxr_anomaly.data.phantoms import make_phantom


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
