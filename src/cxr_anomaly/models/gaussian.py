"""A Gaussian of normal images' features: Ledoit-Wolf fit and Mahalanobis distance.

AnatPaste scores its embeddings this way; VAE-GAN its encoder means and critic features. A
distance to the normal mean is two-sided: an image with less of something than every normal
image (less fine texture, as pneumonia hides ribs and vessels) is as far from normal as one with
more, which a reconstruction error, small whenever little is left to reconstruct, is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from torch import nn


def mahalanobis(
    features: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor
) -> torch.Tensor:
    """sqrt((f - mean)^T precision (f - mean)) of each row of ``features`` (N, D), in float64."""
    diff = features.double() - mean.double()
    squared = ((diff @ precision.double()) * diff).sum(1)
    return squared.clamp_min(0.0).sqrt().float()


def ledoit_wolf(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and precision matrix of ``samples`` (N, D) with a Ledoit-Wolf shrunk covariance."""
    estimator = LedoitWolf(assume_centered=False).fit(np.asarray(samples, np.float64))
    return estimator.location_, estimator.precision_


class FeatureGaussian(nn.Module):
    """Mean and precision of ``dim``-dimensional features, kept as buffers with the weights
    (N(0, I) until :meth:`fit`)."""

    mean: torch.Tensor
    precision: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("precision", torch.eye(dim))

    def fit(self, features: np.ndarray) -> None:
        """Fit on ``features`` (N, dim) of normal images."""
        mean, precision = ledoit_wolf(features)
        self.mean.copy_(torch.from_numpy(mean).to(self.mean.device, self.mean.dtype))
        self.precision.copy_(
            torch.from_numpy(precision).to(self.precision.device, self.precision.dtype)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The Mahalanobis distance of each row of ``features`` (N, dim) to the fitted mean."""
        return mahalanobis(features.float(), self.mean, self.precision)


@torch.no_grad()
def gather_features(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    extract: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
) -> list[np.ndarray]:
    """``extract``'s features (each (B, D)) of every batch, in eval mode, concatenated in
    float64: one array per feature ``extract`` returns."""
    was_training = model.training
    model.eval()
    parts: list[list[np.ndarray]] = []
    try:
        for batch in batches:
            features = extract(batch)
            parts = parts or [[] for _ in features]
            for kept, feature in zip(parts, features, strict=True):
                kept.append(feature.double().cpu().numpy())
    finally:
        model.train(was_training)
    if not parts:
        raise ValueError("fitting normal Gaussians needs at least one image")
    return [np.concatenate(kept) for kept in parts]
