"""AnatPaste's second synthetic anomaly: thin dense curves and small dense spots in the lungs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cxr_anomaly.core.config import ConfigError, TrainConfig
from cxr_anomaly.data.lungs import lung_masks
from cxr_anomaly.data.phantoms import make_phantom
from cxr_anomaly.models.anatpaste.lightning_model import AnatPaste
from cxr_anomaly.models.anatpaste.strokes import StrokeSettings, draw_strokes
from cxr_anomaly.models.registry import build_model
from tiny import SIZE, TINY_PARAMS


def _phantoms(n: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([make_phantom(SIZE, s).image for s in range(n)]))[:, None]


def test_strokes_brighten_inside_the_lungs_only() -> None:
    images = _phantoms(6)
    lungs = lung_masks(images)
    out, blend = draw_strokes(images, lungs, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and blend.shape == images.shape
    assert bool((out[~lungs] == images[~lungs]).all()) and bool((blend[~lungs] == 0).all())
    assert bool((out >= images).all()) and bool((out <= 1).all())
    # Every image gets one: its largest weight is near 1 somewhere in the lungs.
    assert bool((blend.amax(dim=(1, 2, 3)) > 0.5).all())


def test_curves_are_thin_and_spots_small() -> None:
    images = _phantoms(8)
    lungs = lung_masks(images)
    for curve_prob in (0.0, 1.0):
        settings = StrokeSettings(curve_prob=curve_prob)
        _, blend = draw_strokes(images, lungs, torch.Generator().manual_seed(2), settings)
        covered = (blend > 0.5).float().mean(dim=(1, 2, 3))
        assert bool((covered < 0.06).all()), (curve_prob, covered)


def test_strokes_are_deterministic_and_need_lungs() -> None:
    images = _phantoms(3)
    lungs = lung_masks(images)
    a, _ = draw_strokes(images, lungs, torch.Generator().manual_seed(4))
    b, _ = draw_strokes(images, lungs, torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="non-empty lung mask"):
        draw_strokes(images, torch.zeros_like(lungs), torch.Generator().manual_seed(0))


def _model(stroke_prob: float) -> AnatPaste:
    torch.manual_seed(0)
    params = {**TINY_PARAMS["anatpaste"], "mask_weight": 1.0, "stroke_prob": stroke_prob}
    model = build_model("anatpaste", params, TrainConfig(precision="32-true"))
    assert isinstance(model, AnatPaste)
    return model


def test_stroke_prob_one_trains_on_strokes_alone() -> None:
    images = _phantoms(4)
    lungs = lung_masks(images)
    loss, _ = _model(1.0)._pasted_loss(images, lungs, torch.Generator().manual_seed(0))
    plain, _ = _model(0.0)._pasted_loss(images, lungs, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and float(loss) != pytest.approx(float(plain))
    with pytest.raises(ConfigError, match="stroke_prob"):
        _model(1.5)
