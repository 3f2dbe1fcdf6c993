"""The one preprocessing every path shares: resize, then store on a 16-bit grid.

Training and evaluation read images from the cache as uint16; ``predict`` runs the same two
functions on new files, so an image gets bit-identical pixels, and the same score, whichever
way it reaches a model.
"""

from __future__ import annotations

import numpy as np

from cxr_anomaly.data.images import resize_image

LEVELS = 65535


def to_uint16(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint16 (rounded, clipped)."""
    return np.round(np.clip(pixels, 0.0, 1.0) * LEVELS).astype(np.uint16)


def from_uint16(stored: np.ndarray) -> np.ndarray:
    """uint16 -> float32 in [0, 1]."""
    return stored.astype(np.float32) / LEVELS


def preprocess(pixels: np.ndarray, size: int) -> np.ndarray:
    """A grey image (H, W) in [0, 1] as the models see it: (size, size) float32 on the grid."""
    return from_uint16(to_uint16(resize_image(pixels, size)))
