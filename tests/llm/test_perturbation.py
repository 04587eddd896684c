"""SmoothLLMAttribution (perturbation methods under weight noise) on a tiny random GPT-2."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("transformers")

import torch
from captum.attr import (
    FeatureAblation,
    LLMAttribution,
    LLMAttributionResult,
    TextTemplateInput,
    TextTokenInput,
)

from captum_smooth import SmoothLLMAttribution

from model_state import assert_identical, snapshot

PROMPT = "the cat sat on the"


def test_is_captums_class_and_weight_noise_zero_is_plain(gpt2: Any, tokenizer: Any) -> None:
    smooth = SmoothLLMAttribution(FeatureAblation(gpt2), tokenizer)
    assert isinstance(smooth, LLMAttribution)
    inp = TextTokenInput(PROMPT, tokenizer)
    want = LLMAttribution(FeatureAblation(gpt2), tokenizer).attribute(inp, target="mat .")
    got = smooth.attribute(inp, target="mat .", n_weight_samples=3, weight_stdev=0.0)
    assert isinstance(got, LLMAttributionResult)
    torch.testing.assert_close(got.seq_attr, want.seq_attr, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.token_attr, want.token_attr, rtol=1e-5, atol=1e-6)
    assert int(smooth.last_reports[0].n_samples[0]) == 3


def test_weight_noise_reproducible_and_model_identical(gpt2: Any, tokenizer: Any) -> None:
    smooth = SmoothLLMAttribution(FeatureAblation(gpt2), tokenizer)
    inp = TextTemplateInput("{} {} sat on the", values=["the", "cat"])
    before = snapshot(gpt2)
    kw = {"target": "mat", "n_weight_samples": 3, "weight_stdev": 0.2}
    a, error = smooth.attribute(inp, generator=0, return_error=True, **kw)
    assert_identical(before, gpt2)
    b = smooth.attribute(inp, generator=0, **kw)
    c = smooth.attribute(inp, generator=1, **kw)
    assert torch.equal(a.seq_attr, b.seq_attr) and not torch.equal(a.seq_attr, c.seq_attr)
    assert a.seq_attr.shape == (2,) and a.token_attr.shape == (1, 2)
    # One row for the sequence, one per target token.
    assert error.standard_error.shape == (2, 2) and error.relative_error.shape == (2,)
    assert bool((error.standard_error > 0).all())


def test_no_effect_and_input_noise_options_are_refused(gpt2: Any, tokenizer: Any) -> None:
    smooth = SmoothLLMAttribution(FeatureAblation(gpt2), tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)
    with pytest.raises(ValueError, match="num_trials"):
        smooth.attribute(inp, target="mat", num_trials=2)
    with pytest.raises(ValueError, match="needs `stdevs`"):
        smooth.attribute(inp, target="mat", nt_samples=2)
    with pytest.raises(ValueError, match="noise_layer"):
        smooth.attribute(inp, target="mat", noise_layer=gpt2.transformer.wte)
