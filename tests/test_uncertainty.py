"""Uncertainty-normalised error: the loss, and the option on every reconstruction model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from cxr_anomaly.core.config import TrainConfig
from cxr_anomaly.jobs.training import train
from cxr_anomaly.models.components.uncertainty import heteroscedastic_loss
from cxr_anomaly.models.registry import build_model
from cxr_anomaly.runtime.checkpoint import load_weights
from tiny import TINY_PARAMS, tiny_run

OPTIONS: dict[str, dict[str, Any]] = {
    "vaegan": {"uncertainty": True, "pixel_weight": 1.0},
    "bigan": {"uncertainty": True, "consistency_weight": 1.0},
    "anoddpm-gaussian": {"uncertainty": True},
    "anoddpm-simplex": {"uncertainty": True},
}


def test_the_loss_is_smallest_where_the_variance_matches_the_error() -> None:
    error = torch.full((1, 1, 4, 4), 0.5)
    best = torch.log(error.square())  # d/ds [exp(-s) e^2 + s] = 0 at s = log e^2
    for shift in (-1.0, -0.1, 0.1, 1.0):
        assert heteroscedastic_loss(error, best) < heteroscedastic_loss(error, best + shift)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_the_option_adds_a_normalised_score(name: str) -> None:
    torch.manual_seed(0)
    params = {**TINY_PARAMS[name], **OPTIONS[name]}
    model = build_model(name, params, TrainConfig(precision="32-true"))
    x = torch.rand(3, 1, 32, 32)
    result = model.infer(x)
    assert "uncertainty" in model.score_names()
    amap = result.maps["uncertainty"]
    assert amap.shape == x.shape and (amap >= 0).all()
    torch.testing.assert_close(result.scores["uncertainty"], amap.flatten(1).mean(1))
    # The error is normalised by exp(-s): an image far from its reconstruction scores higher.
    assert not torch.allclose(amap, result.maps["l1"])


def test_the_option_needs_a_pixel_training_signal() -> None:
    with pytest.raises(ValueError, match="pixel_weight"):
        build_model("vaegan", {**TINY_PARAMS["vaegan"], "uncertainty": True})
    with pytest.raises(ValueError, match="consistency_weight"):
        build_model("bigan", {**TINY_PARAMS["bigan"], "uncertainty": True})


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_training_with_the_option_saves_and_reloads(name: str, tmp_path: Path) -> None:
    config = tiny_run(name, tmp_path / "cache")
    config.model_params.update(OPTIONS[name])
    run = train(config, tmp_path / "run", progress=False)
    reloaded = load_weights(tmp_path / "run")
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(
        run.model.infer(x).scores["uncertainty"], reloaded.infer(x).scores["uncertainty"]
    )
