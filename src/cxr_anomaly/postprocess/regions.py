"""Where a heatmap is anomalous: its connected regions above a threshold, as boxes on the
original image.

A model's map is (S, S), the image it scored was the original (H, W) resized straight to a
square (no crop, no pad: :func:`cxr_anomaly.data.images.resize_image`), so a map pixel ``(r, c)``
covers rows ``r * H / S`` to ``(r + 1) * H / S`` of the original, and columns alike. A region is
a 4-connected component of map pixels above the threshold (the post-processor's map scale: as
anomalous as the top 0.5% of normal validation pixels); its box is given in the original image's
pixel coordinates, as RSNA's boxes are.

Example:
    >>> import numpy as np
    >>> amap = np.zeros((4, 4)); amap[1:3, 2] = 5.0
    >>> [(r.x, r.y, r.width, r.height, r.peak) for r in map_regions(amap, 1.0, (40, 80))]
    [(40, 10, 20, 20, 5.0)]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage


@dataclass(frozen=True)
class Region:
    """One anomalous region: its box in original pixels (x, y of the top-left corner, width,
    height), its largest map value and its size in map pixels."""

    x: int
    y: int
    width: int
    height: int
    peak: float
    map_pixels: int


def map_regions(
    amap: npt.NDArray[np.floating],
    threshold: float,
    original_shape: tuple[int, int],
) -> list[Region]:
    """The connected regions of ``amap`` (S, S) above ``threshold``, largest peak first, with
    boxes on an original image of ``original_shape`` (H, W)."""
    values = np.asarray(amap, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected an (S, S) map, got shape {values.shape}")
    labels, _ = ndimage.label(values > threshold)
    height, width = original_shape
    rows_per, cols_per = height / values.shape[0], width / values.shape[1]
    found = []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        rows, cols = box
        y0, y1 = round(rows.start * rows_per), round(rows.stop * rows_per)
        x0, x1 = round(cols.start * cols_per), round(cols.stop * cols_per)
        member = labels[box] == index
        found.append(
            Region(
                x=x0,
                y=y0,
                width=x1 - x0,
                height=y1 - y0,
                peak=float(values[box][member].max()),
                map_pixels=int(member.sum()),
            )
        )
    return sorted(found, key=lambda r: -r.peak)
