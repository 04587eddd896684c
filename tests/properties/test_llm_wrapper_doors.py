"""Property suite of the LLM wrappers (captum_smooth.llm): every argument's bad values give a
clear error naming it; without noise they give Captum's own result.

Doors: ``llm gradient`` (SmoothLLMGradientAttribution over LayerIntegratedGradients) and
``llm perturbation`` (SmoothLLMAttribution over FeatureAblation), on the tiny random GPT-2 of
tests/llm/tiny_lm.py (nothing downloaded).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

import torch
from captum.attr import (
    FeatureAblation,
    LayerIntegratedGradients,
    LLMAttribution,
    LLMGradientAttribution,
    Saliency,
    TextTokenInput,
)
from doors import expect_clear_error, expect_exact
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_smooth import SmoothLLMAttribution, SmoothLLMGradientAttribution

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "llm"))
from tiny_lm import WORDS, make_gpt2, make_tokenizer

MODEL = make_gpt2()
TOKENIZER = make_tokenizer()
PROMPT = "the cat sat on the"
LONG = torch.long

# (argument, bad value, other keywords the case needs); the argument's name must be in the
# message. Values every door refuses alike first.
COMMON_BAD: list[tuple[str, Any, dict[str, Any]]] = [
    ("target", torch.tensor([-1]), {}),
    ("target", torch.tensor([len(WORDS)]), {}),
    ("target", torch.tensor([1.5]), {}),
    ("target", torch.tensor([[1, 2]]), {}),
    ("target", torch.tensor([], dtype=LONG), {}),
    ("target", 3, {}),
    ("target", ["mat"], {}),
    ("target", " ", {}),
    ("gen_args", "x", {}),
    ("gen_args", {"max_new_tokens": 2}, {}),
    ("baselines", "x", {}),
    ("n_weight_samples", 0, {}),
    ("n_weight_samples", "a", {}),
    ("nt_type", "nope", {}),
    ("reducer", "nope", {}),
    ("generator", "a", {}),
    ("generator", 1.5, {}),
    ("generator", 2**70, {}),
    ("show_progress", "no", {}),
    ("return_error", "no", {}),
    ("tolerance", -1.0, {}),
    ("tolerance", "a", {}),
    ("min_samples", 1, {"tolerance": 0.1}),
    ("max_samples", 0, {"tolerance": 0.1}),
    ("sampling", "nope", {}),
    ("weight_stdev", -1.0, {}),
    ("weight_stdev", "a", {}),
    ("weight_stdev", math.nan, {}),
    ("noise_type", "nope", {"weight_stdev": 0.05}),
    ("parameters", "nope", {"weight_stdev": 0.05}),
    ("parameters", 3, {"weight_stdev": 0.05}),
    ("exclude", 3, {"weight_stdev": 0.05}),
    ("noise_layer", MODEL.transformer.wte, {}),
    ("weight_noise", None, {}),
    ("additional_forward_args", (), {}),
    ("inp", PROMPT, {}),
    ("inp", None, {}),
]

GRADIENT_BAD: list[tuple[str, Any, dict[str, Any]]] = [
    *COMMON_BAD,
    ("n_steps", 0, {}),
    ("n_steps", "a", {}),
    ("method", "nope", {}),
    ("internal_batch_size", 0, {}),
    ("baselines", torch.zeros(1, 9, dtype=LONG), {}),
    ("nt_samples", 0, {}),
    ("nt_samples", -1, {}),
    ("nt_samples", 1.5, {}),
    ("nt_samples_batch_size", 0, {}),
    ("nt_samples_batch_size", "x", {}),
    ("stdevs", -1.0, {}),
    ("stdevs", "a", {}),
    ("stdevs", math.nan, {}),
    ("kernel", "nope", {}),
    ("kernel", 3, {}),
    ("include_clean", "no", {}),
    ("n_weight_samples", 2, {}),  # draws without `weight_stdev` would be equal
    ("noise_type", "additive", {}),  # weight-noise details without `weight_stdev`
    ("exclude", ["ln_f"], {}),
    ("sample_transform", None, {}),
    ("draw_baseline_from_distrib", True, {}),
]

PERTURBATION_BAD: list[tuple[str, Any, dict[str, Any]]] = [
    *COMMON_BAD,
    ("perturbations_per_eval", 0, {}),
    ("nt_samples", 0, {"stdevs": 0.1}),
    ("nt_samples", 2, {}),  # samples without `stdevs` would be equal
    ("stdevs", -1.0, {}),
    ("stdevs", "a", {}),
    ("stdevs", math.nan, {}),
    ("weight_stdev", None, {"n_weight_samples": 2}),
    ("num_trials", 0, {}),
    ("num_trials", 2, {}),
    ("use_cached_outputs", "no", {}),
    ("use_cached_outputs", True, {"stdevs": 0.1}),
    ("forward_in_tokens", "no", {}),
    ("nt_samples_batch_size", 2, {}),
    ("kernel", "laplace", {}),
    ("include_clean", True, {}),
]


def _gradient() -> SmoothLLMGradientAttribution:
    return SmoothLLMGradientAttribution(
        LayerIntegratedGradients(MODEL, MODEL.transformer.wte), TOKENIZER
    )


def _perturbation() -> SmoothLLMAttribution:
    return SmoothLLMAttribution(FeatureAblation(MODEL), TOKENIZER)


DOORS = {
    "llm gradient": (_gradient, {"nt_samples": 2, "n_steps": 2}, GRADIENT_BAD),
    "llm perturbation": (_perturbation, {"n_weight_samples": 2}, PERTURBATION_BAD),
}


def _call(door: str, name: str, value: Any, extra: dict[str, Any]) -> Any:
    build, defaults, _ = DOORS[door]
    kwargs: dict[str, Any] = {"target": "mat", "generator": 0, **defaults, **extra, name: value}
    inp = kwargs.pop("inp", TextTokenInput(PROMPT, TOKENIZER))
    if name == "gen_args":
        kwargs["target"] = kwargs["target"] if isinstance(value, dict) else None
    return lambda: build().attribute(inp, **kwargs)


@pytest.mark.parametrize(
    ("door", "i"), [(d, i) for d, (_, _, bad) in DOORS.items() for i in range(len(bad))]
)
def test_every_bad_value_is_a_clear_error_naming_it(door: str, i: int) -> None:
    name, value, extra = DOORS[door][2][i]
    expect_clear_error(door, _call(door, name, value, extra), name)


@pytest.mark.parametrize(
    ("door", "name", "build"),
    [
        ("llm gradient", "attr_method", lambda: SmoothLLMGradientAttribution(3, TOKENIZER)),
        (
            "llm gradient",
            "attr_method",
            lambda: SmoothLLMGradientAttribution(Saliency(MODEL), TOKENIZER),
        ),
        (
            "llm gradient",
            "tokenizer",
            lambda: _gradient().__class__(
                LayerIntegratedGradients(MODEL, MODEL.transformer.wte), None
            ),
        ),
        ("llm perturbation", "attr_method", lambda: SmoothLLMAttribution(3, TOKENIZER)),
        ("llm perturbation", "tokenizer", lambda: SmoothLLMAttribution(FeatureAblation(MODEL), 3)),
        (
            "llm perturbation",
            "attr_target",
            lambda: SmoothLLMAttribution(FeatureAblation(MODEL), TOKENIZER, attr_target="nope"),
        ),
    ],
)
def test_constructor_arguments_are_named(door: str, name: str, build: Any) -> None:
    expect_clear_error(door, build, name)


SETTINGS = settings(max_examples=4, derandomize=True, database=None, deadline=None)
PROMPTS = st.lists(st.sampled_from(WORDS[1:]), min_size=2, max_size=5).map(" ".join)


@SETTINGS
@given(prompt=PROMPTS, target=st.sampled_from(["mat", "the dog", "park ."]))
def test_without_noise_the_gradient_door_gives_captums_result(prompt: str, target: str) -> None:
    lig = LayerIntegratedGradients(MODEL, MODEL.transformer.wte)
    inp = TextTokenInput(prompt, TOKENIZER)
    plain = LLMGradientAttribution(lig, TOKENIZER).attribute(inp, target=target, n_steps=4)
    expect_exact(
        "llm gradient",
        lambda: SmoothLLMGradientAttribution(lig, TOKENIZER).attribute(
            inp, target=target, n_steps=4, stdevs=0.0, nt_samples=1
        ),
        lambda got: torch.testing.assert_close(got.token_attr, plain.token_attr),
    )


@SETTINGS
@given(prompt=PROMPTS, target=st.sampled_from(["mat", "the dog", "park ."]))
def test_without_noise_the_perturbation_door_gives_captums_result(prompt: str, target: str) -> None:
    inp = TextTokenInput(prompt, TOKENIZER)
    plain = LLMAttribution(FeatureAblation(MODEL), TOKENIZER).attribute(inp, target=target)
    expect_exact(
        "llm perturbation",
        lambda: _perturbation().attribute(
            inp, target=target, weight_stdev=None, n_weight_samples=1
        ),
        lambda got: torch.testing.assert_close(got.seq_attr, plain.seq_attr),
    )
