"""Reverse-diffusion steps with explicit noise, and partial-diffusion reconstruction.

MONAI's ``DDPMScheduler.step`` draws its noise internally; AnoDDPM needs to choose the noise
(Gaussian or simplex) and to draw it per image, so that a reconstruction never depends on which
other images share the batch. These functions take the noise as an argument instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.networks.schedulers import DDPMScheduler

# (shape, timestep) -> noise of that shape, drawn per image from that image's generator.
NoiseFn = Callable[[tuple[int, ...], int], torch.Tensor]
# (noisy sample, timestep) -> predicted noise epsilon.
DenoiseFn = Callable[[torch.Tensor, int], torch.Tensor]


def _alpha_bar(scheduler: DDPMScheduler, timestep: int) -> torch.Tensor:
    """The cumulative product of alphas at ``timestep`` (1 before the first step)."""
    return scheduler.alphas_cumprod[timestep] if timestep >= 0 else scheduler.one


def predict_x0(
    scheduler: DDPMScheduler, eps: torch.Tensor, timestep: int, sample: torch.Tensor
) -> torch.Tensor:
    """x0 estimated from the predicted noise (clipped to the data range when configured)."""
    alpha_bar = _alpha_bar(scheduler, timestep).to(sample)
    x0 = (sample - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
    if scheduler.clip_sample:
        x0 = x0.clamp(*scheduler.clip_sample_values)
    return x0


def ddpm_step(
    scheduler: DDPMScheduler,
    eps: torch.Tensor,
    timestep: int,
    sample: torch.Tensor,
    noise: torch.Tensor | None,
) -> torch.Tensor:
    """One DDPM reverse step x_t -> x_{t-1} with the given noise (ignored at t = 0).

    The posterior mean is (Ho et al. 2020, eq. 7) ``c0 * x0 + ct * x_t`` with
    ``c0 = sqrt(abar_{t-1}) beta_t / (1 - abar_t)``,
    ``ct = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)``, and the standard deviation
    ``sqrt(beta_t (1 - abar_{t-1}) / (1 - abar_t))`` (fixed small), exactly as
    ``DDPMScheduler.step`` computes them.
    """
    alpha_bar = _alpha_bar(scheduler, timestep).to(sample)
    alpha_bar_prev = _alpha_bar(scheduler, timestep - 1).to(sample)
    beta = scheduler.betas[timestep].to(sample)
    alpha = scheduler.alphas[timestep].to(sample)
    x0 = predict_x0(scheduler, eps, timestep, sample)
    mean = (alpha_bar_prev.sqrt() * beta / (1 - alpha_bar)) * x0 + (
        alpha.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar)
    ) * sample
    if timestep == 0 or noise is None:
        return mean
    variance = (beta * (1 - alpha_bar_prev) / (1 - alpha_bar)).clamp(min=1e-20)
    return mean + variance.sqrt() * noise


def ddim_step(
    scheduler: DDPMScheduler,
    eps: torch.Tensor,
    timestep: int,
    prev_timestep: int,
    sample: torch.Tensor,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One DDIM step from ``timestep`` down to ``prev_timestep`` (-1 means x0); Song et al. 2021.

    ``eta = 0`` is deterministic; ``eta = 1`` matches DDPM's variance on the strided chain.
    """
    alpha_bar = _alpha_bar(scheduler, timestep).to(sample)
    alpha_bar_prev = _alpha_bar(scheduler, prev_timestep).to(sample)
    x0 = predict_x0(scheduler, eps, timestep, sample)
    eps = (sample - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
    sigma = eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)).sqrt()
    direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt() * eps
    out = alpha_bar_prev.sqrt() * x0 + direction
    if eta > 0 and prev_timestep >= 0 and noise is not None:
        out = out + sigma * noise
    return out


def strided_timesteps(depth: int, stride: int) -> list[int]:
    """Timesteps visited from ``depth - 1`` down towards 0 every ``stride`` steps."""
    if depth < 1 or stride < 1:
        raise ValueError("depth and stride must be at least 1")
    return list(range(depth - 1, -1, -stride))


def partial_diffusion(
    scheduler: DDPMScheduler,
    denoise: DenoiseFn,
    x0: torch.Tensor,
    depth: int,
    noise_fn: NoiseFn,
    sampler: str = "ddpm",
    stride: int = 1,
    eta: float = 0.0,
) -> torch.Tensor:
    """Noise ``x0`` (in [-1, 1]) to timestep ``depth - 1`` with q(x_t | x0), then denoise to 0.

    Args:
        scheduler: the noise schedule.
        denoise: the trained network, (x_t, t) -> predicted noise.
        x0: clean images (N, C, H, W) in [-1, 1].
        depth: number of forward steps (AnoDDPM's "sample distance").
        noise_fn: draws the noise of each step, per image.
        sampler: ``ddpm`` (every step, the reference) or ``ddim`` (strided, fast).
        stride: step size of the ``ddim`` sampler.
        eta: DDIM stochasticity (0 = deterministic after the initial noising).
    """
    start = depth - 1
    shape = tuple(x0.shape)
    t_start = torch.full((shape[0],), start, device=x0.device, dtype=torch.long)
    x = scheduler.add_noise(original_samples=x0, noise=noise_fn(shape, start), timesteps=t_start)
    if sampler == "ddpm":
        for t in range(start, -1, -1):
            noise = noise_fn(shape, t - 1) if t > 0 else None
            x = ddpm_step(scheduler, denoise(x, t), t, x, noise)
        return x
    if sampler == "ddim":
        steps: Sequence[int] = strided_timesteps(depth, stride)
        for i, t in enumerate(steps):
            prev = steps[i + 1] if i + 1 < len(steps) else -1
            noise = noise_fn(shape, prev) if eta > 0 and prev >= 0 else None
            x = ddim_step(scheduler, denoise(x, t), t, prev, x, eta, noise)
        return x
    raise ValueError(f"unknown sampler {sampler!r}: use ddpm or ddim")
