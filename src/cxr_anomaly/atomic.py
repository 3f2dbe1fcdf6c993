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


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))
