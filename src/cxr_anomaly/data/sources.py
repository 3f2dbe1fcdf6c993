"""The interface every dataset source implements, and ``SPEC`` strings that name a source.

``SPEC`` is ``synthetic[:key=value,...]``, ``rsna:PATH``, ``folder:PATH`` or ``manifest:CSV``.
A source lists its samples without reading pixels (so splits are cheap), names its protocols,
and loads one sample as a ``size`` x ``size`` image with its mask when the source has one.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from cxr_anomaly.data.images import ImageMeta, ReadOptions, read_image, resize_image
from cxr_anomaly.data.records import Box, Sample
from cxr_anomaly.data.splits import Protocol, SplitError, external_protocol

#: What makes a source's pixels what they are, JSON-ready (see :meth:`DataSource.identity`).
SourceIdentity = dict[str, str | int | float]


class DataSourceError(ValueError):
    """A dataset cannot be opened: missing files, unknown spec, unreadable labels."""


@dataclass(frozen=True)
class LoadedSample:
    """One preprocessed sample: image (size, size) float32 in [0,1], mask (size, size) bool."""

    image: np.ndarray
    mask: np.ndarray | None
    meta: ImageMeta | None = None


def boxes_to_mask(boxes: tuple[Box, ...], original_size: tuple[int, int], size: int) -> np.ndarray:
    """Rasterise boxes given in original pixels onto a ``size`` x ``size`` mask.

    A box covers every output pixel it touches, so small boxes never vanish when shrunk.
    """
    height, width = original_size
    scale_y, scale_x = size / height, size / width
    mask = np.zeros((size, size), dtype=bool)
    for box in boxes:
        y0 = max(0, math.floor(box.y * scale_y))
        x0 = max(0, math.floor(box.x * scale_x))
        y1 = min(size, math.ceil((box.y + box.height) * scale_y))
        x1 = min(size, math.ceil((box.x + box.width) * scale_x))
        mask[y0:y1, x0:x1] = True
    return mask


class DataSource(ABC):
    """A dataset: its samples, its split protocols, and how to load one sample."""

    kind: ClassVar[str]
    default_protocol: ClassVar[str]

    @abstractmethod
    def samples(self) -> list[Sample]:
        """Every sample of the source, without reading pixels."""

    @abstractmethod
    def protocol_names(self) -> tuple[str, ...]:
        """The source's named protocols (``external`` is added by :meth:`protocol`)."""

    @abstractmethod
    def build_protocol(self, name: str) -> Protocol:
        """The protocol called ``name``, one of :meth:`protocol_names`."""

    @abstractmethod
    def identity(self) -> SourceIdentity:
        """What makes this source's pixels what they are (for cache keys); JSON-serialisable."""

    @property
    def has_masks(self) -> bool:
        """Whether abnormal samples come with masks or boxes."""
        return any(s.boxes or s.mask_path for s in self.samples())

    def describe(self) -> str:
        """The source in full (kind and location), for results files and logs."""
        return f"{self.kind}: {self.identity().get('root', '')}"

    def label(self) -> str:
        """A short name for titles: the kind and the last part of the location."""
        root = str(self.identity().get("root", ""))
        return f"{self.kind}: {Path(root).name}" if root else self.kind

    def protocol(self, name: str | None = None) -> Protocol:
        """The protocol called ``name`` (the source's default when ``None``)."""
        name = name or self.default_protocol
        if name == "external":
            return external_protocol()
        available = self.protocol_names()
        if name not in available:
            raise SplitError(
                f"unknown protocol {name!r} for {self.kind} data; "
                f"choose from {', '.join([*available, 'external'])}"
            )
        return self.build_protocol(name)

    def load(self, sample: Sample, size: int, options: ReadOptions) -> LoadedSample:
        """Read, resize and mask one sample (file sources; generated sources override)."""
        if sample.path is None:
            raise DataSourceError(f"sample {sample.sample_id} has no image file")
        loaded = read_image(sample.path, options)
        image = resize_image(loaded.pixels, size)
        mask: np.ndarray | None = None
        if sample.mask_path is not None:
            mask = resize_image(read_image(sample.mask_path).pixels, size) > 0.5
        elif sample.boxes:
            mask = boxes_to_mask(sample.boxes, loaded.meta.original_size, size)
        return LoadedSample(image=image, mask=mask, meta=loaded.meta)


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``kind:argument``; ``synthetic`` alone has an empty argument."""
    kind, _, argument = spec.partition(":")
    kind = kind.strip().lower()
    if kind not in {"synthetic", "rsna", "folder", "manifest"}:
        raise DataSourceError(
            f"unknown data spec {spec!r}: use synthetic, rsna:PATH, folder:PATH or manifest:CSV"
        )
    if kind != "synthetic" and not argument:
        raise DataSourceError(f"data spec {spec!r} needs a path, e.g. {kind}:/data/{kind}")
    return kind, argument
