"""Argument checks and small tensor helpers shared by the metrics (private)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
from torch import Tensor

from .._checks import resolve_generator
from ..core.targets import INNER_FAILURES, passed_through, raised_in_library

TargetLike = int | Sequence[int] | Tensor
BaselineLike = float | int | Tensor | Callable[[Tensor], Tensor]
OutputKind = Literal["prob", "logit"]


def _check_tensor(value: object, name: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__}")
    return value


def _check_maps(maps: object, min_dim: int = 2) -> Tensor:
    """Check a batch of attribution maps: a floating tensor of rank >= ``min_dim`` without NaN."""
    maps = _check_tensor(maps, "maps")
    if maps.dim() < min_dim:
        raise ValueError(
            f"`maps` must have at least {min_dim} dimensions (batch first), got shape "
            f"{tuple(maps.shape)}"
        )
    if maps.shape[0] == 0 or maps.numel() == 0:
        raise ValueError(f"`maps` must not be empty, got shape {tuple(maps.shape)}")
    if maps.is_complex() or maps.dtype == torch.bool:
        raise TypeError(f"`maps` must be a real (floating or integer) tensor, got {maps.dtype}")
    if not maps.is_floating_point():
        maps = maps.to(torch.get_default_dtype())
    if torch.isnan(maps).any():
        raise ValueError("`maps` contains NaN values")
    if torch.isinf(maps).any():
        raise ValueError("`maps` contains infinite values")
    return maps.detach()


def _channel_reduce_abs(maps: Tensor) -> Tensor:
    """``(B, C, H, W) -> (B, H, W)`` by the sum of absolute values over channels; ``(B, H, W)``
    maps are returned as ``|maps|``."""
    if maps.dim() == 4:
        return maps.abs().sum(dim=1)
    if maps.dim() == 3:
        return maps.abs()
    raise ValueError(
        f"`maps` must have shape (B, C, H, W) or (B, H, W), got shape {tuple(maps.shape)}"
    )


def _check_output(output: object) -> OutputKind:
    if output not in ("prob", "logit"):
        raise ValueError(f"`output` must be 'prob' or 'logit', got {output!r}")
    return output


def _target_from_tensor(target: Tensor, batch_size: int) -> Tensor:
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"`target` must hold integers, got dtype {target.dtype}")
    if target.dim() == 0:
        return target.reshape(1).expand(batch_size)
    if target.dim() == 1 and target.shape[0] == batch_size:
        return target
    raise ValueError(
        f"`target` must be a scalar or have shape ({batch_size},), got shape {tuple(target.shape)}"
    )


def _target_from_sequence(target: Sequence, batch_size: int) -> Tensor:
    if len(target) != batch_size:
        raise ValueError(f"`target` has {len(target)} entries for {batch_size} example(s)")
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in target):
        raise TypeError("`target` as a sequence must hold ints")
    return torch.tensor(list(target), dtype=torch.long)


def _format_target(target: object, batch_size: int, device: torch.device) -> Tensor:
    """An int, a sequence of ints or a tensor of shape ``()``/``(B,)`` -> a long tensor ``(B,)``
    of indices >= 0 (their range is checked against the model's output by :func:`_scores`)."""
    if target is None:
        raise ValueError(
            "`target` is required: an int, a list of ints or a tensor (one per example)"
        )
    if isinstance(target, bool):
        raise TypeError("`target` must be an int, a sequence of ints or a tensor, not a bool")
    if isinstance(target, int):
        out = torch.full((batch_size,), target, dtype=torch.long)
    elif isinstance(target, Tensor):
        out = _target_from_tensor(target, batch_size)
    elif isinstance(target, Sequence) and not isinstance(target, str):
        out = _target_from_sequence(target, batch_size)
    else:
        raise TypeError(
            f"`target` must be an int, a sequence of ints or a tensor, got {type(target).__name__}"
        )
    if bool((out < 0).any()):
        raise ValueError(f"`target` indices must be >= 0, got {out.tolist()[:5]}")
    return out.to(device=device, dtype=torch.long)


def _spatial_importance(maps: Tensor, inputs: Tensor) -> Tensor:
    """Per-position importance ``(B, P)`` from maps shaped like the inputs.

    ``inputs`` is ``(B, C, *S)`` (rank >= 3: channel dim 1, positions ``prod(S)``) or ``(B, D)``
    (every feature is a position). ``maps`` may be shaped like the inputs (summed over channels,
    signed), ``(B, 1, *S)`` or ``(B, *S)``.
    """
    b = inputs.shape[0]
    if maps.shape[0] != b:
        raise ValueError(f"`maps` has batch size {maps.shape[0]} but `inputs` has batch size {b}")
    if inputs.dim() == 2:
        if maps.shape != inputs.shape:
            raise ValueError(
                f"`maps` must have the shape of `inputs` {tuple(inputs.shape)}, got "
                f"{tuple(maps.shape)}"
            )
        return maps.reshape(b, -1)
    spatial = tuple(inputs.shape[2:])
    if maps.shape == inputs.shape:
        return maps.sum(dim=1).reshape(b, -1)
    if tuple(maps.shape) == (b, 1, *spatial):
        return maps.reshape(b, -1)
    if tuple(maps.shape) == (b, *spatial):
        return maps.reshape(b, -1)
    raise ValueError(
        f"`maps` must have shape {tuple(inputs.shape)}, {(b, 1, *spatial)} or {(b, *spatial)} "
        f"to match `inputs`; got {tuple(maps.shape)}"
    )


def _check_inputs(inputs: object) -> Tensor:
    inputs = _check_tensor(inputs, "inputs")
    if inputs.dim() < 2:
        raise ValueError(
            f"`inputs` must have shape (B, D) or (B, C, ...), got shape {tuple(inputs.shape)}"
        )
    if inputs.shape[0] == 0 or inputs.numel() == 0:
        raise ValueError(f"`inputs` must not be empty, got shape {tuple(inputs.shape)}")
    if inputs.is_complex() or inputs.dtype == torch.bool:
        raise TypeError(f"`inputs` must be a real tensor, got {inputs.dtype}")
    if inputs.is_floating_point() and not bool(torch.isfinite(inputs).all()):
        raise ValueError("`inputs` contains NaN or infinite values")
    return inputs.detach()


def _check_model(model: object) -> Callable[[Tensor], Tensor]:
    if not callable(model):
        raise TypeError(f"`model` must be a callable (an nn.Module), got {type(model).__name__}")
    return model


def _check_positive_real(value: object, name: str) -> float:
    """A finite real number > 0 (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a positive real number, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"`{name}` must be finite and > 0, got {value!r}")
    return number


def _check_generator(value: object, name: str, device: torch.device) -> torch.Generator | None:
    """A torch.Generator, an int seed (a fresh generator on ``device``) or None."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, (torch.Generator, numbers.Integral))
    ):
        raise TypeError(f"`{name}` must be a torch.Generator, an int seed or None, got {value!r}")
    try:
        return resolve_generator(value, device)  # type: ignore[arg-type]
    except ValueError as err:
        raise ValueError(f"`{name}`: {err}") from err


def call_named(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``; an error raised inside Captum or torch names ``what`` and the
    keyword arguments passed, the original chained (an error of the user's code is left as it
    was). The ``requires_grad`` flags of the tensors in ``args`` are put back, also on error
    (Captum's gradient methods set them on the user's inputs and leave them set when they fail).
    """
    tensors = [
        t
        for a in args
        for t in (a if isinstance(a, tuple) else (a,))
        if isinstance(t, Tensor) and t.is_leaf
    ]
    flags = [t.requires_grad for t in tensors]
    try:
        return call(*args, **kwargs)
    except INNER_FAILURES as err:
        if not raised_in_library(err):
            raise
        kind = TypeError if isinstance(err, TypeError) else ValueError
        raise kind(
            f"{what} failed, with the keyword arguments passed to it: {passed_through(kwargs)}: "
            f"{type(err).__name__}: {err}"
        ) from err
    finally:
        for t, flag in zip(tensors, flags):
            if t.requires_grad != flag:
                t.requires_grad_(flag)


def _format_baseline(baseline: object, inputs: Tensor, name: str = "baseline") -> Tensor:
    """A float, a tensor broadcastable to ``inputs`` or a callable ``inputs -> tensor``."""
    if callable(baseline) and not isinstance(baseline, Tensor):
        value = baseline(inputs)
        if not isinstance(value, Tensor):
            raise TypeError(f"`{name}` as a callable must return a tensor")
    elif isinstance(baseline, bool):
        raise TypeError(f"`{name}` must be a float, a tensor or a callable, not a bool")
    elif isinstance(baseline, (int, float)):
        value = torch.full((), float(baseline), dtype=inputs.dtype, device=inputs.device)
    elif isinstance(baseline, Tensor):
        value = baseline
    else:
        raise TypeError(
            f"`{name}` must be a float, a tensor or a callable, got {type(baseline).__name__}"
        )
    try:
        value = torch.broadcast_to(value.detach().to(inputs.device, inputs.dtype), inputs.shape)
    except RuntimeError as err:
        raise ValueError(
            f"`{name}` of shape {tuple(value.shape)} does not broadcast to `inputs` of shape "
            f"{tuple(inputs.shape)}"
        ) from err
    return value


def _scores(
    model: Callable[[Tensor], Tensor], batch: Tensor, target: Tensor, output: str
) -> Tensor:
    """The model's score of ``target`` (one per row): softmax probability or raw logit."""
    out = model(batch)
    if not isinstance(out, Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"`model` must return a (N, n_classes) tensor, got {shape}")
    if bool((target >= out.shape[1]).any()):
        raise ValueError(
            f"`target` {target.max().item()} is out of range for the model's {out.shape[1]} outputs"
        )
    if output == "prob":
        out = torch.softmax(out.float() if out.dtype in (torch.float16, torch.bfloat16) else out, 1)
    return out.gather(1, target.reshape(-1, 1)).reshape(-1)


def _trapezoid_unit(y: Tensor, x: Tensor) -> Tensor:
    """Trapezoid rule of ``y`` (..., K) over abscissae ``x`` (K,)."""
    if y.shape[-1] < 2:
        return y[..., 0]
    return torch.trapezoid(y, x, dim=-1)
