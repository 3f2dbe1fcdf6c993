"""The bigan networks and settings, in plain torch (the Lightning module is
:mod:`.lightning_model`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cxr_anomaly.models.components.base import (
    ModelConfig,
    SeededDropout,
    deepened,
)
from cxr_anomaly.models.components.uncertainty import (
    split_logvar,
)


@dataclass
class BiGANConfig(ModelConfig):
    """BiGAN/EGBAD hyperparameters (defaults: the reference "paper" configuration)."""

    image_size: int = 64
    encoder_channels: tuple[int, ...] = (32, 64, 128)
    latent_dim: int = 200
    generator_dense: int = 1024
    generator_channels: tuple[int, ...] = (128, 64)
    discriminator_channels: tuple[int, ...] = (64, 64)
    discriminator_z_units: int = 512
    discriminator_joint_units: int = 1024
    dropout: float = 0.5
    lr: float = 1e-5
    beta1: float = 0.5
    ema_decay: float | None = 0.999
    fm_weight: float = 0.1
    consistency_weight: float = 0.0
    uncertainty: bool = False
    lowpass_sigma: float = 0.0
    latent_scores: bool = False
    fm_reduction: str = "mean"
    separate_batches: bool = False
    init_std: float | None = None
    batchnorm_momentum: float = 0.1
    batchnorm_eps: float = 1e-5
    default_score: str = "l1"

    def __post_init__(self) -> None:
        if self.lowpass_sigma < 0:
            raise ValueError(f"lowpass_sigma must be >= 0, got {self.lowpass_sigma}")
        if self.fm_reduction not in ("mean", "sum"):
            raise ValueError(f"fm_reduction must be mean or sum, got {self.fm_reduction!r}")


class BiGANEncoder(nn.Module):
    """Image -> latent z."""

    def __init__(self, cfg: BiGANConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_prev = 1
        channels = deepened(tuple(cfg.encoder_channels), cfg.image_size, at=0)
        for i, c in enumerate(channels):
            first = i == 0
            layers.append(nn.Conv2d(c_prev, c, 3, 1 if first else 2, 1, bias=first))
            if not first:
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.1))
            c_prev = c
        side = cfg.image_size // 2 ** (len(channels) - 1)
        layers += [nn.Flatten(), nn.Linear(c_prev * side * side, cfg.latent_dim)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BiGANGenerator(nn.Module):
    """Latent z -> image in [-1, 1]."""

    def __init__(self, cfg: BiGANConfig) -> None:
        super().__init__()
        self.top = cfg.generator_channels[0]
        widths = deepened(tuple(cfg.generator_channels), cfg.image_size, at=-1)
        self.side = cfg.image_size // 2 ** len(widths)
        units = self.top * self.side * self.side
        self.dense = nn.Sequential(
            nn.Linear(cfg.latent_dim, cfg.generator_dense, bias=False),
            nn.BatchNorm1d(cfg.generator_dense),
            nn.ReLU(),
            nn.Linear(cfg.generator_dense, units, bias=False),
            nn.BatchNorm1d(units),
            nn.ReLU(),
        )
        channels = (*widths[1:], 2 if cfg.uncertainty else 1)
        layers: list[nn.Module] = []
        c_prev = self.top
        for i, c in enumerate(channels):
            last = i == len(channels) - 1
            layers.append(nn.ConvTranspose2d(c_prev, c, 4, 2, 1, bias=last))
            if not last:
                layers += [nn.BatchNorm2d(c), nn.ReLU()]
            c_prev = c
        self.ups = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.with_logvar(z)[0]

    def with_logvar(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The image in [-1, 1] and, with ``uncertainty``, its per-pixel log-variance."""
        h = self.dense(z).view(-1, self.top, self.side, self.side)
        return split_logvar(self.ups(h))


class BiGANDiscriminator(nn.Module):
    """(image, latent) -> (logit, 1024-unit intermediate features used for feature matching)."""

    def __init__(self, cfg: BiGANConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_prev = 1
        channels = deepened(tuple(cfg.discriminator_channels), cfg.image_size, at=0)
        for i, c in enumerate(channels):
            layers.append(nn.Conv2d(c_prev, c, 4, 2, 1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(c))
            layers += [nn.LeakyReLU(0.1), SeededDropout(cfg.dropout)]
            c_prev = c
        layers.append(nn.Flatten())
        self.x_path = nn.Sequential(*layers)
        side = cfg.image_size // 2 ** len(channels)
        self.z_path = nn.Sequential(
            nn.Linear(cfg.latent_dim, cfg.discriminator_z_units),
            nn.LeakyReLU(0.1),
            SeededDropout(cfg.dropout),
        )
        self.joint = nn.Sequential(
            nn.Linear(
                c_prev * side * side + cfg.discriminator_z_units, cfg.discriminator_joint_units
            ),
            nn.LeakyReLU(0.1),
            SeededDropout(cfg.dropout),
        )
        self.logit = nn.Linear(cfg.discriminator_joint_units, 1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.joint(torch.cat([self.x_path(x), self.z_path(z)], dim=1))
        return self.logit(features).squeeze(1), features


class BiGANNets(nn.Module):
    """The three networks together (the unit the EMA averages)."""

    def __init__(self, cfg: BiGANConfig) -> None:
        super().__init__()
        self.encoder = BiGANEncoder(cfg)
        self.generator = BiGANGenerator(cfg)
        self.discriminator = BiGANDiscriminator(cfg)
