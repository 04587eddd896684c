"""Tiny models for the command-line tests, loaded as ``--model cli_models:NAME``."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["broken_model", "not_a_module", "tiny_cnn"]


def tiny_cnn() -> nn.Module:
    """A seeded 2-layer CNN on ``(N, 3, H, W)`` images with 5 named classes (fast on a CPU)."""
    generator = torch.manual_seed(1234)
    del generator
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 5),
    )
    model.classes = ["ant", "bee", "cat", "dog", "eel"]
    return model.eval()


def not_a_module() -> str:
    """Returns something that is not a model."""
    return "model"


def broken_model() -> nn.Module:
    """Raises while building."""
    raise RuntimeError("weights file missing")
