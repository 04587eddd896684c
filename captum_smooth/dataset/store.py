"""The on-disk attribution store: numpy ``.npy`` shards, per-shard manifests and an index.

Layout of a store directory (every file is written to a temporary name, flushed, synced and
then moved into place with :func:`os.replace`, so a reader never sees half a file)::

    store.json                 the format tag and the settings of the run (written first)
    shard-000000.npy           attributions of examples [0, shard_size), numpy .npy format
    shard-000000.targets.npy   the target of each of those examples, when targets are ints
    shard-000000.json          the shard's manifest: range, shape, sizes and SHA-256 checksums
    ...
    index.json                 every manifest merged, written once all shards are done

A shard counts as finished only once its manifest is in place, and the manifest is written
after the data files it describes, so a run killed at any moment leaves only finished shards
(and temporary files, removed on the next start). ``index.json`` is derived from the manifests
after the last shard; it is the only file :class:`AttributionStore` needs besides the shards.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["FORMAT", "FORMAT_VERSION", "AttributionStore", "StoreError"]

#: The format tag written into ``store.json``, every manifest and ``index.json``.
FORMAT = "captum-smooth-attribution-store"
#: The version of the layout; a store of another version is refused.
FORMAT_VERSION = 1

_CONFIG_NAME = "store.json"
_INDEX_NAME = "index.json"
_TMP_MARK = ".tmp-"
_NUMPY_DTYPES = {"float16": np.float16, "float32": np.float32}


class StoreError(ValueError):
    """A store directory that cannot be used as asked.

    Raised for a directory that is not an attribution store, a store written with other
    settings, an unfinished store, and a shard that is missing, truncated or whose checksum
    does not match. A subclass of :class:`ValueError`.
    """


# ----------------------------------------------------------------------------------------
# File names and atomic writes (shared with the writer in explain.py).


def shard_name(shard_id: int) -> str:
    """File name of a shard's attributions."""
    return f"shard-{shard_id:06d}.npy"


def targets_name(shard_id: int) -> str:
    """File name of a shard's targets."""
    return f"shard-{shard_id:06d}.targets.npy"


def manifest_name(shard_id: int) -> str:
    """File name of a shard's manifest."""
    return f"shard-{shard_id:06d}.json"


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


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
    """
    tmp = path.with_name(f"{path.name}{_TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
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
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def npy_bytes(array: np.ndarray) -> bytes:
    """``array`` serialised in the numpy ``.npy`` format."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def remove_temporary_files(directory: Path) -> int:
    """Remove the temporary files a killed writer left behind; return how many."""
    removed = 0
    for entry in directory.iterdir():
        if _TMP_MARK in entry.name and entry.is_file():
            with contextlib.suppress(OSError):
                entry.unlink()
                removed += 1
    return removed


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``, or a :class:`StoreError` naming the file."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc


def check_format(obj: Any, path: Path) -> None:
    """Refuse a JSON document that is not of this store format and version."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise StoreError(f"{path} is not a captum-smooth attribution store file")
    if obj.get("version") != FORMAT_VERSION:
        raise StoreError(
            f"{path} has store format version {obj.get('version')!r}; this captum-smooth "
            f"reads version {FORMAT_VERSION}"
        )


def _check_file_size(path: Path, size: int) -> None:
    """Raise :class:`StoreError` if the shard file ``path`` is missing or not ``size`` bytes."""
    if not path.is_file():
        raise StoreError(f"shard file {path} is missing")
    actual = path.stat().st_size
    if actual != size:
        raise StoreError(
            f"shard file {path} is truncated or overwritten: {actual} bytes, the index says {size}"
        )


def read_checked(path: Path, size: int, sha256: str) -> bytes:
    """The bytes of ``path`` after checking its size and checksum (:class:`StoreError` if not)."""
    _check_file_size(path, size)
    data = path.read_bytes()
    if sha256_bytes(data) != sha256:
        raise StoreError(f"shard file {path} is corrupted: its SHA-256 checksum does not match")
    return data


# ----------------------------------------------------------------------------------------
# Reading.


class AttributionStore:
    r"""Read access to the attributions that :func:`~captum_smooth.explain_dataset` wrote.

    A sequence of tensors, one per example of the data set, in data order: ``store[i]`` is
    the attribution of example ``i`` (negative indices count from the end), ``store[a:b]`` a
    stacked batch, and iteration goes through the examples in order, one shard in memory at a
    time. Every shard is checked against the size and SHA-256 checksum in the index when it is
    read; a missing, truncated or corrupted shard raises :class:`StoreError`, as does a
    directory that is not a finished store.

    Args:
        path: The store directory (the ``out`` of :func:`~captum_smooth.explain_dataset`).
        verify: Check the checksum of every shard now rather than on first read.
            Default: False (sizes are checked at once, checksums on read).

    Raises:
        StoreError: If ``path`` is not a finished attribution store or a shard is damaged.
        TypeError: If ``path`` is not a str or path-like.

    Examples::

        >>> store = AttributionStore("attributions/")  # doctest: +SKIP
        >>> len(store), store[0].shape, store.dtype  # doctest: +SKIP
        (1797, torch.Size([8, 8]), torch.float16)
        >>> store.metadata["settings"]["method"]  # doctest: +SKIP
        'AdaptGrad(Saliency)'
        >>> for attribution in store:  # doctest: +SKIP
        ...     ...
    """

    def __init__(self, path: str | os.PathLike[str], *, verify: bool = False) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
        self._root = Path(path)
        index_path = self._index_path()
        index = read_json(index_path)
        check_format(index, index_path)
        self._index: dict[str, Any] = index
        self._shards: list[dict[str, Any]] = index["shards"]
        self._length = int(index["num_examples"])
        self._shard_size = int(index["settings"]["shard_size"])
        self._np_dtype = _NUMPY_DTYPES[index["dtype"]]
        self._cache: tuple[int, np.ndarray] | None = None
        self._targets: Tensor | None = None
        self._check_shard_layout(index_path)
        if verify:
            self.verify()

    def _index_path(self) -> Path:
        """The path of the index, after checking that the store is a finished one."""
        if not self._root.is_dir():
            raise StoreError(f"{self._root} is not a directory")
        index_path = self._root / _INDEX_NAME
        if index_path.is_file():
            return index_path
        if (self._root / _CONFIG_NAME).is_file():
            done = len(list(self._root.glob("shard-*.json")))
            raise StoreError(
                f"the store at {self._root} is unfinished ({done} shard(s) done, no "
                "index.json): run explain_dataset again with the same settings to resume it"
            )
        raise StoreError(f"{self._root} is not an attribution store (no {_INDEX_NAME})")

    def _check_shard_layout(self, index_path: Path) -> None:
        """Check that the shards follow each other, cover the data and have their sizes.

        Only sizes are checked here (cheap); checksums are checked when a shard is read.
        """
        expected = 0
        for k, shard in enumerate(self._shards):
            if shard["id"] != k or shard["start"] != expected:
                raise StoreError(f"{index_path} is inconsistent: shard {k} is out of place")
            expected = shard["stop"]
            for key in ("", "targets_"):
                if shard.get(key + "file") is not None:
                    _check_file_size(self._root / shard[key + "file"], shard[key + "bytes"])
        if expected != self._length:
            raise StoreError(f"{index_path} is inconsistent: the shards do not cover the data")

    # -- description -----------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The store directory."""
        return self._root

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the index without the shard list: ``settings`` (method, dtype, reduction,
        shard and batch size, seed, target mode, attribute kwargs, model fingerprint, user
        metadata), ``num_examples``, ``num_shards``, ``example_shape``, ``dtype``,
        ``has_targets``."""
        meta = {k: v for k, v in self._index.items() if k != "shards"}
        return json.loads(json.dumps(meta))

    @property
    def shape(self) -> torch.Size:
        """Shape of one example's attribution."""
        return torch.Size(self._index["example_shape"])

    @property
    def dtype(self) -> torch.dtype:
        """The stored dtype (``torch.float16`` or ``torch.float32``)."""
        return getattr(torch, self._index["dtype"])

    @property
    def shard_paths(self) -> list[Path]:
        """Paths of the attribution shards, in data order."""
        return [self._root / shard["file"] for shard in self._shards]

    @property
    def targets(self) -> Tensor | None:
        """The target of every example (``int64``, shape ``(N,)``), or None if not stored.

        Targets are stored when they are one integer per example (labels, predictions, or a
        callable's per-example classes).
        """
        if not self._index.get("has_targets"):
            return None
        if self._targets is None:
            parts = []
            for shard in self._shards:
                data = read_checked(
                    self._root / shard["targets_file"],
                    shard["targets_bytes"],
                    shard["targets_sha256"],
                )
                parts.append(np.load(io.BytesIO(data), allow_pickle=False))
            self._targets = torch.from_numpy(np.concatenate(parts).astype(np.int64))
        return self._targets.clone()

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return (
            f"AttributionStore({str(self._root)!r}, examples={self._length}, "
            f"shape={tuple(self.shape)}, dtype={self._index['dtype']}, "
            f"shards={len(self._shards)})"
        )

    # -- reading ---------------------------------------------------------------------------

    def _load(self, shard_id: int) -> np.ndarray:
        if self._cache is not None and self._cache[0] == shard_id:
            return self._cache[1]
        shard = self._shards[shard_id]
        data = read_checked(self._root / shard["file"], shard["bytes"], shard["sha256"])
        array = np.load(io.BytesIO(data), allow_pickle=False)
        expected = (shard["stop"] - shard["start"], *self._index["example_shape"])
        if array.shape != expected or array.dtype != self._np_dtype:
            raise StoreError(
                f"shard file {self._root / shard['file']} holds {array.dtype} {array.shape}, "
                f"the index says {np.dtype(self._np_dtype)} {expected}"
            )
        self._cache = (shard_id, array)
        return array

    def load_shard(self, shard_id: int) -> Tensor:
        """All attributions of one shard, stacked (a fresh tensor).

        Args:
            shard_id: Index of the shard, in ``[0, len(store.shard_paths))``.

        Returns:
            A tensor of shape ``(examples in the shard, *store.shape)``.

        Raises:
            IndexError: If ``shard_id`` is out of range.
            StoreError: If the shard is missing, truncated or corrupted.
        """
        if isinstance(shard_id, bool) or not isinstance(shard_id, int):
            raise TypeError(f"shard_id must be an int, got {type(shard_id).__name__}")
        if not 0 <= shard_id < len(self._shards):
            raise IndexError(f"shard_id {shard_id} out of range [0, {len(self._shards)})")
        return torch.from_numpy(self._load(shard_id).copy())

    def _example(self, i: int) -> Tensor:
        k = i // self._shard_size
        return torch.from_numpy(self._load(k)[i - self._shards[k]["start"]].copy())

    def __getitem__(self, item: int | slice) -> Tensor:
        if isinstance(item, slice):
            indices = range(*item.indices(self._length))
            if len(indices) == 0:
                return torch.empty((0, *self.shape), dtype=self.dtype)
            return torch.stack([self._example(i) for i in indices])
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"store indices must be ints or slices, got {type(item).__name__}")
        i = int(item)
        if i < 0:
            i += self._length
        if not 0 <= i < self._length:
            raise IndexError(f"index {int(item)} out of range for a store of {self._length}")
        return self._example(i)

    def __iter__(self) -> Iterator[Tensor]:
        for k in range(len(self._shards)):
            array = self._load(k)
            for row in array:
                yield torch.from_numpy(row.copy())

    def verify(self) -> None:
        """Check the size and checksum of every shard file.

        Raises:
            StoreError: Naming the first missing, truncated or corrupted file.
        """
        for shard in self._shards:
            for key in ("", "targets_"):
                if shard.get(key + "file") is not None:
                    read_checked(
                        self._root / shard[key + "file"],
                        shard[key + "bytes"],
                        shard[key + "sha256"],
                    )
