"""The LLM wrappers are doors of the router: options stated once, every weight-noise option
NoiseGrad takes, and the one refusal (ValueError) of every loop option they do not take."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

pytest.importorskip("transformers")

import torch
from captum.attr import FeatureAblation, LayerIntegratedGradients, TextTokenInput

from captum_smooth import NoiseGrad, SmoothLLMAttribution, SmoothLLMGradientAttribution
from captum_smooth.core.plan import LoopOptions

from model_state import assert_identical, snapshot

PROMPT = "the cat sat on the"
TARGET = "mat"


def _gradient(model: Any, tokenizer: Any) -> SmoothLLMGradientAttribution:
    return SmoothLLMGradientAttribution(
        LayerIntegratedGradients(model, model.transformer.wte), tokenizer
    )


def _perturbation(model: Any, tokenizer: Any) -> SmoothLLMAttribution:
    return SmoothLLMAttribution(FeatureAblation(model), tokenizer)


DOORS = {"gradient": _gradient, "perturbation": _perturbation}


@pytest.mark.parametrize("door", DOORS)
def test_every_option_not_taken_is_refused_with_value_error(
    door: str, gpt2: Any, tokenizer: Any
) -> None:
    wrapper = DOORS[door](gpt2, tokenizer)
    router = type(wrapper).router
    inp = TextTokenInput(PROMPT, tokenizer)
    refused = [
        n
        for n in [*LoopOptions.names(), *router.pointers]
        if n not in router.loop_defaults and n not in router.parameters
    ]
    assert {"noise_layer", "weight_noise", "additional_forward_args"} <= set(refused)
    before = snapshot(gpt2)
    for name in refused:
        with pytest.raises(ValueError, match=rf"{router.name} does not take .*`{name}`"):
            wrapper.attribute(inp, target=TARGET, **{name: None})
    assert_identical(before, gpt2)


@pytest.mark.parametrize("door", DOORS)
def test_the_wrappers_take_every_weight_noise_option_noisegrad_takes(
    door: str, gpt2: Any, tokenizer: Any
) -> None:
    router = type(DOORS[door](gpt2, tokenizer)).router
    assert set(NoiseGrad.parameters) <= set(router.parameters)
    signature = inspect.signature(type(DOORS[door](gpt2, tokenizer)).attribute)
    assert set(NoiseGrad.parameters) <= set(signature.parameters)


def _scores(wrapper: Any, tokenizer: Any, **kwargs: Any) -> torch.Tensor:
    inp = TextTokenInput(PROMPT, tokenizer)
    result = wrapper.attribute(inp, target=TARGET, generator=0, n_weight_samples=2, **kwargs)
    return result.seq_attr


@pytest.mark.parametrize("door", DOORS)
def test_noise_type_parameters_and_exclude_reach_the_weight_noise(
    door: str, gpt2: Any, tokenizer: Any
) -> None:
    gpt2.eval()
    wrapper = DOORS[door](gpt2, tokenizer)
    extra: dict[str, Any] = {"stdevs": 0.0, "nt_samples": 1} if door == "gradient" else {}
    if door == "gradient":
        extra["n_steps"] = 4
    before = snapshot(gpt2)
    plain = _scores(wrapper, tokenizer, weight_stdev=0.0, **extra)
    noisy = _scores(wrapper, tokenizer, weight_stdev=0.3, **extra)
    assert not torch.allclose(plain, noisy)
    # Every parameter excluded, or none selected: the draws are the clean model.
    nothing = r"^$"
    for kw in ({"exclude": r".*"}, {"parameters": nothing}):
        with pytest.raises(ValueError, match=r"selects no parameter"):
            _scores(wrapper, tokenizer, weight_stdev=0.3, **kw, **extra)
    only_head = _scores(wrapper, tokenizer, weight_stdev=0.3, parameters=r"lm_head|wte", **extra)
    assert not torch.allclose(only_head, noisy)
    additive = _scores(wrapper, tokenizer, weight_stdev=0.3, noise_type="additive", **extra)
    assert not torch.allclose(additive, noisy)
    with pytest.raises(ValueError, match="noise_type"):
        _scores(wrapper, tokenizer, weight_stdev=0.3, noise_type="nope", **extra)
    assert_identical(before, gpt2)


def test_bad_wrapper_arguments_are_named_before_any_work(gpt2: Any, tokenizer: Any) -> None:
    from captum.attr import Saliency

    lig = LayerIntegratedGradients(gpt2, gpt2.transformer.wte)
    for cls in (SmoothLLMGradientAttribution, SmoothLLMAttribution):
        with pytest.raises(TypeError, match=r"`attr_method` must be one of .* got Saliency"):
            cls(Saliency(gpt2), tokenizer)
    with pytest.raises(TypeError, match=r"`tokenizer` must be the model's tokenizer"):
        SmoothLLMGradientAttribution(lig, None)
    with pytest.raises(TypeError, match=r"`tokenizer` must be the model's tokenizer"):
        SmoothLLMAttribution(FeatureAblation(gpt2), "gpt2")


@pytest.mark.parametrize("door", DOORS)
def test_bad_prompt_and_target_are_named(door: str, gpt2: Any, tokenizer: Any) -> None:
    wrapper = DOORS[door](gpt2, tokenizer)
    before = snapshot(gpt2)
    with pytest.raises(ValueError, match=r"`inp` has no tokens"):
        wrapper.attribute(TextTokenInput("", tokenizer), target=TARGET)
    inp = TextTokenInput(PROMPT, tokenizer)
    bad = {
        "2-D": (torch.tensor([[1, 2]]), ValueError, r"1-D tensor, got shape \(1, 2\)"),
        "empty": (torch.tensor([], dtype=torch.long), ValueError, r"non-empty 1-D"),
        "float": (torch.tensor([1.0]), TypeError, r"integer tensor"),
        "blank": ("  ", ValueError, r"empty text"),
        "list": ([1, 2], TypeError, r"`target` must be a text"),
    }
    for target, error, message in bad.values():
        with pytest.raises(error, match=message):
            wrapper.attribute(inp, target=target)
    assert_identical(before, gpt2)
