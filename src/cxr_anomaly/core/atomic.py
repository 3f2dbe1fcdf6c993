"""Atomic file writes: write to a temporary name in the same folder, then rename.

A reader never sees a half-written file under the final name: after a crash the final name holds
either the old content or the new, and at most a stray temporary file is left behind.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    The temporary name keeps the final suffix (``.tmp.png``), so writers that pick a format
    from the file name (matplotlib, ``np.save``) behave as they would on the final path.

    Example:
        >>> with atomic_path(out / "scores.npy") as tmp:  # doctest: +SKIP
        ...     np.save(tmp, scores)
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # A fresh unique name, not mkstemp: the file gets the usual permissions (umask), not 0600.
    tail = suffix if suffix is not None else ".tmp" + final.suffix
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}{tail}"
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success, sync and rename it.

    Example:
        >>> with atomic_open(out / "a.html", "w", encoding="utf-8") as f:  # doctest: +SKIP
        ...     f.write(html)
    """
    if "w" not in mode:
        raise ValueError(f"atomic_open writes files; mode {mode!r} has no 'w'")
    with atomic_path(path) as tmp, open(tmp, mode.replace("w", "x"), encoding=encoding) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))
