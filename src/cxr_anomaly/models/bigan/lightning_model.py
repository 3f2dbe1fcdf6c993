"""BiGAN / EGBAD (Zenati et al., "Efficient GAN-Based Anomaly Detection", 2018).

A generator G: z -> x, an encoder E: x -> z, and a discriminator over pairs (x, z) that tells
(x, E(x)) from (G(z), z). The "paper" preset is the reference configuration at 64x64:
encoder of 3x3 convolutions (32, 64, 128; the last two stride 2, BatchNorm, LeakyReLU 0.1) to a
200-dimensional latent; generator from the latent through dense 1024 and 16x16x128 to two 4x4
stride-2 transposed convolutions with tanh; joint discriminator with dropout 0.5 and an
intermediate 1024-unit layer used for feature matching; Adam (lr 1e-5, beta1 0.5), batch 100,
EMA of the weights (decay 0.999) used at test time.

Scores: ``l1`` = mean |x - G(E(x))| (the reference study's), and ``fm`` =
(1 - w) * l1 + w * mean |f(x, E(x)) - f(G(E(x)), E(x))| with w = ``fm_weight`` (EGBAD's
feature-matching score; its map is the L1 map, the feature term having no spatial layout).

``consistency_weight`` (0 in the reference) adds CBiGAN's consistency loss (Carrara et al.,
"Combining GANs and AutoEncoders for efficient anomaly detection", ICPR 2020):
``|x - G(E(x))|`` on the encoder and generator, which makes G(E(x)) a reconstruction of x
within a CPU-sized training budget instead of only a sample with a similar latent code.

``uncertainty`` (needs ``consistency_weight > 0``) makes the generator also predict a per-pixel
log-variance, trains the consistency term as a Gaussian likelihood and adds the
uncertainty-normalised score (see ``models/uncertainty.py``).

``fm_reduction: sum`` weighs the two terms of ``fm`` as EGBAD does, as L1 norms (sums over the
pixels, in [-1, 1], and over the features); ``mean`` (ours) averages them, which keeps their
relative weight independent of the image size. ``separate_batches`` splits each loaded batch in
two halves: the discriminator steps on the first, the encoder and generator on the second, as
the reference steps them on two differently shuffled batches.

``init_std`` initialises every convolution and dense kernel N(0, init_std) (the reference's
0.02); ``batchnorm_momentum`` and ``batchnorm_eps`` are PyTorch's (TensorFlow's defaults, which
the reference uses, are momentum 0.01 and eps 1e-3 here).

``lowpass_sigma`` > 0 adds the score ``lowpass``: the L1 error of image and reconstruction both
blurred with that sigma (pixels at 64x64, scaled with the size); see ``add_lowpass_score``.

``latent_scores`` adds the score ``latent``: the Mahalanobis distance of E(x) to a Gaussian
fitted (Ledoit-Wolf) on the normal training images' codes after training, two-sided where a
reconstruction error is not (see ``models/gaussian.py``); its map is the reconstruction
error's (``lowpass`` when it is computed, else ``l1``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cxr_anomaly.core.config import TrainConfig
from cxr_anomaly.models.bigan.torch_model import BiGANConfig, BiGANNets
from cxr_anomaly.models.components.base import (
    Inference,
    levels_beyond_reference,
    normal_init,
)
from cxr_anomaly.models.components.ema import EMA
from cxr_anomaly.models.components.gaussian import FeatureGaussian, gather_features
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.models.components.uncertainty import (
    add_uncertainty_score,
    heteroscedastic_loss,
)


class BiGAN(AnomalyModel):
    """EGBAD behind the shared interface; scores ``l1`` (reference) and ``fm``."""

    config_class = BiGANConfig
    latent_gaussian: FeatureGaussian  # with latent_scores

    @property
    def name(self) -> str:
        return "bigan"

    def __init__(self, config: BiGANConfig, train: TrainConfig | None = None) -> None:
        super().__init__(config, train)
        self.cfg = config
        if config.uncertainty and config.consistency_weight <= 0:
            raise ValueError("uncertainty needs consistency_weight > 0 (its only training signal)")
        extra = levels_beyond_reference(config.image_size)
        for name, depth in (
            ("encoder", len(config.encoder_channels) - 1 + extra),
            ("generator", len(config.generator_channels) + extra),
            ("discriminator", len(config.discriminator_channels) + extra),
        ):
            if config.image_size % 2**depth:
                raise ValueError(f"image_size must be divisible by the {name}'s total stride")
        self.nets = BiGANNets(config)
        if config.init_std is not None:  # the reference: every kernel N(0, 0.02)
            layers = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
            normal_init(self.nets, config.init_std, layers=layers)
        for layer in self.nets.modules():
            if isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
                layer.momentum, layer.eps = config.batchnorm_momentum, config.batchnorm_eps
        self.ema = EMA(self.nets, config.ema_decay) if config.ema_decay else None
        if config.latent_scores:
            self.latent_gaussian = FeatureGaussian(config.latent_dim)
        self.automatic_optimization = False

    def own_score_names(self) -> tuple[str, ...]:
        names: tuple[str, ...] = ("l1", "fm")
        if self.cfg.lowpass_sigma > 0:
            names = (*names, "lowpass")
        if self.cfg.latent_scores:
            names = (*names, "latent")
        return (*names, "uncertainty") if self.cfg.uncertainty else names

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        betas = (self.cfg.beta1, 0.999)
        return [
            torch.optim.Adam(net.parameters(), lr=self.cfg.lr, betas=betas)
            for net in (self.nets.encoder, self.nets.generator, self.nets.discriminator)
        ]

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_e, opt_g, opt_d = self.optimizers()  # type: ignore[attr-defined]
        nets = self.nets
        x = self.to_signed(self.training_images(batch)[0])
        if self.cfg.separate_batches:  # the reference's D step and G/E step see other images
            half = x.shape[0] // 2
            x_d, x = x[:half], x[half : 2 * half]
        else:
            x_d = x
        shape = (x.shape[0], self.cfg.latent_dim)
        z = torch.randn(shape, generator=self.device_noise, device=x.device)
        ones = torch.ones(x.shape[0], device=x.device)
        zeros = torch.zeros_like(ones)
        bce = F.binary_cross_entropy_with_logits

        z_d = z if x_d is x else self.randn_like(z)
        z_hat = nets.encoder(x_d)
        x_gen = nets.generator(z_d)
        real_logit, _ = nets.discriminator(x_d, z_hat.detach())
        fake_logit, _ = nets.discriminator(x_gen.detach(), z_d)
        loss_d = bce(real_logit, ones) + bce(fake_logit, zeros)
        opt_d.zero_grad()
        self.set_gradients(loss_d, nets.discriminator)
        opt_d.step()

        if x_d is not x:
            z_hat, x_gen = nets.encoder(x), nets.generator(z)
        nets.discriminator.requires_grad_(False)
        real_logit, _ = nets.discriminator(x, z_hat)
        fake_logit, _ = nets.discriminator(x_gen, z)
        nets.discriminator.requires_grad_(True)
        loss_e = bce(real_logit, zeros)
        loss_g = bce(fake_logit, ones)
        opt_e.zero_grad()
        opt_g.zero_grad()
        if self.cfg.consistency_weight > 0:
            recon, logvar = nets.generator.with_logvar(z_hat)
            error = recon - x
            consistency = (
                error.abs().mean() if logvar is None else heteroscedastic_loss(error, logvar)
            )
            loss_e = loss_e + self.cfg.consistency_weight * consistency
            loss_g = loss_g + self.cfg.consistency_weight * consistency
            self.log("train/consistency", consistency.detach())
        self.set_gradients(loss_e, nets.encoder, retain_graph=True)
        self.set_gradients(loss_g, nets.generator)
        opt_e.step()
        opt_g.step()
        self.log_dict(
            {
                "train/loss_d": loss_d.detach(),
                "train/loss_e": loss_e.detach(),
                "train/loss_g": loss_g.detach(),
            },
        )

    def update_ema(self) -> None:
        if self.ema is not None:
            self.ema.update(self.nets)

    def test_nets(self) -> BiGANNets:
        """The networks used at test time: the EMA copy when trained with one."""
        return self.ema.module if self.ema is not None else self.nets  # type: ignore[return-value]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        nets = self.test_nets()
        x = self.to_signed(self.batch_images(batch))
        recon = nets.generator(nets.encoder(x))
        # Halved: the networks work in [-1, 1], the loss is in pixel units of [0, 1].
        self.log("val_loss", (recon - x).abs().mean() / 2, prog_bar=True, sync_dist=True)

    def fit_normal_images(self, batches: Iterable[torch.Tensor], count: int) -> None:
        """With ``latent_scores``: fit the Gaussian of the normal training images' codes."""
        if not self.cfg.latent_scores:
            return
        encoder = self.test_nets().encoder

        def extract(batch: torch.Tensor) -> tuple[torch.Tensor]:
            return (encoder(self.to_signed(self.prepare_input(batch))),)

        (codes,) = gather_features(self, batches, extract)
        self.latent_gaussian.fit(codes)

    def _infer(self, x: torch.Tensor) -> Inference:
        nets = self.test_nets()
        signed = self.to_signed(x)
        z_hat = nets.encoder(signed)
        recon_signed, logvar = nets.generator.with_logvar(z_hat)
        result = self.reconstruction_inference(
            x, self.to_unit(recon_signed), self.cfg.lowpass_sigma
        )
        if logvar is not None:
            add_uncertainty_score(result, signed - recon_signed, logvar)
        _, feat_real = nets.discriminator(signed, z_hat)
        _, feat_recon = nets.discriminator(recon_signed, z_hat)
        w = self.cfg.fm_weight
        if self.cfg.fm_reduction == "sum":  # EGBAD: L1 norms, pixels in [-1, 1]
            pixel_term = (signed - recon_signed).abs().flatten(1).sum(1)
            feature_term = (feat_real - feat_recon).abs().sum(1)
        else:
            pixel_term = result.scores["l1"]
            feature_term = (feat_real - feat_recon).abs().mean(1)
        result.maps["fm"] = result.maps["l1"]
        result.scores["fm"] = (1 - w) * pixel_term + w * feature_term
        if self.cfg.latent_scores:
            result.maps["latent"] = result.maps.get("lowpass", result.maps["l1"])
            result.scores["latent"] = self.latent_gaussian(z_hat)
        return result
