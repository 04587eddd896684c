"""Turning Captum's and torch's deep errors at the inner method's first call into ours.

The type, dtype and length of ``target`` are checked before any work
(:func:`captum_smooth._checks.check_target`), as are the cheap, common arguments passed through
(:func:`captum_smooth._checks.check_passed_through`: ``n_steps``, ``baselines``, ...). The
rest of what the inner method takes is Captum's to check: when the first inner call fails,

1. the clean batch is run through the model once and ``target`` checked against the output's
   shape: a ``target`` that does not fit gets a ValueError naming it;
2. an error raised inside Captum or torch while the model runs on the clean batch is re-raised
   as a ValueError (TypeError for a TypeError) naming the inner method and the keyword
   arguments passed through to it, the original chained as ``__cause__``;
3. anything else (an error of the model's own code, or of a forward that fails on the clean
   batch) is left as it was.
"""

from __future__ import annotations

import math
import os
import traceback
from typing import Any

import captum
import torch
from captum._utils.common import _format_additional_forward_args
from torch import Tensor

from .._checks import target_mismatch

__all__ = [
    "INNER_FAILURES",
    "TARGET_FAILURES",
    "explain_inner_failure",
    "passed_through",
    "raised_in_library",
]

#: What Captum and torch raise when ``target`` does not fit the output.
TARGET_FAILURES = (IndexError, AssertionError, RuntimeError)
#: What Captum and torch raise when an argument passed through does not suit the inner method.
INNER_FAILURES = (*TARGET_FAILURES, TypeError, ValueError)

# The packages whose errors are about the arguments passed to them, not the user's code.
_LIBRARIES = tuple(
    os.path.dirname(os.path.abspath(module.__file__)) + os.sep
    for module in (captum, torch)
    if module.__file__ is not None
)


class _ForwardFailsError(Exception):
    """The model fails on the clean batch: its own error says more than ours would."""


def _output_shape(forward_func: Any, inputs: tuple[Tensor, ...], kwargs: dict) -> tuple | None:
    """The shape of the model's output on the clean batch (None: not a tensor).

    Raises:
        _ForwardFailsError: The forward itself raises.
    """
    extra = _format_additional_forward_args(kwargs.get("additional_forward_args")) or ()
    try:
        with torch.no_grad():
            out = forward_func(*inputs, *extra)
    except Exception as err:
        raise _ForwardFailsError from err
    return tuple(out.shape) if isinstance(out, Tensor) else None


def _check_target_fits(target: Any, shape: tuple, error: Exception) -> None:
    """Raise a ValueError naming ``target`` if it cannot select from an output of ``shape``."""
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


def raised_in_library(error: BaseException) -> bool:
    """Whether the innermost frame of ``error`` is Captum's or torch's (not the user's code)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(_LIBRARIES)


def _shown(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"tensor of shape {tuple(value.shape)} ({value.dtype})"
    if isinstance(value, tuple) and any(isinstance(v, Tensor) for v in value):
        return "(" + ", ".join(_shown(v) for v in value) + ")"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def passed_through(kwargs: dict[str, Any]) -> str:
    """The keyword arguments passed through to the inner method, as ``name=value`` text."""
    if not kwargs:
        return "no keyword arguments"
    return ", ".join(f"`{name}`={_shown(value)}" for name, value in kwargs.items())


def explain_inner_failure(
    method: Any, inputs: tuple[Tensor, ...], kwargs: dict[str, Any], error: Exception
) -> None:
    """Say which argument the inner method's first failed call is about, chained; else return.

    Called with the error of the inner method's first call (the caller re-raises it when this
    returns). See the module docstring for the three cases.

    Args:
        method: The inner Captum method (its class is named).
        inputs: The clean inputs, batch first.
        kwargs: The inner method's keyword arguments, as the user passed them through.
        error: The error the inner call raised (kept as ``__cause__``).

    Raises:
        ValueError: ``target`` does not fit, or Captum or torch refused an argument (TypeError
            when the original is one).

    Examples::

        >>> SmoothTunnel(IntegratedGradients(model)).attribute(x, target=0, method="nope")
        ValueError: IntegratedGradients (the inner method) failed at its first call, with the
        keyword arguments passed through to it: `target`=0, `method`='nope': AssertionError: ...
    """
    try:
        shape = _output_shape(method.forward_func, inputs, kwargs)
    except _ForwardFailsError:
        return  # the model fails on the clean batch: its own error says more
    if isinstance(error, TARGET_FAILURES) and shape is not None:
        _check_target_fits(kwargs.get("target"), shape, error)
    if not raised_in_library(error):
        return  # the user's own code (model, method): left as it was
    kind = TypeError if isinstance(error, TypeError) else ValueError
    raise kind(
        f"{type(method).__name__} (the inner method) failed at its first call, with the keyword "
        f"arguments passed through to it: {passed_through(kwargs)}: "
        f"{type(error).__name__}: {error}"
    ) from error
