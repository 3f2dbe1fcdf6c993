"""Intensity standardisation: what each mode takes away, and that every path applies it alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from cxr_anomaly import load_model
from cxr_anomaly.core.config import ConfigError, DataConfig
from cxr_anomaly.data.cache import ImageCache
from cxr_anomaly.data.folder import FolderSource
from cxr_anomaly.data.images import ReadOptions
from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.data.preprocess import preprocess, standardize_intensity
from cxr_anomaly.jobs.predict import TrainedModel
from cxr_anomaly.jobs.training import train
from tiny import tiny_run


@pytest.fixture
def image() -> np.ndarray:
    return make_phantom(64, 3).image.astype(np.float32)


def test_none_keeps_the_image(image: np.ndarray) -> None:
    np.testing.assert_array_equal(standardize_intensity(image, "none"), image)


def test_standardize_sets_mean_and_spread_and_ignores_linear_exposure(image: np.ndarray) -> None:
    out = standardize_intensity(image * 0.5, "standardize")
    # Clipping beyond two standard deviations moves the moments only a little.
    assert out.mean() == pytest.approx(0.5, abs=0.02)
    assert out.std() == pytest.approx(0.125, abs=0.01)
    for changed in (image * 0.7 + 0.1, image * 0.9):
        np.testing.assert_allclose(
            standardize_intensity(changed, "standardize"),
            standardize_intensity(image, "standardize"),
            atol=1e-5,
        )


def test_equalize_gives_a_flat_histogram_and_ignores_gamma(image: np.ndarray) -> None:
    out = standardize_intensity(image, "equalize")
    assert out.min() == 0.0 and out.max() == 1.0
    assert out.mean() == pytest.approx(0.5, abs=0.01)
    # Any increasing change of the intensities (gamma, contrast) leaves the ranks as they are.
    np.testing.assert_allclose(standardize_intensity(image**1.25, "equalize"), out, atol=1e-6)
    # Order is kept: a brighter pixel stays brighter.
    flat_in, flat_out = image.ravel(), out.ravel()
    order = np.argsort(flat_in, kind="stable")
    assert np.all(np.diff(flat_out[order]) >= 0)


@pytest.mark.parametrize("mode", ["standardize", "equalize", "local"])
def test_a_flat_image_becomes_mid_grey(mode: str) -> None:
    np.testing.assert_array_equal(
        standardize_intensity(np.full((8, 8), 0.3, np.float32), mode), 0.5
    )


def test_unknown_modes_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"data\.intensity"):
        DataConfig(intensity="clahe")
    with pytest.raises(ValueError, match="unknown intensity mode"):
        standardize_intensity(np.zeros((4, 4)), "clahe")


def test_the_cache_stores_standardised_images_under_their_own_key(tmp_path: Path) -> None:
    root = tmp_path / "images"
    for i, label in enumerate(("NORMAL", "NORMAL", "PNEUMONIA")):
        (root / label).mkdir(parents=True, exist_ok=True)
        pixels = np.round(make_phantom(80, i).image * 200).astype(np.uint8)
        Image.fromarray(pixels).save(root / label / f"p{i}-0001.png")
    source = FolderSource(root)
    caches = {
        mode: ImageCache(source, 32, ReadOptions(), tmp_path / "cache", intensity=mode)
        for mode in ("none", "standardize")
    }
    assert caches["none"].directory != caches["standardize"].directory
    for cache in caches.values():
        cache.ensure(workers=1)
    images = caches["standardize"].images(range(3))
    # What the cache holds is what ``predict`` makes of the same file (to one uint16 step).
    for row, sample in enumerate(source.samples()):
        assert sample.path is not None
        raw = np.asarray(Image.open(sample.path), np.float32) / 255
        np.testing.assert_allclose(images[row], preprocess(raw, 32, "standardize"), atol=1 / 65535)
    assert not np.allclose(images, caches["none"].images(range(3)))


def test_local_takes_away_slow_brightness_changes_and_keeps_texture(image: np.ndarray) -> None:
    out = standardize_intensity(image, "local")
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    # A brightness ramp across the whole image (uneven exposure) barely changes the result...
    ramp = np.linspace(0.0, 0.15, image.shape[1], dtype=np.float32)[None, :]
    shifted = standardize_intensity(np.clip(image * 0.8 + ramp, 0, 1), "local")
    assert np.abs(shifted - out).mean() < 0.03
    # ...while the phantom's texture (ribs, vessels) is still there: blurring it is visible.
    blurred = standardize_intensity(ndimage.gaussian_filter(image, 1.5), "local")
    assert np.abs(blurred - out).mean() > 3 * np.abs(shifted - out).mean()


def test_a_trained_model_prepares_new_images_with_its_own_intensity_mode(tmp_path: Path) -> None:
    config = tiny_run("anatpaste", tmp_path / "cache")
    config.data.intensity = "local"
    train(config, tmp_path / "run", progress=False)
    model = load_model(tmp_path / "run")
    assert isinstance(model, TrainedModel)
    assert model.metadata.data.intensity == "local"
    raw = make_phantom(100, 7).image
    prepared = model.load(raw).pixels
    np.testing.assert_array_equal(prepared, preprocess(raw, config.data.size, "local"))
    assert not np.allclose(prepared, preprocess(raw, config.data.size, "none"))
