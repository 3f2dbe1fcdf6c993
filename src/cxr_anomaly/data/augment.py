"""Training augmentations that make normal acquisition variation look normal to a model.

Chest radiographs of one anatomy differ between scanners and departments in position, angle,
magnification, exposure (gamma, contrast), sharpness and noise. A model that saw only one
department's normal images can mistake another's for abnormal. :func:`augment` draws, per
image, a small affine change (shift, rotation, zoom) and a photometric change (gamma, contrast,
blur, noise) within the ranges of :class:`~cxr_anomaly.core.config.AugmentConfig`; every range
of 0 leaves that change out, so the default config changes nothing.

Random draws come from ``generator`` (torch's global generator when ``None``, which the
training loop reseeds every epoch, so a resumed run draws the same augmentations).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cxr_anomaly.core.config import AugmentConfig
from cxr_anomaly.core.filters import gaussian_kernel
from cxr_anomaly.core.sizes import at_side


def _uniform(
    n: int, low: float, high: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator).to(device)


def _affine(
    x: torch.Tensor,
    masks: torch.Tensor | None,
    cfg: AugmentConfig,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Shift, rotate and zoom each image (and its mask) about the centre; borders replicated."""
    n, device = x.shape[0], x.device
    angle = _uniform(n, -cfg.rotate, cfg.rotate, generator, device) * (math.pi / 180)
    zoom = _uniform(n, -cfg.scale, cfg.scale, generator, device).add(1.0)
    # affine_grid works in [-1, 1] coordinates: a shift of f of the side is 2 f.
    shift = _uniform(2 * n, -cfg.shift, cfg.shift, generator, device).view(n, 2) * 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    moved = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if masks is None:
        return moved, None
    moved_masks = F.grid_sample(
        masks.to(x.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return moved, moved_masks > 0.5


def _blur(x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Blur each image (N, 1, H, W) with its own Gaussian ``sigmas`` (N,) in pixels."""
    largest = float(sigmas.max())
    if largest <= 0:
        return x
    radius = gaussian_kernel(largest, x.device, x.dtype).numel() // 2
    coords = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    safe = sigmas.clamp_min(1e-3).to(x.dtype)[:, None]
    kernels = torch.exp(-0.5 * (coords[None] / safe) ** 2)
    kernels = kernels / kernels.sum(1, keepdim=True)
    n = x.shape[0]
    out = F.pad(x.transpose(0, 1), (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernels.view(n, 1, 1, -1), groups=n)
    out = F.conv2d(out, kernels.view(n, 1, -1, 1), groups=n)
    return out.transpose(0, 1)


def augment(
    x: torch.Tensor,
    cfg: AugmentConfig,
    masks: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Randomly changed copies of ``x`` (N, 1, H, W) in [0, 1], and of its boolean ``masks``.

    Example:
        >>> images = torch.rand(4, 1, 64, 64)
        >>> moved, _ = augment(images, AugmentConfig(shift=0.05, gamma=0.25))
        >>> moved.shape
        torch.Size([4, 1, 64, 64])
    """
    if not cfg.enabled:
        return x, masks
    n, device = x.shape[0], x.device
    out = x.float()
    if cfg.shift or cfg.rotate or cfg.scale:
        out, masks = _affine(out, masks, cfg, generator)
    if cfg.gamma:
        # Gamma log-uniform in [1 / (1 + g), 1 + g].
        log_gamma = _uniform(n, -1.0, 1.0, generator, device) * math.log1p(cfg.gamma)
        out = out.clamp_min(0.0).pow(log_gamma.exp().view(n, 1, 1, 1))
    if cfg.contrast:
        factor = _uniform(n, 1 - cfg.contrast, 1 + cfg.contrast, generator, device)
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        out = mean + (out - mean) * factor.view(n, 1, 1, 1)
    if cfg.blur:
        largest = at_side(cfg.blur, x.shape[-1])
        out = _blur(out, _uniform(n, 0.0, largest, generator, device))
    if cfg.noise:
        spread = _uniform(n, 0.0, cfg.noise, generator, device).view(n, 1, 1, 1)
        noise = torch.randn(out.shape, generator=generator).to(device)
        out = out + spread * noise
    return out.clamp(0.0, 1.0).to(x.dtype), masks
