"""Read access to an attribution store: :class:`AttributionStore`.

The layout of a store directory, and the code that writes and reads each of its files, is in
:mod:`._format`; this module turns the index and the shards into a sequence of tensors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._format import (
    FORMAT,
    FORMAT_VERSION,
    KEY_DTYPE,
    KEY_EXAMPLE_SHAPE,
    KEY_HAS_TARGETS,
    KEY_NUM_EXAMPLES,
    KEY_SETTINGS,
    KEY_SHARD_SIZE,
    KEY_SHARDS,
    NUMPY_DTYPES,
    ShardEntry,
    StoreError,
    check_format,
    check_sizes,
    find_index,
    read_array,
    read_json,
    read_targets,
    verify_entry,
)

# FORMAT, FORMAT_VERSION and StoreError are defined with the format and re-exported here,
# where they have always been importable from.
__all__ = ["FORMAT", "FORMAT_VERSION", "AttributionStore", "StoreError"]


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
        index_path = find_index(self._root)
        index = read_json(index_path)
        check_format(index, index_path)
        self._index: dict[str, Any] = index
        self._shards = [ShardEntry.from_json(obj, index_path) for obj in index[KEY_SHARDS]]
        self._length = int(index[KEY_NUM_EXAMPLES])
        self._shard_size = int(index[KEY_SETTINGS][KEY_SHARD_SIZE])
        self._np_dtype = NUMPY_DTYPES[index[KEY_DTYPE]]
        self._cache: tuple[int, np.ndarray] | None = None
        self._targets: Tensor | None = None
        self._check_shard_layout(index_path)
        if verify:
            self.verify()

    def _check_shard_layout(self, index_path: Path) -> None:
        """Check that the shards follow each other, cover the data and have their sizes.

        Only sizes are checked here (cheap); checksums are checked when a shard is read.
        """
        expected = 0
        for k, shard in enumerate(self._shards):
            if shard.id != k or shard.start != expected:
                raise StoreError(f"{index_path} is inconsistent: shard {k} is out of place")
            expected = shard.stop
            check_sizes(self._root, shard)
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
        meta = {k: v for k, v in self._index.items() if k != KEY_SHARDS}
        return json.loads(json.dumps(meta))

    @property
    def shape(self) -> torch.Size:
        """Shape of one example's attribution."""
        return torch.Size(self._index[KEY_EXAMPLE_SHAPE])

    @property
    def dtype(self) -> torch.dtype:
        """The stored dtype (``torch.float16`` or ``torch.float32``)."""
        return getattr(torch, self._index[KEY_DTYPE])

    @property
    def shard_paths(self) -> list[Path]:
        """Paths of the attribution shards, in data order."""
        return [self._root / shard.file for shard in self._shards]

    @property
    def targets(self) -> Tensor | None:
        """The target of every example (``int64``, shape ``(N,)``), or None if not stored.

        Targets are stored when they are one integer per example (labels, predictions, or a
        callable's per-example classes).
        """
        if not self._index.get(KEY_HAS_TARGETS):
            return None
        if self._targets is None:
            parts = [read_targets(self._root, shard) for shard in self._shards]
            self._targets = torch.from_numpy(np.concatenate(parts).astype(np.int64))
        return self._targets.clone()

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return (
            f"AttributionStore({str(self._root)!r}, examples={self._length}, "
            f"shape={tuple(self.shape)}, dtype={self._index[KEY_DTYPE]}, "
            f"shards={len(self._shards)})"
        )

    # -- reading ---------------------------------------------------------------------------

    def _load(self, shard_id: int) -> np.ndarray:
        if self._cache is not None and self._cache[0] == shard_id:
            return self._cache[1]
        shard = self._shards[shard_id]
        array = read_array(self._root, shard)
        expected = (shard.stop - shard.start, *self._index[KEY_EXAMPLE_SHAPE])
        if array.shape != expected or array.dtype != self._np_dtype:
            raise StoreError(
                f"shard file {self._root / shard.file} holds {array.dtype} {array.shape}, "
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
        return torch.from_numpy(self._load(k)[i - self._shards[k].start].copy())

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
            verify_entry(self._root, shard)
