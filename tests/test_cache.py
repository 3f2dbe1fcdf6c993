"""The on-disk image cache: prepared once, rebuilt when an input changes, resumable after a kill."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cxr_anomaly.data import cache as cache_module
from cxr_anomaly.data.cache import ImageCache, default_cache_root
from cxr_anomaly.data.folder import FolderSource
from cxr_anomaly.data.images import ReadOptions
from cxr_anomaly.data.records import ABNORMAL, NORMAL, Sample
from cxr_anomaly.data.sources import DataSource, LoadedSample
from cxr_anomaly.data.splits import Protocol, external_protocol


def _gradient(value: int, size: int = 48) -> np.ndarray:
    """A distinct 8-bit image per ``value``: a diagonal ramp plus a marker block."""
    yy, xx = np.mgrid[0:size, 0:size]
    image = ((xx + yy) * 127 // (2 * size)).astype(np.uint8)
    image[: size // 4, : size // 4] = value
    return image


def _write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """20 PNGs: 12 normal, 8 pneumonia, each with its own content."""
    root = tmp_path / "images"
    for i in range(12):
        _write_png(root / "NORMAL" / f"n{i:02d}-0001.png", _gradient(100 + i))
    for i in range(8):
        _write_png(root / "PNEUMONIA" / f"p{i:02d}-0001.png", _gradient(200 + i))
    return root


def _expected(source: DataSource, rows: list[int] | range, size: int) -> np.ndarray:
    samples = source.samples()
    return np.stack([source.load(samples[r], size, ReadOptions()).image for r in rows])


def _cache(folder: Path, tmp_path: Path, size: int = 32) -> ImageCache:
    return ImageCache(FolderSource(folder), size, ReadOptions(), root=tmp_path / "cache")


def test_first_ensure_prepares_everything_and_second_does_no_work(
    folder: Path, tmp_path: Path
) -> None:
    cache = _cache(folder, tmp_path)
    first = cache.ensure(workers=1)
    assert (first.requested, first.processed, first.reused, first.failed) == (20, 20, 0, 0)
    images = cache.images(range(20))
    assert images.shape == (20, 32, 32) and images.dtype == np.float32
    np.testing.assert_allclose(images, _expected(cache.source, range(20), 32), atol=1e-4)
    assert cache.status()["done"].all()
    # A new ImageCache object on the same inputs finds the same folder and reuses it.
    again = _cache(folder, tmp_path).ensure(workers=1)
    assert (again.requested, again.processed, again.reused, again.failed) == (20, 0, 20, 0)
    np.testing.assert_array_equal(_cache(folder, tmp_path).images(range(20)), images)


def test_ensure_prepares_only_the_rows_asked_for(folder: Path, tmp_path: Path) -> None:
    cache = _cache(folder, tmp_path)
    assert cache.ensure([3, 1, 3], workers=1).processed == 2
    assert np.flatnonzero(cache.status()["done"]).tolist() == [1, 3]
    report = cache.ensure(workers=1)
    assert (report.processed, report.reused) == (18, 2)


def test_a_different_size_is_a_different_cache_folder(folder: Path, tmp_path: Path) -> None:
    small = _cache(folder, tmp_path, size=32)
    large = _cache(folder, tmp_path, size=48)
    assert small.directory != large.directory
    assert small.directory.parent == large.directory.parent == tmp_path / "cache"
    assert "32px" in small.directory.name and "48px" in large.directory.name
    small.ensure(workers=1)
    report = large.ensure(workers=1)
    assert report.processed == 20 and report.reused == 0
    assert large.images([0]).shape == (1, 48, 48)
    assert small.ensure(workers=1).processed == 0


def test_another_sample_list_is_a_different_cache_folder(folder: Path, tmp_path: Path) -> None:
    before = _cache(folder, tmp_path)
    _write_png(folder / "NORMAL" / "n99-0001.png", _gradient(99))
    after = _cache(folder, tmp_path)
    assert len(after) == 21 and after.directory != before.directory


def test_a_changed_input_file_is_prepared_again(folder: Path, tmp_path: Path) -> None:
    cache = _cache(folder, tmp_path)
    cache.ensure(workers=1)
    old = cache.images(range(20))
    row = cache.rows["NORMAL/n05-0001.png"]
    path = folder / "NORMAL" / "n05-0001.png"
    _write_png(path, 255 - _gradient(105))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    report = _cache(folder, tmp_path).ensure(workers=1)
    assert (report.processed, report.reused, report.failed) == (1, 19, 0)
    new = cache.images(range(20))
    assert not np.allclose(new[row], old[row])
    np.testing.assert_allclose(new[row], _expected(cache.source, [row], 32)[0], atol=1e-4)
    others = [r for r in range(20) if r != row]
    np.testing.assert_array_equal(new[others], old[others])


def test_a_touched_but_unchanged_file_is_not_prepared_again(folder: Path, tmp_path: Path) -> None:
    cache = _cache(folder, tmp_path)
    cache.ensure(workers=1)
    path = folder / "PNEUMONIA" / "p03-0001.png"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert cache.ensure(workers=1).processed == 0


class _Interrupt(KeyboardInterrupt):
    """Stands for Ctrl-C (or a kill) in the middle of a prepare."""


@pytest.mark.parametrize("workers", [1, 2])
def test_an_interrupted_prepare_resumes_without_redoing_finished_chunks(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setattr(cache_module, "CHUNK_SIZE", 4)
    cache = _cache(folder, tmp_path)
    seen: list[int] = []

    def interrupt_after_two_chunks(done: int) -> None:
        seen.append(done)
        if done >= 8:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        cache.ensure(workers=workers, on_chunk=interrupt_after_two_chunks)
    assert seen == [4, 8]
    status = cache.status()
    assert int(status["done"].sum()) == 8 and not status["failed"].any()

    resumed: list[int] = []
    report = _cache(folder, tmp_path).ensure(workers=workers, on_chunk=resumed.append)
    assert (report.processed, report.reused, report.failed) == (12, 8, 0)
    assert resumed == [4, 8, 12]
    assert cache.status()["done"].all()
    np.testing.assert_allclose(
        cache.images(range(20)), _expected(cache.source, range(20), 32), atol=1e-4
    )


def test_unreadable_files_are_recorded_as_failures(folder: Path, tmp_path: Path) -> None:
    (folder / "NORMAL" / "bad-0001.png").write_bytes(b"this is not an image")
    good = (folder / "NORMAL" / "n00-0001.png").read_bytes()
    (folder / "NORMAL" / "cut-0001.png").write_bytes(good[: len(good) // 2])
    gone = folder / "PNEUMONIA" / "p07-0001.png"
    cache = _cache(folder, tmp_path)
    gone.unlink()  # listed, then deleted before it is prepared
    report = cache.ensure(workers=1)
    failed = {"NORMAL/bad-0001.png", "NORMAL/cut-0001.png", "PNEUMONIA/p07-0001.png"}
    assert (report.requested, report.processed, report.failed) == (22, 22, 3)
    assert set(report.errors) == failed
    assert "bad-0001.png" in report.errors["NORMAL/bad-0001.png"]
    summary = report.summary()
    assert summary.startswith("22 images: 22 prepared, 0 reused, 3 unreadable, in ")
    assert "PrepareReport(" not in summary and "e.g. NORMAL/" in summary
    status = cache.status()
    assert {cache.samples[r].sample_id for r in np.flatnonzero(status["failed"])} == failed
    assert int(status["done"].sum()) == 19
    # Failures are remembered: a second run does no work and reports them again.
    again = cache.ensure(workers=1)
    assert (again.processed, again.failed, set(again.errors)) == (0, 3, failed)
    # A repaired file is prepared on the next run.
    _write_png(folder / "NORMAL" / "bad-0001.png", _gradient(42))
    fixed = cache.ensure(workers=1)
    assert (fixed.processed, fixed.failed) == (1, 2)
    row = cache.rows["NORMAL/bad-0001.png"]
    np.testing.assert_allclose(
        cache.images([row])[0], _expected(cache.source, [row], 32)[0], atol=1e-4
    )


class _ArraySource(DataSource):
    """Images and masks given as arrays (already at the cache size)."""

    kind = "arrays"
    default_protocol = "all"

    def __init__(self, images: np.ndarray, masks: list[np.ndarray | None]) -> None:
        self.images = images
        self.masks = masks

    def samples(self) -> list[Sample]:
        return [
            Sample(f"s{i}", f"s{i}", NORMAL if m is None else ABNORMAL, "x")
            for i, m in enumerate(self.masks)
        ]

    def protocol_names(self) -> tuple[str, ...]:
        return ("all",)

    def build_protocol(self, name: str) -> Protocol:
        return external_protocol()

    def identity(self) -> dict[str, Any]:
        return {"kind": self.kind, "sha": hashlib.sha256(self.images.tobytes()).hexdigest()}

    def load(self, sample: Sample, size: int, options: ReadOptions) -> LoadedSample:
        i = int(sample.sample_id[1:])
        return LoadedSample(self.images[i], self.masks[i])


def test_uint16_storage_round_trips_to_within_one_step(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((5, 40, 40), dtype=np.float32)
    images[0, 0, :4] = [0.0, 1.0, 0.5, 1 / 65535]
    images[1, 0, :2] = [-0.25, 1.5]  # out of range: clipped
    cache = ImageCache(_ArraySource(images, [None] * 5), 40, root=tmp_path)
    cache.ensure(workers=1)
    assert cache.images_memmap().dtype == np.uint16
    got = cache.images(range(5))
    expected = np.clip(images, 0.0, 1.0)
    assert np.abs(got - expected).max() <= 1 / 65535
    assert got[0, 0, [0, 1, 3]].tolist() == pytest.approx([0.0, 1.0, 1 / 65535], abs=1e-9)
    assert abs(got[0, 0, 2] - 0.5) <= 0.5 / 65535 + 1e-9
    assert got[1, 0, :2].tolist() == [0.0, 1.0]


@pytest.mark.parametrize("size", [36, 37, 40])
def test_masks_pack_and_unpack_for_any_size(tmp_path: Path, size: int) -> None:
    rng = np.random.default_rng(size)
    drawn = [rng.random((size, size)) > 0.5 for _ in range(4)]
    drawn[2] = np.zeros((size, size), bool)
    drawn[3][:, -1] = True  # the last column, in the padding byte when size % 8 != 0
    masks: list[np.ndarray | None] = [drawn[0], None, drawn[2], drawn[3]]
    images = rng.random((4, size, size), dtype=np.float32)
    cache = ImageCache(_ArraySource(images, masks), size, root=tmp_path)
    cache.ensure(workers=1)
    got = cache.masks(range(4))
    assert got.shape == (4, size, size) and got.dtype == bool
    for i, mask in enumerate(masks):
        np.testing.assert_array_equal(
            got[i], np.zeros((size, size), bool) if mask is None else mask
        )
    assert cache.status()["has_mask"].tolist() == [True, False, True, True]
    np.testing.assert_array_equal(cache.masks([3, 0]), np.stack([drawn[3], drawn[0]]))


def test_default_cache_root_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: Path
) -> None:
    monkeypatch.setenv("CXR_ANOMALY_CACHE", str(tmp_path / "env-cache"))
    assert default_cache_root() == tmp_path / "env-cache"
    cache = ImageCache(FolderSource(folder), 32)
    assert cache.directory.parent == tmp_path / "env-cache"
    monkeypatch.delenv("CXR_ANOMALY_CACHE")
    assert default_cache_root() == Path.home() / ".cache" / "cxr-anomaly"


# -- a real kill ---------------------------------------------------------------------------------

N_KILL_IMAGES = 600


def _cli_command() -> list[str]:
    script = Path(sys.executable).with_name("cxr-anomaly")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from cxr_anomaly.cli import main; sys.exit(main())"]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_a_killed_prepare_resumes_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL a real ``cxr-anomaly prepare`` midway; the rerun finishes the rest only."""
    root = tmp_path / "images" / "NORMAL"
    root.mkdir(parents=True)
    side = 512  # large enough that preparing 600 images takes about a second
    yy, xx = np.mgrid[0:side, 0:side]
    base = ((xx + yy) * 255 // (2 * side)).astype(np.uint8)
    for i in range(N_KILL_IMAGES):
        pixels = base.copy()
        pixels[:64, :64] = i % 256
        pixels[64:128, :64] = i // 256
        Image.fromarray(pixels).save(root / f"p{i:04d}-0001.png", compress_level=1)
    spec = f"folder:{root.parent}"
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("CXR_ANOMALY_CACHE", str(cache_dir))
    args = ["-q", "prepare", "--data", spec, "--cache-dir", str(cache_dir), "--workers", "2"]
    cache = ImageCache(FolderSource(root.parent), 64, ReadOptions(), root=cache_dir)

    process = subprocess.Popen(
        [*_cli_command(), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        done = 0
        while process.poll() is None and time.monotonic() < deadline:
            done = int(cache.status()["done"].sum())
            if done:
                break
            time.sleep(0.005)
        if process.poll() is not None:
            assert process.stderr is not None  # opened with stderr=PIPE
            pytest.fail(f"prepare ended before it could be killed: {process.stderr.read()!r}")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        finished = int(cache.status()["done"].sum())
        assert 0 < finished < N_KILL_IMAGES, "the kill did not land midway"

        from cxr_anomaly.cli import main

        assert main(args) == 0
        out = capsys.readouterr().out
        match = re.search(r"(\d+) prepared, (\d+) reused, (\d+) failed", out)
        assert match is not None, out
        assert tuple(int(g) for g in match.groups()) == (
            N_KILL_IMAGES - finished,
            finished,
            0,
        )
    finally:
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        if process.stderr is not None:
            process.stderr.close()

    status = cache.status()
    assert status["done"].all() and not status["failed"].any()
    images = cache.images(range(N_KILL_IMAGES))
    check = sorted({0, 1, finished - 1, finished, finished + 1, N_KILL_IMAGES - 1, 300})
    np.testing.assert_allclose(images[check], _expected(cache.source, check, 64), atol=1e-4)
    # Every image is its own: the marker block survives the resize.
    markers = np.round(images[:, 0, 0] * 255).astype(int)
    assert markers.tolist() == [i % 256 for i in range(N_KILL_IMAGES)]
    shutil.rmtree(root.parent)
