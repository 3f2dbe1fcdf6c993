"""From an image and its reconstruction to an anomaly map and an image score.

Maps are (N, 1, H, W), larger = more anomalous; image scores are (N,). The reference study's
score is the mean absolute error between the image and its reconstruction (pixels in [0, 1]).
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

ValuesT = TypeVar("ValuesT", np.ndarray, torch.Tensor)

REFERENCE_SIDE = 64
"""Sizes given in pixels (blur and smoothing sigmas) mean pixels at 64x64 and scale with the
image side, so that a setting means the same at every size."""
MAP_SCALE_PERCENTILE = 99.5
"""A heatmap is fully red at this percentile of its maps' pixels (of normal validation images
where calibrated)."""
MAP_FLOOR_PERCENTILE = 50.0
"""A heatmap starts to be red above this percentile (a typical normal pixel)."""


def at_side(pixels: float, side: int) -> float:
    """``pixels`` given at :data:`REFERENCE_SIDE`, at an image side of ``side``."""
    return pixels * side / REFERENCE_SIDE


def l1_map(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-pixel absolute error (N, 1, H, W)."""
    return (x - reconstruction).abs()


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


def zscore(values: ValuesT, mean: Any, std: Any) -> ValuesT:
    """``(values - mean) / std`` (arrays or tensors), a spread of 0 taken as 1: the one
    z-normalisation of scores against their normal distribution (fusions, calibration)."""
    return (values - mean) / (std if std > 0 else 1.0)


def image_score(maps: torch.Tensor) -> torch.Tensor:
    """Mean of each map: (N, 1, H, W) -> (N,)."""
    return maps.flatten(1).mean(dim=1)
