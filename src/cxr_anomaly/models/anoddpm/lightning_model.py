"""AnoDDPM (Wyatt et al., CVPR Workshops 2022): partial-diffusion reconstruction.

A denoising diffusion model trained on normal images; an image is noised to a moderate depth and
denoised back, which removes what the model does not know as normal. Simplex noise (low
frequencies) removes larger anomalies than Gaussian noise. The network and schedule are MONAI's
``DiffusionModelUNet`` and ``DDPMScheduler``; the reverse steps take explicit noise
(``diffusion.py``), drawn per image from a generator seeded by the image itself, so that a
reconstruction never depends on which images share the batch. Simplex fields are drawn several
steps ahead (:mod:`~cxr_anomaly.models.anoddpm.noise_stream`), so the loop does not wait on the
host at
every step.

The UNet's layout follows the image size: ``channels`` are its levels at 64x64, a larger image
gets one more level of ``channels[0]`` in front per doubling of its side (the reference's
larger images add levels the same way), so the bottleneck stays at the same feature-map side,
and attention sits at the feature-map sides named in ``attention_resolutions``, at every size.
Attention runs through PyTorch's scaled-dot-product attention (flash or memory-efficient
kernels where the device has them).

``uncertainty`` (Mao et al., MICCAI 2020, carried over to diffusion) gives the UNet a second
output channel: the per-pixel log-variance ``s`` of its one-step estimate of the clean image,
trained with ``mean(exp(-s) (x0 - x0^)^2 + s)`` beside the noise loss (the noise estimate is
detached there, so the denoiser learns exactly as without it). At test time ``s`` is read at the
first reverse step (the reconstruction depth) and the score ``uncertainty`` is the mean of
``exp(-s) (x - x~)^2``: reconstruction error where the model expected to reconstruct well.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler

from cxr_anomaly.core.config import TrainConfig
from cxr_anomaly.core.hardware import cpu_has_bf16
from cxr_anomaly.core.sizes import REFERENCE_SIDE, at_side
from cxr_anomaly.models.anoddpm.diffusion import partial_diffusion
from cxr_anomaly.models.anoddpm.noise import SimplexParams, simplex_noise_like
from cxr_anomaly.models.anoddpm.noise_stream import PerImageSimplexNoise
from cxr_anomaly.models.components.base import Inference, ModelConfig, add_lowpass_score
from cxr_anomaly.models.components.ema import EMA
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.models.components.maps import image_score, l1_map
from cxr_anomaly.models.components.uncertainty import (
    SCORE_NAME as UNCERTAINTY_SCORE,
)
from cxr_anomaly.models.components.uncertainty import (
    add_uncertainty_score,
    heteroscedastic_loss,
    split_logvar,
)

NOISE_TYPES = ("gaussian", "simplex")


@dataclass
class AnoDDPMConfig(ModelConfig):
    """AnoDDPM hyperparameters (defaults: the reference "paper" configuration at 64x64).

    ``depth`` is the reconstruction depth of the ``l1`` score; each of ``extra_depths`` adds a
    score ``l1@<depth>``, and ``fuse: [l1, l1@100, ...]`` averages them z-normalised (the
    reference's multi-depth "detection" mode, made comparable across depths).

    ``lowpass_sigma`` > 0 adds the score ``lowpass`` (and ``lowpass@<depth>`` per extra depth):
    the L1 error of image and reconstruction both blurred with that sigma (in pixels at 64x64,
    scaled with the image size). Gaussian noise leaves an image's coarse structure in place
    and destroys its fine texture, which the reconstruction then invents anew: the plain L1
    error measures mostly how much texture an image has, the blurred one what the model changed.

    Training draws timesteps below ``depth`` with ``train_below_depth``, else below
    ``train_timesteps`` (the reference's ``sample_distance``, 800 of 2000), else below
    ``timesteps``; ``gradient_clip_norm`` clips the gradient norm before each step.

    ``channels`` are the UNet's levels at 64x64 (one more level of ``channels[0]`` in front per
    doubling of a larger side); ``attention_resolutions`` the feature-map sides, in pixels,
    whose levels attend (MONAI's middle block attends at the bottleneck too).
    ``num_head_channels`` is one value or one per level at 64x64 (the reference's two heads per
    attention block are half of each level's channels); ``resblock_updown`` down- and upsamples
    inside residual blocks, as the reference's ``biggan_updown`` does.

    ``simplex_frequency`` is the coarsest octave's feature size in pixels at 64x64, scaled with
    the image side (so the noise covers the same fraction of the image at every size).
    ``simplex_normalise`` scales the simplex octave sum to unit variance (as Gaussian noise
    has, which the DDPM schedule assumes); ``false`` adds the raw octave sum, as the reference
    code does (standard deviation about 0.5 at its six octaves and persistence 0.8).

    ``noise_draws`` > 1 makes each reconstruction the mean of that many partial-diffusion
    reconstructions, each from its own noise (seeds ``noise_seed``, ``noise_seed + 1``, ...):
    one draw's error map holds the noise's own variation beside the anomaly, and averaging the
    draws removes most of it, at ``noise_draws`` times the sampling cost.
    """

    image_size: int = 64
    noise: str = "gaussian"
    channels: tuple[int, ...] = (64, 128, 192, 256)
    attention_resolutions: tuple[int, ...] = (16, 8)
    num_res_blocks: int = 2
    num_head_channels: int | tuple[int, ...] = 64
    norm_num_groups: int = 32
    resblock_updown: bool = False
    timesteps: int = 2000
    schedule: str = "linear_beta"
    beta_start: float = 0.00005
    beta_end: float = 0.01
    lr: float = 1e-4
    ema_decay: float | None = 0.9999
    train_below_depth: bool = False
    train_timesteps: int | None = None
    gradient_clip_norm: float | None = None
    depth: int = 200
    sampler: str = "ddpm"
    stride: int = 1
    eta: float = 0.0
    extra_depths: tuple[int, ...] = ()
    simplex_octaves: int = 6
    simplex_persistence: float = 0.8
    simplex_frequency: float = 64.0
    simplex_normalise: bool = True
    inference_bf16: bool = True
    noise_seed: int = 0
    noise_draws: int = 1
    uncertainty: bool = False
    lowpass_sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.noise not in NOISE_TYPES:
            raise ValueError(f"noise must be one of {NOISE_TYPES}, got {self.noise!r}")
        if self.sampler not in ("ddpm", "ddim"):
            raise ValueError(f"sampler must be ddpm or ddim, got {self.sampler!r}")
        for depth in (self.depth, *self.extra_depths):
            if not 1 <= depth <= self.timesteps:
                raise ValueError(f"depth {depth} must be between 1 and timesteps")
        if self.lowpass_sigma < 0:
            raise ValueError(f"lowpass_sigma must be >= 0, got {self.lowpass_sigma}")
        if self.noise_draws < 1:
            raise ValueError(f"noise_draws must be >= 1, got {self.noise_draws}")
        if self.train_timesteps is not None and not 1 <= self.train_timesteps <= self.timesteps:
            raise ValueError("train_timesteps must be between 1 and timesteps")
        if self.gradient_clip_norm is not None and self.gradient_clip_norm <= 0:
            raise ValueError("gradient_clip_norm must be > 0 (or null: no clipping)")
        levels = self.unet_channels
        bottleneck = 2 ** (len(levels) - 1)
        if self.image_size % bottleneck:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by {bottleneck}: the UNet "
                f"halves it {len(levels) - 1} times"
            )

    @property
    def extra_levels(self) -> int:
        """Levels in front of ``channels``: one per doubling of the side beyond 64 px."""
        return max(0, (self.image_size // REFERENCE_SIDE).bit_length() - 1)

    @property
    def unet_channels(self) -> tuple[int, ...]:
        """The UNet's channels per level at this image size."""
        return (self.channels[0],) * self.extra_levels + tuple(self.channels)

    @property
    def unet_attention(self) -> tuple[bool, ...]:
        """Whether each level attends: those whose feature-map side is an attention resolution."""
        sides = [self.image_size // 2**level for level in range(len(self.unet_channels))]
        return tuple(side in self.attention_resolutions for side in sides)

    @property
    def unet_head_channels(self) -> int | tuple[int, ...]:
        """``num_head_channels`` per level at this image size."""
        if isinstance(self.num_head_channels, int):
            return self.num_head_channels
        heads = tuple(self.num_head_channels)
        return (heads[0],) * self.extra_levels + heads

    @property
    def training_t_limit(self) -> int:
        """Training draws timesteps in ``[0, training_t_limit)``."""
        if self.train_below_depth:
            return self.depth
        return self.train_timesteps or self.timesteps

    @property
    def simplex(self) -> SimplexParams:
        return SimplexParams(
            octaves=self.simplex_octaves,
            persistence=self.simplex_persistence,
            frequency=at_side(self.simplex_frequency, self.image_size),
        )


def image_seeds(x: torch.Tensor, base_seed: int) -> list[int]:
    """One seed per image from its own pixels (and ``base_seed``): noise follows the image."""
    flat = x.detach().float().cpu().contiguous().view(x.shape[0], -1).numpy()
    seeds = []
    for row in flat:
        digest = hashlib.blake2b(row.tobytes(), digest_size=8, key=str(base_seed).encode())
        seeds.append(int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1))
    return seeds


class AnoDDPM(AnomalyModel):
    """AnoDDPM behind the shared interface; registered as ``anoddpm-gaussian/-simplex``."""

    export_refusal = (
        "its score is a partial-diffusion loop (noise drawn per image from a seed, then tens to "
        "hundreds of denoiser calls), not one network pass; the denoiser alone does not score"
    )
    config_class = AnoDDPMConfig

    @property
    def name(self) -> str:
        return f"anoddpm-{self.cfg.noise}"

    def __init__(self, config: AnoDDPMConfig, train: TrainConfig | None = None) -> None:
        super().__init__(config, train)
        self.cfg = config
        self.unet = DiffusionModelUNet(
            spatial_dims=2,
            in_channels=1,
            out_channels=2 if config.uncertainty else 1,
            channels=config.unet_channels,
            attention_levels=config.unet_attention,
            num_res_blocks=config.num_res_blocks,
            num_head_channels=config.unet_head_channels,
            norm_num_groups=config.norm_num_groups,
            resblock_updown=config.resblock_updown,
            use_flash_attention=True,
        )
        self.scheduler = DDPMScheduler(
            num_train_timesteps=config.timesteps,
            schedule=config.schedule,
            beta_start=config.beta_start,
            beta_end=config.beta_end,
            clip_sample=True,
        )
        self.ema = EMA(self.unet, config.ema_decay) if config.ema_decay else None

    def own_score_names(self) -> tuple[str, ...]:
        names: tuple[str, ...] = ("l1", *(f"l1@{d}" for d in self.cfg.extra_depths))
        if self.cfg.lowpass_sigma > 0:
            names = (*names, "lowpass", *(f"lowpass@{d}" for d in self.cfg.extra_depths))
        return (*names, UNCERTAINTY_SCORE) if self.cfg.uncertainty else names

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.unet.parameters(), lr=self.cfg.lr, weight_decay=0.0)

    # -- noise ------------------------------------------------------------------------------------

    def _training_noise(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.cfg.noise == "gaussian":
            return self.randn_like(x)
        generator = torch.Generator(device=x.device)
        generator.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self.noise).item()))
        return simplex_noise_like(
            x.float(), t, generator, self.cfg.simplex, self.cfg.simplex_normalise
        ).to(x.dtype)

    def _per_image_noise(self, x: torch.Tensor, noise_seed: int) -> Any:
        """A noise function for :func:`partial_diffusion` drawing each image's noise alone."""
        generators = []
        for seed in image_seeds(x, noise_seed):
            generator = torch.Generator(device=x.device)
            generator.manual_seed(seed)
            generators.append(generator)
        if self.cfg.noise == "simplex":
            return PerImageSimplexNoise(
                generators, x.shape[1], self.cfg.simplex, self.cfg.simplex_normalise
            )

        def noise(shape: tuple[int, ...], t: int) -> torch.Tensor:
            return torch.cat(
                [torch.randn((1, *shape[1:]), generator=g, device=x.device) for g in generators]
            )

        return noise

    # -- training ---------------------------------------------------------------------------------

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x0 = self.to_signed(self.training_images(batch)[0])
        t = torch.randint(
            0,
            self.cfg.training_t_limit,
            (x0.shape[0],),
            generator=self.device_noise,
            device=x0.device,
        )
        noise = self._training_noise(x0, t)
        loss = self._loss(self.unet, x0, noise, t)
        self.log("train/loss", loss.detach(), prog_bar=True)
        return loss

    def _loss(
        self, net: torch.nn.Module, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """Noise MSE, plus the uncertainty head's likelihood of the one-step x0 estimate."""
        x_t = self.scheduler.add_noise(original_samples=x0, noise=noise, timesteps=t)
        out = net(x_t, timesteps=t).float()
        loss = F.mse_loss(out[:, :1], noise.float())
        if self.cfg.uncertainty:
            logvar = split_logvar(out)[1]
            assert logvar is not None
            x0_hat = self._predict_x0(out[:, :1].detach(), t, x_t.float())
            loss = loss + heteroscedastic_loss(x0.float() - x0_hat, logvar)
        return loss

    def _predict_x0(self, eps: torch.Tensor, t: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """Per-image one-step estimate of x0 (clipped to [-1, 1]) at timesteps ``t``."""
        alpha_bar = self.scheduler.alphas_cumprod.to(x_t.device)[t].view(-1, 1, 1, 1)
        x0 = (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()
        return x0.clamp(-1, 1)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the gradient norm (``gradient_clip_norm``; the reference clips at 1)."""
        if self.cfg.gradient_clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.unet.parameters(), self.cfg.gradient_clip_norm)

    def update_ema(self) -> None:
        if self.ema is not None:
            self.ema.update(self.unet)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """The training loss of the test-time network at fixed, evenly spread timesteps, with
        the model's own kind of noise drawn from a generator seeded by the batch index."""
        x0 = self.to_signed(self.batch_images(batch))
        net = self.test_unet()
        high = self.cfg.training_t_limit
        generator = torch.Generator(device=x0.device).manual_seed(batch_idx)
        t = torch.linspace(0, high - 1, x0.shape[0], device=x0.device).long()
        if self.cfg.noise == "gaussian":
            noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        else:
            noise = simplex_noise_like(
                x0.float(), t, generator, self.cfg.simplex, self.cfg.simplex_normalise
            )
        loss = self._loss(net, x0, noise, t)
        self.log("val_loss", loss, prog_bar=True, sync_dist=True)

    # -- inference --------------------------------------------------------------------------------

    def test_unet(self) -> torch.nn.Module:
        """The network used at test time: the EMA copy when trained with one."""
        return self.ema.module if self.ema is not None else self.unet

    def _autocast(self, device: torch.device) -> torch.autocast:
        enabled = self.cfg.inference_bf16 and (
            (device.type == "cpu" and cpu_has_bf16())
            or (device.type == "cuda" and torch.cuda.is_bf16_supported())
        )
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

    def reconstruct_at(self, x: torch.Tensor, depth: int) -> torch.Tensor:
        """Partial-diffusion reconstruction of ``x`` (in [0, 1]) from ``depth``; in [0, 1]."""
        return self._reconstruct(x, depth)[0]

    def _reconstruct(self, x: torch.Tensor, depth: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The reconstruction from ``depth`` (the mean over ``noise_draws`` draws) and, with
        ``uncertainty``, the log-variance that the network predicted at the first draw's first
        reverse step."""
        net = self.test_unet()
        x = self.prepare_input(x)
        first_logvar: list[torch.Tensor] = []

        def denoise(sample: torch.Tensor, t: int) -> torch.Tensor:
            steps = torch.full((sample.shape[0],), t, device=sample.device, dtype=torch.long)
            with self._autocast(sample.device):
                out = net(sample, timesteps=steps).float()
            logvar = split_logvar(out)[1]
            if logvar is not None and not first_logvar:
                first_logvar.append(logvar)
            return out[:, :1]

        signed = self.to_signed(x)
        draws = [
            partial_diffusion(
                self.scheduler,
                denoise,
                signed,
                depth,
                self._per_image_noise(x, self.cfg.noise_seed + draw),
                sampler=self.cfg.sampler,
                stride=self.cfg.stride,
                eta=self.cfg.eta,
            )
            for draw in range(self.cfg.noise_draws)
        ]
        recon = torch.stack(draws).mean(0)
        return self.to_unit(recon), (first_logvar[0] if first_logvar else None)

    def _infer(self, x: torch.Tensor) -> Inference:
        recon, logvar = self._reconstruct(x, self.cfg.depth)
        result = self.reconstruction_inference(x, recon, self.cfg.lowpass_sigma)
        if logvar is not None:
            error = self.to_signed(self.prepare_input(x)) - self.to_signed(recon)
            add_uncertainty_score(result, error, logvar)
        for depth in self.cfg.extra_depths:
            extra = self.reconstruct_at(x, depth)
            amap = l1_map(x, extra)
            result.maps[f"l1@{depth}"] = amap
            result.scores[f"l1@{depth}"] = image_score(amap)
            add_lowpass_score(result, f"lowpass@{depth}", x, extra, self.cfg.lowpass_sigma)
        return result
