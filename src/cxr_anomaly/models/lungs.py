"""Lung masks by thresholding, and the AnatPaste augmentation that pastes patches inside them.

Both are plain functions on arrays, so they can be tested and reused without a model:

* :func:`lung_mask` finds the two lungs of one grey image (H, W) in [0, 1]: histogram
  equalisation, then dark-region thresholds (quantiles of a central box, from loose to strict:
  a strict threshold cuts the thin dark bridges that join a lung to the background), a
  morphological opening, on each side of the midline the largest dark component that does not
  touch the image border, closing and hole filling. Each side keeps the loosest threshold that
  gives a plausible lung (area, height); a side that never does is the mirror image of the
  other, and an image where neither does gets a pair of central ellipses.
* :func:`anat_paste` cuts a random rectangle out of an image of the batch, jitters its intensity
  and pastes it at a random lung pixel, blended through a soft mask (a rectangle or an ellipse,
  cut to the lung, Gaussian-blurred, cut to the lung again), so the pasted content appears only
  inside the lungs, with soft edges: a synthetic in-lung anomaly (Sato et al. 2023).

Example:
    >>> import numpy as np
    >>> from cxr_anomaly.data.phantoms import make_phantom
    >>> mask = lung_mask(make_phantom(64, seed=0).image)
    >>> mask.shape, mask.dtype
    ((64, 64), dtype('bool'))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from scipy import ndimage

BoolArray = npt.NDArray[np.bool_]

# The central box in which the dark/bright threshold is chosen (fractions of the side).
_BOX_ROWS = (0.15, 0.75)
_BOX_COLS = (0.12, 0.88)
# Plausible area of one lung, as a fraction of the image.
_LUNG_AREA = (0.025, 0.30)
# Fallback ellipses: centre row, centre column offset from the midline, semi-axes (fractions).
_ELLIPSE = (0.45, 0.22, 0.28, 0.12)
_MIN_HEIGHT = 0.2
# Dark thresholds tried, from the loosest down: quantiles of the central box.
_QUANTILES = (0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2)
_CROSS = ndimage.generate_binary_structure(2, 1)
_SQUARE = np.ones((3, 3), bool)


def equalize(image: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Histogram equalisation: each pixel's mid-rank among the image's pixels, in [0, 1].

    Equal values get equal ranks, so a constant image stays constant (at 0.5).
    """
    pixels = np.asarray(image, np.float32)
    _, inverse, counts = np.unique(pixels.ravel(), return_inverse=True, return_counts=True)
    mid_ranks = (np.cumsum(counts) - 0.5 * counts) / pixels.size
    return mid_ranks[inverse].astype(np.float32).reshape(pixels.shape)


def ellipse_lungs(height: int, width: int) -> BoolArray:
    """The fallback: a pair of upright ellipses left and right of the midline."""
    cy, dx, ry, rx = _ELLIPSE
    rows = (np.arange(height)[:, None] + 0.5) / height
    cols = (np.arange(width)[None, :] + 0.5) / width
    mask = np.zeros((height, width), bool)
    for cx in (0.5 - dx, 0.5 + dx):
        mask |= ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1.0
    return mask


def _plausible(side: BoolArray) -> bool:
    """One lung: a plausible area, and taller than a fifth of the image."""
    fraction = float(side.mean())
    if not _LUNG_AREA[0] <= fraction <= _LUNG_AREA[1]:
        return False
    rows = np.flatnonzero(side.any(axis=1))
    return bool(rows[-1] - rows[0] + 1 >= _MIN_HEIGHT * side.shape[0])


def _best_sides(dark: BoolArray) -> list[BoolArray | None]:
    """The largest dark component on each side of the midline, away from the image border."""
    height, width = dark.shape
    labels, count = ndimage.label(ndimage.binary_opening(dark, _CROSS), _CROSS)
    if count == 0:
        return [None, None]
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[np.unique(border)] = 0
    index = np.arange(1, count + 1)
    centres = np.asarray(ndimage.center_of_mass(dark, labels, index)).reshape(-1, 2)
    central = (centres[:, 0] > 0.15 * height) & (centres[:, 0] < 0.85 * height)
    out: list[BoolArray | None] = []
    for left in (True, False):
        on_side = (centres[:, 1] < width / 2) if left else (centres[:, 1] >= width / 2)
        candidates = np.where(on_side & central, sizes[1:], 0)
        out.append(labels == int(np.argmax(candidates)) + 1 if candidates.max() > 0 else None)
    return out


def lung_mask(image: npt.NDArray[np.floating]) -> BoolArray:
    """The lungs of one grey chest X-ray (H, W) in [0, 1] (bright = dense), as a bool mask.

    The result always has a lung on each side of the midline; see the module docstring for
    the steps and the fallbacks.
    """
    return find_lungs(image)[0]


def lung_region(image: npt.NDArray[np.floating], margin: float = 1 / 16) -> BoolArray:
    """The lungs of ``image`` grown by ``margin`` of the side: where in-lung anomalies show.

    Heatmaps of models that look only for in-lung anomalies (AnatPaste) are drawn inside this
    region, so that a coarse patch map upsampled over the image border does not paint the
    background outside the body.
    """
    mask = lung_mask(image)
    steps = max(1, round(margin * image.shape[-1]))
    return np.asarray(ndimage.binary_dilation(mask, iterations=steps), dtype=bool)


#: Regions a model's heatmap can be drawn in (see ``AnomalyModel.map_region``).
MAP_REGIONS = {"lungs": lung_region}


def drawn_map(
    amap: npt.NDArray[np.floating],
    image: npt.NDArray[np.floating],
    region: str | None,
    floor: float = 0.0,
) -> npt.NDArray[np.floating]:
    """``amap`` (H, W) for display: set to ``floor`` (no red) outside ``region`` of ``image``."""
    if region is None:
        return amap
    return np.where(MAP_REGIONS[region](image), amap, floor)


def find_lungs(image: npt.NDArray[np.floating]) -> tuple[BoolArray, str]:
    """:func:`lung_mask` and how it was found: ``"threshold"``, ``"mirror"`` or ``"ellipse"``."""
    pixels = np.asarray(image, np.float32)
    if pixels.ndim != 2:
        raise ValueError(f"expected an (H, W) image, got shape {pixels.shape}")
    height, width = pixels.shape
    eq = equalize(pixels)
    r0, r1 = (round(f * height) for f in _BOX_ROWS)
    c0, c1 = (round(f * width) for f in _BOX_COLS)
    box = np.sort(eq[r0:r1, c0:c1].ravel())
    found: list[BoolArray | None] = [None, None]
    for q in _QUANTILES:
        threshold = box[min(int(q * len(box)), len(box) - 1)]
        for i, side in enumerate(_best_sides(eq < threshold)):
            if found[i] is None and side is not None:
                side = ndimage.binary_fill_holes(ndimage.binary_closing(side, _SQUARE))
                if _plausible(side):
                    found[i] = side
        if found[0] is not None and found[1] is not None:
            return found[0] | found[1], "threshold"
    kept = found[0] if found[0] is not None else found[1]
    if kept is not None:
        return kept | kept[:, ::-1], "mirror"
    return ellipse_lungs(height, width), "ellipse"


def lung_masks(images: torch.Tensor) -> torch.Tensor:
    """:func:`lung_mask` of each image of a batch (N, 1, H, W) -> bool (N, 1, H, W), same device."""
    pixels = images.detach().float().cpu().numpy()
    masks = np.stack([lung_mask(p[0]) for p in pixels])[:, None]
    return torch.from_numpy(masks).to(images.device)


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
