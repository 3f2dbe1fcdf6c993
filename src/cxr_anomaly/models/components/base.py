"""Plain torch pieces every model shares: settings, what it says of a batch, layer helpers."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from cxr_anomaly.core.sizes import REFERENCE_SIDE, at_side
from cxr_anomaly.models.components.maps import image_score, lowpass_l1_map


class SeededDropout(torch.nn.Module):
    """Dropout whose masks are drawn from the owning model's training generator (set by
    :meth:`AnomalyModel.reseed_noise`), not from torch's global one."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)


@dataclass
class ModelConfig:
    """Settings shared by every model.

    Attributes:
        map_sigma: Gaussian smoothing of anomaly maps, in pixels at 64x64 (scaled with the
            image side); 0 keeps raw per-pixel error.
        default_score: the score ``score()`` returns when none is named.
        map_score: the score whose map is drawn and localized (heatmaps, regions, pixel
            metrics); ``None``: the default score's. An image score and a map can come from
            different statistics (a global distance ranks images, a per-location one points).
        image_size: the image side the model works at (set from the data).
        pixel_z_of: a score whose map is judged per pixel against normal images: the mean and
            spread of that map at each pixel over the normal training images are kept, and the
            score ``pixel_z`` added, whose map is the per-pixel z-score (see
            :mod:`.pixel_statistics`). ``None``: off.
        pixel_z_images: fit those statistics on at most this many training images (the first
            ones, in the split's order); ``None``: all. For models whose map costs many network
            passes (AnoDDPM's partial diffusion), a few hundred images give the spread.
        fuse: scores combined into the extra score ``fused``: each is z-normalised with its mean
            and spread on the normal validation images (set at calibration, saved with the
            weights), and the z-scores are averaged; the ``fused`` map averages the maps
            normalised the same way, so its mean is the fused score.
    """

    map_sigma: float = 0.0
    default_score: str = "l1"
    map_score: str | None = None
    image_size: int = 64
    pixel_z_of: str | None = None
    pixel_z_images: int | None = None
    fuse: tuple[str, ...] = ()

    @property
    def drawn_score(self) -> str:
        """The score whose map is drawn: ``map_score``, else ``default_score``."""
        return self.map_score or self.default_score


@dataclass
class Inference:
    """Everything a model says about a batch: reconstruction, maps and scores by name."""

    reconstruction: torch.Tensor | None
    maps: dict[str, torch.Tensor]
    scores: dict[str, torch.Tensor] = field(default_factory=dict)


def levels_beyond_reference(side: int) -> int:
    """One more stride-2 level per doubling of ``side`` beyond :data:`REFERENCE_SIDE`:
    the networks' bottleneck, and the dense layers around it, stay those of 64x64."""
    return max(0, (side // REFERENCE_SIDE).bit_length() - 1)


def deepened(channels: tuple[int, ...], side: int, at: int) -> tuple[int, ...]:
    """``channels`` with :func:`levels_beyond_reference` copies of ``channels[at]`` after it."""
    at %= len(channels)
    extra = (channels[at],) * levels_beyond_reference(side)
    return (*channels[: at + 1], *extra, *channels[at + 1 :])


def normal_init(
    module: torch.nn.Module,
    std: float,
    layers: tuple[type[torch.nn.Module], ...] = (torch.nn.Conv2d, torch.nn.ConvTranspose2d),
    batchnorm_std: float | None = None,
) -> None:
    """DCGAN-style initialisation: weights of ``layers`` N(0, std) with zero biases, and with
    ``batchnorm_std`` BatchNorm scales N(1, batchnorm_std) with zero shifts."""
    for layer in module.modules():
        weight, bias = getattr(layer, "weight", None), getattr(layer, "bias", None)
        if not isinstance(weight, torch.Tensor):
            continue
        if isinstance(layer, layers):
            torch.nn.init.normal_(weight, 0.0, std)
        elif batchnorm_std is not None and isinstance(
            layer, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d
        ):
            torch.nn.init.normal_(weight, 1.0, batchnorm_std)
        else:
            continue
        if isinstance(bias, torch.Tensor):
            torch.nn.init.zeros_(bias)


def add_lowpass_score(
    result: Inference, name: str, x: torch.Tensor, reconstruction: torch.Tensor, sigma: float
) -> None:
    """Add the map and score ``name``: the L1 error of image and reconstruction, both blurred.

    ``sigma`` is in pixels at 64x64 and scales with the image side; 0 adds nothing. Detail finer
    than ``sigma`` that no reconstruction copies (noise-level texture, which after local
    contrast normalisation is most of an image) averages out: the plain L1 error then measures
    mostly how much fine texture an image has, the blurred one what the model changed."""
    if sigma <= 0:
        return
    pixels = at_side(sigma, x.shape[-1])
    amap = lowpass_l1_map(x.float(), reconstruction.float(), pixels)
    result.maps[name] = amap
    result.scores[name] = image_score(amap)
