"""AnatPaste (Sato et al. 2023, "AnatPaste: Anatomy-aware self-supervised learning for anomaly
detection in chest radiographs").

A CNN trained from scratch to tell normal images from the same images with synthetic in-lung
anomalies: a patch cut from a random image of the batch, intensity-jittered and pasted inside a
lung mask found by thresholding after contrast equalisation, with blurred edges (see
:mod:`cxr_anomaly.models.lungs`). The network never sees a real anomaly; what it learns to
notice makes its features sensitive to them.

After training, the normal training images fit two Gaussians with Ledoit-Wolf covariances: one
of the image embeddings (the globally pooled last features, L2-normalised as in the reference
code) and one shared by every location of a feature map (``patch_stage``, by default the last
stage's). Both are buffers, saved with the weights. Scores:

* ``mahalanobis`` (the reference score): Mahalanobis distance of the image embedding to the
  normal embeddings,
* ``patch_max``: the largest patch-level Mahalanobis distance,
* ``logit``: the classifier's own "pasted" logit,
* ``multiscale``: Mahalanobis distance of the globally pooled features of every stage, each
  L2-normalised and concatenated (a third Gaussian, fitted like the others): the last stage
  learns what tells pasted patches apart, the earlier ones keep the texture statistics at finer
  scales, where diffuse opacities change an image.
* ``mask`` (with ``mask_weight``): the largest probability, after a 3 x 3 average, that a small
  head trained to find the pasted patch gives a location; its map is that probability.
* ``dense`` (with ``dense_stages``): one Gaussian per location of the finer stages' feature maps
  (PaDiM): the largest location distance, after a 3 x 3 average. Its map is that distance grid,
  a finer one than the patch map, where a chest's fixed layout tells apex from base.

Every other score's map is the patch-level distance map, upsampled bilinearly to the image size. The
model has no reconstruction (``reconstruct`` returns ``None``).

The "paper" preset is a ResNet-18-sized network (four stages of two residual blocks, 64 to 512
channels) with a two-layer projection head; the reference uses torchvision's ResNet-18 at 256
pixels, SGD and an eight-layer head. The "quick" preset is a plain four-layer CNN for CPUs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cxr_anomaly.core.config import TrainConfig
from cxr_anomaly.data.augment import augment
from cxr_anomaly.data.lungs import lung_masks
from cxr_anomaly.models.anatpaste.paste import anat_paste
from cxr_anomaly.models.anatpaste.strokes import draw_strokes
from cxr_anomaly.models.anatpaste.torch_model import (
    DENSE_SCORE,
    MASK_SCORE,
    AnatPasteConfig,
    AnatPasteNet,
    NetOutput,
)
from cxr_anomaly.models.components.base import Inference
from cxr_anomaly.models.components.gaussian import LocationGaussians, ledoit_wolf, mahalanobis
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.models.components.maps import peak_score

log = logging.getLogger(__name__)


class AnatPaste(AnomalyModel):
    """AnatPaste behind the shared interface; scores: mahalanobis, patch_max, logit."""

    config_class = AnatPasteConfig
    has_reconstruction = False

    @property
    def name(self) -> str:
        return "anatpaste"

    embed_mean: torch.Tensor
    embed_precision: torch.Tensor
    patch_mean: torch.Tensor
    patch_precision: torch.Tensor
    multi_mean: torch.Tensor
    multi_precision: torch.Tensor
    n_fitted: torch.Tensor

    def __init__(self, config: AnatPasteConfig, train: TrainConfig | None = None) -> None:
        super().__init__(config, train)
        self.cfg = config
        self.net = AnatPasteNet(config)
        dim, patch_dim = config.channels[-1], config.channels[config.patch_index]
        self.register_buffer("embed_mean", torch.zeros(dim))
        self.register_buffer("embed_precision", torch.eye(dim))
        self.register_buffer("patch_mean", torch.zeros(patch_dim))
        self.register_buffer("patch_precision", torch.eye(patch_dim))
        self.register_buffer("multi_mean", torch.zeros(sum(config.channels)))
        self.register_buffer("multi_precision", torch.eye(sum(config.channels)))
        self.dense = (
            LocationGaussians(
                config.dense_grid**2, sum(config.channels[i] for i in config.dense_stages)
            )
            if config.dense_stages
            else None
        )
        # How many normal images fitted the Gaussians (0: not fitted yet).
        self.register_buffer("n_fitted", torch.zeros(()))
        self._warned_unfitted = False
        self._lung_cache: dict[tuple[str, int], np.ndarray] = {}

    def own_score_names(self) -> tuple[str, ...]:
        return self.cfg.score_names

    # -- training ---------------------------------------------------------------------------------

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.AdamW(
            self.net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay
        )
        if self.cfg.lr_schedule == "constant":
            return optimizer
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler}}

    def on_fit_start(self) -> None:
        self._lung_cache.clear()

    def batch_lungs(self, batch: Any, x: torch.Tensor, split: str) -> torch.Tensor:
        """Lung masks of a batch's images, cached by (split, index) during a fit.

        The masks depend on the image alone, so each image's is computed once per fit and kept
        bit-packed (an eighth of a byte per pixel).
        """
        indices = batch[1] if isinstance(batch, list | tuple) and len(batch) > 1 else None
        if indices is None:
            return lung_masks(x)
        keys = [(split, int(i)) for i in torch.as_tensor(indices).tolist()]
        missing = [j for j, key in enumerate(keys) if key not in self._lung_cache]
        if missing:
            fresh = lung_masks(x[missing]).cpu().numpy()
            for j, mask in zip(missing, fresh, strict=True):
                self._lung_cache[keys[j]] = np.packbits(mask)
        shape = x.shape[1:]
        count = int(np.prod(shape))
        masks = np.stack(
            [np.unpackbits(self._lung_cache[key], count=count).reshape(shape) for key in keys]
        )
        return torch.from_numpy(masks.astype(bool)).to(x.device)

    def _pasted_loss(
        self, x: torch.Tensor, lungs: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """BCE of normal (label 0) vs AnatPasted (label 1; with ``stroke_prob``, some copies
        get a curve or spots instead) copies of ``x`` (plus, with
        ``mask_weight``, the per-location BCE of where the paste lies), and what to log."""
        augmented, blend = anat_paste(x, lungs, generator, self.cfg.paste)
        if self.cfg.stroke_prob > 0:
            stroked, stroke_blend = draw_strokes(x, lungs, generator)
            chosen = torch.rand(len(x), generator=generator) < self.cfg.stroke_prob
            chosen = chosen.to(x.device)[:, None, None, None]
            augmented = torch.where(chosen, stroked, augmented)
            blend = torch.where(chosen, stroke_blend, blend)
        out = self.net(self.to_signed(torch.cat([x, augmented])))
        logits = out.logit
        labels = torch.cat([torch.zeros(len(x)), torch.ones(len(x))]).to(logits.device)
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        logged = {"accuracy": ((logits.detach() > 0).float() == labels).float().mean()}
        if out.mask_logits is not None:
            mask_logits = out.mask_logits.float()
            pasted = F.adaptive_avg_pool2d(blend.float(), mask_logits.shape[-2:])
            targets = torch.cat([torch.zeros_like(pasted), pasted])
            mask_loss = F.binary_cross_entropy_with_logits(mask_logits, targets)
            loss = loss + self.cfg.mask_weight * mask_loss
            logged["mask_loss"] = mask_loss.detach()
        return loss, logged

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        # Lung masks are found on the stored image (cached) and moved with its augmentation.
        lungs = self.batch_lungs(batch, self.batch_images(batch), "train")
        x, moved_lungs = self.training_images(batch, lungs)
        assert moved_lungs is not None
        loss, logged = self._pasted_loss(x, moved_lungs, self.noise)
        self.log_dict(
            {"train/loss": loss.detach(), **{f"train/{k}": v for k, v in logged.items()}},
            prog_bar=True,
        )
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """The same losses on normal validation images, pasted with a generator fixed per batch."""
        x = self.batch_images(batch)
        generator = torch.Generator().manual_seed(batch_idx)
        loss, logged = self._pasted_loss(x, self.batch_lungs(batch, x, "val"), generator)
        self.log("val_loss", loss, prog_bar=True, sync_dist=True)
        self.log_dict({f"val/{k}": v for k, v in logged.items()}, sync_dist=True)

    def fit_normal_images(self, batches: Iterable[torch.Tensor], count: int) -> None:
        """Fit the normal Gaussians on the training images (and, with augmentation, on
        ``normal_fit_copies`` augmented copies of each)."""
        copies = self.cfg.normal_fit_copies if self.train_config.augment.enabled else 0
        if not copies:
            self.fit_normal(batches, count)
            return
        self.fit_normal(self._with_augmented_copies(batches, copies), count * (copies + 1))

    def _with_augmented_copies(
        self, batches: Iterable[torch.Tensor], copies: int
    ) -> Iterator[torch.Tensor]:
        """Each batch, then ``copies`` augmented versions of it (seeded by the training seed)."""
        generator = torch.Generator().manual_seed(self.train_config.seed)
        for batch in batches:
            yield batch
            for _ in range(copies):
                yield augment(batch, self.train_config.augment, generator=generator)[0]

    @torch.no_grad()
    def fit_normal(self, batches: Iterable[torch.Tensor], count: int | None = None) -> None:
        """Fit the normal Gaussians (mean, Ledoit-Wolf precision) of embeddings and patches
        (image embeddings, multi-scale embeddings, patch features).

        Args:
            batches: normal images, batches (B, 1, H, W) in [0, 1].
            count: the number of images, if known: patch features are then taken at a fixed
                stride so that at most ``max_patch_samples`` fit the patch Gaussian.
        """
        was_training = self.training
        self.eval()
        embeddings: list[np.ndarray] = []
        multiscale: list[np.ndarray] = []
        patches: list[np.ndarray] = []
        step = seen = 0
        try:
            for batch in batches:
                out = self.net(self.to_signed(self.prepare_input(batch)))
                embeddings.append(self._embed(out.embedding).double().cpu().numpy())
                multiscale.append(self._multiscale(out.pooled).double().cpu().numpy())
                features = out.patches
                flat = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
                if step == 0:
                    per_image = flat.shape[0] // max(len(batch), 1)
                    total = (count or 0) * per_image
                    step = max(1, math.ceil(total / self.cfg.max_patch_samples))
                keep = torch.arange((-seen) % step, flat.shape[0], step, device=flat.device)
                seen += flat.shape[0]
                patches.append(flat[keep].double().cpu().numpy())
                if self.dense is not None:
                    self.dense.accumulate(self._dense_features(out))
        finally:
            self.train(was_training)
        if not embeddings:
            raise ValueError("fit_normal needs at least one image")
        embed_mean, embed_precision = ledoit_wolf(np.concatenate(embeddings))
        multi_mean, multi_precision = ledoit_wolf(np.concatenate(multiscale))
        patch_mean, patch_precision = ledoit_wolf(np.concatenate(patches))
        for buffer, value in (
            (self.embed_mean, embed_mean),
            (self.embed_precision, embed_precision),
            (self.multi_mean, multi_mean),
            (self.multi_precision, multi_precision),
            (self.patch_mean, patch_mean),
            (self.patch_precision, patch_precision),
        ):
            buffer.copy_(torch.from_numpy(value).to(buffer.device, buffer.dtype))
        if self.dense is not None:
            self.dense.finish()
        n_images = sum(len(e) for e in embeddings)
        self.n_fitted.fill_(float(n_images))
        log.info(
            "fitted normal Gaussians on %d images (%d patch features)",
            n_images,
            sum(len(p) for p in patches),
        )

    # -- inference --------------------------------------------------------------------------------

    def _embed(self, embedding: torch.Tensor) -> torch.Tensor:
        embedding = embedding.float()
        return F.normalize(embedding, dim=1) if self.cfg.normalize_embeddings else embedding

    def _dense_features(self, out: NetOutput) -> torch.Tensor:
        """The dense stages' feature maps on the finest one's grid, stacked (N, C, g, g)."""
        side = self.cfg.dense_grid
        return torch.cat(
            [
                F.interpolate(out.stages[i].float(), size=(side, side), mode="nearest")
                for i in self.cfg.dense_stages
            ],
            dim=1,
        )

    @staticmethod
    def _multiscale(pooled: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Every stage's pooled features, each L2-normalised (equal weight), concatenated."""
        return torch.cat([F.normalize(p.float(), dim=1) for p in pooled], dim=1)

    def _infer(self, x: torch.Tensor) -> Inference:
        if (
            not self._warned_unfitted
            and not torch.compiler.is_compiling()  # no data-dependent branch in an export
            and not bool(self.n_fitted > 0)
        ):
            log.warning("anatpaste: normal Gaussians not fitted yet; distances are to N(0, I)")
            self._warned_unfitted = True
        out = self.net(self.to_signed(x))
        features = out.patches
        n, channels, height, width = features.shape
        flat = features.float().permute(0, 2, 3, 1).reshape(-1, channels)
        grid = mahalanobis(flat, self.patch_mean, self.patch_precision).view(n, 1, height, width)
        amap = F.interpolate(grid, size=x.shape[-2:], mode="bilinear", align_corners=False)
        scores = {
            "mahalanobis": mahalanobis(
                self._embed(out.embedding), self.embed_mean, self.embed_precision
            ),
            "patch_max": grid.flatten(1).amax(1),
            "logit": out.logit.float(),
            "multiscale": mahalanobis(
                self._multiscale(out.pooled), self.multi_mean, self.multi_precision
            ),
        }
        maps = dict.fromkeys(scores, amap.clamp_min(0.0))
        if self.dense is not None:
            dense = self.dense(self._dense_features(out))
            scores[DENSE_SCORE] = peak_score(dense)
            maps[DENSE_SCORE] = F.interpolate(
                dense, size=x.shape[-2:], mode="bilinear", align_corners=False
            )
        if out.mask_logits is not None:
            probability = torch.sigmoid(out.mask_logits.float())
            scores[MASK_SCORE] = peak_score(probability)
            maps[MASK_SCORE] = F.interpolate(
                probability, size=x.shape[-2:], mode="bilinear", align_corners=False
            )
        return Inference(reconstruction=None, maps=maps, scores=scores)
