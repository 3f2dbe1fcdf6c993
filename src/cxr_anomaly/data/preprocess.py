"""The one preprocessing every path shares: resize, standardise intensities, store on a 16-bit
grid.

Training and evaluation read images from the cache as uint16; ``predict`` runs the same
functions on new files, so an image gets bit-identical pixels, and the same score, whichever
way it reaches a model.

Intensity standardisation (``DataConfig.intensity``) takes away what differs between scanners,
exposures and exports rather than between anatomies:

* ``none``: the reader's [0, 1] values as they are,
* ``standardize``: each image's mean to 0.5 and its standard deviation to 0.125 (two standard
  deviations either side fill [0, 1]; beyond is clipped),
* ``equalize``: histogram equalisation, each pixel replaced by its rank in its image (a uniform
  histogram; ties share their mean rank),
* ``local``: local contrast normalisation: each pixel minus the Gaussian-weighted mean of its
  neighbourhood (sigma 1/16 of the image side), divided by four times the neighbourhood's
  standard deviation (plus a floor of 0.01, so flat regions are not blown up to noise), around
  0.5. Brightness that varies slowly across the image (exposure, processing, the overall
  brightness of the lung fields) is taken away; texture and edges (ribs, vessels, the haze that
  hides them) are kept.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cxr_anomaly.core.config import INTENSITY_MODES
from cxr_anomaly.data.images import resize_image

LEVELS = 65535
STANDARD_SPREAD = 0.125
LOCAL_SIGMA = 1 / 16
LOCAL_FLOOR = 0.01


def to_uint16(pixels: np.ndarray) -> np.ndarray:
    """[0, 1] floats -> uint16 (rounded, clipped)."""
    return np.round(np.clip(pixels, 0.0, 1.0) * LEVELS).astype(np.uint16)


def from_uint16(stored: np.ndarray) -> np.ndarray:
    """uint16 -> float32 in [0, 1]."""
    return stored.astype(np.float32) / LEVELS


def standardize_intensity(image: np.ndarray, mode: str) -> np.ndarray:
    """``image`` (H, W) in [0, 1] with its intensities standardised by ``mode``, float32."""
    image = np.asarray(image, np.float32)
    if mode == "none":
        return image
    if mode == "standardize":
        spread = float(image.std())
        if spread < 1e-6:  # a flat image (float32 rounding leaves a tiny spread)
            return np.full_like(image, 0.5)
        scaled = 0.5 + (image - float(image.mean())) * (STANDARD_SPREAD / spread)
        return np.clip(scaled, 0.0, 1.0).astype(np.float32)
    if mode == "equalize":
        flat = image.ravel()
        values, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        if len(values) == 1:
            return np.full_like(image, 0.5)
        # The mean rank of each value's pixels, scaled to [0, 1].
        mean_rank = np.cumsum(counts) - (counts + 1) / 2
        return (mean_rank[inverse] / (flat.size - 1)).reshape(image.shape).astype(np.float32)
    if mode == "local":
        sigma = LOCAL_SIGMA * image.shape[0]
        local_mean = ndimage.gaussian_filter(image, sigma, mode="reflect")
        detail = image - local_mean
        local_sd = np.sqrt(ndimage.gaussian_filter(detail**2, sigma, mode="reflect"))
        scaled = 0.5 + detail / (4 * local_sd + LOCAL_FLOOR)
        return np.clip(scaled, 0.0, 1.0).astype(np.float32)
    raise ValueError(f"unknown intensity mode {mode!r}; choose from {', '.join(INTENSITY_MODES)}")


def preprocess(pixels: np.ndarray, size: int, intensity: str = "none") -> np.ndarray:
    """A grey image (H, W) in [0, 1] as the models see it: (size, size) float32 on the grid."""
    return from_uint16(to_uint16(standardize_intensity(resize_image(pixels, size), intensity)))
