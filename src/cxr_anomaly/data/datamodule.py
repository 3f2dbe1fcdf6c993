"""From a :class:`DataConfig` to split views over the cache and a Lightning data module."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cxr_anomaly.core.config import STORED_INTENSITY, DataConfig
from cxr_anomaly.data.cache import ImageCache, PrepareReport
from cxr_anomaly.data.catalog import open_source
from cxr_anomaly.data.images import ReadOptions
from cxr_anomaly.data.preprocess import from_uint16
from cxr_anomaly.data.records import Sample
from cxr_anomaly.data.sources import DataSource
from cxr_anomaly.data.splits import SPLITS, Protocol, SplitResult, make_splits

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitView:
    """The images of one split, read from the cache (row order = sample order)."""

    name: str
    samples: list[Sample]
    rows: np.ndarray
    cache: ImageCache

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def ids(self) -> list[str]:
        return [s.sample_id for s in self.samples]

    @property
    def patient_ids(self) -> list[str]:
        return [s.patient_id for s in self.samples]

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    @property
    def classes(self) -> list[str]:
        return [s.image_class for s in self.samples]

    def images(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Images (N, 1, S, S) float32 in [0, 1]."""
        rows = self.rows if indices is None else self.rows[np.asarray(indices, dtype=np.int64)]
        return self.cache.images(rows)[:, None]

    def masks(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Masks (N, S, S) bool; all False where none is known."""
        rows = self.rows if indices is None else self.rows[np.asarray(indices, dtype=np.int64)]
        return self.cache.masks(rows)

    def mask_known(self) -> np.ndarray:
        """(N,) bool: normal images (empty mask) and abnormal images with a mask or boxes."""
        has_mask = self.cache.status()["has_mask"][self.rows]
        return has_mask | (self.labels == 0)

    def batches(self, batch_size: int) -> Iterator[torch.Tensor]:
        """The images in order, ``batch_size`` at a time, as tensors (B, 1, S, S)."""
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            yield torch.from_numpy(self.images(np.arange(start, stop)))

    def subset(self, indices: Sequence[int]) -> SplitView:
        idx = np.asarray(indices, dtype=np.int64)
        return SplitView(self.name, [self.samples[i] for i in idx], self.rows[idx], self.cache)


class CachedImages(Dataset[tuple[torch.Tensor, int]]):
    """(image (1, S, S) float32 in [0, 1], index in the view) read through the memory map."""

    def __init__(self, view: SplitView) -> None:
        self.view = view

    def __len__(self) -> int:
        return len(self.view)

    @cached_property
    def _memmap(self) -> np.ndarray:
        return self.view.cache.images_memmap()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pixels = from_uint16(self._memmap[self.view.rows[index]])
        return torch.from_numpy(pixels)[None], index


class EpochShuffleSampler(Sampler[int]):
    """A permutation that depends only on (seed, epoch): resumed runs see the same order."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        # One generator seed per (seed, epoch): a prime stride keeps the pairs apart.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


class PreparedData:
    """A source, its protocol and splits, and the image cache behind them.

    Building it reads labels only; :meth:`prepare` fills the cache for the splits needed.
    """

    def __init__(self, config: DataConfig, protocol: Protocol | None = None) -> None:
        self.config = config
        self.source: DataSource = open_source(config)
        self.protocol = protocol or self.source.protocol(config.protocol)
        self.splits: SplitResult = make_splits(
            self.source.samples(), self.protocol, seed=config.split_seed
        )
        self.read_options = ReadOptions(apply_voi_lut=config.apply_voi_lut)
        root = None if config.cache_dir is None else Path(config.cache_dir).expanduser()
        self.cache = ImageCache(
            self.source, config.size, self.read_options, root, intensity=config.intensity
        )

    def _rows(self, split: str) -> np.ndarray:
        return np.array(
            [self.cache.rows[s.sample_id] for s in self.splits.samples(split)], np.int64
        )

    def prepare(self, splits: Sequence[str] = SPLITS, progress: bool = False) -> PrepareReport:
        """Make sure the images of ``splits`` are in the cache (using every core)."""
        rows = [int(r) for split in splits for r in self._rows(split)]
        return self.cache.ensure(rows, workers=self.config.workers, progress=progress)

    def view(self, split: str) -> SplitView:
        """The prepared images of ``split``; images that failed to load are left out (logged)."""
        rows = self._rows(split)
        status = self.cache.status()
        ready = status["done"][rows] if len(rows) else np.zeros(0, bool)
        missing = int((~ready).sum())
        if missing:
            log.warning("%s: %d image(s) not prepared or unreadable are left out", split, missing)
        samples = [s for s, ok in zip(self.splits.samples(split), ready, strict=True) if ok]
        return SplitView(split, samples, rows[ready], self.cache)

    def at_stored_intensity(self, splits: Sequence[str]) -> PreparedData:
        """The same images at their stored intensities (this data itself when it standardises
        none), with ``splits`` prepared, each view holding the images of this data's, in order.

        A second cache when the intensities are standardised (``data.intensity``): what the
        trivial detectors and the sharpness fusion read, whatever a model's preprocessing.
        """
        if self.config.intensity == STORED_INTENSITY:
            return self
        stored = PreparedData(replace(self.config, intensity=STORED_INTENSITY), self.protocol)
        stored.prepare(splits)
        for split in splits:
            if stored.view(split).ids != self.view(split).ids:
                raise RuntimeError(f"the {split} images at stored intensities differ from these")
        return stored


def make_loader(
    view: SplitView, batch_size: int, num_workers: int = 0, shuffle_seed: int | None = None
) -> DataLoader[tuple[torch.Tensor, int]]:
    """A loader over ``view``; shuffled per epoch (and dropping a last tiny batch) when seeded."""
    dataset = CachedImages(view)
    sampler = None if shuffle_seed is None else EpochShuffleSampler(len(dataset), shuffle_seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        # Its own generator: starting an epoch's iterator draws a worker seed, and drawing it
        # from torch's global generator would shift the training noise of a resumed run (whose
        # first iterator starts before the epoch's reseed, see ``engine.EpochSeed``).
        generator=torch.Generator().manual_seed(shuffle_seed or 0),
        drop_last=shuffle_seed is not None and len(dataset) > batch_size,
        persistent_workers=num_workers > 0,
    )


class CxrDataModule(L.LightningDataModule):
    """Normal training images and normal validation images for a Lightning Trainer."""

    def __init__(
        self,
        data: PreparedData,
        batch_size: int,
        seed: int = 0,
        num_workers: int = 0,
        progress: bool = False,
    ) -> None:
        super().__init__()
        self.data = data
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.progress = progress

    def prepare_data(self) -> None:
        # Lightning calls this on one process per node only: no rank prepares files twice.
        self.data.prepare(("train", "val_normal"), progress=self.progress)

    def train_dataloader(self) -> DataLoader[tuple[torch.Tensor, int]]:
        view = self.data.view("train")
        if len(view) == 0:
            raise ValueError("the training split holds no image")
        return make_loader(view, self.batch_size, self.num_workers, shuffle_seed=self.seed)

    def val_dataloader(self) -> DataLoader[tuple[torch.Tensor, int]]:
        return make_loader(self.data.view("val_normal"), self.batch_size, self.num_workers)
