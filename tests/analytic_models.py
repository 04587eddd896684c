"""Analytic models and probes shared by the tests (exact expectations are known)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Linear(nn.Module):
    """f(x) = x . w (per output column): the smoothed gradient is w for any zero-mean noise."""

    def __init__(self, n_features: int, n_out: int = 2, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(n_out, n_features, generator=g))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.weight.t()


class Cubic(nn.Module):
    """f(x) = sum x_i^3: SmoothGrad's expectation is 3 x^2 + 3 sigma^2."""

    def forward(self, x: Tensor) -> Tensor:
        return (x**3).flatten(1).sum(1, keepdim=True)


class Probe(nn.Module):
    """Wraps a model and records every input batch it is called with."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.seen: list[Tensor] = []

    def forward(self, *args: Tensor) -> Tensor:
        self.seen.append(args[0].detach().clone())
        return self.model(*args)


class NaNOffItsWeight(nn.Module):
    """Logits ``(sqrt(-(w - 1)^2), -1)``: ``(0, -1)`` at the clean ``w = 1`` (class 0), NaN off
    it: under any weight noise a perturbed model classifies nothing (calibration's accuracy 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor) -> Tensor:
        zero = 0.0 * x.sum(dim=1)
        return torch.stack([torch.sqrt(-((self.w - 1) ** 2)) + zero, zero - 1.0], dim=1)
