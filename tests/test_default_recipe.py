"""`train MODEL --data ...` with no other flag trains the model's recipe for real radiographs."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from cxr_anomaly.cli import build_parser, run_config_from_args
from cxr_anomaly.core.config import ConfigError, RunConfig
from cxr_anomaly.models.presets import load_preset, preset_intensity
from cxr_anomaly.models.registry import model_names, model_spec


def _config(*flags: str) -> RunConfig:
    args = build_parser().parse_args(["train", "anatpaste", "--out", "x", *flags])
    return run_config_from_args("anatpaste", args)


def test_no_flag_trains_the_default_recipe_with_its_intensity() -> None:
    config = _config()
    robust = load_preset("anatpaste", "robust")
    assert asdict(config.train.augment) == robust.train["augment"]
    assert config.data.intensity == "local"


def test_the_default_anatpaste_fuses_its_global_and_mask_scores_and_draws_the_mask() -> None:
    """Chosen on the yardstick: the image score fuses the global Mahalanobis distance with the
    mask head's largest probability, and the map is the mask head's probability."""
    from cxr_anomaly.models.registry import model_config

    config = model_config("anatpaste", _config().model_params)
    assert config.default_score == "fused"
    assert tuple(config.fuse) == ("mahalanobis", "mask")
    assert config.drawn_score == "mask"


def test_the_command_line_still_wins() -> None:
    assert _config("--intensity", "none").data.intensity == "none"
    quick = _config("--preset", "quick")
    assert quick.data.intensity == "none"  # the quick preset names no intensity
    assert asdict(quick.train.augment) != load_preset("anatpaste", "robust").train["augment"]


@pytest.mark.parametrize("name", model_names())
def test_every_model_has_a_default_recipe_with_local_normalisation(name: str) -> None:
    preset = model_spec(name).default_preset
    assert preset in model_spec(name).presets()
    assert preset_intensity(name, preset) == "local"
    assert preset_intensity(name, "quick") == "none"


def test_a_preset_may_only_name_its_intensity(tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text("model: bigan\ndata: {intensity: local, size: 128}\n")
    with pytest.raises(ConfigError, match="only intensity; got size"):
        load_preset("bigan", str(path))


@pytest.mark.parametrize("name", ["bigan", "vaegan", "anoddpm-gaussian"])
def test_the_default_reconstruction_models_draw_their_error_judged_per_pixel(name: str) -> None:
    from cxr_anomaly.models.registry import model_config

    args = build_parser().parse_args(["train", name, "--out", "x"])
    config = model_config(name, run_config_from_args(name, args).model_params)
    assert config.default_score == "lowpass"
    assert config.pixel_z_of == "lowpass" and config.drawn_score == "pixel_z"
