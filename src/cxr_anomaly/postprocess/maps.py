"""How a heatmap is drawn: its colour scale, fitted on normal images."""

from __future__ import annotations

MAP_SCALE_PERCENTILE = 99.5
"""A heatmap is fully red at this percentile of its maps' pixels (of normal validation images
where calibrated)."""
MAP_FLOOR_PERCENTILE = 50.0
"""A heatmap starts to be red above this percentile (a typical normal pixel)."""
