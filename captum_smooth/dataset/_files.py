"""Crash-safe file writes: a file is either the old one or the whole new one, never half.

Every file of a store goes through :func:`atomic_write_bytes`: the bytes are written to a
temporary name in the same directory, flushed, synced and then moved into place with
:func:`os.replace`. A writer killed in between leaves only a temporary file, which
:func:`remove_temporary_files` clears on the next start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

__all__ = [
    "TMP_MARK",
    "atomic_write_bytes",
    "atomic_write_json",
    "is_temporary",
    "remove_temporary_files",
    "sha256_bytes",
]

#: Part of the name of every temporary file (``<final name>.tmp-<pid>-<random>``).
TMP_MARK = ".tmp-"


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def is_temporary(name: str) -> bool:
    """Whether the file name ``name`` is one of a write in progress (or of a killed one)."""
    return TMP_MARK in name


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` holds either the old file or all of ``data``.

    The bytes go to a temporary file in the same directory, which is flushed, synced and then
    renamed over ``path`` (:func:`os.replace` is atomic on POSIX and Windows).

    Args:
        path: The final path.
        data: The whole content.
    """
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON with sorted keys to ``path`` atomically.

    Sorted keys make the bytes depend on the content only, not on the order a dict was built.
    """
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def remove_temporary_files(directory: Path) -> int:
    """Remove the temporary files a killed writer left behind.

    Args:
        directory: The directory to clean (not recursively).

    Returns:
        How many files were removed.
    """
    removed = 0
    for entry in directory.iterdir():
        if is_temporary(entry.name) and entry.is_file():
            with contextlib.suppress(OSError):
                entry.unlink()
                removed += 1
    return removed
