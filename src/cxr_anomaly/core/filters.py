"""Gaussian filters (torch), their sizes given in pixels at 64x64 (see :mod:`.sizes`)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kernel(sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A normalised 1-D Gaussian kernel reaching 3 sigma each side."""
    radius = max(1, math.ceil(3 * sigma))
    coords = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    kernel = torch.exp(-0.5 * (coords / sigma) ** 2)
    return kernel / kernel.sum()


def smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-smooth (N, 1, H, W) maps, separably, with reflected borders; sigma 0 = no-op."""
    if sigma <= 0:
        return maps
    kernel = gaussian_kernel(sigma, maps.device, maps.dtype)
    radius = kernel.numel() // 2
    out = F.pad(maps, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, kernel.view(1, 1, -1, 1))
