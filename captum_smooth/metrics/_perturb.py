"""The shared engine of the perturbation curves (deletion, insertion, region perturbation)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._utils import _scores


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
