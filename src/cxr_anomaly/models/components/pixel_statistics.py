"""Per-pixel normal statistics of an anomaly map: where a model's error is usually large.

A reconstruction model's error is largest where every chest has fine, variable structure (the
diaphragm's edge, the mediastinum's border, the clavicles), so its map peaks there whatever the
image holds. A chest radiograph's anatomy sits at about the same place in every image, so each
pixel's error can be judged against the same pixel's error on normal images, as PaDiM judges
features per location: the map's per-pixel z-score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cxr_anomaly.models.components.maps import peak_score

PIXEL_Z_SCORE = "pixel_z"


class PixelStatistics(nn.Module):
    """Mean and spread of a map at each pixel over normal images; buffers ``mean`` and ``std``
    (1, 1, S, S), saved with the weights.

    The spread is floored at its median over the image: a quiet pixel (the background, say) is
    judged on the typical spread rather than its own near-zero one, so the z-score only takes
    weight away from pixels that are noisy in normal images and never amplifies quiet ones.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, side: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(1, 1, side, side))
        self.register_buffer("std", torch.ones(1, 1, side, side))
        self._sum: torch.Tensor | None = None
        self._squares: torch.Tensor | None = None
        self._count = 0

    def accumulate(self, maps: torch.Tensor) -> None:
        """Add normal images' maps (N, 1, S, S)."""
        values = maps.detach().double().cpu()
        if self._sum is None or self._squares is None:
            self._sum = torch.zeros_like(values[0])
            self._squares = torch.zeros_like(values[0])
        self._sum += values.sum(0)
        self._squares += (values**2).sum(0)
        self._count += values.shape[0]

    def finish(self) -> int:
        """Turn the sums into each pixel's mean and floored spread; the number of images."""
        if self._sum is None or self._squares is None or self._count < 2:
            raise ValueError("fitting per-pixel statistics needs at least two images")
        n = self._count
        mean = self._sum / n
        variance = ((self._squares - n * mean**2) / (n - 1)).clamp_min(0.0)
        std = variance.sqrt()
        std = std.clamp_min(float(std.median().clamp_min(1e-12)))
        self.mean.copy_(mean[None].to(self.mean.dtype))
        self.std.copy_(std[None].to(self.std.dtype))
        self._sum = self._squares = None
        self._count = 0
        return n

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(map, score)``: each pixel's z-score, negatives clipped to 0 (N, 1, S, S), and
        each image's largest z-score after a 3 x 3 average (N,)."""
        mean, std = self.mean.float(), self.std.float()
        if maps.shape[-2:] != mean.shape[-2:]:
            mean = F.interpolate(mean, size=maps.shape[-2:], mode="bilinear", align_corners=False)
            std = F.interpolate(std, size=maps.shape[-2:], mode="bilinear", align_corners=False)
        z = (maps.float() - mean) / std
        return z.clamp_min(0.0), peak_score(z)
