"""Fingerprints of the data behind each shard, so that a store never mixes two data sets.

The settings of a run (method, model, arguments, number of examples) do not say which data
were attributed: the same call on other data of the same length would otherwise reopen the
first run's store. Each shard's manifest therefore keeps a SHA-256 of its inputs and labels,
and a run that finds finished shards reads their data again (cheap next to attributing them)
and compares.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from .._warnings import warn
from ._data import DataSource

__all__ = ["DataFingerprint", "changed_shards"]


def _raw_bytes(t: Tensor) -> bytes:
    """The bytes of ``t`` in row-major order, for any dtype (bfloat16 and bool included)."""
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if flat.numel() == 0:
        return b""
    return flat.view(torch.uint8).numpy().tobytes()


class DataFingerprint:
    """SHA-256 of a run of examples and their labels, whatever batches they came in.

    The inputs and the labels are hashed separately as one byte stream each (rows of a
    contiguous batch follow each other, so batching does not change the streams); the dtype
    and per-example shape of each stream are part of the digest.

    Examples::

        >>> fp = DataFingerprint()
        >>> fp.update(torch.zeros(2, 3), torch.tensor([0, 1]))
        >>> len(fp.hexdigest())
        64
    """

    def __init__(self) -> None:
        self._inputs = hashlib.sha256()
        self._labels = hashlib.sha256()
        self._layouts: set[str] = set()

    def update(self, x: Tensor, y: Tensor | None) -> None:
        """Add one batch: inputs ``x`` and labels ``y`` (or None)."""
        self._layouts.add(f"x:{x.dtype}{tuple(x.shape[1:])}")
        self._inputs.update(_raw_bytes(x))
        if y is not None:
            self._layouts.add(f"y:{y.dtype}{tuple(y.shape[1:])}")
            self._labels.update(_raw_bytes(y))

    def hexdigest(self) -> str:
        """The fingerprint: a 64-character hex string."""
        whole = hashlib.sha256()
        whole.update(";".join(sorted(self._layouts)).encode())
        whole.update(self._inputs.digest())
        whole.update(self._labels.digest())
        return whole.hexdigest()


def _fingerprint(source: DataSource, batches: list[list[int]]) -> str:
    fingerprint = DataFingerprint()
    for x, y in source.batches(batches):
        fingerprint.update(x, y)
    return fingerprint.hexdigest()


def changed_shards(
    manifests: Iterable[tuple[int, dict[str, Any]]],
    source: DataSource,
    batches_of: Any,
) -> list[int]:
    """The ids of the finished shards whose data no longer match their manifest.

    Args:
        manifests: ``(shard id, manifest)`` of every finished shard.
        source: The data of this run.
        batches_of: ``batches_of(shard_id) -> list of index lists``, the batches of a shard.

    Returns:
        The ids whose stored ``data_sha256`` differs from the data's. A manifest without a
        fingerprint (a store of an earlier version) cannot be checked: one warning says so.
    """
    changed, unchecked = [], 0
    for k, manifest in manifests:
        stored = manifest.get("data_sha256")
        if stored is None:
            unchecked += 1
        elif _fingerprint(source, batches_of(k)) != stored:
            changed.append(k)
    if unchecked:
        warn(
            f"{unchecked} finished shard(s) were written without a data fingerprint (an older "
            "captum-smooth): they are kept without checking that the data are the same",
            RuntimeWarning,
        )
    return changed
