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


class LocationGaussians(nn.Module):
    """One Gaussian of feature vectors per location of a feature map (PaDiM, Defard et al.
    2021): a chest radiograph's anatomy sits at roughly the same place in every image, so what
    is normal at the apex need not be normal at the base.

    Fitted in one streaming pass (sums of features and of their outer products per location,
    never the features themselves); each covariance is regularised towards the identity by
    :data:`REGULARISATION` times its mean variance, as PaDiM adds 0.01 I. Buffers: ``mean``
    (L, C) and ``precision`` (L, C, C), saved with the weights.
    """

    REGULARISATION = 0.01
    mean: torch.Tensor
    precision: torch.Tensor

    def __init__(self, locations: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(locations, dim))
        self.register_buffer("precision", torch.eye(dim).repeat(locations, 1, 1))
        self._sums: torch.Tensor | None = None
        self._outer: torch.Tensor | None = None
        self._count = 0

    def accumulate(self, features: torch.Tensor) -> None:
        """Add normal images' feature maps (N, C, h, w) with h * w == locations."""
        flat = features.detach().double().flatten(2).permute(2, 0, 1)  # (L, N, C)
        locations, _, dim = flat.shape
        if self._sums is None or self._outer is None:
            self._sums = torch.zeros(locations, dim, dtype=torch.float64)
            self._outer = torch.zeros(locations, dim, dim, dtype=torch.float64)
        self._sums += flat.sum(1).cpu()
        self._outer += torch.einsum("lnc,lnd->lcd", flat, flat).cpu()
        self._count += flat.shape[1]

    def finish(self) -> int:
        """Turn the accumulated sums into means and precisions; the number of images fitted."""
        if self._sums is None or self._outer is None or self._count < 2:
            raise ValueError("fitting per-location Gaussians needs at least two images")
        n = self._count
        mean = self._sums / n
        cov = (self._outer - n * torch.einsum("lc,ld->lcd", mean, mean)) / (n - 1)
        scale = torch.diagonal(cov, dim1=1, dim2=2).mean(1).clamp_min(1e-12)
        eye = torch.eye(cov.shape[1], dtype=cov.dtype)
        cov = cov + self.REGULARISATION * scale[:, None, None] * eye
        self.mean.copy_(mean.to(self.mean.dtype))
        self.precision.copy_(torch.linalg.inv(cov).to(self.precision.dtype))
        self._sums = self._outer = None
        self._count = 0
        return n

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance of each location's feature vector: (N, C, h, w) -> (N, 1, h, w)."""
        n, _, height, width = features.shape
        diff = features.double().flatten(2).permute(0, 2, 1) - self.mean.double()  # (N, L, C)
        squared = torch.einsum("nlc,lcd,nld->nl", diff, self.precision.double(), diff)
        return squared.clamp_min(0.0).sqrt().float().view(n, 1, height, width)
