"""The anatpaste networks and settings, in plain torch (the Lightning module is
:mod:`.lightning_model`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from cxr_anomaly.core.config import ConfigError
from cxr_anomaly.models.anatpaste.paste import PasteSettings
from cxr_anomaly.models.components.base import ModelConfig

SCORE_NAMES = ("mahalanobis", "patch_max", "logit", "multiscale")


DENSE_SCORE = "dense"


MASK_SCORE = "mask"


LR_SCHEDULES = ("cosine", "constant")


MASK_HEADS = ("grid", "decoder")


@dataclass
class AnatPasteConfig(ModelConfig):
    """AnatPaste hyperparameters (defaults: the "paper" preset).

    Attributes:
        image_size: image side (set from the data; the network itself is size-agnostic).
        channels: channels of the stride-2 stages; the image embedding has ``channels[-1]``.
        residual_blocks: residual blocks after each stage's strided convolution.
        head_units: hidden layers of the projection head before the binary output.
        patch_stage: index of the stage whose features give the patch-level map (its stride is
            ``2 ** (stage + 1)``); negative counts from the last. The last stage's coarse grid
            (4 x 4 at 64 pixels) localised better than the finer ones in our measurements.
        normalize_embeddings: L2-normalise image embeddings before the Gaussian fit.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        lr_schedule: ``cosine`` (annealed to zero over ``max_epochs``) or ``constant``.
        paste_area: patch area range, as a fraction of the image area.
        paste_aspect: the patch aspect ratio lies in ``[paste_aspect, 1 / paste_aspect]``.
        paste_jitter: brightness and contrast jitter of the pasted patch.
        paste_opacity: range of the blend weight inside the pasted shape.
        paste_blur: range of the blend mask's edge blur, as a fraction of the image side.
        paste_ellipse_prob: probability of an elliptic rather than rectangular pasted shape.
        paste_shift_prob: probability that the "patch" is the image's own region with its
            brightness shifted (denser or more lucent tissue in place) instead of another
            image's texture; 0 keeps AnatPaste's pastes only.
        paste_shift: range of that brightness shift's size (its sign is drawn at random).
        max_patch_samples: at most this many patch feature vectors fit the patch Gaussian.
        normal_fit_copies: augmented copies (``train.augment``) of each training image that
            join the normal Gaussians' fit, so that the acquisition variation the network was
            trained to ignore also counts as normal in the distances; 0 fits on the images alone.
        dense_stages: stages whose feature maps, brought to the finest one's grid and stacked,
            fit one Gaussian per location (PaDiM); adds the score ``dense`` (the largest
            location distance after a 3 x 3 average) and its map. Empty: off.
        mask_weight: weight of a per-pixel loss beside the image one: a small head on every
            stage's features, on the second stage's grid, learns where the pasted patch lies
            (the blend weights as soft targets; zero on the untouched copies), as DRAEM's
            discriminative network and CutPaste's localisation do. Adds the score ``mask``
            (the largest predicted probability after a 3 x 3 average) and its map, the
            predicted probability. 0: no head.
        mask_head: the head's form: ``grid`` (every stage brought to the second stage's grid,
            16 x 16 at 64 pixels, and read out) or ``decoder`` (a U-Net-style path from the
            last stage up to the first stage's grid, 32 x 32 at 64 pixels, joining each
            stage's features on the way, as DRAEM's discriminative network does).
        stroke_prob: probability that an image's synthetic anomaly is a thin dense curve or
            one or two small dense spots (:mod:`.strokes`) instead of a pasted patch; 0 keeps
            AnatPaste's pastes only.
    """

    default_score: str = "mahalanobis"
    image_size: int = 64
    channels: tuple[int, ...] = (64, 128, 256, 512)
    residual_blocks: int = 2
    head_units: tuple[int, ...] = (512, 128)
    patch_stage: int = -1
    normalize_embeddings: bool = True
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"
    paste_area: tuple[float, ...] = (0.02, 0.1)
    paste_aspect: float = 0.3
    paste_jitter: float = 0.1
    paste_opacity: tuple[float, ...] = (0.6, 1.0)
    paste_blur: tuple[float, ...] = (0.005, 0.03)
    paste_ellipse_prob: float = 0.5
    paste_shift_prob: float = 0.0
    paste_shift: tuple[float, ...] = (0.1, 0.3)
    max_patch_samples: int = 200_000
    normal_fit_copies: int = 0
    dense_stages: tuple[int, ...] = ()
    mask_weight: float = 0.0
    mask_head: str = "grid"
    stroke_prob: float = 0.0

    def __post_init__(self) -> None:
        if not self.channels:
            raise ConfigError("model_params.channels must name at least one stage")
        if not -len(self.channels) <= self.patch_stage < len(self.channels):
            raise ConfigError(
                f"model_params.patch_stage must index a stage (0 to {len(self.channels) - 1})"
            )
        if self.image_size < 2 ** len(self.channels):
            raise ConfigError("model_params.image_size is smaller than the network's stride")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ConfigError(f"model_params.lr_schedule must be one of {LR_SCHEDULES}")
        if any(not 0 <= i < len(self.channels) for i in self.dense_stages):
            raise ConfigError(
                f"model_params.dense_stages must index stages (0 to {len(self.channels) - 1})"
            )
        if self.default_score not in (*self.score_names, *(("fused",) if self.fuse else ())):
            raise ConfigError(f"model_params.default_score must be one of {self.score_names}")
        for key in ("paste_area", "paste_opacity", "paste_blur", "paste_shift"):
            low_high = getattr(self, key)
            if len(low_high) != 2 or not 0 <= low_high[0] <= low_high[1]:
                raise ConfigError(f"model_params.{key} must be [low, high] with 0 <= low <= high")
        for key in ("paste_shift_prob", "stroke_prob"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"model_params.{key} must be in [0, 1]")
        if not 0 < self.paste_aspect <= 1:
            raise ConfigError("model_params.paste_aspect must be in (0, 1]")
        if self.normal_fit_copies < 0:
            raise ConfigError("model_params.normal_fit_copies must not be negative")
        if self.mask_weight < 0:
            raise ConfigError("model_params.mask_weight must not be negative")
        if self.mask_weight and len(self.channels) < 2:
            raise ConfigError("model_params.mask_weight needs at least two stages")
        if self.mask_head not in MASK_HEADS:
            raise ConfigError(f"model_params.mask_head must be one of {MASK_HEADS}")

    @property
    def score_names(self) -> tuple[str, ...]:
        """The scores this configuration computes."""
        names = (*SCORE_NAMES, DENSE_SCORE) if self.dense_stages else SCORE_NAMES
        return (*names, MASK_SCORE) if self.mask_weight else names

    @property
    def dense_grid(self) -> int:
        """The side of the per-location Gaussians' grid (the finest dense stage's)."""
        return self.image_size // 2 ** (min(self.dense_stages) + 1)

    @property
    def patch_index(self) -> int:
        """The patch stage as a non-negative index."""
        return self.patch_stage % len(self.channels)

    @property
    def paste(self) -> PasteSettings:
        """The augmentation's settings."""
        return PasteSettings(
            area=(self.paste_area[0], self.paste_area[1]),
            aspect=self.paste_aspect,
            jitter=self.paste_jitter,
            opacity=(self.paste_opacity[0], self.paste_opacity[1]),
            blur=(self.paste_blur[0], self.paste_blur[1]),
            ellipse_prob=self.paste_ellipse_prob,
            shift_prob=self.paste_shift_prob,
            shift=(self.paste_shift[0], self.paste_shift[1]),
        )


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with BatchNorm and an identity shortcut (ResNet's basic block)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


def _conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Convolution (no bias), BatchNorm and ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _stage(c_in: int, c_out: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(
        *_conv_bn_relu(c_in, c_out, stride=2),
        *(ResidualBlock(c_out) for _ in range(blocks)),
    )


class NetOutput(NamedTuple):
    """What :class:`AnatPasteNet` computes for a batch."""

    embedding: torch.Tensor  # (N, C_last): the last stage's features, globally pooled
    patches: torch.Tensor  # (N, C, h, w): the patch stage's feature map
    logit: torch.Tensor  # (N,): the "pasted" logit
    pooled: tuple[torch.Tensor, ...]  # (N, C_i) per stage: its features, globally pooled
    stages: tuple[torch.Tensor, ...]  # (N, C_i, h_i, w_i) per stage: its feature map
    mask_logits: torch.Tensor | None  # (N, 1, h, w): where a paste lies (with mask_weight)


class MaskHead(nn.Module):
    """Every stage's features on the second stage's grid -> per-location "pasted" logits.

    Finer stages are average-pooled and coarser ones upsampled to that grid, concatenated,
    reduced by a 1 x 1 convolution, mixed by a 3 x 3 one and read out by a 1 x 1 one.
    """

    def __init__(self, channels: tuple[int, ...], width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn_relu(sum(channels), width, kernel=1),
            *_conv_bn_relu(width, width),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, stages: list[torch.Tensor]) -> torch.Tensor:
        size = stages[1].shape[-2:]
        resized = [
            F.avg_pool2d(stages[0], 2),  # the only finer stage: twice the grid's side
            stages[1],
            *(F.interpolate(s, size, mode="bilinear", align_corners=False) for s in stages[2:]),
        ]
        return self.body(torch.cat(resized, dim=1))


class MaskDecoder(nn.Module):
    """The last stage's features, upsampled stage by stage to the first stage's grid and
    joined there with that stage's features (a U-Net's expanding path) -> per-location
    "pasted" logits on the first stage's grid."""

    def __init__(self, channels: tuple[int, ...], width: int = 32, finest_width: int = 16) -> None:
        super().__init__()
        widths = (finest_width, *(width for _ in channels[1:]))
        self.top = _conv_bn_relu(channels[-1], widths[-1], kernel=1)
        self.ups = nn.ModuleList(
            _conv_bn_relu(widths[i + 1] + channels[i], widths[i])
            for i in reversed(range(len(channels) - 1))
        )
        self.out = nn.Conv2d(widths[0], 1, 1)

    def forward(self, stages: list[torch.Tensor]) -> torch.Tensor:
        x = self.top(stages[-1])
        for skip, up in zip(reversed(stages[:-1]), self.ups, strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = up(torch.cat([x, skip], dim=1))
        return self.out(x)


class AnatPasteNet(nn.Module):
    """Image in [-1, 1] -> :class:`NetOutput` (embeddings, patch features, "pasted" logit)."""

    def __init__(self, cfg: AnatPasteConfig) -> None:
        super().__init__()
        channels = (1, *cfg.channels)
        self.patch_stage = cfg.patch_index
        self.stages = nn.ModuleList(
            _stage(a, b, cfg.residual_blocks) for a, b in itertools.pairwise(channels)
        )
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise((cfg.channels[-1], *cfg.head_units)):
            layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        self.head = nn.Sequential(*layers)
        self.out = nn.Linear((cfg.channels[-1], *cfg.head_units)[-1], 1)
        self.mask_head: nn.Module | None = None
        if cfg.mask_weight:
            head = MaskDecoder if cfg.mask_head == "decoder" else MaskHead
            self.mask_head = head(cfg.channels)

    def forward(self, x: torch.Tensor) -> NetOutput:
        patches = x
        pooled: list[torch.Tensor] = []
        maps: list[torch.Tensor] = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            maps.append(x)
            pooled.append(x.mean(dim=(2, 3)))
            if i == self.patch_stage:
                patches = x
        logit = self.out(self.head(pooled[-1])).squeeze(1)
        mask_logits = self.mask_head(maps) if self.mask_head is not None else None
        return NetOutput(pooled[-1], patches, logit, tuple(pooled), tuple(maps), mask_logits)
