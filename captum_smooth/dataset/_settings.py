"""The argument checks of explain_dataset, and how two runs' settings differ.

Every check raises the TypeError or ValueError that :func:`~captum_smooth.explain_dataset`
documents, before anything is written.
"""

from __future__ import annotations

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
        return json.loads(json.dumps(metadata, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None


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
