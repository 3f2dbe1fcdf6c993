"""Reverse-diffusion steps with explicit noise, against hand computation and MONAI."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from monai.networks.schedulers import DDPMScheduler

import cxr_anomaly.models.anoddpm.lightning_model as anoddpm_module
from cxr_anomaly.core.config import TrainConfig
from cxr_anomaly.models.anoddpm.diffusion import (
    ddim_step,
    ddpm_step,
    partial_diffusion,
    predict_x0,
    strided_timesteps,
)
from cxr_anomaly.models.anoddpm.lightning_model import AnoDDPM
from cxr_anomaly.models.components.maps import lowpass_l1_map
from cxr_anomaly.models.registry import build_model
from tiny import TINY_PARAMS


@pytest.fixture
def scheduler() -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=10, beta_start=0.1, beta_end=0.5, clip_sample=False)


def test_ddpm_step_matches_a_hand_computed_posterior(scheduler: DDPMScheduler) -> None:
    # Betas are linspace(0.1, 0.5, 10); at t = 3: beta = 0.1 + 3 * 0.4 / 9.
    betas = [0.1 + i * 0.4 / 9 for i in range(10)]
    alpha_bar = [math.prod(1 - b for b in betas[: i + 1]) for i in range(10)]
    t, x_t, eps, z = (
        3,
        torch.tensor([[0.5, -0.2]]),
        torch.tensor([[0.1, 0.3]]),
        torch.tensor([[1.0, -2.0]]),
    )
    x0 = (x_t - math.sqrt(1 - alpha_bar[t]) * eps) / math.sqrt(alpha_bar[t])
    c0 = math.sqrt(alpha_bar[t - 1]) * betas[t] / (1 - alpha_bar[t])
    ct = math.sqrt(1 - betas[t]) * (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t])
    sigma = math.sqrt(betas[t] * (1 - alpha_bar[t - 1]) / (1 - alpha_bar[t]))
    expected = c0 * x0 + ct * x_t + sigma * z
    got = ddpm_step(scheduler, eps, t, x_t, z)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_ddpm_step_at_t0_returns_the_mean_and_ignores_noise(scheduler: DDPMScheduler) -> None:
    x_t, eps = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    with_noise = ddpm_step(scheduler, eps, 0, x_t, torch.randn(2, 1, 4, 4))
    without = ddpm_step(scheduler, eps, 0, x_t, None)
    torch.testing.assert_close(with_noise, without)
    torch.testing.assert_close(without, predict_x0(scheduler, eps, 0, x_t))


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("t", [0, 1, 5, 9])
def test_ddpm_step_equals_monai_given_the_same_noise(t: int, clip: bool) -> None:
    scheduler = DDPMScheduler(
        num_train_timesteps=10, clip_sample=clip, beta_start=0.1, beta_end=0.5
    )
    generator = torch.Generator().manual_seed(7)
    x_t, eps = (
        torch.randn(2, 1, 5, 5, generator=generator),
        torch.randn(2, 1, 5, 5, generator=generator),
    )
    monai_prev, _ = scheduler.step(eps, t, x_t, generator=torch.Generator().manual_seed(123))
    noise = torch.randn(eps.shape, generator=torch.Generator().manual_seed(123))
    torch.testing.assert_close(ddpm_step(scheduler, eps, t, x_t, noise), monai_prev)


def test_ddim_step_to_the_start_is_the_x0_estimate(scheduler: DDPMScheduler) -> None:
    x_t, eps = torch.randn(1, 1, 3, 3), torch.randn(1, 1, 3, 3)
    torch.testing.assert_close(
        ddim_step(scheduler, eps, 6, -1, x_t), predict_x0(scheduler, eps, 6, x_t)
    )


def test_strided_timesteps() -> None:
    assert strided_timesteps(200, 20) == list(range(199, -1, -20))
    assert strided_timesteps(5, 1) == [4, 3, 2, 1, 0]
    with pytest.raises(ValueError):
        strided_timesteps(0, 1)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_partial_diffusion_with_an_oracle_denoiser_recovers_the_image(sampler: str) -> None:
    """If the network predicted exactly the noise in the sample, x0 comes back exactly."""
    scheduler = DDPMScheduler(num_train_timesteps=50, clip_sample=False)
    x0 = torch.rand(2, 1, 6, 6) * 2 - 1
    noise = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(0))

    def oracle(sample: torch.Tensor, t: int) -> torch.Tensor:
        alpha_bar = scheduler.alphas_cumprod[t]
        return (sample - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()

    recon = partial_diffusion(
        scheduler, oracle, x0, depth=20, noise_fn=lambda shape, t: noise, sampler=sampler, stride=4
    )
    torch.testing.assert_close(recon, x0, rtol=1e-4, atol=1e-4)


def test_partial_diffusion_rejects_an_unknown_sampler() -> None:
    scheduler = DDPMScheduler(num_train_timesteps=10)
    with pytest.raises(ValueError, match="sampler"):
        partial_diffusion(
            scheduler, lambda s, t: s, torch.zeros(1, 1, 2, 2), 3, lambda s, t: torch.zeros(s), "x"
        )


@pytest.mark.parametrize(
    ("name", "simplex_calls"), [("anoddpm-gaussian", 0), ("anoddpm-simplex", 1)]
)
def test_the_validation_loss_uses_the_models_own_noise(
    name: str, simplex_calls: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_model(name, TINY_PARAMS[name], TrainConfig(precision="32-true"))
    calls: list[int] = []
    real = anoddpm_module.simplex_noise_like

    def counting(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(anoddpm_module, "simplex_noise_like", counting)
    logged: dict[str, torch.Tensor] = {}
    monkeypatch.setattr(model, "log", lambda key, value, **_: logged.__setitem__(key, value))
    batch = [torch.rand(4, 1, 32, 32), torch.arange(4)]
    model.validation_step(batch, 0)
    first = logged["val_loss"]
    model.validation_step(batch, 0)
    assert len(calls) == 2 * simplex_calls
    torch.testing.assert_close(logged["val_loss"], first)  # the same batch, the same loss


def test_lowpass_error_ignores_fine_texture_and_keeps_coarse_changes() -> None:
    x = torch.zeros(1, 1, 32, 32)
    checkerboard = (torch.arange(32).view(-1, 1) + torch.arange(32)).remainder(2).float() * 0.2
    texture = lowpass_l1_map(x, x + checkerboard.view(1, 1, 32, 32), sigma=2.0)
    blob = torch.zeros_like(x)
    blob[..., 8:24, 8:24] = 0.2
    coarse = lowpass_l1_map(x, x + blob, sigma=2.0)
    # The checkerboard's mean (0.1) survives the blur everywhere; its pixel-level swing does not.
    assert texture.std() < 0.002
    assert coarse[..., 16, 16].item() == pytest.approx(0.2, abs=1e-3)
    assert coarse[..., 2, 2].item() < 1e-3


def test_anoddpm_lowpass_scores_blur_each_depths_error() -> None:
    params = {**TINY_PARAMS["anoddpm-gaussian"], "extra_depths": [4], "lowpass_sigma": 2.0}
    model = build_model("anoddpm-gaussian", params, TrainConfig()).eval()
    assert isinstance(model, AnoDDPM)
    x = torch.rand(2, 1, 32, 32)
    result = model.infer(x)
    assert {"lowpass", "lowpass@4"} <= set(result.scores)
    assert result.reconstruction is not None
    sigma = 2.0 * 32 / 64  # given at 64x64, scaled to the model's image size
    torch.testing.assert_close(
        result.maps["lowpass"], lowpass_l1_map(x, result.reconstruction, sigma)
    )
    torch.testing.assert_close(
        result.maps["lowpass@4"], lowpass_l1_map(x, model.reconstruct_at(x, 4), sigma)
    )
    torch.testing.assert_close(result.scores["lowpass"], result.maps["lowpass"].mean((1, 2, 3)))


def test_anoddpm_without_lowpass_has_no_lowpass_score_and_rejects_negative_sigma() -> None:
    assert (
        "lowpass"
        not in build_model("anoddpm-gaussian", TINY_PARAMS["anoddpm-gaussian"]).score_names()
    )
    with pytest.raises(ValueError, match="lowpass_sigma"):
        build_model("anoddpm-gaussian", {**TINY_PARAMS["anoddpm-gaussian"], "lowpass_sigma": -1.0})


@pytest.mark.parametrize("name", ["anoddpm-gaussian", "anoddpm-simplex"])
def test_noise_draws_average_the_reconstructions_of_successive_noise_seeds(name: str) -> None:
    torch.manual_seed(0)
    single = build_model(name, TINY_PARAMS[name], TrainConfig(precision="32-true")).eval()
    assert isinstance(single, AnoDDPM)
    x = torch.rand(2, 1, 32, 32)
    first = single.reconstruct_at(x, 4)
    single.cfg.noise_seed = 1
    second = single.reconstruct_at(x, 4)
    assert not torch.allclose(first, second)  # each draw has its own noise
    single.cfg.noise_seed = 0
    single.cfg.noise_draws = 2
    torch.testing.assert_close(single.reconstruct_at(x, 4), (first + second) / 2)
    with pytest.raises(ValueError, match="noise_draws"):
        build_model(name, {**TINY_PARAMS[name], "noise_draws": 0})
