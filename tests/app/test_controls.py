"""The command line's controls are the benchmarks' controls (one module, one definition)."""

from __future__ import annotations

import torch
from captum.attr import Saliency

from captum_smooth.app.controls import (
    CONTROL_NAMES,
    BlurredGradient,
    EdgeMap,
    RandomMap,
    control_maps,
    default_blur_sigma,
)


def test_control_maps_match_the_attribution_classes() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 20 * 20, 5),
    ).eval()
    x = torch.rand(1, 3, 20, 20, generator=torch.Generator().manual_seed(1))
    grad = Saliency(model).attribute(x.clone().requires_grad_(), target=2, abs=False).detach()
    maps = control_maps(x, grad, seed=7)
    assert tuple(maps) == CONTROL_NAMES
    sigma = default_blur_sigma(20)
    assert sigma == 1.0 and default_blur_sigma(224) == 224 / 50
    expected = (
        BlurredGradient(model, sigma).attribute(x, target=2),
        EdgeMap(model).attribute(x),
        RandomMap(model, 7).attribute(x),
    )
    for name, want in zip(CONTROL_NAMES, expected):
        assert maps[name].shape == x.shape
        torch.testing.assert_close(maps[name], want)
