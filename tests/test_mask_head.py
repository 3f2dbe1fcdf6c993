"""AnatPaste's mask head: a per-location "where is the paste" output beside the image logit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from cxr_anomaly.core.config import ConfigError, TrainConfig
from cxr_anomaly.data.lungs import lung_masks
from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.models.anatpaste.lightning_model import AnatPaste
from cxr_anomaly.models.anatpaste.paste import anat_paste
from cxr_anomaly.models.registry import build_model
from tiny import SIZE, TINY_PARAMS

TINY: dict[str, Any] = TINY_PARAMS["anatpaste"]


def _phantoms(n: int, start: int = 0) -> torch.Tensor:
    images = [make_phantom(SIZE, seed).image for seed in range(start, start + n)]
    return torch.from_numpy(np.stack(images))[:, None]


def _model(**params: Any) -> AnatPaste:
    torch.manual_seed(0)
    model = build_model(
        "anatpaste", {**TINY, "mask_weight": 1.0, **params}, TrainConfig(precision="32-true")
    )
    assert isinstance(model, AnatPaste)
    return model


@pytest.mark.parametrize("head", ["grid", "decoder"])
def test_the_mask_score_is_a_probability_with_a_map_of_the_image_size(head: str) -> None:
    model = _model(map_score="mask", mask_head=head).eval()
    images = _phantoms(4, start=10)
    out = model.infer(images)
    assert "mask" in model.score_names()
    assert "mask" not in _model(mask_weight=0.0).score_names()
    assert out.maps["mask"].shape == images.shape
    assert bool(((out.maps["mask"] >= 0) & (out.maps["mask"] <= 1)).all())
    assert bool(((out.scores["mask"] > 0) & (out.scores["mask"] < 1)).all())
    # Each image's score is its own: scoring one alone gives what it gets in the batch.
    torch.testing.assert_close(model.infer(images[1:2]).scores["mask"], out.scores["mask"][1:2])


def test_the_mask_loss_joins_the_image_loss_only_with_a_weight() -> None:
    images = _phantoms(8)
    lungs = lung_masks(images)
    with_head, logged = _model()._pasted_loss(images, lungs, torch.Generator().manual_seed(0))
    without, plain = _model(mask_weight=0.0)._pasted_loss(
        images, lungs, torch.Generator().manual_seed(0)
    )
    assert "mask_loss" in logged and "mask_loss" not in plain
    assert float(logged["mask_loss"]) > 0
    # The same image loss (same seed, same backbone weights), plus the weighted mask loss.
    image_loss = float(with_head.detach()) - float(logged["mask_loss"])
    assert image_loss == pytest.approx(float(without.detach()), rel=1e-4)


def test_the_decoder_head_predicts_on_the_first_stage_grid() -> None:
    """The grid head reads out on the second stage's grid (stride 4), the decoder on the
    first one's (stride 2): twice as fine."""
    images = _phantoms(2)
    grid = _model(mask_head="grid").net(images).mask_logits
    decoder = _model(mask_head="decoder").net(images).mask_logits
    assert grid is not None and decoder is not None
    assert grid.shape[-1] == SIZE // 4
    assert decoder.shape[-1] == SIZE // 2


@pytest.mark.slow
@pytest.mark.parametrize("head", ["grid", "decoder"])
def test_training_the_head_points_it_at_the_pasted_patch(head: str) -> None:
    """A hundred steps on phantoms: the map is higher inside fresh pastes than outside."""
    model = _model(mask_head=head)
    optimizer = torch.optim.Adam(model.net.parameters(), lr=3e-3)
    images = _phantoms(16)
    lungs = lung_masks(images)
    generator = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(100):
        loss, _ = model._pasted_loss(images, lungs, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    pasted, blend = anat_paste(images, lungs, torch.Generator().manual_seed(99))
    probability = model.infer(pasted).maps["mask"]
    inside, outside = blend > 0.5, blend == 0
    assert float(probability[inside].mean()) > 2 * float(probability[outside].mean())


def test_a_negative_mask_weight_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mask_weight"):
        build_model("anatpaste", {**TINY, "mask_weight": -1.0})


def test_an_unknown_mask_head_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="mask_head"):
        build_model("anatpaste", {**TINY, "mask_weight": 1.0, "mask_head": "unet"})
