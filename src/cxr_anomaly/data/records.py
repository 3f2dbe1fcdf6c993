"""Plain records passed between the data stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

NORMAL = 0
ABNORMAL = 1


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels of the original image (x, y = top-left corner)."""

    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Sample:
    """One image of a dataset, before any pixels are read.

    Attributes:
        sample_id: unique within its source (e.g. the RSNA patientId or a relative path).
        patient_id: the grouping unit for splits; images of one patient never cross splits.
        label: ``NORMAL`` (0) or ``ABNORMAL`` (1).
        image_class: the source's own class name (``"Normal"``, ``"Lung Opacity"``, ...).
        path: the image file, or ``None`` for generated (synthetic) images.
        boxes: abnormal regions in original pixel coordinates, when the source has them.
        mask_path: a mask image aligned with the image, when the source has one.
    """

    sample_id: str
    patient_id: str
    label: int
    image_class: str
    path: Path | None = None
    boxes: tuple[Box, ...] = field(default=())
    mask_path: Path | None = None

    @property
    def is_normal(self) -> bool:
        return self.label == NORMAL
