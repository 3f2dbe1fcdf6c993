"""AnatPaste's augmentation: patches pasted inside the lungs, blended through soft masks.

:func:`anat_paste` cuts a random rectangle out of an image of the batch, jitters its intensity
and pastes it at a random lung pixel, blended through a soft mask (a rectangle or an ellipse,
cut to the lung, Gaussian-blurred, cut to the lung again), so the pasted content appears only
inside the lungs, with soft edges: a synthetic in-lung anomaly (Sato et al. 2023).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class PasteSettings:
    """How :func:`anat_paste` draws its patches.

    Attributes:
        area: range of the patch area as a fraction of the image area.
        aspect: the patch aspect ratio (width / height) is drawn log-uniformly in
            ``[aspect, 1 / aspect]``.
        jitter: brightness and contrast jitter of the patch (+- this much).
        opacity: range of the blend weight at the patch centre.
        blur: range of the Gaussian blur of the blend mask's edges, as a fraction of the side.
        ellipse_prob: probability that the pasted shape is an ellipse rather than a rectangle.
        shift_prob: probability that the patch is the image's own region, its brightness
            shifted by ``shift`` (either sign), instead of another image's texture.
        shift: range of that shift's size.
    """

    area: tuple[float, float] = (0.02, 0.1)
    aspect: float = 0.3
    jitter: float = 0.1
    opacity: tuple[float, float] = (0.6, 1.0)
    blur: tuple[float, float] = (0.005, 0.03)
    ellipse_prob: float = 0.5
    shift_prob: float = 0.0
    shift: tuple[float, float] = (0.1, 0.3)


def _gaussian_blur(masks: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Blur each mask (N, 1, H, W) with its own Gaussian ``sigmas`` (N,) in pixels."""
    n = masks.shape[0]
    radius = max(1, math.ceil(3.0 * float(sigmas.max())))
    offsets = torch.arange(-radius, radius + 1, device=masks.device, dtype=masks.dtype)
    kernels = torch.exp(-0.5 * (offsets[None, :] / sigmas[:, None].clamp_min(1e-3)) ** 2)
    kernels = kernels / kernels.sum(1, keepdim=True)
    flat = masks.reshape(1, n, *masks.shape[-2:])
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0)), kernels[:, None, None, :], groups=n)
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius)), kernels[:, None, :, None], groups=n)
    return flat.reshape(masks.shape)


def anat_paste(
    images: torch.Tensor,
    lungs: torch.Tensor,
    generator: torch.Generator | None = None,
    settings: PasteSettings | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """AnatPaste: paste a patch of a random batch image inside each image's lungs.

    Args:
        images: (N, 1, H, W) in [0, 1].
        lungs: (N, 1, H, W) bool lung masks (from :func:`lung_masks`); each must be non-empty.
        generator: a CPU generator for every random draw; ``None`` uses torch's global one.
        settings: patch sizes, jitter, opacity and blur.

    Returns:
        ``(augmented, blend)``: the augmented images (N, 1, H, W) in [0, 1] and the blend
        weights (N, 1, H, W) in [0, 1], zero outside the lungs.

    Example:
        >>> x = torch.rand(2, 1, 32, 32)
        >>> lungs = torch.zeros(2, 1, 32, 32, dtype=torch.bool)
        >>> lungs[..., 8:24, 4:14] = True
        >>> out, blend = anat_paste(x, lungs, torch.Generator().manual_seed(0))
        >>> bool((out[~lungs] == x[~lungs]).all())
        True
    """
    s = settings or PasteSettings()
    n, _, height, width = images.shape
    if n == 0:
        return images.clone(), torch.zeros_like(images)
    flat_lungs = lungs.reshape(n, -1).cpu()
    counts = flat_lungs.sum(1)
    if bool((counts == 0).any()):
        raise ValueError("every image needs a non-empty lung mask")
    draws = torch.rand(n, 9, generator=generator, dtype=torch.float64)
    source = torch.randint(n, (n,), generator=generator)
    area = (s.area[0] + (s.area[1] - s.area[0]) * draws[:, 0]) * height * width
    log_aspect = math.log(s.aspect) * (1.0 - 2.0 * draws[:, 1])
    aspect = torch.exp(log_aspect)
    patch_w = torch.sqrt(area * aspect).round().clamp(2, width - 1).long()
    patch_h = torch.sqrt(area / aspect).round().clamp(2, height - 1).long()
    src_y = (draws[:, 2] * (height - patch_h + 1)).long().clamp(max=height - patch_h)
    src_x = (draws[:, 3] * (width - patch_w + 1)).long().clamp(max=width - patch_w)
    # The target centre: a uniformly drawn lung pixel.
    rank = (draws[:, 4] * counts).long().clamp(max=counts - 1)
    cum = flat_lungs.long().cumsum(1)
    centre = (cum <= rank[:, None]).sum(1)
    cy, cx = centre // width, centre % width
    dst_y, dst_x = cy - patch_h // 2, cx - patch_w // 2
    contrast = 1.0 + s.jitter * (2.0 * draws[:, 5] - 1.0)
    brightness = s.jitter * (2.0 * draws[:, 6] - 1.0)
    opacity = s.opacity[0] + (s.opacity[1] - s.opacity[0]) * draws[:, 7]
    sigma = (s.blur[0] + (s.blur[1] - s.blur[0]) * draws[:, 8]) * min(height, width)
    ellipse = torch.rand(n, generator=generator, dtype=torch.float64) < s.ellipse_prob
    if s.shift_prob > 0:  # the image's own region, brighter or darker, in place
        shifted, sign, size = torch.rand(n, 3, generator=generator, dtype=torch.float64).unbind(1)
        in_place = shifted < s.shift_prob
        source = torch.where(in_place, torch.arange(n), source)
        src_y = torch.where(in_place, torch.minimum(dst_y.clamp_min(0), height - patch_h), src_y)
        src_x = torch.where(in_place, torch.minimum(dst_x.clamp_min(0), width - patch_w), src_x)
        dst_y = torch.where(in_place, src_y, dst_y)
        dst_x = torch.where(in_place, src_x, dst_x)
        offset = (s.shift[0] + (s.shift[1] - s.shift[0]) * size) * torch.where(sign < 0.5, -1, 1)
        contrast = torch.where(in_place, 1.0, contrast)
        brightness = torch.where(in_place, offset, brightness)

    device, dtype = images.device, images.dtype
    # Outside the patch the canvas is the image itself, so blurred weight there changes nothing;
    # the shape is drawn a blur margin inside the patch so its soft edge stays on the patch.
    canvas = images.clone()
    shape = torch.zeros(n, 1, height, width, dtype=torch.float32)
    for i in range(n):
        h, w = int(patch_h[i]), int(patch_w[i])
        sy, sx, dy, dx = int(src_y[i]), int(src_x[i]), int(dst_y[i]), int(dst_x[i])
        y0, y1 = max(dy, 0), min(dy + h, height)
        x0, x1 = max(dx, 0), min(dx + w, width)
        patch = images[int(source[i]), 0, sy + y0 - dy : sy + y1 - dy, sx + x0 - dx : sx + x1 - dx]
        canvas[i, 0, y0:y1, x0:x1] = patch * float(contrast[i]) + float(brightness[i])
        margin = min(round(2.0 * float(sigma[i])), h // 4, w // 4)
        half_h, half_w = h / 2 - margin, w / 2 - margin
        rows = torch.arange(y0, y1, dtype=torch.float32)[:, None] + 0.5 - (dy + h / 2)
        cols = torch.arange(x0, x1, dtype=torch.float32)[None, :] + 0.5 - (dx + w / 2)
        if bool(ellipse[i]):
            inside = (rows / half_h) ** 2 + (cols / half_w) ** 2 <= 1.0
        else:
            inside = (rows.abs() <= half_h) & (cols.abs() <= half_w)
        shape[i, 0, y0:y1, x0:x1] = inside.float()
    lung_f = lungs.cpu().float()
    blend = _gaussian_blur(shape * lung_f, sigma.float()) * lung_f
    blend = (blend * opacity.float()[:, None, None, None]).clamp(0.0, 1.0)
    blend = blend.to(device=device, dtype=dtype)
    augmented = images + blend * (canvas.clamp(0.0, 1.0) - images)
    augmented = torch.where(blend > 0, augmented, images)
    return augmented, blend
