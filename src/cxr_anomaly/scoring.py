"""From an image and its reconstruction to an anomaly map and an image score.

Maps are (N, 1, H, W), larger = more anomalous; image scores are (N,). The reference study's
score is the mean absolute error between the image and its reconstruction (pixels in [0, 1]).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def l1_map(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-pixel absolute error (N, 1, H, W)."""
    return (x - reconstruction).abs()


def squared_map(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-pixel squared error (N, 1, H, W)."""
    return (x - reconstruction).square()


def lowpass_l1_map(x: torch.Tensor, reconstruction: torch.Tensor, sigma: float) -> torch.Tensor:
    """Absolute error between image and reconstruction, both Gaussian-blurred (N, 1, H, W).

    Detail finer than ``sigma`` that a reconstruction cannot copy (noise-level texture) averages
    out, and what is left is the error at the scale of the anomalies."""
    return smooth(x - reconstruction, sigma).abs()


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


def image_score(maps: torch.Tensor) -> torch.Tensor:
    """Mean of each map: (N, 1, H, W) -> (N,)."""
    return maps.flatten(1).mean(dim=1)
