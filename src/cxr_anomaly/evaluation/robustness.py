"""A label-free robustness yardstick: do mild acquisition changes look anomalous to a model?

Normal images are scored as they are and again after one mild change that a radiograph of the
same anatomy could show in another department: gamma 0.8 or 1.25, contrast -15% or +15%, a
shift of 3 pixels (at 64 pixels; the same fraction of the side at other sizes), a rotation of
3 degrees, a 10% tighter field of view (collimation or magnification), JPEG re-compression at
quality 75. For each change the AUROC of the changed against the unchanged scores is reported:
0.5 means the model does not notice the change, 1.0 means it flags every changed image as more
anomalous (below 0.5: less anomalous). No labels and no test
images are needed: the normal validation images of the model's own training data serve.

Changes are applied to each image before the model's preprocessing (resize and intensity
standardisation), at a working resolution four times the model's, and both versions go through
the same path, so only the change differs.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from cxr_anomaly.data.datamodule import PreparedData, SplitView
from cxr_anomaly.data.preprocess import preprocess
from cxr_anomaly.evaluation import metrics
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.runtime.checkpoint import load_weights, read_metadata
from cxr_anomaly.runtime.inference import infer_arrays

Perturbation = Callable[[np.ndarray], np.ndarray]
SHIFT_FRACTION = 3 / 64
ROTATION_DEGREES = 3.0
ZOOM = 1.1
JPEG_QUALITY = 75


def _contrast(factor: float) -> Perturbation:
    def change(image: np.ndarray) -> np.ndarray:
        mean = float(image.mean())
        return np.clip(mean + (image - mean) * factor, 0.0, 1.0)

    return change


def _shift(image: np.ndarray) -> np.ndarray:
    offset = SHIFT_FRACTION * image.shape[0]
    return ndimage.shift(image, (offset, offset), order=1, mode="nearest")


def _rotate(image: np.ndarray) -> np.ndarray:
    return ndimage.rotate(image, ROTATION_DEGREES, reshape=False, order=1, mode="nearest")


def _zoom(image: np.ndarray) -> np.ndarray:
    """The central 1 / ZOOM of the image, enlarged back to its size."""
    side = image.shape[0]
    matrix = np.eye(2) / ZOOM
    offset = (side - 1) / 2 * (1 - 1 / ZOOM)
    return ndimage.affine_transform(image, matrix, offset, order=1, mode="nearest")


def _jpeg(image: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=JPEG_QUALITY
    )
    buffer.seek(0)
    return np.asarray(Image.open(buffer), np.float32) / 255


PERTURBATIONS: dict[str, Perturbation] = {
    "gamma 0.8": lambda image: image**0.8,
    "gamma 1.25": lambda image: image**1.25,
    "contrast -15%": _contrast(0.85),
    "contrast +15%": _contrast(1.15),
    "shift 3 px": _shift,
    "rotate 3 deg": _rotate,
    "zoom 10%": _zoom,
    f"jpeg q{JPEG_QUALITY}": _jpeg,
}


def working_images(
    data: PreparedData, view: SplitView, size: int | None = None
) -> list[np.ndarray]:
    """The images of ``view`` read at ``size`` pixels (by default four times the model's side,
    at most 512)."""
    size = size or min(4 * data.config.size, 512)
    return [
        data.source.load(sample, size, data.read_options).image.astype(np.float32)
        for sample in view.samples
    ]


def _scores(
    model: AnomalyModel, images: Sequence[np.ndarray], size: int, intensity: str, batch: int
) -> np.ndarray:
    prepared = np.stack([preprocess(image, size, intensity) for image in images])[:, None]
    return infer_arrays(model, prepared, batch).scores[model.config.default_score]


def robustness(
    model: AnomalyModel,
    data: PreparedData,
    split: str = "val_normal",
    batch_size: int = 64,
    perturbations: dict[str, Perturbation] | None = None,
) -> dict[str, float]:
    """AUROC of changed against unchanged scores of ``split``'s images, per change.

    Args:
        model: a trained model; its default score is used.
        data: the model's own data (its size and intensity mode are the model's preprocessing).
        split: normal images to change (by default the normal validation images).
        batch_size: images per inference call.
        perturbations: name -> change; by default :data:`PERTURBATIONS`.

    Returns:
        Change name -> AUROC (0.5: the change goes unnoticed), plus ``"mean |AUROC - 0.5|"``.

    Example:
        >>> robustness(model, PreparedData(metadata.data))  # doctest: +SKIP
        {'gamma 0.8': 0.52, ..., 'mean |AUROC - 0.5|': 0.04}
    """
    view = data.view(split)
    if len(view) < 2:
        raise ValueError(f"the {split} split needs at least two images for the yardstick")
    size, intensity = data.config.size, data.config.intensity
    originals = working_images(data, view)
    clean = _scores(model, originals, size, intensity, batch_size)
    labels = np.r_[np.zeros(len(clean)), np.ones(len(clean))]
    found: dict[str, float] = {}
    for name, change in (perturbations or PERTURBATIONS).items():
        changed = _scores(
            model, [change(image) for image in originals], size, intensity, batch_size
        )
        found[name] = metrics.auroc(labels, np.r_[clean, changed])
    found["mean |AUROC - 0.5|"] = float(np.mean([abs(v - 0.5) for v in found.values()]))
    return found


def robustness_of_run(run_dir: Path, split: str = "val_normal") -> dict[str, float]:
    """:func:`robustness` of the trained model in ``run_dir`` on its own data's ``split``."""
    metadata = read_metadata(run_dir)
    model = load_weights(run_dir, metadata)
    data = PreparedData(metadata.data)
    data.prepare((split,))
    return robustness(model, data, split)
