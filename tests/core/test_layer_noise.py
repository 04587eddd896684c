"""Noise at a layer's output for integer inputs (token ids)."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import LayerGradientXActivation, LayerIntegratedGradients
from torch import nn

from captum_smooth import SmoothTunnel


class TokenModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(20, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.embedding(ids)).mean(dim=1))


def test_integer_ids_with_noise_at_the_embedding() -> None:
    model = TokenModel()
    ids = torch.tensor([[1, 4, 7, 2], [3, 3, 9, 0]])
    tunnel = SmoothTunnel(LayerGradientXActivation(model, model.embedding))
    attr = tunnel.attribute(
        ids, nt_samples=6, stdevs=0.1, noise_layer=model.embedding, target=0, generator=0
    )
    assert attr.shape == (2, 4, 8)
    assert bool(torch.isfinite(attr).all())
    # Zero noise gives the plain layer attribution.
    plain = LayerGradientXActivation(model, model.embedding).attribute(ids, target=0)
    zero = tunnel.attribute(
        ids, nt_samples=3, stdevs=0.0, noise_layer=model.embedding, target=0, generator=0
    )
    torch.testing.assert_close(zero, plain)
    # Reproducible, and really noisy.
    again = tunnel.attribute(
        ids, nt_samples=6, stdevs=0.1, noise_layer=model.embedding, target=0, generator=0
    )
    assert torch.equal(attr, again) and not torch.allclose(attr, plain)


def test_noise_layer_std_via_gradient_x_activation() -> None:
    # For LayerGradientXActivation the attribution is grad * activation; with a linear head on
    # the raw embedding, grad is constant, so attribution / grad recovers the noisy activation.
    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.embedding = nn.Embedding(10, 200)
            self.head = nn.Linear(200, 2)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.embedding(ids).sum(dim=1))

    model = Flat()
    ids = torch.tensor([[1, 2]])
    method = LayerGradientXActivation(model, model.embedding, multiply_by_inputs=True)
    grad = model.head.weight[0].detach()
    clean = model.embedding(ids).detach()
    var = SmoothTunnel(method).attribute(
        ids,
        nt_type="vargrad",
        nt_samples=400,
        stdevs=0.5,
        noise_layer=model.embedding,
        target=0,
        generator=3,
    )
    # Var[grad * (e + t)] = grad^2 * sigma^2 per element.
    ratio = (var / (grad**2 * 0.25)).flatten()
    n = 400
    assert abs(ratio.mean().item() - 1) < 5 * math.sqrt(2 / n) / math.sqrt(ratio.numel())
    assert clean.shape == (1, 2, 200)


def test_layer_integrated_gradients_on_token_ids() -> None:
    model = TokenModel()
    ids = torch.tensor([[1, 4, 7, 2]])
    attr, delta = SmoothTunnel(LayerIntegratedGradients(model, model.embedding)).attribute(
        ids,
        nt_samples=4,
        stdevs=0.05,
        noise_layer=model.embedding,
        target=2,
        generator=0,
        baselines=torch.zeros_like(ids),
        n_steps=8,
        return_convergence_delta=True,
    )
    assert attr.shape == (1, 4, 8) and delta.shape == (4,)


def test_integer_inputs_without_noise_layer() -> None:
    model = TokenModel()
    with pytest.raises(TypeError, match="noise_layer"):
        SmoothTunnel(LayerGradientXActivation(model, model.embedding)).attribute(
            torch.tensor([[1, 2]]), target=0
        )


def test_integer_inputs_without_noise_are_fine() -> None:
    # Weight noise alone (NoiseGrad) on token ids draws no input noise: no layer needed.
    model = TokenModel()
    ids = torch.tensor([[1, 4, 7, 2]])
    method = LayerGradientXActivation(model, model.embedding)
    attr = SmoothTunnel(method).attribute(ids, nt_samples=2, stdevs=0.0, target=0)
    torch.testing.assert_close(attr, method.attribute(ids, target=0))
