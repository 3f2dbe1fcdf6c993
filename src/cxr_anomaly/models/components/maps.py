"""From an image and its reconstruction to an anomaly map and an image score.

Maps are (N, 1, H, W), larger = more anomalous; image scores are (N,). The reference study's
score is the mean absolute error between the image and its reconstruction (pixels in [0, 1]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cxr_anomaly.core.filters import smooth


def l1_map(x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """Per-pixel absolute error (N, 1, H, W)."""
    return (x - reconstruction).abs()


def lowpass_l1_map(x: torch.Tensor, reconstruction: torch.Tensor, sigma: float) -> torch.Tensor:
    """Absolute error between image and reconstruction, both Gaussian-blurred (N, 1, H, W).

    Detail finer than ``sigma`` that a reconstruction cannot copy (noise-level texture) averages
    out, and what is left is the error at the scale of the anomalies."""
    return smooth(x - reconstruction, sigma).abs()


def image_score(maps: torch.Tensor) -> torch.Tensor:
    """Mean of each map: (N, 1, H, W) -> (N,)."""
    return maps.flatten(1).mean(dim=1)


def peak_score(maps: torch.Tensor) -> torch.Tensor:
    """Largest value of each map after a 3 x 3 average (a lone pixel cannot make the score):
    (N, 1, h, w) -> (N,)."""
    smoothed = F.avg_pool2d(maps, 3, stride=1, padding=1, count_include_pad=False)
    return smoothed.flatten(1).amax(1)
