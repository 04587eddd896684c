"""Scores of the quality benchmark that :mod:`captum_smooth.metrics` does not give as such.

The total variation at the benchmark's settings, the seeded and clamped perturbation of the
max-sensitivity score, and the rank correlation of the model-randomisation check.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from benchmarks._quality_methods import BOUNDS
from captum_smooth.metrics import total_variation

__all__ = ["SENSITIVITY_RADIUS", "clamped_uniform_perturbation", "spearman_rows", "tv"]

SENSITIVITY_RADIUS = 0.02  # Captum's default L-inf radius (pixel range [0, 1])


def tv(maps: Tensor, n_scales: int) -> Tensor:
    """Total variation per example: ``n_scales`` scales, 99th percentile, sigma 2/3."""
    return total_variation(
        maps, n_scales=n_scales, percentile=99.0, min_size=2, sigma=2.0 / 3.0, subtract_min=False
    )


def clamped_uniform_perturbation(seed: int) -> Callable[..., Any]:
    """Captum's uniform L-inf perturbation, drawn from a seeded generator and clamped to the
    data range (AdaptGrad refuses inputs outside its bounds, and the model never saw any)."""
    generator = torch.Generator().manual_seed(seed)

    def perturb(inputs: Any, perturb_radius: float = SENSITIVITY_RADIUS) -> Any:
        items = inputs if isinstance(inputs, tuple) else (inputs,)
        out = tuple(
            (x + (2.0 * torch.rand(x.shape, generator=generator) - 1.0) * perturb_radius).clamp(
                *BOUNDS
            )
            for x in items
        )
        return out if isinstance(inputs, tuple) else out[0]

    return perturb


def spearman_rows(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of ``|a|`` and ``|b|`` (channel sums), per example.

    Average ranks on ties; a constant map gives NaN (the correlation is undefined).
    """

    def ranks(v: Tensor) -> Tensor:
        out = torch.empty_like(v)
        for i, row in enumerate(v):
            _, inverse, counts = torch.unique(row, return_inverse=True, return_counts=True)
            ends = counts.cumsum(0).to(v.dtype)
            out[i] = (ends - (counts.to(v.dtype) - 1) / 2)[inverse]
        return out

    ra = ranks(a.abs().sum(dim=1).flatten(1).double())
    rb = ranks(b.abs().sum(dim=1).flatten(1).double())
    ra, rb = ra - ra.mean(dim=1, keepdim=True), rb - rb.mean(dim=1, keepdim=True)
    denom = (ra.norm(dim=1) * rb.norm(dim=1)).clamp_min(1e-300)
    rho = (ra * rb).sum(dim=1) / denom
    constant = (ra.norm(dim=1) == 0) | (rb.norm(dim=1) == 0)
    return torch.where(constant, torch.full_like(rho, float("nan")), rho).float()
