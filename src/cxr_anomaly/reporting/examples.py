"""The few images a study shows: chosen by seed (never by score), with each model's output.

The comparison grid of ``evaluate``/``benchmark`` draws these arrays; the writers receive the
arrays, not the split they came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from cxr_anomaly.data.datamodule import SplitView
from cxr_anomaly.data.images import SUPPORTED_SUFFIXES, read_image
from cxr_anomaly.models.components.lightning_model import AnomalyModel
from cxr_anomaly.reporting import viz
from cxr_anomaly.runtime.inference import infer_arrays

#: The longest side of an example drawn at its own resolution in the report.
ORIGINAL_SIDE = 768

Box = tuple[int, int, int, int]


@dataclass
class Examples:
    """A few test images shown in the comparison grid, with each model's output on them."""

    indices: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    titles: list[str]
    reconstructions: dict[str, np.ndarray | None] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    #: Each image as read from its file, at its own resolution and intensities (None: none).
    originals: list[np.ndarray | None] = field(default_factory=list)
    #: Each image's known boxes (x, y, width, height) in original pixels.
    boxes: list[list[Box]] = field(default_factory=list)
    #: Model -> its map in red over each original (the images that have one, in order).
    overlays: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add_model(self, model: AnomalyModel, map_floor: float, map_scale: float | None) -> None:
        """The model's reconstructions and maps of the images, and each map in red over its
        original, placed as preprocessing placed the image: red above ``map_floor``, full red at
        ``map_scale``."""
        inferred = infer_arrays(model, self.images[:, None], reconstructions=True)
        self.reconstructions[model.name] = inferred.reconstructions
        self.maps[model.name] = inferred.maps
        self.overlays[model.name] = [
            viz.radiograph_overlay(original, amap, map_floor, map_scale, boxes, ORIGINAL_SIDE)
            for original, amap, boxes in zip(
                self.originals, self.maps[model.name], self.boxes, strict=True
            )
            if original is not None
        ]

    def original_rows(self) -> list[list[np.ndarray]]:
        """For each image with an original: it with its boxes, then each model's overlay."""
        rows: list[list[np.ndarray]] = []
        shown = [k for k, original in enumerate(self.originals) if original is not None]
        for row, k in enumerate(shown):
            original = self.originals[k]
            assert original is not None
            no_map = np.zeros((2, 2))  # nothing red: the radiograph, resized, with its boxes
            plain = viz.radiograph_overlay(original, no_map, 0.0, 1.0, self.boxes[k], ORIGINAL_SIDE)
            rows.append([plain, *(overlays[row] for overlays in self.overlays.values())])
        return rows


def select_examples(view: SplitView, count: int = 4, seed: int = 0) -> Examples:
    """One normal image and abnormal ones of different classes (masked ones first), by seed.

    The choice never looks at scores, so the figure is not cherry-picked.
    """
    rng = np.random.default_rng(seed)
    labels, classes = view.labels, view.classes
    known = view.mask_known()
    normal = np.flatnonzero(labels == 0)
    chosen: list[int] = [int(rng.choice(normal))] if len(normal) else []
    abnormal_classes = sorted({c for c, y in zip(classes, labels, strict=True) if y == 1})
    rng.shuffle(abnormal_classes)
    for cls in abnormal_classes:
        if len(chosen) >= count:
            break
        members = np.array([i for i, c in enumerate(classes) if c == cls and labels[i] == 1])
        masked = members[known[members]]
        chosen.append(int(rng.choice(masked if len(masked) else members)))
    indices = np.array(chosen, dtype=np.int64)
    samples = [view.samples[i] for i in indices]
    return Examples(
        indices=indices,
        images=view.images(indices)[:, 0],
        masks=view.masks(indices),
        titles=[f"{classes[i]}\n{short_id(view.ids[i])}" for i in indices],
        originals=[
            None if s.path is None else read_image(s.path, view.cache.options).pixels
            for s in samples
        ],
        boxes=[
            [(round(b.x), round(b.y), round(b.width), round(b.height)) for b in s.boxes]
            for s in samples
        ],
    )


def short_id(image_id: str, limit: int = 24) -> str:
    """An image id short enough for a figure label: its file stem, middle elided past ``limit``.

    Example:
        >>> short_id("test-dev/NORMAL/NORMAL2-IM-0337-0001.jpeg")
        'NORMAL2-IM-0337-0001'
        >>> short_id("a-very-long-file-name-from-a-hospital-export.dcm")
        'a-very-long…pital-export'
    """
    stem = PurePosixPath(image_id.replace("\\", "/")).name
    if PurePosixPath(stem).suffix.lower() in SUPPORTED_SUFFIXES:
        stem = PurePosixPath(stem).stem
    if len(stem) <= limit:
        return stem
    head = (limit - 1) // 2
    return f"{stem[:head]}…{stem[len(stem) - (limit - 1 - head) :]}"
