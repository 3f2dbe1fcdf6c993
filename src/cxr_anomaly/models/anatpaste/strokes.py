"""A second kind of synthetic anomaly for AnatPaste: thin dense curves and small dense spots.

AnatPaste's pastes (:mod:`.paste`) are patches of lung texture, a few percent of the image
each: the network learns what a misplaced patch looks like, and little about what is small and
thin. :func:`draw_strokes` adds what the pastes lack: a thin curve (a line or tube) or one or
two small round spots (nodules), denser than the lung around them, inside the lungs, blended in
with a soft profile. It is written apart from the yardstick's inserted findings
(:mod:`cxr_anomaly.evaluation.yardstick`), which no training may see: other shapes (a Gaussian
profile across a curve, Gaussian spots), the image's own intensity scale, and no anatomy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StrokeSettings:
    """How :func:`draw_strokes` draws.

    Attributes:
        width: range of a curve's half-width, as a fraction of the side.
        length: range of a curve's length, as a fraction of the side.
        radius: range of a spot's radius, as a fraction of the side.
        brightness: range of what the anomaly adds at its centre (intensities in [0, 1]).
        curve_prob: probability of a curve rather than spots.
    """

    width: tuple[float, float] = (0.012, 0.03)
    length: tuple[float, float] = (0.3, 0.7)
    radius: tuple[float, float] = (0.04, 0.1)
    brightness: tuple[float, float] = (0.2, 0.5)
    curve_prob: float = 0.5


def _uniform(bounds: tuple[float, float], u: float) -> float:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _curve_profile(
    rows: torch.Tensor,
    cols: torch.Tensor,
    start: tuple[float, float],
    draws: list[float],
    side: int,
    s: StrokeSettings,
) -> torch.Tensor:
    """A Gaussian profile across a quadratic curve from ``start`` (weights in [0, 1])."""
    angle = 2.0 * math.pi * draws[0]
    length = _uniform(s.length, draws[1]) * side
    bend = (draws[2] - 0.5) * 0.6 * length
    half_width = max(_uniform(s.width, draws[3]) * side, 0.5)
    end = (start[0] + length * math.sin(angle), start[1] + length * math.cos(angle))
    middle = (
        (start[0] + end[0]) / 2 - bend * math.cos(angle),
        (start[1] + end[1]) / 2 + bend * math.sin(angle),
    )
    t = torch.linspace(0.0, 1.0, 32)[:, None, None]
    point_r = (1 - t) ** 2 * start[0] + 2 * (1 - t) * t * middle[0] + t**2 * end[0]
    point_c = (1 - t) ** 2 * start[1] + 2 * (1 - t) * t * middle[1] + t**2 * end[1]
    distance = torch.sqrt((rows - point_r) ** 2 + (cols - point_c) ** 2).amin(0)
    return torch.exp(-((distance / half_width) ** 2))


def _spot_profile(
    rows: torch.Tensor,
    cols: torch.Tensor,
    centre: tuple[float, float],
    draw: float,
    side: int,
    s: StrokeSettings,
) -> torch.Tensor:
    """A Gaussian spot at ``centre`` (weights in [0, 1])."""
    radius = max(_uniform(s.radius, draw) * side, 0.75)
    squared = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2
    return torch.exp(-squared / radius**2)


def draw_strokes(
    images: torch.Tensor,
    lungs: torch.Tensor,
    generator: torch.Generator | None = None,
    settings: StrokeSettings | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A thin dense curve or one or two small dense spots inside each image's lungs.

    Args:
        images: (N, 1, H, W) in [0, 1].
        lungs: (N, 1, H, W) bool lung masks; each must be non-empty.
        generator: a CPU generator for every random draw; ``None`` uses torch's global one.
        settings: sizes and brightness.

    Returns:
        ``(augmented, blend)`` as :func:`~.paste.anat_paste` returns them: the images with the
        anomaly and its weights (N, 1, H, W) in [0, 1], zero outside the lungs.

    Example:
        >>> x = torch.full((2, 1, 32, 32), 0.3)
        >>> lungs = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
        >>> lungs[..., 8:24, 4:14] = True
        >>> out, blend = draw_strokes(x, lungs, torch.Generator().manual_seed(0))
        >>> bool((out[~lungs] == x[~lungs]).all()), bool((out >= x).all()), bool(blend.max() > 0)
        (True, True, True)
    """
    s = settings or StrokeSettings()
    n, _, height, width = images.shape
    flat_lungs = lungs.reshape(n, -1).cpu()
    counts = flat_lungs.sum(1)
    if n and bool((counts == 0).any()):
        raise ValueError("every image needs a non-empty lung mask")
    side = min(height, width)
    draws = torch.rand(n, 10, generator=generator, dtype=torch.float64).tolist()
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    cum = flat_lungs.long().cumsum(1)

    def lung_pixel(i: int, u: float) -> tuple[float, float]:
        rank = min(int(u * int(counts[i])), int(counts[i]) - 1)
        index = int((cum[i] <= rank).sum())
        return float(index // width), float(index % width)

    weights = torch.zeros(n, 1, height, width)
    for i, d in enumerate(draws):
        if d[0] < s.curve_prob:
            weights[i, 0] = _curve_profile(rows, cols, lung_pixel(i, d[1]), d[2:6], side, s)
        else:
            weights[i, 0] = _spot_profile(rows, cols, lung_pixel(i, d[1]), d[2], side, s)
            if d[3] < 0.5:  # a second spot
                second = _spot_profile(rows, cols, lung_pixel(i, d[4]), d[5], side, s)
                weights[i, 0] = torch.maximum(weights[i, 0], second)
    brightness = torch.tensor([_uniform(s.brightness, d[9]) for d in draws], dtype=torch.float32)
    blend = (weights * lungs.cpu().float()).to(device=images.device, dtype=images.dtype)
    added = blend * brightness.to(images.device, images.dtype)[:, None, None, None]
    augmented = (images + added).clamp(0.0, 1.0)
    return torch.where(blend > 0, augmented, images), blend
