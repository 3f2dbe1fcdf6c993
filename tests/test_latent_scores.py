"""Gaussian-distance scores: the shared Gaussian, VAE-GAN's ``latent`` and ``critic``, BiGAN's
``latent``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cxr_anomaly.core.config import SettingValue, TrainConfig
from cxr_anomaly.jobs.training import train
from cxr_anomaly.models.bigan.lightning_model import BiGAN
from cxr_anomaly.models.components.gaussian import FeatureGaussian
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.models.registry import build_model
from cxr_anomaly.models.vaegan.lightning_model import VAEGAN
from cxr_anomaly.runtime.checkpoint import load_weights
from tiny import TINY_PARAMS, tiny_run

LATENT = {"latent_scores": True, "lowpass_sigma": 2.0}


def test_the_gaussian_distance_is_two_sided_and_scaled_by_the_spread() -> None:
    rng = np.random.default_rng(0)
    # Feature 0 spreads ten times as widely as feature 1.
    samples = rng.normal(size=(4000, 2)) * np.array([10.0, 1.0]) + np.array([5.0, -2.0])
    gaussian = FeatureGaussian(2)
    gaussian.fit(samples)
    points = torch.tensor([[5.0, -2.0], [5.0, 1.0], [5.0, -5.0], [35.0, -2.0]])
    at_mean, above, below, wide = gaussian(points).tolist()
    assert at_mean < 0.1
    # Three spreads below the mean are as far as three above, in either feature.
    assert abs(above - 3.0) < 0.2 and abs(below - 3.0) < 0.2 and abs(wide - 3.0) < 0.2


# The Gaussian-distance scores each model adds with ``latent_scores``.
ADDED = {"vaegan": ("latent", "critic"), "bigan": ("latent",)}


def _model(name: str, **params: SettingValue) -> AnomalyModel:
    torch.manual_seed(0)
    model = build_model(name, {**TINY_PARAMS[name], **params}, TrainConfig(precision="32-true"))
    return model.eval()


def _gaussian(model: AnomalyModel) -> FeatureGaussian:
    assert isinstance(model, VAEGAN | BiGAN)
    return model.latent_gaussian


def _codes(model: AnomalyModel, x: torch.Tensor) -> torch.Tensor:
    """The latent code the model's ``latent`` score measures: VAE-GAN's encoder mean, BiGAN's
    E(x) (its EMA copy)."""
    with torch.no_grad():
        if isinstance(model, VAEGAN):
            return model.encoder(model.to_signed(x))[0]
        assert isinstance(model, BiGAN)
        return model.test_nets().encoder(model.to_signed(x))


@pytest.mark.parametrize("name", sorted(ADDED))
def test_latent_scores_are_distances_to_the_fitted_normal_encodings(name: str) -> None:
    model = _model(name, **LATENT)
    normal = torch.rand(32, 1, 32, 32) * 0.1 + 0.25
    model.fit_normal_images([normal[:16], normal[16:]], len(normal))
    gaussian = _gaussian(model)
    mean = _codes(model, normal).double().mean(0).numpy()
    np.testing.assert_allclose(gaussian.mean.numpy(), mean, atol=1e-5)

    images = torch.cat([normal[:4], normal[:4] + 0.5])
    result = model.infer(images)
    assert set(ADDED[name]) <= set(model.score_names())
    torch.testing.assert_close(result.scores["latent"], gaussian(_codes(model, images)))
    # Images unlike every fitted one (far brighter) are farther from the normal Gaussians.
    for score in ADDED[name]:
        scores = result.scores[score]
        assert scores[4:].min() > scores[:4].max(), score
    # Their maps are the reconstruction error's, at the lowpass scale.
    assert result.maps["latent"] is result.maps["lowpass"]


@pytest.mark.parametrize("name", sorted(ADDED))
def test_without_the_option_there_are_no_gaussians_to_load(name: str) -> None:
    model = _model(name)
    assert not set(ADDED[name]) & set(model.score_names())
    assert not [key for key in model.state_dict() if "gaussian" in key]


@pytest.mark.parametrize("name", sorted(ADDED))
def test_training_fits_the_gaussians_and_they_reload(name: str, tmp_path: Path) -> None:
    config = tiny_run(name, tmp_path / "cache")
    config.model_params.update(LATENT)
    run = train(config, tmp_path / "run", progress=False)
    assert _gaussian(run.model).mean.abs().sum() > 0  # fitted, not N(0, I)
    reloaded = load_weights(tmp_path / "run")
    x = torch.rand(2, 1, 32, 32)
    for score in ADDED[name]:
        torch.testing.assert_close(
            run.model.infer(x).scores[score], reloaded.infer(x).scores[score]
        )
