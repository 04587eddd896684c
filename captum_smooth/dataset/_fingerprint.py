"""Fingerprints of a run: its settings, and the data behind each shard.

A store is resumed only by a run with the same settings and the same data, so both are
reduced to digests that are equal across processes and Python sessions for equal runs:

* :func:`run_settings` and :func:`settings_digest`: the settings (method, model weights,
  target, attribute kwargs and the plain options) as JSON, and their SHA-256;
* :class:`DataFingerprint` and :func:`changed_shards`: the data of each shard.

The settings of a run (method, model, arguments, number of examples) do not say which data
were attributed: the same call on other data of the same length would otherwise reopen the
first run's store. Each shard's manifest therefore keeps a SHA-256 of its inputs and labels,
and a run that finds finished shards reads their data again (cheap next to attributing them)
and compares.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._warnings import warn
from ._data import DataSource
from ._files import sha256_bytes

__all__ = ["DataFingerprint", "changed_shards", "run_settings", "settings_digest"]

# Memory addresses in a repr differ from run to run; they are cut out of descriptions.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# How deep the attributes of plain objects are described (deeper ones by their repr).
_MAX_DEPTH = 4


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
    stored_digests: Iterable[tuple[int, str | None]],
    source: DataSource,
    batches_of: Any,
) -> list[int]:
    """The ids of the finished shards whose data no longer match their manifest.

    Args:
        stored_digests: ``(shard id, data fingerprint in its manifest or None)`` of every
            finished shard.
        source: The data of this run.
        batches_of: ``batches_of(shard_id) -> list of index lists``, the batches of a shard.

    Returns:
        The ids whose stored fingerprint differs from the data's. A manifest without a
        fingerprint (a store of an earlier version) cannot be checked: one warning says so.
    """
    changed, unchecked = [], 0
    for k, stored in stored_digests:
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


# ----------------------------------------------------------------------------------------
# The settings of a run.


def _qualname(obj: Any) -> str:
    kind = obj if isinstance(obj, type) else type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _tensor_digest(t: Tensor | np.ndarray) -> dict[str, Any]:
    tensor = torch.as_tensor(t)
    return {
        "tensor": list(tensor.shape),
        "dtype": str(tensor.dtype),
        "sha256": sha256_bytes(_raw_bytes(tensor)),
    }


def _state_digest(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, value in module.state_dict().items():
        digest.update(name.encode())
        digest.update(json.dumps(_tensor_digest(value), sort_keys=True).encode())
    return digest.hexdigest()


def _canonical(obj: Any, depth: int = 0) -> Any:
    """A JSON-able description of ``obj`` that is equal for equal arguments across runs."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, (Tensor, np.ndarray)):
        return _tensor_digest(obj)
    if isinstance(obj, (list, tuple)):
        return [_canonical(v, depth + 1) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _canonical(obj[k], depth + 1) for k in sorted(obj, key=str)}
    if isinstance(obj, (torch.dtype, torch.device)):
        return str(obj)
    if isinstance(obj, torch.Generator):
        return {"generator": obj.initial_seed()}
    if isinstance(obj, nn.Module):
        return {"module": _qualname(obj), "sha256": _state_digest(obj)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return {"type": _qualname(obj), "fields": _canonical(fields, depth + 1)}
    if callable(obj) and hasattr(obj, "__qualname__"):
        return {"callable": f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"}
    if depth < _MAX_DEPTH and hasattr(obj, "__dict__"):
        return {"type": _qualname(obj), "attrs": _canonical(vars(obj), depth + 1)}
    return _ADDRESS.sub("", repr(obj))


def _method_name(method: Any) -> str:
    """``Outer(Inner)`` for a method wrapping another (``attribution_method``)."""
    name = type(method).__name__
    inner = getattr(method, "attribution_method", None)
    if inner is not None and hasattr(inner, "attribute"):
        return f"{name}({_method_name(inner)})"
    return name


def _model_digest(forward_func: Any) -> str | None:
    """The weights' digest of a module (or a bound method of one), else the function's name."""
    module = getattr(forward_func, "__self__", forward_func)
    if isinstance(module, nn.Module):
        return _state_digest(module)
    if callable(forward_func) and hasattr(forward_func, "__qualname__"):
        return f"{getattr(forward_func, '__module__', '?')}.{forward_func.__qualname__}"
    return None


def run_settings(
    method: Any,
    target: str | int | Callable[..., Any] | None,
    attribute_kwargs: dict[str, Any],
    **options: Any,
) -> dict[str, Any]:
    """The run's settings as they read back from JSON: what a resumed run must match.

    Args:
        method: The attribution method.
        target: The ``target`` argument of :func:`~captum_smooth.explain_dataset`.
        attribute_kwargs: The kwargs passed to every ``method.attribute`` call.
        **options: The checked plain settings (dtype, reduce_channels, shard_size, batch_size,
            seed, num_examples, metadata), stored as they are.

    Returns:
        A JSON-able dict.
    """
    forward_func = getattr(method, "forward_func", None)
    settings: dict[str, Any] = {
        "method": _method_name(method),
        "model": _model_digest(forward_func),
        "target": _canonical(target) if callable(target) else target,
        "attribute_kwargs": _canonical(attribute_kwargs),
        **options,
    }
    return json.loads(json.dumps(settings, sort_keys=True))


def settings_digest(settings: dict[str, Any]) -> str:
    """The SHA-256 of ``settings`` (as :func:`run_settings` gives them) that tags each shard.

    Args:
        settings: The run's settings.

    Returns:
        A 64-character hex string.
    """
    return sha256_bytes(json.dumps(settings, sort_keys=True).encode())
