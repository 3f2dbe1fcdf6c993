"""How a heatmap is drawn: its colour scale on normal images, and the region it is drawn in."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from cxr_anomaly.data.lungs import lung_region

MAP_SCALE_PERCENTILE = 99.5
"""A heatmap is fully red at this percentile of its maps' pixels (of normal validation images
where calibrated)."""
MAP_FLOOR_PERCENTILE = 50.0
"""A heatmap starts to be red above this percentile (a typical normal pixel)."""


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
