"""Turning Captum's deep errors about ``target`` into one naming the argument.

The type, dtype and length of ``target`` are checked before any work
(:func:`captum_smooth._checks.check_target`); whether its indices fit the model's output is
only known from the output. When the first inner call fails, the clean batch is run through
the model once and ``target`` checked against the output's shape: a ``target`` that does not
fit gets a ValueError naming it, any other failure is left as it was.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from captum._utils.common import _format_additional_forward_args
from torch import Tensor

from .._checks import target_mismatch

__all__ = ["TARGET_FAILURES", "explain_target_failure"]

#: What Captum and torch raise when ``target`` does not fit the output.
TARGET_FAILURES = (IndexError, AssertionError, RuntimeError)


def _output_shape(forward_func: Any, inputs: tuple[Tensor, ...], kwargs: dict) -> tuple | None:
    extra = _format_additional_forward_args(kwargs.get("additional_forward_args")) or ()
    try:
        with torch.no_grad():
            out = forward_func(*inputs, *extra)
    except Exception:
        return None  # the forward itself fails: the original error says more
    return tuple(out.shape) if isinstance(out, Tensor) else None


def explain_target_failure(
    forward_func: Any, inputs: tuple[Tensor, ...], kwargs: dict[str, Any], error: Exception
) -> None:
    """Raise a ValueError naming ``target`` if it does not fit the model's output, else return.

    A missing ``target`` does not fit an output with more than one value per example.

    Args:
        forward_func: The model (the inner method's ``forward_func``).
        inputs: The clean inputs, batch first.
        kwargs: The inner method's keyword arguments (``target``, ``additional_forward_args``).
        error: The error the inner call raised (chained).

    Raises:
        ValueError: ``target`` does not fit the output's shape.

    Examples::

        >>> try:
        ...     tunnel.attribute(x, target=7)  # a model with 3 outputs
        ... except ValueError as err:
        ...     print(err)  # `target` 7 does not fit the model's output of shape (2, 3): ...
    """
    target = kwargs.get("target")
    shape = _output_shape(forward_func, inputs, kwargs)
    if shape is None:
        return
    if target is None:
        # Only when the inner method's own error is about the target (Captum: "Target not
        # provided when necessary"): wrappers such as the LLM classes pass theirs otherwise.
        if math.prod(shape[1:]) > 1 and "target" in str(error).lower():
            raise ValueError(
                f"`target` is needed: the model's output has shape {shape}, more than one "
                "value per example (give the output index, e.g. target=0)"
            ) from error
        return
    why = target_mismatch(target, shape)
    if why is not None:
        shown = target if not isinstance(target, Tensor) else f"tensor {target.tolist()}"
        raise ValueError(
            f"`target` {shown} does not fit the model's output of shape {shape}: {why}"
        ) from error
