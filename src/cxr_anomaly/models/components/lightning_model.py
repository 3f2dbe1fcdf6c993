"""The Lightning base every model derives from: The interface every model answers, so evaluation
never needs to know which model it holds.

``infer(x)`` -> an :class:`Inference`: the normal-looking reconstruction of ``x`` (``None`` for
a model that detects without reconstructing), per-pixel anomaly maps (N, 1, H, W; larger = more
anomalous) and image scores (N,) by name (by default the mean absolute error, as in the
reference study). The package calls it through :mod:`cxr_anomaly.runtime.inference` only;
``reconstruct``, ``anomaly_map`` and ``score`` are conveniences for interactive use, each one
whole ``infer`` call (a whole diffusion run for AnoDDPM), so take what you need from one
``infer`` instead of calling two of them.

Inputs are (N, 1, H, W) float tensors in [0, 1]. At test time a model is deterministic: eval
mode, posterior means instead of sampled latents, EMA weights where trained, and noise drawn from
an explicit seeded generator, so a score never depends on which images share its batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, ClassVar

import lightning as L
import torch
import torch.distributed as dist

from cxr_anomaly.core.config import TrainConfig
from cxr_anomaly.core.filters import smooth
from cxr_anomaly.core.normalise import fuse, zscore
from cxr_anomaly.core.sizes import at_side
from cxr_anomaly.data.augment import augment
from cxr_anomaly.models.components.base import (
    Inference,
    ModelConfig,
    SeededDropout,
    add_lowpass_score,
)
from cxr_anomaly.models.components.maps import image_score, l1_map
from cxr_anomaly.models.components.pixel_statistics import PIXEL_Z_SCORE, PixelStatistics


def _average_in_place(tensors: list[torch.Tensor]) -> None:
    """Replace each tensor by its mean over all processes (one all-reduce); no-op alone."""
    if not tensors or not (dist.is_available() and dist.is_initialized()):
        return
    if dist.get_world_size() == 1:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for tensor in tensors:
        tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
        offset += tensor.numel()


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average the gradients of ``params`` over all processes; no-op alone."""
    _average_in_place([p.grad for p in params if p.grad is not None])


def average_buffers(module: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm statistics) over all processes; no-op alone.

    SyncBatchNorm needs GPUs; on CPUs each rank's statistics would drift apart, so they are
    averaged after every step and every rank keeps identical weights and buffers.
    """
    _average_in_place([b for b in module.buffers() if b.is_floating_point()])


class AnomalyModel(L.LightningModule, ABC):
    """Base of every model: a thin Lightning module around plain ``torch`` networks."""

    config_class: ClassVar[type[ModelConfig]]
    has_reconstruction: ClassVar[bool] = True
    #: Why the model's scoring cannot be exported as one graph (None: it can).
    export_refusal: ClassVar[str | None] = None

    def __init__(self, config: ModelConfig, train: TrainConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.train_config = train or TrainConfig()
        # Row 0: means, row 1: standard deviations of the fused scores on normal images.
        self.fusion_stats: torch.Tensor
        stats = torch.stack([torch.zeros(len(config.fuse)), torch.ones(len(config.fuse))])
        self.register_buffer("fusion_stats", stats)
        self.pixel_statistics = (
            PixelStatistics(config.image_size) if config.pixel_z_of is not None else None
        )
        # Training noise: a CPU generator (small draws, augmentation, pasting) and one on the
        # model's device (image-sized noise, latents, dropout), both from reseed_noise.
        self._noise: torch.Generator | None = None
        self._device_noise: torch.Generator | None = None

    # -- the interface -------------------------------------------------------------------------

    @property
    @abstractmethod
    def name(self) -> str:
        """The model's name in the registry (``anoddpm-simplex``, not the class's name)."""

    @property
    def exportable(self) -> bool:
        """Whether ``infer`` is one network pass that ``cxr-anomaly export`` can write."""
        return self.export_refusal is None

    def score_names(self) -> tuple[str, ...]:
        """Names of the scores :meth:`infer` returns; the first is the reference score."""
        names = self.own_score_names()
        if self.pixel_statistics is not None:
            names = (*names, PIXEL_Z_SCORE)
        return (*names, "fused") if self.config.fuse else names

    @abstractmethod
    def own_score_names(self) -> tuple[str, ...]:
        """The scores the model computes itself (``fused`` comes on top)."""

    def set_fusion_stats(self, means: list[float], stds: list[float]) -> None:
        """Normal-image mean and spread of each score in ``config.fuse`` (calibration)."""
        stats = torch.tensor([means, [s if s > 0 else 1.0 for s in stds]], dtype=torch.float32)
        self.fusion_stats.copy_(stats.to(self.fusion_stats.device))

    def _fuse(self, maps: dict[str, torch.Tensor], scores: dict[str, torch.Tensor]) -> None:
        """Add the ``fused`` score and map (see :class:`ModelConfig`)."""
        mean, std = self.fusion_stats.float()
        names = self.config.fuse
        scores["fused"] = fuse([zscore(scores[n], mean[i], std[i]) for i, n in enumerate(names)])
        maps["fused"] = fuse([zscore(maps[n], mean[i], std[i]) for i, n in enumerate(names)])

    @abstractmethod
    def _infer(self, x: torch.Tensor) -> Inference:
        """Inference on ``x`` (in [0, 1]) in eval mode without gradients; maps unsmoothed."""

    @torch.no_grad()
    def infer(self, x: torch.Tensor) -> Inference:
        """Reconstruction, anomaly maps and image scores for ``x`` (N, 1, H, W) in [0, 1]."""
        was_training = self.training
        self.eval()
        try:
            result = self._infer(self.prepare_input(x))
        finally:
            self.train(was_training)
        maps = {
            name: smooth(value.float().contiguous(), at_side(self.config.map_sigma, x.shape[-1]))
            for name, value in result.maps.items()
        }
        scores = {name: value.float() for name, value in result.scores.items()}
        recon = result.reconstruction
        if self.pixel_statistics is not None and self.config.pixel_z_of is not None:
            z_map, scores[PIXEL_Z_SCORE] = self.pixel_statistics(maps[self.config.pixel_z_of])
            maps[PIXEL_Z_SCORE] = z_map
        if self.config.fuse:
            self._fuse(maps, scores)
        return Inference(
            reconstruction=None if recon is None else recon.float().contiguous(),
            maps=maps,
            scores=scores,
        )

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor | None:
        """The normal-looking version of ``x`` in [0, 1], or ``None`` if the model has none."""
        return self.infer(x).reconstruction

    def anomaly_map(self, x: torch.Tensor, score: str | None = None) -> torch.Tensor:
        """Per-pixel anomaly evidence (N, 1, H, W) for the named (or default) score."""
        maps = self.infer(x).maps
        return maps[self._score_name(score, maps)]

    def score(self, x: torch.Tensor, score: str | None = None) -> torch.Tensor:
        """One anomaly score per image (N,) for the named (or default) score."""
        scores = self.infer(x).scores
        return scores[self._score_name(score, scores)]

    def _score_name(self, score: str | None, available: dict[str, torch.Tensor]) -> str:
        name = score or self.config.default_score
        if name not in available:
            raise ValueError(
                f"{self.name} has no score {name!r}; choose from {', '.join(available)}"
            )
        return name

    # -- helpers shared by the models ------------------------------------------------------------

    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Move ``x`` to the model's device, float32, channels-last when configured."""
        x = x.to(self.device, torch.float32)
        if self.train_config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def setup(self, stage: str) -> None:
        if self.train_config.channels_last:
            self.to(memory_format=torch.channels_last)

    @staticmethod
    def to_signed(x: torch.Tensor) -> torch.Tensor:
        """[0, 1] -> [-1, 1] (the networks' tanh range)."""
        return x * 2 - 1

    @staticmethod
    def to_unit(x: torch.Tensor) -> torch.Tensor:
        """[-1, 1] -> [0, 1], clipped."""
        return ((x + 1) / 2).clamp(0, 1)

    def reconstruction_inference(
        self, x: torch.Tensor, reconstruction: torch.Tensor, lowpass_sigma: float = 0.0
    ) -> Inference:
        """The L1 map and score of a reconstruction (``x`` and ``reconstruction`` in [0, 1]),
        and with ``lowpass_sigma`` > 0 the ``lowpass`` one (see :func:`add_lowpass_score`)."""
        amap = l1_map(x.float(), reconstruction.float())
        result = Inference(
            reconstruction=reconstruction,
            maps={"l1": amap},
            scores={"l1": image_score(amap)},
        )
        add_lowpass_score(result, "lowpass", x, reconstruction, lowpass_sigma)
        return result

    def set_gradients(
        self, loss: torch.Tensor, module: torch.nn.Module, retain_graph: bool = False
    ) -> None:
        """Set the gradients of ``module``'s parameters from ``loss`` alone, averaged over ranks.

        GANs update several networks from different losses that share one graph. The gradients
        are computed with ``torch.autograd.grad`` for exactly those parameters and averaged over
        the processes explicitly, so each network is synchronised under DDP whatever the other
        losses touched (DDP's own gradient hooks are never involved).
        """
        params = [p for p in module.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
        for param, grad in zip(params, grads, strict=True):
            param.grad = torch.zeros_like(param) if grad is None else grad
        average_gradients(params)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Keep BatchNorm statistics identical on every rank, then update the EMA if any."""
        with torch.no_grad():
            average_buffers(self)
        self.update_ema()

    def reseed_noise(self, seed: int) -> None:
        """Seed the model's training noise. Training calls it at each epoch start with a seed
        of (run seed, epoch, rank), so an epoch's noise depends on nothing else: a run resumed
        from an epoch checkpoint draws what the uninterrupted run drew, and no global random
        state is involved."""
        self._noise = torch.Generator().manual_seed(seed)
        self._device_noise = torch.Generator(device=self.device).manual_seed(seed)
        for module in self.modules():
            if isinstance(module, SeededDropout):
                module.generator = self._device_noise

    @property
    def noise(self) -> torch.Generator:
        """The CPU generator of training noise (seeded from the run seed until reseeded)."""
        if self._noise is None:
            self.reseed_noise(self.train_config.seed)
        assert self._noise is not None
        return self._noise

    @property
    def device_noise(self) -> torch.Generator:
        """The generator of training noise on the model's device."""
        if self._device_noise is None or self._device_noise.device != self.device:
            self.reseed_noise(self.train_config.seed)
        assert self._device_noise is not None
        return self._device_noise

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        """Standard normal training noise shaped like ``x``, from :attr:`device_noise`."""
        return torch.randn(x.shape, generator=self.device_noise, device=x.device, dtype=x.dtype)

    def fit_normal_images(self, batches: Iterable[torch.Tensor], count: int) -> None:
        """After training: fit what the model keeps of the normal training images (AnatPaste's
        Gaussians of its features), from ``count`` images in batches (B, 1, S, S) in [0, 1].
        Training calls it with the best weights restored; most models keep nothing."""

    @torch.no_grad()
    def fit_pixel_statistics(self, batches: Iterable[torch.Tensor]) -> None:
        """With ``pixel_z_of``: fit each pixel's normal mean and spread of that score's map on
        normal images (batches (B, 1, S, S) in [0, 1]); training calls it after
        :meth:`fit_normal_images`; with ``pixel_z_images``, on that many images at most."""
        if self.pixel_statistics is None or self.config.pixel_z_of is None:
            return
        cap, fitted = self.config.pixel_z_images, 0
        for batch in batches:
            batch = batch if cap is None else batch[: cap - fitted]
            if len(batch) == 0:
                break
            self.pixel_statistics.accumulate(self.infer(batch).maps[self.config.pixel_z_of])
            fitted += len(batch)
        self.pixel_statistics.finish()

    def update_ema(self) -> None:
        """One EMA step after each optimisation step (models with an EMA override this)."""

    def batch_images(self, batch: Any) -> torch.Tensor:
        """The image tensor of a data-loader batch (images, indices)."""
        images = batch[0] if isinstance(batch, list | tuple) else batch
        return self.prepare_input(images)

    def training_images(
        self, batch: Any, masks: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A training batch's images (and ``masks``, moved alike) after ``train.augment``."""
        x, moved = augment(self.batch_images(batch), self.train_config.augment, masks, self.noise)
        return self.prepare_input(x), moved
