"""Presets are configurations of the loop: arguments are routed explicitly, nothing leaks.

Each case here was a defect of presets that copied the loop's signature: ``target=None`` sent
to neuron methods, loop options leaking through ``**kwargs`` (SmoothGrad silently running
FusionGrad), Captum's ``stdevs`` colliding with the preset's sigma.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from captum.attr import LayerActivation, NeuronGradient, Saliency
from captum.attr._utils.attribution import GradientAttribution
from torch import Tensor, nn

from captum_smooth import (
    AdaptGrad,
    FusionGrad,
    NoiseGrad,
    SmoothGrad,
    SmoothTaylor,
    SmoothTunnel,
    WeightNoise,
)
from captum_smooth.core.plan import LOOP_OPTION_DOCS, LoopOptions
from captum_smooth.methods import SmoothingPreset

PRESETS = [SmoothGrad, AdaptGrad, NoiseGrad, FusionGrad, SmoothTaylor]


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).eval()


class KwargsProbe(GradientAttribution):
    """An inner method that records the keyword arguments it receives."""

    def __init__(self, forward_func: Any) -> None:
        super().__init__(forward_func)
        self.seen: list[dict] = []

    def attribute(self, inputs: Tensor, **kwargs: Any) -> Tensor:  # undecorated on purpose
        self.seen.append(dict(kwargs))
        return inputs.detach() * 0 + 1


@pytest.fixture
def x() -> Tensor:
    return torch.rand(3, 5, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("preset", PRESETS)
def test_target_reaches_the_inner_method_only_when_given(preset: type, x: Tensor) -> None:
    model = _model()
    probe = KwargsProbe(model)
    method = preset(model, probe)
    method.attribute(x, generator=0)
    assert probe.seen and all("target" not in kw for kw in probe.seen)
    probe.seen.clear()
    method.attribute(x, target=1, generator=0)
    assert all("target" in kw for kw in probe.seen)


@pytest.mark.parametrize("preset", PRESETS)
def test_neuron_and_layer_methods_without_target(preset: type, x: Tensor) -> None:
    model = _model()
    out = preset(model, NeuronGradient(model, model[0])).attribute(
        x, neuron_selector=2, generator=0
    )
    assert out.shape == x.shape
    if preset is not SmoothTaylor:  # the Taylor term needs attributions shaped like the inputs
        layer = preset(model, LayerActivation(model, model[1])).attribute(x, generator=0)
        assert layer.shape == (3, 4)


@pytest.mark.parametrize("preset", PRESETS)
def test_a_loop_option_the_preset_does_not_take_is_an_error(preset: type, x: Tensor) -> None:
    method = preset(_model())
    taken = set(preset.loop_defaults) | set(preset.parameters) | set(preset.pointers)
    foreign = sorted(set(LoopOptions.names()) - taken)
    assert foreign, f"{preset.__name__} takes every loop option"
    for option in foreign:
        with pytest.raises(ValueError, match=f"{preset.display_name} does not take.*`{option}`"):
            method.attribute(x, target=0, **{option: None})


def test_smoothgrad_does_not_silently_run_fusiongrad(x: Tensor) -> None:
    with pytest.raises(ValueError, match=r"SmoothGrad does not take.*`weight_noise`"):
        SmoothGrad(_model()).attribute(x, target=0, weight_noise=WeightNoise(0.2))


def test_smoothgrad_takes_captums_stdevs(x: Tensor) -> None:
    model = _model()
    ours = SmoothGrad(model).attribute(
        x, target=0, stdevs=0.15, nt_samples=6, nt_samples_batch_size=4, generator=1
    )
    captum_like = SmoothTunnel(Saliency(model)).attribute(
        x, target=0, stdevs=0.15, nt_samples=6, nt_samples_batch_size=4, generator=1
    )
    assert torch.equal(ours, captum_like)


@pytest.mark.parametrize("other", ["noise_level", "bounds"])
def test_smoothgrad_sigma_spelled_twice_names_both(other: str, x: Tensor) -> None:
    value = 0.1 if other == "noise_level" else (0.0, 1.0)
    with pytest.raises(ValueError, match=f"`stdevs`.*`{other}`"):
        SmoothGrad(_model()).attribute(x, target=0, stdevs=0.1, **{other: value})


@pytest.mark.parametrize(
    ("preset", "option", "pointer"),
    [
        (AdaptGrad, "stdevs", "confidence"),
        (NoiseGrad, "stdevs", "weight_stdev"),
        (NoiseGrad, "nt_samples", "n_weight_samples"),
    ],
)
def test_captum_spellings_get_a_pointer(preset: type, option: str, pointer: str, x: Tensor) -> None:
    with pytest.raises(ValueError, match=f"`{option}`.*`{pointer}`"):
        preset(_model()).attribute(x, target=0, **{option: 0.1 if option == "stdevs" else 4})


@pytest.mark.parametrize("preset", PRESETS)
def test_signature_and_docs_are_the_configuration(preset: type) -> None:
    params = inspect.signature(preset.attribute).parameters
    assert list(params)[:3] == ["self", "inputs", "target"]
    for name, default in preset.loop_defaults.items():
        assert params[name].default == default
        assert name in LOOP_OPTION_DOCS
    for name, (default, _) in preset.parameters.items():
        assert params[name].default == default
    doc = preset.attribute.__doc__
    for name in [*preset.loop_defaults, *preset.parameters]:
        assert f"{name}:" in doc
    # Captum nests methods through the undecorated function.
    assert hasattr(preset.attribute, "__wrapped__")


@pytest.mark.parametrize("preset", PRESETS)
def test_constructor_is_captums(preset: type, x: Tensor) -> None:
    model = _model()
    by_class = preset(model, attribution_method=Saliency)
    by_instance = preset(model, attribution_method=Saliency(model))
    default = preset(model)
    assert isinstance(by_class, SmoothingPreset)
    for method in (by_class, by_instance, default):
        assert isinstance(method.attribution_method, Saliency)
    with pytest.raises(TypeError, match="attribution_method"):
        preset(model, attribution_method=nn.Linear)


def test_noisegrad_fixes_one_clean_input_per_weight_draw(x: Tensor) -> None:
    method = NoiseGrad(_model())
    method.attribute(x, target=0, n_weight_samples=4, generator=0)
    report = method.last_report
    assert report is not None
    assert report.n_inner_calls == 4 and report.n_weight_samples == 4
    assert report.n_samples.tolist() == [4, 4, 4]
