"""The shared engine of the perturbation curves (deletion, insertion, region perturbation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_positive_int
from ._utils import (
    OutputKind,
    _check_inputs,
    _check_maps,
    _check_output,
    _format_target,
    _scores,
    _spatial_importance,
)


class _CheckedCurveArgs(NamedTuple):
    """The arguments every perturbation curve shares, checked and in tensor form."""

    inputs: Tensor  # detached
    importance: Tensor  # (B, P): the channel-summed maps per position
    target: Tensor  # (B,) long
    output: OutputKind


def _check_curve_args(
    inputs: object,
    maps: object,
    target: object,
    output: object,
    batch_size: object,
    *,
    images_only: bool = False,
) -> _CheckedCurveArgs:
    """Check the arguments shared by the deletion, insertion and region-perturbation curves.

    Args:
        inputs: The model's inputs ``(B, D)`` or ``(B, C, *spatial)``.
        maps: Their attributions (see :func:`._utils._spatial_importance` for the shapes).
        target: An int, a sequence of ``B`` ints or a tensor ``()``/``(B,)``.
        output: ``"prob"`` or ``"logit"``.
        batch_size: Perturbed inputs per forward call, an int >= 1.
        images_only: Refuse inputs that are not ``(B, C, H, W)``.

    Returns:
        A :class:`_CheckedCurveArgs`.
    """
    inputs = _check_inputs(inputs)
    if images_only and inputs.dim() != 4:
        raise ValueError(f"`inputs` must be images (B, C, H, W), got shape {tuple(inputs.shape)}")
    maps = _check_maps(maps)
    importance = _spatial_importance(maps.to(inputs.device), inputs)
    output = _check_output(output)
    check_positive_int(batch_size, "batch_size")
    target_t = _format_target(target, inputs.shape[0], inputs.device)
    return _CheckedCurveArgs(inputs, importance, target_t, output)


def _rank_descending(values: Tensor) -> Tensor:
    """Rank ``(B, N)`` of every entry by decreasing value (0 = largest). Ties are broken by the
    lower flat index first (a stable sort), so the order is deterministic."""
    order = torch.sort(values, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    arange = torch.arange(values.shape[1], device=values.device).expand_as(order)
    ranks.scatter_(1, order, arange)
    return ranks


@torch.no_grad()
def _perturbation_scores(
    model: Callable[[Tensor], Tensor],
    start: Tensor,
    fill: Tensor,
    position_rank: Tensor,
    counts: Tensor,
    target: Tensor,
    output: str,
    batch_size: int,
) -> Tensor:
    """Scores ``(B, K)`` of ``target`` for every example and step.

    At step ``k`` the positions whose rank is below ``counts[k]`` take their values from ``fill``
    (all channels), the others from ``start``. ``start`` and ``fill`` are ``(B, ...)`` tensors
    of the model's input shape; ``position_rank`` is ``(B, P)`` with ``P`` the number of
    positions (the product of the dims after the channel dim, or the features of a 2-D input).
    Perturbed inputs are built and run ``batch_size`` at a time, under ``torch.no_grad()``.
    """
    shape = tuple(start.shape)
    b = shape[0]
    p = position_rank.shape[1]
    channels = 1 if start.dim() == 2 else shape[1]
    start_v = start.reshape(b, channels, p)
    fill_v = fill.reshape(b, channels, p)
    k_steps = counts.shape[0]
    counts = counts.to(position_rank.device)
    total = b * k_steps
    out = torch.empty(total, dtype=torch.float64, device=start.device)
    for lo in range(0, total, batch_size):
        rows = torch.arange(lo, min(lo + batch_size, total), device=start.device)
        ex, step = rows // k_steps, rows % k_steps
        mask = (position_rank[ex] < counts[step].unsqueeze(1)).unsqueeze(1)
        batch = torch.where(mask, fill_v[ex], start_v[ex]).reshape((rows.shape[0], *shape[1:]))
        out[lo : lo + rows.shape[0]] = _scores(model, batch, target[ex], output).double()
    return out.reshape(b, k_steps)
