"""VAE-GAN (Larsen et al., "Autoencoding beyond pixels using a learned similarity metric", 2016).

A VAE whose reconstruction loss is measured in the feature space of a GAN discriminator. The
"paper" preset is the reference study's 64x64 configuration: encoder of three 5x5 stride-2
convolutions (64, 128, 256) with BatchNorm and LeakyReLU(0.2), a 2048-unit dense layer, latent
128; decoder mirrored with transposed convolutions and tanh; discriminator of 5x5 convolutions
(32, 128, 256, 256) whose last convolutional features give the learned similarity; RMSprop at
3e-4 (discriminator 0.1 of that), feature-reconstruction weight gamma 15, inputs in [-1, 1].

Losses per step (means over elements, as in the common PyTorch port the study used):
    discriminator: BCE(D(x), 1) + BCE(D(x~), 0) + BCE(D(G(z_p)), 0)
    encoder:       KL(q(z|x) || N(0, I)) + encoder_feature_weight * ||Dis_l(x~) - Dis_l(x)||^2
    decoder:       gamma * ||Dis_l(x~) - Dis_l(x)||^2 + BCE(D(x~), 1) + BCE(D(G(z_p)), 1)
At test time the reconstruction is G(mu(x)), the posterior mean, in eval mode.

``pixel_weight`` (0 in the reference) adds ``pixel_weight * |x~ - x|`` to the encoder and decoder
losses: the learned similarity alone needs long training before reconstructions resemble the
input, and the CPU-quick preset does not have that time.

``uncertainty`` (Mao et al., MICCAI 2020) makes the decoder also predict a per-pixel
log-variance ``s``; the pixel term becomes ``mean(exp(-s) (x - x~)^2 + s)`` and the extra score
``uncertainty`` is the mean of ``exp(-s) (x - x~)^2``, the error normalised by how uncertain the
model is at each pixel of normal images.

``lowpass_sigma`` > 0 adds the score ``lowpass``: the L1 error of image and reconstruction both
blurred with that sigma (pixels at 64x64, scaled with the size); see ``add_lowpass_score``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cxr_anomaly.config import TrainConfig
from cxr_anomaly.models.base import AnomalyModel, Inference, ModelConfig
from cxr_anomaly.models.uncertainty import (
    add_uncertainty_score,
    heteroscedastic_loss,
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

    def __post_init__(self) -> None:
        if self.lowpass_sigma < 0:
            raise ValueError(f"lowpass_sigma must be >= 0, got {self.lowpass_sigma}")


def _conv_block(c_in: int, c_out: int, stride: int, slope: float, norm: bool = True) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 5, stride, 2, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(c_out))
    layers.append(nn.LeakyReLU(slope) if slope > 0 else nn.ReLU())
    return nn.Sequential(*layers)


def _up_block(c_in: int, c_out: int) -> nn.Module:
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, 5, 2, 2, output_padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class VAEGANEncoder(nn.Module):
    """Image -> (mu, logvar)."""

    def __init__(self, cfg: VAEGANConfig) -> None:
        super().__init__()
        channels = (1, *cfg.encoder_channels)
        self.convs = nn.Sequential(
            *(_conv_block(a, b, 2, 0.2) for a, b in itertools.pairwise(channels))
        )
        side = cfg.image_size // 2 ** len(cfg.encoder_channels)
        self.dense = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels[-1] * side * side, cfg.dense_units, bias=False),
            nn.BatchNorm1d(cfg.dense_units),
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
        top = cfg.encoder_channels[-1]
        self.side = cfg.image_size // 2 ** len(cfg.encoder_channels)
        self.top = top
        self.dense = nn.Sequential(
            nn.Linear(cfg.latent_dim, top * self.side * self.side, bias=False),
            nn.BatchNorm1d(top * self.side * self.side),
            nn.ReLU(),
        )
        channels = (*cfg.encoder_channels[::-1], cfg.encoder_channels[0] // 2)
        self.ups = nn.Sequential(*(_up_block(a, b) for a, b in itertools.pairwise(channels)))
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
        layers = [_conv_block(1, first, 1, 0.0, norm=False)]
        channels = (first, *rest)
        layers += [_conv_block(a, b, 2, 0.0) for a, b in itertools.pairwise(channels)]
        self.features = nn.Sequential(*layers)
        side = cfg.image_size // 2 ** len(rest)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels[-1] * side * side, cfg.discriminator_dense, bias=False),
            nn.BatchNorm1d(cfg.discriminator_dense),
            nn.ReLU(),
            nn.Linear(cfg.discriminator_dense, 1),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.features(x)
        return self.head(features).squeeze(1), features


class VAEGAN(AnomalyModel):
    """VAE-GAN behind the shared interface; scores: ``l1`` (reference) and ``feature``."""

    model_name = "vaegan"
    config_class = VAEGANConfig

    def __init__(self, config: VAEGANConfig, train: TrainConfig | None = None) -> None:
        super().__init__(config, train)
        self.cfg = config
        if config.uncertainty and config.pixel_weight <= 0:
            raise ValueError("uncertainty needs pixel_weight > 0 (its only training signal)")
        if config.image_size % 2 ** len(
            config.discriminator_channels[1:]
        ) or config.image_size % 2 ** len(config.encoder_channels):
            raise ValueError("image_size must be divisible by the networks' total stride")
        self.encoder = VAEGANEncoder(config)
        self.decoder = VAEGANDecoder(config)
        self.discriminator = VAEGANDiscriminator(config)
        self.automatic_optimization = False

    def own_score_names(self) -> tuple[str, ...]:
        names: tuple[str, ...] = ("l1", "feature")
        if self.cfg.lowpass_sigma > 0:
            names = (*names, "lowpass")
        return (*names, "uncertainty") if self.cfg.uncertainty else names

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        lr = self.cfg.lr
        return [
            torch.optim.RMSprop(self.encoder.parameters(), lr=lr),
            torch.optim.RMSprop(self.decoder.parameters(), lr=lr),
            torch.optim.RMSprop(
                self.discriminator.parameters(), lr=lr * self.cfg.discriminator_lr_ratio
            ),
        ]

    def _losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.encoder(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        x_tilde, pixel_logvar = self.decoder.with_logvar(z)
        x_prior = self.decoder(torch.randn_like(mu))
        kl = -0.5 * torch.mean(1 + logvar - mu.square() - logvar.exp())
        pixel = (
            (x_tilde - x).abs().mean()
            if pixel_logvar is None
            else heteroscedastic_loss(x_tilde - x, pixel_logvar)
        )
        return {"mu": mu, "x_tilde": x_tilde, "x_prior": x_prior, "kl": kl, "pixel": pixel}

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_e, opt_g, opt_d = self.optimizers()  # type: ignore[attr-defined]
        x = self.to_signed(self.training_images(batch)[0])
        out = self._losses(x)
        x_tilde, x_prior = out["x_tilde"], out["x_prior"]
        ones = torch.ones(x.shape[0], device=x.device)
        zeros = torch.zeros_like(ones)
        bce = F.binary_cross_entropy_with_logits

        # Discriminator: real vs reconstructed and prior samples.
        d_real, _ = self.discriminator(x)
        d_tilde, _ = self.discriminator(x_tilde.detach())
        d_prior, _ = self.discriminator(x_prior.detach())
        loss_d = bce(d_real, ones) + bce(d_tilde, zeros) + bce(d_prior, zeros)
        opt_d.zero_grad()
        self.set_gradients(loss_d, self.discriminator)
        opt_d.step()

        # Encoder and decoder through the (just updated, frozen) discriminator's features.
        self.discriminator.requires_grad_(False)
        _, feat_real = self.discriminator(x)
        logit_tilde, feat_tilde = self.discriminator(x_tilde)
        logit_prior, _ = self.discriminator(x_prior)
        self.discriminator.requires_grad_(True)
        feature_loss = F.mse_loss(feat_tilde, feat_real.detach())
        pixel_loss = out["pixel"]
        gan_g = bce(logit_tilde, ones) + bce(logit_prior, ones)
        loss_e = (
            self.cfg.kl_weight * out["kl"]
            + self.cfg.encoder_feature_weight * feature_loss
            + self.cfg.pixel_weight * pixel_loss
        )
        loss_g = self.cfg.gamma * feature_loss + gan_g + self.cfg.pixel_weight * pixel_loss
        opt_e.zero_grad()
        opt_g.zero_grad()
        self.set_gradients(loss_e, self.encoder, retain_graph=True)
        self.set_gradients(loss_g, self.decoder)
        opt_e.step()
        opt_g.step()
        self.log_dict(
            {
                "train/loss_d": loss_d.detach(),
                "train/kl": out["kl"].detach(),
                "train/feature": feature_loss.detach(),
                "train/gan_g": gan_g.detach(),
                "train/pixel": pixel_loss.detach(),
            },
            prog_bar=False,
        )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x = self.to_signed(self.batch_images(batch))
        mu, _ = self.encoder(x)
        recon = self.decoder(mu)
        self.log("val_loss", (recon - x).abs().mean() / 2, prog_bar=True, sync_dist=True)

    def _infer(self, x: torch.Tensor) -> Inference:
        signed = self.to_signed(x)
        mu, _ = self.encoder(signed)
        recon_signed, pixel_logvar = self.decoder.with_logvar(mu)
        result = self.reconstruction_inference(
            x, self.to_unit(recon_signed), self.cfg.lowpass_sigma
        )
        if pixel_logvar is not None:
            add_uncertainty_score(result, signed - recon_signed, pixel_logvar)
        _, feat_real = self.discriminator(signed)
        _, feat_recon = self.discriminator(recon_signed)
        result.maps["feature"] = result.maps["l1"]
        result.scores["feature"] = (feat_real - feat_recon).abs().flatten(1).mean(1)
        return result
