"""A preset means the same at every image size: attention at the feature-map sides it names,
a UNet one level deeper per doubling, noise and smoothing scaled from 64 px."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cxr_anomaly.evaluation import metrics
from cxr_anomaly.models.anoddpm.lightning_model import AnoDDPM, AnoDDPMConfig
from cxr_anomaly.models.presets import load_preset
from cxr_anomaly.models.registry import build_model, model_config


def _attended_sides(model: AnoDDPM) -> list[int]:
    """Feature-map sides of the UNet's down levels that hold attention blocks."""
    side = model.cfg.image_size
    found = []
    for level, block in enumerate(model.unet.down_blocks):
        if type(block).__name__.startswith("Attn"):
            found.append(side // 2**level)
    return found


def _small(size: int, **params: Any) -> AnoDDPMConfig:
    defaults: dict[str, Any] = {
        "channels": (8, 16, 16),
        "num_head_channels": 8,
        "norm_num_groups": 8,
        "num_res_blocks": 1,
        "attention_resolutions": (16,),
        "image_size": size,
    }
    config = model_config("anoddpm-simplex", {**defaults, **params})
    assert isinstance(config, AnoDDPMConfig)
    return config


@pytest.mark.parametrize("size", [64, 128, 256])
def test_attention_sits_at_the_resolutions_asked_for(size: int) -> None:
    model = AnoDDPM(_small(size, attention_resolutions=(32, 16)))
    assert _attended_sides(model) == [32, 16]


@pytest.mark.parametrize(
    ("size", "levels", "bottleneck"),
    [(32, 3, 8), (64, 3, 16), (128, 4, 16), (224, 4, 28), (256, 5, 16)],
)
def test_the_unet_gains_a_level_per_doubling_and_keeps_its_bottleneck(
    size: int, levels: int, bottleneck: int
) -> None:
    config = _small(size)
    assert len(config.unet_channels) == levels
    assert config.unet_channels[-3:] == (8, 16, 16)
    assert size // 2 ** (levels - 1) == bottleneck


def test_the_paper_preset_attends_at_32_16_and_8_at_64_and_at_128_px() -> None:
    params = load_preset("anoddpm-simplex", "paper").model_params
    for size in (64, 128):
        config = model_config("anoddpm-simplex", {**params, "image_size": size})
        assert isinstance(config, AnoDDPMConfig)
        sides = [size // 2**i for i, on in enumerate(config.unet_attention) if on]
        assert sides == [32, 16, 8]
        assert len(config.unet_head_channels) == len(config.unet_channels)  # type: ignore[arg-type]


def test_a_size_the_unet_cannot_halve_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="divisible"):
        _small(66)


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_the_coarsest_simplex_octave_covers_the_same_fraction_at_64_and_128(preset: str) -> None:
    params = load_preset("anoddpm-simplex", preset).model_params
    fractions = []
    for size in (64, 128):
        config = model_config("anoddpm-simplex", {**params, "image_size": size})
        assert isinstance(config, AnoDDPMConfig)
        fractions.append(config.simplex.frequency / size)
    expected = {"quick": 0.25, "paper": 1.0}[preset]  # 16 px and 64 px at 64x64
    assert fractions[0] == fractions[1] == expected


def test_the_simplex_noise_has_the_same_structure_at_every_side() -> None:
    """Pixels an eighth of the side apart correlate as much at 128 px as at 64 px (0.63 at the
    defaults; with the feature size fixed in pixels, 0.40 at 128 px)."""

    def correlation_at_an_eighth(size: int) -> float:
        model = AnoDDPM(_small(size))
        noise = model._training_noise(torch.zeros(16, 1, size, size), torch.full((16,), 5))
        lag = size // 8
        pairs = torch.stack([noise[..., :-lag].flatten(), noise[..., lag:].flatten()])
        return float(torch.corrcoef(pairs.double())[0, 1])

    assert correlation_at_an_eighth(128) == pytest.approx(correlation_at_an_eighth(64), abs=0.05)


def test_the_pointing_game_sigma_scales_with_the_side() -> None:
    assert metrics.pointing_sigma(64) == metrics.POINTING_SIGMA
    assert metrics.pointing_sigma(256) == 4 * metrics.POINTING_SIGMA


def test_map_smoothing_is_given_at_64_px() -> None:
    """``map_sigma`` 2 at 128 px smooths as much, relative to the image, as 1 px at 64."""
    images = {64: torch.zeros(1, 1, 64, 64), 128: torch.zeros(1, 1, 128, 128)}
    images[64][0, 0, 32, 32] = 1.0
    images[128][0, 0, 64:66, 64:66] = 1.0
    widths = {}
    for size, x in images.items():
        model = build_model("vaegan", {"image_size": size, "map_sigma": 2.0, "latent_dim": 8})
        torch.manual_seed(0)
        amap = model.infer(x).maps["l1"][0, 0] - model.infer(torch.zeros_like(x)).maps["l1"][0, 0]
        row = amap[size // 2].abs()
        widths[size] = float((row > row.max() / 2).sum()) / size
    assert widths[64] == pytest.approx(widths[128], abs=1 / 64)


@pytest.mark.parametrize("name", ["bigan", "vaegan"])
@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_gan_parameters_grow_with_the_work_not_the_square_of_the_side(
    name: str, preset: str
) -> None:
    params = load_preset(name, preset).model_params
    counts = {}
    for size in (64, 256):
        model = build_model(name, {**params, "image_size": size})
        counts[size] = sum(p.numel() for p in model.parameters())
    assert counts[256] < 1.05 * counts[64]  # the dense layers alone would grow 16 times


@pytest.mark.parametrize("name", ["bigan", "vaegan"])
def test_gans_reconstruct_at_128_px(name: str) -> None:
    model = build_model(name, {"image_size": 128, "latent_dim": 8})
    result = model.infer(torch.rand(2, 1, 128, 128))
    assert result.reconstruction is not None
    assert result.reconstruction.shape == (2, 1, 128, 128)
