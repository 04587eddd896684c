"""The preset x Captum-class table: every Captum attribution class that works inside SmoothTunnel
works in every preset (primary, layer and neuron methods alike).

The classes come from ``captum.attr.__all__`` itself, so a class Captum adds later is tested
(or must be named below with the reason it is left out).
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from captum import attr as captum_attr
from captum.attr import LayerAttribution, NeuronAttribution
from captum.attr._utils.attribution import Attribution
from torch import Tensor, nn

from captum_smooth import AdaptGrad, FusionGrad, NoiseGrad, SmoothGrad, SmoothTaylor, SmoothTunnel

#: Classes of ``captum.attr.__all__`` that are not attribution methods to smooth, and why.
NOT_METHODS = {
    "Attribution": "abstract base",
    "GradientAttribution": "abstract base",
    "PerturbationAttribution": "abstract base",
    "NeuronAttribution": "abstract base",
    "LayerAttribution": "abstract base",
    "LimeBase": "a framework needing user-written similarity and sampling functions",
    "NoiseTunnel": "the tunnel itself",
    "DataLoaderAttribution": "attributes a whole data loader, not a batch",
    "LLMAttribution": "text inputs (TextTokenInput), not tensors",
    "LLMGradientAttribution": "text inputs (TextTokenInput), not tensors",
    "RemoteLLMAttribution": "a remote service",
}


class ConvNet(nn.Module):
    """Tiny conv net: every Captum method (LRP's rules, GradCam's conv layer) applies to it."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2 * 4 * 4, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.relu(self.conv(x)).flatten(1))


QUADRANTS = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]).view(1, 1, 4, 4)


def _method_classes() -> list[str]:
    names = []
    for name in captum_attr.__all__:
        obj = getattr(captum_attr, name)
        if isinstance(obj, type) and issubclass(obj, Attribution) and name not in NOT_METHODS:
            names.append(name)
    return names


METHOD_CLASSES = _method_classes()


class Column(nn.Module):
    """One output column of the model, for methods without a ``target`` (same weights)."""

    def __init__(self, model: ConvNet, column: int) -> None:
        super().__init__()
        self.model, self.column = model, column

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)[:, self.column]


def _build(name: str, model: ConvNet) -> Attribution:
    cls = getattr(captum_attr, name)
    params = list(inspect.signature(cls.__init__).parameters)
    # LayerFeaturePermutation has no `target`: it explains a one-column output.
    forward = Column(model, 1) if name == "LayerFeaturePermutation" else model
    if "layer" in params or "target_layer" in params:
        return cls(forward, model.conv)
    return cls(forward)


def _inner_kwargs(method: Attribution, name: str) -> dict:
    kwargs: dict = {}
    params = inspect.signature(type(method).attribute).parameters
    if isinstance(method, NeuronAttribution):
        kwargs["neuron_selector"] = (1, 2, 2)
    if "target" in params and name != "LayerFeaturePermutation":
        kwargs["target"] = 1
    if "DeepLiftShap" in name or "GradientShap" in name:
        kwargs["baselines"] = torch.zeros(2, 1, 4, 4)
    if name == "Occlusion":
        kwargs["sliding_window_shapes"] = (1, 2, 2)
    if "feature_mask" in params and not isinstance(method, LayerAttribution):
        # Four 2x2 quadrants: exhaustive Shapley values over 4 groups, not 16 features.
        kwargs["feature_mask"] = QUADRANTS
    if "n_samples" in params:
        kwargs["n_samples"] = 3
    if "n_steps" in params:
        kwargs["n_steps"] = 3
    return kwargs


def _seeded(fn):  # numpy and torch's global streams: Captum's own sampling methods use them
    torch.manual_seed(0)
    np.random.seed(0)
    return fn()


PRESETS = {
    "SmoothGrad": (SmoothGrad, {"noise_level": 0.1, "bounds": (-1.0, 1.0)}),
    "AdaptGrad": (AdaptGrad, {"bounds": (-2.0, 2.0)}),
    "NoiseGrad": (NoiseGrad, {"weight_stdev": 0.1}),
    "FusionGrad": (FusionGrad, {"weight_stdev": 0.1, "n_weight_samples": 1, "stdevs": 0.1}),
    "SmoothTaylor": (SmoothTaylor, {"stdevs": 0.1}),
}


@pytest.fixture(scope="module")
def inputs() -> Tensor:
    return torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("name", METHOD_CLASSES)
def test_every_captum_class_in_every_preset(name: str, preset: str, inputs: Tensor) -> None:
    model = ConvNet().eval()
    method = _build(name, model)
    kwargs = _inner_kwargs(method, name)
    # Works inside SmoothTunnel first: the reference of "works".
    plain = _seeded(
        lambda: SmoothTunnel(method).attribute(
            inputs, nt_samples=2, stdevs=0.1, generator=0, **kwargs
        )
    )
    cls, options = PRESETS[preset]
    if preset == "SmoothTaylor" and isinstance(method, LayerAttribution):
        # The Taylor term multiplies by x - z: attributions must be shaped like the inputs.
        with pytest.raises(ValueError, match="layer methods are not supported"):
            cls(model, method)
        return
    smoother = cls(model, method)
    budget = {"n_weight_samples": 2} if preset == "NoiseGrad" else {"nt_samples": 2}

    def call() -> Tensor:
        return smoother.attribute(inputs, generator=0, **budget, **options, **kwargs)

    out = _seeded(call)
    assert type(out) is type(plain)
    assert out.shape == plain.shape
    assert out.dtype == plain.dtype
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize(
    "name", ["Saliency", "NeuronGradient", "LayerGradCam", "IntegratedGradients"]
)
def test_smoothgrad_with_captum_stdevs_is_smoothtunnel(name: str, inputs: Tensor) -> None:
    model = ConvNet().eval()
    method = _build(name, model)
    kwargs = _inner_kwargs(method, name)
    ours = SmoothGrad(model, method).attribute(
        inputs, stdevs=0.2, nt_samples=3, nt_samples_batch_size=2, generator=5, **kwargs
    )
    reference = SmoothTunnel(method).attribute(
        inputs, stdevs=0.2, nt_samples=3, nt_samples_batch_size=2, generator=5, **kwargs
    )
    assert torch.equal(ours, reference)


def test_the_table_covers_captum() -> None:
    # Neither list may go stale: every excluded name exists, and the table is not trivially small.
    assert set(NOT_METHODS) <= set(captum_attr.__all__)
    assert len(METHOD_CLASSES) >= 35
    classes = [getattr(captum_attr, n) for n in METHOD_CLASSES]
    assert any(issubclass(c, NeuronAttribution) for c in classes)
    assert any(issubclass(c, LayerAttribution) for c in classes)
