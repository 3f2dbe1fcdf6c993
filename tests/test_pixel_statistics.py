"""Per-pixel normal statistics of a model's map, and the ``pixel_z`` score they give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxr_anomaly.core.config import ConfigError, TrainConfig
from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.models.components.pixel_statistics import PixelStatistics
from cxr_anomaly.models.registry import build_model
from tiny import SIZE, TINY_PARAMS


def _normal_maps(n: int = 200, side: int = 8) -> torch.Tensor:
    """Maps whose top-left quarter is ten times as noisy as the rest."""
    generator = torch.Generator().manual_seed(0)
    maps = 1.0 + 0.1 * torch.randn(n, 1, side, side, generator=generator)
    maps[..., : side // 2, : side // 2] = 1.0 + torch.randn(n, 1, side // 2, side // 2)
    return maps


def test_statistics_are_each_pixels_mean_and_spread_floored_at_the_median() -> None:
    maps = _normal_maps()
    statistics = PixelStatistics(8)
    statistics.accumulate(maps[:120])
    statistics.accumulate(maps[120:])
    assert statistics.finish() == 200
    torch.testing.assert_close(statistics.mean, maps.mean(0, keepdim=True), atol=1e-5, rtol=0)
    spread = maps.std(0, keepdim=True)
    floor = float(spread.median())
    torch.testing.assert_close(statistics.std, spread.clamp_min(floor), atol=1e-5, rtol=0)
    assert float(statistics.std.min()) == pytest.approx(floor, abs=1e-6)


def test_a_bump_counts_less_where_normal_maps_are_noisy() -> None:
    statistics = PixelStatistics(8)
    statistics.accumulate(_normal_maps())
    statistics.finish()
    probe = torch.ones(2, 1, 8, 8)
    probe[0, 0, 1, 1] += 2.0  # in the noisy quarter
    probe[1, 0, 6, 6] += 2.0  # where normal maps are quiet
    z_map, score = statistics(probe)
    assert bool((z_map >= 0).all())
    assert float(z_map[1, 0, 6, 6]) > 5 * float(z_map[0, 0, 1, 1])
    assert float(score[1]) > float(score[0])
    # Maps of another size are judged against the statistics resized to them.
    assert statistics(torch.ones(1, 1, 16, 16))[0].shape == (1, 1, 16, 16)


def test_fitting_needs_two_maps() -> None:
    statistics = PixelStatistics(4)
    statistics.accumulate(torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="at least two"):
        statistics.finish()


def test_a_model_with_pixel_z_fits_and_draws_it() -> None:
    torch.manual_seed(0)
    params = {**TINY_PARAMS["bigan"], "pixel_z_of": "l1", "map_score": "pixel_z"}
    model = build_model("bigan", params, TrainConfig(precision="32-true")).eval()
    assert "pixel_z" in model.score_names()
    images = torch.from_numpy(np.stack([make_phantom(SIZE, s).image for s in range(8)]))[:, None]
    model.fit_pixel_statistics([images[:4], images[4:]])
    assert model.pixel_statistics is not None
    l1_maps = model.infer(images).maps["l1"]
    torch.testing.assert_close(
        model.pixel_statistics.mean, l1_maps.mean(0, keepdim=True), atol=1e-5, rtol=0
    )
    out = model.infer(images)
    assert out.maps["pixel_z"].shape == images.shape
    assert out.scores["pixel_z"].shape == (8,)
    assert "pixel_statistics.std" in model.state_dict()


def test_pixel_z_images_caps_the_images_fitted() -> None:
    torch.manual_seed(0)
    params = {**TINY_PARAMS["bigan"], "pixel_z_of": "l1", "pixel_z_images": 5}
    model = build_model("bigan", params, TrainConfig(precision="32-true")).eval()
    images = torch.from_numpy(np.stack([make_phantom(SIZE, s).image for s in range(8)]))[:, None]
    model.fit_pixel_statistics([images[:4], images[4:]])
    assert model.pixel_statistics is not None
    first_five = model.infer(images[:5]).maps["l1"]
    torch.testing.assert_close(
        model.pixel_statistics.mean, first_five.mean(0, keepdim=True), atol=1e-5, rtol=0
    )
    with pytest.raises(ConfigError, match="pixel_z_images must be at least 2"):
        build_model("bigan", {**params, "pixel_z_images": 1})


def test_pixel_z_needs_a_score_of_the_model() -> None:
    with pytest.raises(ConfigError, match="no score 'nope' to judge per pixel"):
        build_model("bigan", {**TINY_PARAMS["bigan"], "pixel_z_of": "nope"})
