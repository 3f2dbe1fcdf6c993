"""Preprocess once: images resized to one size, stored on disk as memory-mapped arrays.

One cache folder per (source, sample list, size, reader settings), named by a hash of them.
Inside, ``images.npy`` holds every sample as uint16 (``value / 65535`` gives [0, 1]),
``masks.npy`` the masks bit-packed, and ``state.npz`` which rows are done with each input
file's fingerprint (size, modification time and content hash). Rows are prepared in chunks by
a process pool; the state is saved atomically after each chunk, so an interrupted ``prepare``
resumes where it stopped. A changed input file (new content hash) is prepared again; a changed
size or sample list is another cache folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cxr_anomaly.core import atomic
from cxr_anomaly.data.images import ImageReadError, ReadOptions
from cxr_anomaly.data.preprocess import from_uint16, standardize_intensity, to_uint16
from cxr_anomaly.data.records import Sample
from cxr_anomaly.data.sources import DataSource, DataSourceError

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CHUNK_SIZE = 64


def default_cache_root() -> Path:
    """``$CXR_ANOMALY_CACHE`` or ``~/.cache/cxr-anomaly``."""
    env = os.environ.get("CXR_ANOMALY_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "cxr-anomaly"


@dataclass(frozen=True)
class PrepareReport:
    """What one :meth:`ImageCache.ensure` call did."""

    requested: int
    processed: int
    reused: int
    failed: int
    seconds: float
    errors: dict[str, str]

    def summary(self) -> str:
        """One line for a log: what was asked, made, reused and refused, in how long."""
        text = (
            f"{self.requested} images: {self.processed} prepared, {self.reused} reused, "
            f"{self.failed} unreadable, in {self.seconds:.1f} s"
        )
        if self.errors:
            first = next(iter(self.errors.items()))
            text += f" (e.g. {first[0]}: {first[1]})"
        return text


@dataclass(frozen=True)
class _Fingerprint:
    size: int
    mtime_ns: int
    digest: bytes


@dataclass(frozen=True)
class _RowResult:
    row: int
    image: np.ndarray | None
    mask: np.ndarray | None
    fingerprint: _Fingerprint | None
    error: str | None


def _file_digest(path: Path) -> bytes:
    hasher = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.digest()


def _fingerprint(path: Path | None) -> _Fingerprint | None:
    if path is None:
        return None
    stat = path.stat()
    return _Fingerprint(stat.st_size, stat.st_mtime_ns, _file_digest(path))


@dataclass(frozen=True)
class _WorkerJob:
    """What every row of one preparation shares: where to read, at what size, how."""

    source: DataSource
    size: int
    options: ReadOptions
    intensity: str


# Set in each worker process by the pool initializer (and in-process for small jobs).
_WORKER: list[_WorkerJob] = []


def _init_worker(source: DataSource, size: int, options: ReadOptions, intensity: str) -> None:
    _WORKER[:] = [_WorkerJob(source, size, options, intensity)]


def _prepare_row(row: int, sample: Sample) -> _RowResult:
    job = _WORKER[0]
    fingerprint = None
    try:
        fingerprint = _fingerprint(sample.path)
        loaded = job.source.load(sample, job.size, job.options)
    except (ImageReadError, DataSourceError, OSError) as err:
        # The fingerprint of a failed file is kept too: it is retried only once it changes.
        return _RowResult(row, None, None, fingerprint, str(err))
    image = to_uint16(standardize_intensity(loaded.image, job.intensity))
    mask = None if loaded.mask is None else np.packbits(loaded.mask.astype(bool), axis=-1)
    return _RowResult(row, image, mask, fingerprint, None)


def _prepare_chunk(chunk: list[tuple[int, Sample]]) -> list[_RowResult]:
    return [_prepare_row(row, sample) for row, sample in chunk]


class ImageCache:
    """Preprocessed images of one source at one size.

    Example:
        >>> cache = ImageCache(source, size=64, options=ReadOptions())  # doctest: +SKIP
        >>> cache.ensure(range(len(cache)))  # doctest: +SKIP
        >>> cache.images([0, 1]).shape  # doctest: +SKIP
        (2, 64, 64)
    """

    def __init__(
        self,
        source: DataSource,
        size: int,
        options: ReadOptions | None = None,
        root: Path | None = None,
        intensity: str = "none",
    ) -> None:
        self.source = source
        self.size = size
        self.options = options or ReadOptions()
        self.intensity = intensity
        self.samples = source.samples()
        self.rows = {s.sample_id: i for i, s in enumerate(self.samples)}
        ids_digest = hashlib.sha256("\n".join(self.rows).encode()).hexdigest()
        self.key = {
            "cache_version": CACHE_VERSION,
            "source": source.identity(),
            "size": size,
            "read_options": dataclasses.asdict(self.options),
            **({"intensity": intensity} if intensity != "none" else {}),
            "sample_ids_sha256": ids_digest,
            "n_samples": len(self.samples),
        }
        digest = hashlib.sha256(json.dumps(self.key, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = (root or default_cache_root()) / f"{source.kind}-{size}px-{digest}"

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def _images_path(self) -> Path:
        return self.directory / "images.npy"

    @property
    def _masks_path(self) -> Path:
        return self.directory / "masks.npy"

    @property
    def _state_path(self) -> Path:
        return self.directory / "state.npz"

    def _create(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        n, size = len(self.samples), self.size
        packed = (size + 7) // 8
        for path, shape, dtype in (
            (self._images_path, (n, size, size), np.uint16),
            (self._masks_path, (n, size, packed), np.uint8),
        ):
            if not path.exists():
                with atomic.atomic_path(path) as tmp:
                    np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape).flush()
        if not self._state_path.exists():
            self._save_state(self._empty_state())
        atomic.write_text(self.directory / "key.json", json.dumps(self.key, indent=2))

    def _empty_state(self) -> dict[str, np.ndarray]:
        n = len(self.samples)
        return {
            "done": np.zeros(n, bool),
            "failed": np.zeros(n, bool),
            "has_mask": np.zeros(n, bool),
            "file_size": np.full(n, -1, np.int64),
            "file_mtime_ns": np.full(n, -1, np.int64),
            "file_digest": np.zeros(n, "S16"),
        }

    def _load_state(self) -> dict[str, np.ndarray]:
        with np.load(self._state_path) as data:
            return {key: data[key].copy() for key in data.files}

    def _save_state(self, state: dict[str, np.ndarray]) -> None:
        with atomic.atomic_path(self._state_path) as tmp:
            np.savez(tmp, **state)  # type: ignore[arg-type]

    def _errors(self) -> dict[str, str]:
        path = self.directory / "errors.json"
        return json.loads(path.read_text()) if path.exists() else {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _stale(self, row: int, state: dict[str, np.ndarray]) -> bool:
        """Whether a finished row's input file changed since it was prepared."""
        path = self.samples[row].path
        if path is None:
            return False
        try:
            stat = path.stat()
        except OSError:
            return bool(state["done"][row])
        if (
            stat.st_size == state["file_size"][row]
            and stat.st_mtime_ns == state["file_mtime_ns"][row]
        ):
            return False
        if _file_digest(path) == state["file_digest"][row].tobytes():
            state["file_size"][row], state["file_mtime_ns"][row] = stat.st_size, stat.st_mtime_ns
            return False
        return True

    def ensure(
        self,
        rows: Sequence[int] | None = None,
        workers: int = 0,
        progress: bool = False,
        on_chunk: Callable[[int], None] | None = None,
    ) -> PrepareReport:
        """Prepare ``rows`` (default: all) that are missing or whose input file changed.

        Args:
            rows: row numbers (positions in ``source.samples()``).
            workers: processes to use; 0 means one per CPU core.
            progress: show a progress bar.
            on_chunk: called with the number of rows finished so far after each saved chunk.

        Returns:
            What was prepared, reused and failed. Failed rows keep their error and are not
            retried until their file changes.
        """
        start = time.perf_counter()
        wanted = sorted(set(range(len(self.samples)) if rows is None else rows))
        with self._locked():
            self._create()
            state = self._load_state()
            errors = self._errors()
            before = {key: value.copy() for key, value in state.items()}
            for row in wanted:
                if (state["done"][row] or state["failed"][row]) and self._stale(row, state):
                    state["done"][row] = state["failed"][row] = False
                    errors.pop(self.samples[row].sample_id, None)
            if any(not np.array_equal(before[k], state[k]) for k in state):
                self._save_state(state)  # refreshed fingerprints of touched, unchanged files
            todo = [r for r in wanted if not state["done"][r] and not state["failed"][r]]
            self._check_files_exist(todo)
            reused = len(wanted) - len(todo)
            processed = self._process(todo, state, errors, workers, progress, on_chunk)
        failed = {
            self.samples[r].sample_id: errors[self.samples[r].sample_id]
            for r in wanted
            if state["failed"][r]
        }
        report = PrepareReport(
            requested=len(wanted),
            processed=processed,
            reused=reused,
            failed=len(failed),
            seconds=time.perf_counter() - start,
            errors=failed,
        )
        log.info("cache %s: %s", self.directory, report.summary())
        return report

    def _check_files_exist(self, todo: list[int]) -> None:
        """Refuse early, with one clear message, when none of the files to prepare exists."""
        paths = [self.samples[r].path for r in todo]
        if paths and all(p is not None and not p.exists() for p in paths):
            example = paths[0]
            raise DataSourceError(
                f"none of the {len(paths)} image files to prepare exists (e.g. {example}); "
                "is the dataset folder complete?"
            )

    def _process(
        self,
        todo: list[int],
        state: dict[str, np.ndarray],
        errors: dict[str, str],
        workers: int,
        progress: bool,
        on_chunk: Callable[[int], None] | None,
    ) -> int:
        if not todo:
            return 0
        chunks = [
            [(r, self.samples[r]) for r in todo[i : i + CHUNK_SIZE]]
            for i in range(0, len(todo), CHUNK_SIZE)
        ]
        workers = workers or os.cpu_count() or 1
        images = np.load(self._images_path, mmap_mode="r+")
        masks = np.load(self._masks_path, mmap_mode="r+")
        done = 0
        with contextlib.ExitStack() as stack:
            bar = stack.enter_context(
                tqdm(total=len(todo), desc="prepare", unit="img", disable=not progress)
            )
            results: Iterator[list[_RowResult]]
            init_args = (self.source, self.size, self.options, self.intensity)
            if workers == 1 or len(chunks) == 1:
                _init_worker(*init_args)
                results = map(_prepare_chunk, chunks)
            else:
                methods = multiprocessing.get_all_start_methods()
                context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
                pool = stack.enter_context(
                    context.Pool(min(workers, len(chunks)), _init_worker, init_args)
                )
                results = pool.imap(_prepare_chunk, chunks)
            for chunk_results in results:
                failures = sum(self._store(r, images, masks, state, errors) for r in chunk_results)
                if failures:
                    example = next(r for r in chunk_results if r.error is not None)
                    log.warning(
                        "%d image(s) could not be prepared, e.g. %s",
                        failures,
                        example.error,
                    )
                images.flush()
                masks.flush()
                self._save_state(state)
                if failures:
                    atomic.write_text(self.directory / "errors.json", json.dumps(errors, indent=1))
                done += len(chunk_results)
                bar.update(len(chunk_results))
                if on_chunk is not None:
                    on_chunk(done)
        return done

    def _store(
        self,
        result: _RowResult,
        images: np.ndarray,
        masks: np.ndarray,
        state: dict[str, np.ndarray],
        errors: dict[str, str],
    ) -> bool:
        """Store one row's result; return whether it failed."""
        row = result.row
        if result.fingerprint is not None:
            state["file_size"][row] = result.fingerprint.size
            state["file_mtime_ns"][row] = result.fingerprint.mtime_ns
            state["file_digest"][row] = result.fingerprint.digest
        if result.error is not None or result.image is None:
            state["failed"][row] = True
            errors[self.samples[row].sample_id] = result.error or "unknown error"
            log.debug("cannot prepare %s: %s", self.samples[row].sample_id, result.error)
            return True
        images[row] = result.image
        state["has_mask"][row] = result.mask is not None
        if result.mask is not None:
            masks[row] = result.mask
        state["done"][row] = True
        return False

    def status(self) -> dict[str, np.ndarray]:
        """The saved per-row state (``done``, ``failed``, ``has_mask``...)."""
        return self._load_state() if self._state_path.exists() else self._empty_state()

    def images_memmap(self) -> np.ndarray:
        """All images as a read-only uint16 memory map (N, size, size)."""
        return np.load(self._images_path, mmap_mode="r")

    def images(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Images of ``rows`` as float32 in [0, 1], shape (len(rows), size, size)."""
        data = self.images_memmap()
        return from_uint16(data[np.asarray(rows, dtype=np.int64)])

    def masks(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """Masks of ``rows`` as bool (len(rows), size, size); all False where none is known."""
        packed = np.load(self._masks_path, mmap_mode="r")[np.asarray(rows, dtype=np.int64)]
        masks = np.unpackbits(packed, axis=-1, count=self.size).astype(bool)
        has_mask = self.status()["has_mask"][np.asarray(rows, dtype=np.int64)]
        masks[~has_mask] = False
        return masks
