"""The argument checks of explain_dataset, and how two runs' settings differ.

Every check raises the TypeError or ValueError that :func:`~captum_smooth.explain_dataset`
documents, before anything is written.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._warnings import warn
from ._data import DataSource

__all__ = [
    "TargetLike",
    "check_attribute_kwargs",
    "check_device",
    "check_dtype",
    "check_metadata",
    "check_method_and_out",
    "check_reduction",
    "check_seed",
    "check_target",
    "default_device",
    "settings_diff",
    "warn_if_training",
]

#: What explain_dataset accepts as ``target``.
TargetLike = str | int | Callable[[Tensor, "Tensor | None"], Any] | None

_DTYPES = {torch.float16: "float16", torch.float32: "float32"}
_REDUCTIONS = (None, "sum", "abs_sum", "mean")
_TARGET_MODES = ("label", "prediction")
_MAX_SEED = 2**63
# A difference longer than this (both sides) is shown cut, each side to _SHOWN_CHARS.
_LONG_DIFF = 240
_SHOWN_CHARS = 117


def check_dtype(dtype: Any) -> str:
    """The canonical name (``"float16"`` or ``"float32"``) of a storage dtype or its alias."""
    if isinstance(dtype, str):
        # "half" and "float" are torch's aliases: stored under the canonical name.
        dtype = getattr(torch, dtype, dtype)
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(
        f"dtype must be torch.float16 or torch.float32 (or their names), got {dtype!r}"
    )


def check_method_and_out(method: Any, out: Any) -> None:
    """Refuse a ``method`` without ``attribute`` and an ``out`` that is not path-like."""
    if isinstance(method, type):
        raise TypeError(
            f"method must be a Captum attribution made on a model ({method.__name__}(model)), "
            f"got the class {method.__name__}"
        )
    if not hasattr(method, "attribute") or not callable(method.attribute):
        raise TypeError(f"method must be a Captum attribution, got {type(method).__name__}")
    if not isinstance(out, (str, Path)) and not hasattr(out, "__fspath__"):
        raise TypeError(f"out must be a str or path-like, got {type(out).__name__}")


def check_reduction(reduce_channels: Any) -> None:
    """Refuse a ``reduce_channels`` other than None, ``"sum"``, ``"abs_sum"``, ``"mean"``."""
    if reduce_channels not in _REDUCTIONS:
        raise ValueError(
            f"reduce_channels must be None, 'sum', 'abs_sum' or 'mean', got {reduce_channels!r}"
        )


def check_seed(seed: Any, attribute_kwargs: dict[str, Any]) -> None:
    """Refuse a seed that is not None or an int in ``[0, 2**63)``, or a seed with a generator.

    Args:
        seed: The ``seed`` argument.
        attribute_kwargs: The kwargs for ``method.attribute``.
    """
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if not 0 <= seed < _MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    # the per-batch generators would silently replace the caller's own
    if "generator" in attribute_kwargs:
        raise ValueError(
            "pass either seed (per-batch generators) or generator, not both; use seed=None "
            "to pass your own generator"
        )


def check_metadata(metadata: Any) -> Any:
    """``metadata`` as it will read back from JSON (None stays None)."""
    if metadata is None:
        return None
    try:
        # NaN is not JSON, and NaN != NaN would refuse every resumption as "other settings"
        return json.loads(json.dumps(metadata, sort_keys=True, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None


def check_device(device: Any) -> torch.device | None:
    """``device`` as a ``torch.device`` (None stays None), refused if torch cannot use it here.

    Raises:
        TypeError: Not a str, ``torch.device``, int (a CUDA index) or None.
        ValueError: Not a device name, or a CUDA/MPS device this machine does not have.
    """
    if device is None:
        return None
    if isinstance(device, bool) or not isinstance(device, (str, int, torch.device)):
        raise TypeError(
            f"device must be a torch.device, a str or None, got {type(device).__name__}"
        )
    if isinstance(device, int):  # torch's meaning: a CUDA index
        if device < 0:
            raise ValueError(f"device as a CUDA index must be >= 0, got {device}")
        device = f"cuda:{device}"
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(
            f"device {device!r} is not a device torch knows (e.g. 'cpu', 'cuda:0')"
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (dev.index or 0) >= count:
            raise ValueError(f"device {device!r}: this machine has {count} CUDA device(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r}: MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        # xpu, hpu, ...: their torch module says; meta (no data to explain) has none
        is_available = getattr(getattr(torch, dev.type, None), "is_available", None)
        if not (callable(is_available) and is_available()):
            raise ValueError(f"device {device!r}: this machine has no {dev.type} device to run on")
    return dev


def check_attribute_kwargs(method: Any, attribute_kwargs: dict[str, Any]) -> None:
    """Refuse the ``attribute_kwargs`` that ``method.attribute`` cannot take.

    ``inputs`` come from ``data``; a name ``attribute`` does not
    have (when it takes no ``**kwargs``) would fail in the first batch, after the store is
    made.
    """
    if "inputs" in attribute_kwargs:
        raise TypeError("inputs are given by explain_dataset's data, not an attribute kwarg")
    try:
        params = inspect.signature(method.attribute).parameters
    except (TypeError, ValueError):  # no signature to read: the first call will tell
        return
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(attribute_kwargs) - set(params))
    if unknown:
        raise TypeError(
            f"{', '.join(map(repr, unknown))}: not an argument of explain_dataset nor of "
            f"{type(method).__name__}.attribute (which takes {', '.join(params)})"
        )


def check_target(target: Any, source: DataSource) -> None:
    """Refuse a ``target`` explain_dataset does not take, and ``"label"`` without labels.

    Args:
        target: The ``target`` argument.
        source: The data (whether it has labels).
    """
    if isinstance(target, str):
        if target not in _TARGET_MODES:
            raise ValueError(
                f"target must be 'label', 'prediction', a callable, an int or None, got {target!r}"
            )
        if target == "label" and not source.has_labels:
            raise ValueError(
                "target='label' needs labels, but data gives inputs only; use "
                "target='prediction' or a callable"
            )
    elif not (target is None or callable(target) or isinstance(target, int)):
        raise TypeError(
            "target must be 'label', 'prediction', a callable (inputs, labels) -> targets, an "
            f"int or None, got {type(target).__name__}"
        )
    elif isinstance(target, bool):
        raise TypeError("target must not be a bool")


def warn_if_training(forward_func: Any) -> None:
    """Warn if the model is in training mode; to be called from explain_dataset itself."""
    module = getattr(forward_func, "__self__", forward_func)
    if isinstance(module, nn.Module) and module.training:
        warn(
            "the model is in training mode (dropout and BatchNorm batch statistics make the "
            "attributions depend on the batch); call model.eval() first",
            UserWarning,
        )


def default_device(forward_func: Any) -> torch.device:
    """The device of the model's first parameter (else buffer), or the CPU."""
    module = getattr(forward_func, "__self__", forward_func)
    if isinstance(module, nn.Module):
        for param in module.parameters():
            return param.device
        for buffer in module.buffers():
            return buffer.device
    return torch.device("cpu")


def settings_diff(stored: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """One line per setting that differs, for an error message.

    Args:
        stored: The settings of the store (or of another rank).
        asked: The settings of this call.

    Returns:
        Lines ``"  key: stored <json>, asked <json>"``, sorted by key; empty if equal.
    """
    lines = []
    for key in sorted(set(stored) | set(asked)):
        if stored.get(key) != asked.get(key):
            old = json.dumps(stored.get(key), sort_keys=True)
            new = json.dumps(asked.get(key), sort_keys=True)
            if len(old) + len(new) > _LONG_DIFF:
                old, new = old[:_SHOWN_CHARS] + "...", new[:_SHOWN_CHARS] + "..."
            lines.append(f"  {key}: stored {old}, asked {new}")
    return lines
