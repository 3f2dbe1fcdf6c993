"""The vaegan networks and settings, in plain torch (the Lightning module is
:mod:`.lightning_model`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from cxr_anomaly.models.components.base import (
    ModelConfig,
    deepened,
)
from cxr_anomaly.models.components.uncertainty import (
    split_logvar,
)


@dataclass
class VAEGANConfig(ModelConfig):
    """VAE-GAN hyperparameters (defaults: the reference "paper" configuration)."""

    image_size: int = 64
    encoder_channels: tuple[int, ...] = (64, 128, 256)
    dense_units: int = 2048
    latent_dim: int = 128
    discriminator_channels: tuple[int, ...] = (32, 128, 256, 256)
    discriminator_dense: int = 512
    lr: float = 3e-4
    discriminator_lr_ratio: float = 0.1
    gamma: float = 15.0
    encoder_feature_weight: float = 5.0
    kl_weight: float = 1.0
    pixel_weight: float = 0.0
    uncertainty: bool = False
    lowpass_sigma: float = 0.0
    latent_scores: bool = False
    decoder_channels: tuple[int, ...] | None = None
    decoder_kernel: int = 5
    leaky_slope: float = 0.0
    batchnorm_momentum: float = 0.1
    init_std: float | None = None
    losses: str = "ours"

    def __post_init__(self) -> None:
        if self.lowpass_sigma < 0:
            raise ValueError(f"lowpass_sigma must be >= 0, got {self.lowpass_sigma}")
        if self.losses not in LOSS_FORMS:
            raise ValueError(f"losses must be one of {LOSS_FORMS}, got {self.losses!r}")
        if self.decoder_channels is not None and (
            len(self.decoder_channels) != len(self.encoder_channels) + 1
        ):
            raise ValueError("decoder_channels needs one more entry than encoder_channels")

    @property
    def decoder_widths(self) -> tuple[int, ...]:
        """The decoder's widths: the dense layer's, then each transposed convolution's."""
        if self.decoder_channels is not None:
            return tuple(self.decoder_channels)
        return (*self.encoder_channels[::-1], self.encoder_channels[0] // 2)


LOSS_FORMS = ("ours", "port")


def _activation(slope: float) -> nn.Module:
    return nn.LeakyReLU(slope) if slope > 0 else nn.ReLU()


def _conv_block(
    c_in: int, c_out: int, stride: int, slope: float, momentum: float, norm: bool = True
) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 5, stride, 2, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out, momentum=momentum))
    layers.append(_activation(slope))
    return nn.Sequential(*layers)


def _up_block(c_in: int, c_out: int, kernel: int, slope: float, momentum: float) -> nn.Module:
    """A stride-2 transposed convolution that doubles the side for any kernel size."""
    return nn.Sequential(
        nn.ConvTranspose2d(
            c_in, c_out, kernel, 2, (kernel - 1) // 2, output_padding=kernel % 2, bias=False
        ),
        nn.BatchNorm2d(c_out, momentum=momentum),
        _activation(slope),
    )


class VAEGANEncoder(nn.Module):
    """Image -> (mu, logvar)."""

    def __init__(self, cfg: VAEGANConfig) -> None:
        super().__init__()
        channels = (1, *deepened(tuple(cfg.encoder_channels), cfg.image_size, at=0))
        momentum = cfg.batchnorm_momentum
        self.convs = nn.Sequential(
            *(_conv_block(a, b, 2, 0.2, momentum) for a, b in itertools.pairwise(channels))
        )
        side = cfg.image_size // 2 ** (len(channels) - 1)
        self.dense = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels[-1] * side * side, cfg.dense_units, bias=False),
            nn.BatchNorm1d(cfg.dense_units, momentum=momentum),
            nn.LeakyReLU(0.2),
        )
        self.mu = nn.Linear(cfg.dense_units, cfg.latent_dim)
        self.logvar = nn.Linear(cfg.dense_units, cfg.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.dense(self.convs(x))
        return self.mu(h), self.logvar(h)


class VAEGANDecoder(nn.Module):
    """Latent -> image in [-1, 1] (the encoder mirrored with transposed convolutions)."""

    def __init__(self, cfg: VAEGANConfig) -> None:
        super().__init__()
        channels = deepened(cfg.decoder_widths, cfg.image_size, at=-1)
        top = channels[0]
        self.side = cfg.image_size // 2 ** (len(channels) - 1)
        self.top = top
        momentum, slope = cfg.batchnorm_momentum, cfg.leaky_slope
        self.dense = nn.Sequential(
            nn.Linear(cfg.latent_dim, top * self.side * self.side, bias=False),
            nn.BatchNorm1d(top * self.side * self.side, momentum=momentum),
            _activation(slope),
        )
        self.ups = nn.Sequential(
            *(
                _up_block(a, b, cfg.decoder_kernel, slope, momentum)
                for a, b in itertools.pairwise(channels)
            )
        )
        self.out = nn.Conv2d(channels[-1], 2 if cfg.uncertainty else 1, 5, 1, 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.with_logvar(z)[0]

    def with_logvar(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The image in [-1, 1] and, with ``uncertainty``, its per-pixel log-variance."""
        h = self.dense(z).view(-1, self.top, self.side, self.side)
        return split_logvar(self.out(self.ups(h)))


class VAEGANDiscriminator(nn.Module):
    """Image -> (real/fake logit, features of the last convolution: the learned similarity)."""

    def __init__(self, cfg: VAEGANConfig) -> None:
        super().__init__()
        first, *rest = cfg.discriminator_channels
        momentum, slope = cfg.batchnorm_momentum, cfg.leaky_slope
        layers = [_conv_block(1, first, 1, slope, momentum, norm=False)]
        channels = deepened((first, *rest), cfg.image_size, at=0)
        layers += [_conv_block(a, b, 2, slope, momentum) for a, b in itertools.pairwise(channels)]
        self.features = nn.Sequential(*layers)
        side = cfg.image_size // 2 ** (len(channels) - 1)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels[-1] * side * side, cfg.discriminator_dense, bias=False),
            nn.BatchNorm1d(cfg.discriminator_dense, momentum=momentum),
            _activation(slope),
            nn.Linear(cfg.discriminator_dense, 1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return self.head(features).squeeze(1), features
