"""The phantom benchmark's plain-autoencoder reference."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark_scripts import load_benchmark

phantoms = load_benchmark("phantoms")


def _smooth_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """Horizontal ramps of random slope and offset, (n, 64, 64) in [0, 1]."""
    ramp = np.linspace(0.0, 1.0, 64, dtype=np.float32)[None, None, :]
    slope = rng.uniform(0.2, 0.5, (n, 1, 1)).astype(np.float32)
    offset = rng.uniform(0.1, 0.4, (n, 1, 1)).astype(np.float32)
    return np.broadcast_to(offset + slope * ramp, (n, 64, 64)).copy()


def test_the_autoencoder_reference_scores_a_bright_spot_above_its_normals() -> None:
    rng = np.random.default_rng(0)
    train = _smooth_images(64, rng)
    normal = _smooth_images(8, rng)
    spotted = normal.copy()
    spotted[:, 28:36, 28:36] = 1.0
    mean, peak = phantoms.autoencoder_scores(train, np.r_[normal, spotted], epochs=5)
    assert mean.shape == peak.shape == (16,)
    assert peak[8:].min() > peak[:8].max()
    assert mean[8:].mean() > mean[:8].mean()


def test_the_autoencoder_reference_takes_64_pixel_images() -> None:
    images = np.zeros((4, 32, 32), np.float32)
    with pytest.raises(ValueError, match="64 x 64"):
        phantoms.autoencoder_scores(images, images)
