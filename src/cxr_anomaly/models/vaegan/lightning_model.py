"""VAE-GAN (Larsen et al., "Autoencoding beyond pixels using a learned similarity metric", 2016).

A VAE whose reconstruction loss is measured in the feature space of a GAN discriminator. The
defaults are the sizes of the reference study's 64x64 configuration: encoder of three 5x5
stride-2 convolutions (64, 128, 256) with BatchNorm and LeakyReLU(0.2), a 2048-unit dense layer,
latent 128; decoder of transposed convolutions and tanh; discriminator of 5x5 convolutions (32,
128, 256, 256) whose last convolutional features give the learned similarity; RMSprop at 3e-4
(discriminator 0.1 of that), feature-reconstruction weight gamma 15, inputs in [-1, 1]. The
``paper`` preset adds the port's own layer details and losses (below).

Losses per step (``losses: ours``, means over elements):
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

The port's own details are options, all set by the ``paper`` preset: ``decoder_channels``
(256, 256, 128, 32) and ``decoder_kernel`` 6 (ours mirrors the encoder, 5x5), ``leaky_slope``
0.2 in the decoder and discriminator (ours: ReLU), ``batchnorm_momentum`` 0.9 (PyTorch's
convention, as the port writes it), ``init_std`` 0.02 (encoder and decoder N(0, 0.02), BatchNorm
N(1, 0.02); the port's trained discriminator keeps PyTorch's default), and ``losses: port``:
discriminator, then decoder with the saturating ``gamma * rec - gan`` loss through the updated
discriminator, then encoder (KL + 5 * rec) on a fresh forward pass, in that order (ours: one
graph, the non-saturating BCE losses listed above, encoder and decoder stepped together).

``lowpass_sigma`` > 0 adds the score ``lowpass``: the L1 error of image and reconstruction both
blurred with that sigma (pixels at 64x64, scaled with the size); see ``add_lowpass_score``.

``latent_scores`` adds two scores that need no reconstruction to be faithful: after training,
Gaussians are fitted (Ledoit-Wolf, as AnatPaste's) on the normal training images' encoder means
and on their critic features (the discriminator's last convolution, averaged over positions);
``latent`` and ``critic`` are the Mahalanobis distances to them (see ``models/gaussian.py``). Their
maps are the reconstruction error's (``lowpass`` when it is computed, else ``l1``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F

from cxr_anomaly.core.config import TrainConfig
from cxr_anomaly.models.components.base import (
    Inference,
    levels_beyond_reference,
    normal_init,
)
from cxr_anomaly.models.components.gaussian import FeatureGaussian, gather_features
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.models.components.uncertainty import (
    add_uncertainty_score,
    heteroscedastic_loss,
)
from cxr_anomaly.models.vaegan.torch_model import (
    VAEGANConfig,
    VAEGANDecoder,
    VAEGANDiscriminator,
    VAEGANEncoder,
)


class VAEGAN(AnomalyModel):
    """VAE-GAN behind the shared interface; scores: ``l1`` (reference) and ``feature``."""

    config_class = VAEGANConfig
    latent_gaussian: FeatureGaussian  # with latent_scores
    critic_gaussian: FeatureGaussian

    @property
    def name(self) -> str:
        return "vaegan"

    def __init__(self, config: VAEGANConfig, train: TrainConfig | None = None) -> None:
        super().__init__(config, train)
        self.cfg = config
        if config.uncertainty and config.pixel_weight <= 0:
            raise ValueError("uncertainty needs pixel_weight > 0 (its only training signal)")
        extra = levels_beyond_reference(config.image_size)
        strides = max(len(config.discriminator_channels) - 1, len(config.encoder_channels))
        if config.image_size % 2 ** (strides + extra):
            raise ValueError("image_size must be divisible by the networks' total stride")
        self.encoder = VAEGANEncoder(config)
        self.decoder = VAEGANDecoder(config)
        self.discriminator = VAEGANDiscriminator(config)
        if config.init_std is not None:  # the port initialises these two, not its discriminator
            for net in (self.encoder, self.decoder):
                normal_init(net, config.init_std, batchnorm_std=config.init_std)
        if config.latent_scores:
            self.latent_gaussian = FeatureGaussian(config.latent_dim)
            self.critic_gaussian = FeatureGaussian(config.discriminator_channels[-1])
        self.automatic_optimization = False

    def own_score_names(self) -> tuple[str, ...]:
        names: tuple[str, ...] = ("l1", "feature")
        if self.cfg.lowpass_sigma > 0:
            names = (*names, "lowpass")
        if self.cfg.latent_scores:
            names = (*names, "latent", "critic")
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
        z = mu + self.randn_like(mu) * torch.exp(0.5 * logvar)
        x_tilde, pixel_logvar = self.decoder.with_logvar(z)
        x_prior = self.decoder(self.randn_like(mu))
        kl = -0.5 * torch.mean(1 + logvar - mu.square() - logvar.exp())
        pixel = (
            (x_tilde - x).abs().mean()
            if pixel_logvar is None
            else heteroscedastic_loss(x_tilde - x, pixel_logvar)
        )
        return {"mu": mu, "x_tilde": x_tilde, "x_prior": x_prior, "kl": kl, "pixel": pixel}

    def training_step(self, batch: Any, batch_idx: int) -> None:
        x = self.to_signed(self.training_images(batch)[0])
        if self.cfg.losses == "port":
            self._port_step(x)
            return
        opt_e, opt_g, opt_d = self.optimizers()  # type: ignore[attr-defined]
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

    def _discriminator_bce(
        self, x: torch.Tensor, x_tilde: torch.Tensor, x_prior: torch.Tensor
    ) -> torch.Tensor:
        """BCE(D(x), 1) + BCE(D(x~), 0) + BCE(D(G(z_p)), 0)."""
        ones = torch.ones(x.shape[0], device=x.device)
        zeros = torch.zeros_like(ones)
        bce = F.binary_cross_entropy_with_logits
        return (
            bce(self.discriminator(x)[0], ones)
            + bce(self.discriminator(x_tilde)[0], zeros)
            + bce(self.discriminator(x_prior)[0], zeros)
        )

    def _port_step(self, x: torch.Tensor) -> None:
        """One step as the PyTorch port the study used: discriminator, then decoder with the
        saturating ``gamma * rec - gan`` loss through the updated discriminator, then encoder
        (KL + 5 * rec) on a fresh forward pass with a new latent sample."""
        opt_e, opt_g, opt_d = self.optimizers()  # type: ignore[attr-defined]
        out = self._losses(x)
        x_tilde, x_prior = out["x_tilde"], out["x_prior"]
        loss_d = self._discriminator_bce(x, x_tilde.detach(), x_prior.detach())
        opt_d.zero_grad()
        self.set_gradients(loss_d, self.discriminator)
        opt_d.step()

        self.discriminator.requires_grad_(False)
        gan = self._discriminator_bce(x, x_tilde, x_prior)
        feature_loss = F.mse_loss(self.discriminator(x_tilde)[1], self.discriminator(x)[1])
        loss_g = self.cfg.gamma * feature_loss - gan + self.cfg.pixel_weight * out["pixel"]
        opt_g.zero_grad()
        self.set_gradients(loss_g, self.decoder)
        opt_g.step()

        fresh = self._losses(x)
        encoder_feature = F.mse_loss(
            self.discriminator(fresh["x_tilde"])[1], self.discriminator(x)[1]
        )
        self.discriminator.requires_grad_(True)
        loss_e = (
            self.cfg.kl_weight * fresh["kl"]
            + self.cfg.encoder_feature_weight * encoder_feature
            + self.cfg.pixel_weight * fresh["pixel"]
        )
        opt_e.zero_grad()
        self.set_gradients(loss_e, self.encoder)
        opt_e.step()
        self.log_dict(
            {
                "train/loss_d": loss_d.detach(),
                "train/kl": fresh["kl"].detach(),
                "train/feature": feature_loss.detach(),
                "train/gan_g": (-gan).detach(),
                "train/pixel": out["pixel"].detach(),
            },
            prog_bar=False,
        )

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x = self.to_signed(self.batch_images(batch))
        mu, _ = self.encoder(x)
        recon = self.decoder(mu)
        # Halved: the networks work in [-1, 1], the loss is in pixel units of [0, 1].
        self.log("val_loss", (recon - x).abs().mean() / 2, prog_bar=True, sync_dist=True)

    def fit_normal_images(self, batches: Iterable[torch.Tensor], count: int) -> None:
        """With ``latent_scores``: fit the Gaussians of the normal training images' encoder
        means and critic features."""
        if not self.cfg.latent_scores:
            return

        def extract(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            signed = self.to_signed(self.prepare_input(batch))
            return self.encoder(signed)[0], _pooled(self.discriminator(signed)[1])

        latents, critics = gather_features(self, batches, extract)
        self.latent_gaussian.fit(latents)
        self.critic_gaussian.fit(critics)

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
        if self.cfg.latent_scores:
            error_map = result.maps.get("lowpass", result.maps["l1"])
            result.maps["latent"] = result.maps["critic"] = error_map
            result.scores["latent"] = self.latent_gaussian(mu)
            result.scores["critic"] = self.critic_gaussian(_pooled(feat_real))
        return result


def _pooled(features: torch.Tensor) -> torch.Tensor:
    """Convolutional features (N, C, H, W) averaged over positions, in float32: (N, C)."""
    return features.float().mean(dim=(2, 3))
