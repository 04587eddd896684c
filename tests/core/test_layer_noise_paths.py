"""Noise at a layer: the input's path only for layer methods, and never silently absent.

A model linear after its embedding, ``f(ids) = w . sum_j e(ids_j)``, makes the layer-level
Integrated Gradients exact: ``attr = (h - h_b) * w`` element by element. With noise ``t`` on the
input's layer output only, ``attr = (h + t - h_b) * w``: the samples vary by ``t * w``. With the
noise on the baseline's path too they would not vary at all (the smoothing cancelled exactly).
"""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import (
    FeatureAblation,
    LayerDeepLift,
    LayerGradientXActivation,
    LayerIntegratedGradients,
)
from torch import nn

from captum_smooth import SmoothTunnel


class LinearAfterEmbedding(nn.Module):
    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = nn.Embedding(12, dim)
        self.unused = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(ids).sum(dim=1))


IDS = torch.tensor([[1, 5, 7]])
BASE = torch.zeros_like(IDS)


def test_noise_reaches_the_input_path_only_with_layer_ig() -> None:
    # Var over samples of attr = w^2 sigma^2 per element (0 if the baseline took the noise too).
    model = LinearAfterEmbedding()
    n, sigma = 300, 0.5
    var = SmoothTunnel(LayerIntegratedGradients(model, model.embedding)).attribute(
        IDS,
        nt_type="vargrad",
        nt_samples=n,
        nt_samples_batch_size=50,
        stdevs=sigma,
        noise_layer=model.embedding,
        baselines=BASE,
        target=0,
        n_steps=4,
        generator=0,
    )
    w2 = model.head.weight[0].detach() ** 2
    ratio = (var / (w2 * sigma**2)).flatten()
    # Each element's sample variance / true variance has sd sqrt(2 / (n - 1)); 48 elements.
    assert abs(float(ratio.mean()) - 1) < 5 * math.sqrt(2 / (n - 1)) / math.sqrt(ratio.numel())


def test_mean_over_samples_moves_by_the_mean_noise_times_w() -> None:
    # One sample: attr - plain = t * w exactly, and t has the asked sigma.
    model = LinearAfterEmbedding(dim=400)
    method = LayerIntegratedGradients(model, model.embedding)
    plain = method.attribute(IDS, baselines=BASE, target=1, n_steps=4)
    attr = SmoothTunnel(method).attribute(
        IDS, nt_samples=1, stdevs=0.3, noise_layer=model.embedding, baselines=BASE, target=1,
        n_steps=4, generator=1,
    )  # fmt: skip
    t = (attr - plain) / model.head.weight[1].detach()
    assert abs(float(t.std()) / 0.3 - 1) < 5 / math.sqrt(2 * t.numel())


def test_convergence_delta_uses_the_noisy_end_point() -> None:
    # IG is exact on a linear model: delta = sum(attr) - (f(h + t) - f(h_b)) = 0 only if the end
    # point of the delta takes the same noise as the attribution (and the baseline none).
    model = LinearAfterEmbedding()
    _, delta = SmoothTunnel(LayerIntegratedGradients(model, model.embedding)).attribute(
        IDS, nt_samples=4, stdevs=0.5, noise_layer=model.embedding, baselines=BASE, target=0,
        n_steps=4, generator=0, return_convergence_delta=True,
    )  # fmt: skip
    torch.testing.assert_close(delta, torch.zeros_like(delta), atol=1e-4, rtol=0)


def test_the_users_method_is_not_touched() -> None:
    model = LinearAfterEmbedding()
    method = LayerIntegratedGradients(model, model.embedding)
    forward = method.forward_func
    SmoothTunnel(method).attribute(
        IDS, nt_samples=2, stdevs=0.1, noise_layer=model.embedding, target=0, n_steps=2
    )
    assert method.forward_func is forward
    assert not model.embedding._forward_hooks and not model.head._forward_hooks


@pytest.mark.parametrize("method_kind", ["layer", "perturbation"])
def test_a_noise_layer_the_model_never_runs_is_an_error(method_kind: str) -> None:
    model = LinearAfterEmbedding()
    method = (
        LayerGradientXActivation(model, model.embedding)
        if method_kind == "layer"
        else FeatureAblation(model)
    )
    with pytest.raises(ValueError, match="noise_layer"):
        SmoothTunnel(method).attribute(
            IDS, nt_samples=2, stdevs=0.1, noise_layer=model.unused, target=0
        )
    assert not model.unused._forward_hooks


def test_noise_after_the_attributed_layer_is_an_error() -> None:
    model = LinearAfterEmbedding()
    with pytest.raises(ValueError, match="after the attributed layer"):
        SmoothTunnel(LayerGradientXActivation(model, model.embedding)).attribute(
            IDS, nt_samples=2, stdevs=0.1, noise_layer=model.head, target=0
        )


def test_a_method_that_batches_inputs_with_baselines_is_an_error() -> None:
    # LayerDeepLift evaluates inputs and baselines in one concatenated batch.
    model = LinearAfterEmbedding()
    with pytest.raises(ValueError, match="took no noise"):
        SmoothTunnel(LayerDeepLift(model, model.embedding)).attribute(
            IDS, nt_samples=2, stdevs=0.1, noise_layer=model.embedding, target=0, baselines=BASE
        )


def test_perturbation_methods_see_a_perturbed_model() -> None:
    # FeatureAblation on token ids with noise at the embedding: every pass takes the same draw,
    # so with a linear model ablating token j changes the output by exactly w . (e_j - e_0).
    model = LinearAfterEmbedding()
    plain = FeatureAblation(model).attribute(IDS, target=0, baselines=0)
    noisy = SmoothTunnel(FeatureAblation(model)).attribute(
        IDS, nt_samples=3, stdevs=0.5, noise_layer=model.embedding, target=0, baselines=0,
        generator=0,
    )  # fmt: skip
    torch.testing.assert_close(noisy, plain, atol=1e-5, rtol=1e-5)
