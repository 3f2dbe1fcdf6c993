"""One phantom: a normal patient exposed, with or without one finding, and its exact mask."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cxr_anomaly.data.phantoms.anatomy import (
    MAX_SIZE,
    MIN_SIZE,
    BoolArray,
    FloatArray,
    _body,
    _downsample,
    _draw_patient,
    _expose,
    _pose_grid,
    _render,
    _Scene,
    _supersample,
)
from cxr_anomaly.data.phantoms.findings import _ANOMALIES, ANOMALY_TYPES, DEFAULT_DIFFICULTY

_MASK_CHANGE = 0.1


@dataclass(frozen=True)
class Phantom:
    """One synthetic chest X-ray.

    Attributes:
        image: ``(size, size)`` float32 in ``[0, 1]``; bright = dense (bone, heart), dark = air.
        mask: ``(size, size)`` bool, where the anomaly changed the image; all False when normal.
        anomaly: one of :data:`ANOMALY_TYPES`, or ``None`` for a normal image.
    """

    image: npt.NDArray[np.float32]
    mask: BoolArray
    anomaly: str | None


def _check(size: int, anomaly: str | None, difficulty: float) -> None:
    if not isinstance(size, int | np.integer) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")
    if anomaly is not None and anomaly not in ANOMALY_TYPES:
        raise ValueError(f"unknown anomaly {anomaly!r}; valid: None or one of {ANOMALY_TYPES}")
    if not 0.0 <= difficulty <= 1.0:
        raise ValueError(f"difficulty must be in [0, 1], got {difficulty!r}")


def _anomaly_mask(scene: _Scene, shape: FloatArray, change: FloatArray) -> BoolArray:
    """Where the anomaly is: its shape reaches one half, or the density changed by at least
    ``_MASK_CHANGE`` of the largest change; always inside the body."""
    ss = scene.supersample
    body = _downsample(scene.body, ss) >= 0.5
    shape = _downsample(shape * scene.body, ss)
    change = np.abs(_downsample(change, ss))
    in_shape = (shape >= min(0.5, 0.5 * float(shape.max()))) & (shape > 0)
    changed = (change >= _MASK_CHANGE * float(change.max())) & (change > 0)
    mask: BoolArray = (in_shape | changed) & body
    return mask


def make_phantom(
    size: int, seed: int, anomaly: str | None = None, difficulty: float = DEFAULT_DIFFICULTY
) -> Phantom:
    """Render one synthetic chest X-ray.

    The image is fully determined by ``(size, seed, anomaly, difficulty)``. The normal image of a
    seed is the abnormal one without the anomaly: same patient, acquisition and pixel noise.

    Args:
        size: image side in pixels, 32 to 256.
        seed: the patient; any non-negative integer.
        anomaly: ``None`` for a normal image, else one of :data:`ANOMALY_TYPES`.
        difficulty: 0 (large, obvious anomaly) to 1 (small, subtle one); ignored when normal.

    Returns:
        The phantom: image, mask (empty when normal) and anomaly name.

    Raises:
        ValueError: on a size outside [32, 256], an unknown anomaly or a difficulty outside [0, 1].
    """
    _check(size, anomaly, difficulty)
    size = int(size)
    rng = np.random.default_rng(seed)
    patient = _draw_patient(rng)
    noise_rng, anomaly_rng = rng.spawn(2)
    scene = _render(patient, size)
    noise = noise_rng.standard_normal((size, size), dtype=np.float32)
    if anomaly is None:
        return Phantom(_expose(scene, scene.density, noise), np.zeros((size, size), bool), None)
    delta, shape = _ANOMALIES[anomaly](scene, anomaly_rng, float(difficulty))
    density = np.maximum(scene.density + delta * scene.body, 0.0)
    mask = _anomaly_mask(scene, shape, density - scene.density)
    return Phantom(_expose(scene, density, noise), mask, anomaly)


def body_mask(size: int, seed: int) -> BoolArray:
    """The patient's body (soft tissue outline) in a phantom of this size and seed.

    Every anomaly mask lies inside it; outside it is the dark background.

    Args:
        size: image side in pixels, 32 to 256.
        seed: the patient, as given to :func:`make_phantom`.

    Returns:
        ``(size, size)`` bool array.
    """
    _check(size, None, 0.5)
    patient = _draw_patient(np.random.default_rng(seed))
    ss = _supersample(int(size))
    u, v = _pose_grid(patient, int(size) * ss)
    edge = 1.2 * 2.0 / (int(size) * ss * patient.scale)
    mask: BoolArray = _downsample(_body(patient, u, v, edge), ss) >= 0.5
    return mask
