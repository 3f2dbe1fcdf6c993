"""Pixel-level metrics gathered batch by batch, in memory that does not grow with the split.

Scoring a split hands each batch's maps to a :class:`PixelTally`, which keeps of every image only
what the pixel metrics need: whether its smoothed map peaks inside its mask (the pointing game)
and a fixed sample of its pixels with their mask labels (pixel AUROC, AP and the best Dice). An
image's sample depends only on its index and the seed, never on the batch or the process that
scored it. When a split's pixels fit the budget every pixel is kept, and the metrics equal
:func:`metrics.pixel_metrics` of the whole maps.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from cxr_anomaly.data.datamodule import SplitView
from cxr_anomaly.evaluation import metrics


@dataclass
class ImagePixels:
    """What the pixel metrics keep of one image (not frozen: Lightning moves outputs in place)."""

    index: int
    values: np.ndarray
    positive: np.ndarray
    hit: bool | None  # the pointing game; None for an image without an abnormal pixel


class PixelTally:
    """Per-image pixel samples of at most ``budget`` pixels in all, for a split of known size.

    Example:
        >>> tally = PixelTally(n_images=len(maps), budget=10_000)  # doctest: +SKIP
        >>> kept = tally.keep(np.arange(len(maps)), maps, masks)  # doctest: +SKIP
        >>> tally.metrics(kept).pixel_auroc  # doctest: +SKIP
    """

    def __init__(self, n_images: int, budget: int = metrics.MAX_PIXELS, seed: int = 0) -> None:
        self.per_image = max(1, budget // max(n_images, 1))
        self.seed = seed

    def keep(self, indices: np.ndarray, maps: np.ndarray, masks: np.ndarray) -> list[ImagePixels]:
        """What to keep of a batch: maps and masks (B, H, W) of the images ``indices``."""
        kept = []
        for index, amap, mask in zip(indices.tolist(), maps, masks, strict=True):
            values, positive = amap.reshape(-1), mask.reshape(-1).astype(bool)
            if values.size > self.per_image:
                rng = np.random.default_rng([self.seed, index])
                chosen = np.sort(rng.choice(values.size, self.per_image, replace=False))
                values, positive = values[chosen], positive[chosen]
            sigma = metrics.pointing_sigma(amap.shape[-1])
            hit = metrics.points_inside(amap, mask, sigma) if mask.any() else None
            kept.append(ImagePixels(index, values.astype(np.float32), positive, hit))
        return kept

    @staticmethod
    def metrics(kept: Iterable[ImagePixels]) -> metrics.PixelMetrics | None:
        """The pixel metrics of the kept images (each index once); ``None`` without an
        abnormal pixel."""
        unique = {image.index: image for image in kept}
        images = [unique[i] for i in sorted(unique)]
        if not images:
            return None
        values = np.concatenate([image.values for image in images])
        positive = np.concatenate([image.positive for image in images])
        hits = [image.hit for image in images if image.hit is not None]
        if not positive.any():
            return None
        dice, threshold = metrics.best_dice_of_pixels(values, positive)
        labels = positive.astype(np.int8)
        return metrics.PixelMetrics(
            pixel_auroc=metrics.auroc(labels, values),
            pixel_ap=metrics.average_precision(labels, values),
            best_dice=dice,
            dice_threshold=threshold,
            pointing_game=sum(hits) / len(hits),
            n_images=len(images),
            n_annotated=len(hits),
        )


class SplitPixels:
    """A :class:`PixelTally` over a split's images with known masks: the map reducer that
    :func:`inference.infer_loader` runs on every batch it scores."""

    def __init__(self, view: SplitView, budget: int = metrics.MAX_PIXELS, seed: int = 0) -> None:
        self.view = view
        self.known = view.mask_known()
        self.tally = PixelTally(int(self.known.sum()), budget, seed)

    def __call__(self, indices: np.ndarray, maps: np.ndarray) -> list[ImagePixels]:
        chosen = self.known[indices]
        if not chosen.any():
            return []
        wanted = indices[chosen]
        return self.tally.keep(wanted, maps[chosen], self.view.masks(wanted))
