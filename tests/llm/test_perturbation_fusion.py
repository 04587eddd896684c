"""FusionGrad for SmoothLLMAttribution: weight noise plus one fixed embedding-noise draw per sample,
added in every forward pass of the sample (tiny random GPT-2, nothing downloaded)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("transformers")

import torch
from captum.attr import FeatureAblation, TextTokenInput
from torch import Tensor

from captum_smooth import RangeShareSigma, SmoothLLMAttribution

from model_state import assert_identical, snapshot

PROMPT = "the cat sat on the"
TARGET = "mat ."


class _ForwardError(Exception):
    """An error raised from inside a forward pass."""


def _no_hooks(model: Any) -> bool:
    return not model.get_input_embeddings()._forward_hooks


def test_zero_stdevs_is_noisegrad_bit_for_bit(gpt2: Any, tokenizer: Any) -> None:
    smooth = SmoothLLMAttribution(FeatureAblation(gpt2), tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)
    kw = {"target": TARGET, "n_weight_samples": 2, "weight_stdev": 0.1, "generator": 0}
    want = smooth.attribute(inp, **kw)
    got = smooth.attribute(inp, stdevs=0.0, nt_samples=3, **kw)
    assert torch.equal(got.seq_attr, want.seq_attr)
    assert torch.equal(got.token_attr, want.token_attr)
    assert int(smooth.last_reports[0].n_samples[0]) == 6


def test_embedding_noise_reproducible_differs_and_model_identical(
    gpt2: Any, tokenizer: Any
) -> None:
    smooth = SmoothLLMAttribution(FeatureAblation(gpt2), tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)
    kw = {"target": TARGET, "n_weight_samples": 2, "weight_stdev": 0.1, "nt_samples": 2}
    noisegrad = smooth.attribute(inp, target=TARGET, n_weight_samples=2, weight_stdev=0.1)
    before = snapshot(gpt2)
    a = smooth.attribute(inp, stdevs=0.3, generator=0, **kw)
    assert_identical(before, gpt2)
    assert _no_hooks(gpt2)
    b = smooth.attribute(inp, stdevs=0.3, generator=0, **kw)
    c = smooth.attribute(inp, stdevs=0.3, generator=1, **kw)
    assert torch.equal(a.seq_attr, b.seq_attr) and torch.equal(a.token_attr, b.token_attr)
    assert not torch.equal(a.seq_attr, c.seq_attr)
    assert not torch.equal(a.seq_attr, noisegrad.seq_attr)
    assert int(smooth.last_reports[0].n_samples[0]) == 4


def _record_noise(gpt2: Any) -> tuple[list[Tensor], list[Any]]:
    """The embedding noise of every model pass: the input of the first dropout (token plus
    position embeddings) minus its clean value (hooks registered before the wrapper's)."""
    clean: list[Tensor] = []
    noises: list[Tensor] = []
    wte, wpe = gpt2.transformer.wte, gpt2.transformer.wpe

    def on_wte(module: Any, args: Any, output: Tensor) -> None:
        clean.append(output.detach().clone())

    def on_drop(module: Any, args: Any) -> None:
        length = args[0].shape[1]
        expected = clean[-1] + wpe(torch.arange(length))
        noises.append((args[0] - expected).detach())

    handles = [
        wte.register_forward_hook(on_wte),
        gpt2.transformer.drop.register_forward_pre_hook(on_drop),
    ]
    return noises, handles


def test_one_fixed_draw_per_sample_in_every_pass(gpt2: Any, tokenizer: Any) -> None:
    """Two samples: every pass (clean and ablated, token by token) of a sample takes positions
    [0, L) of that sample's draw; the two draws differ."""
    smooth = SmoothLLMAttribution(FeatureAblation(gpt2), tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)
    noises, handles = _record_noise(gpt2)
    try:
        smooth.attribute(
            inp,
            target=TARGET,
            n_weight_samples=1,
            weight_stdev=None,
            stdevs=0.5,
            nt_samples=2,
            generator=0,
        )
    finally:
        for h in handles:
            h.remove()
    # Token by token: lengths 5 and 6; one clean and five ablated evaluations per sample.
    assert [n.shape[1] for n in noises] == [5, 6] * 12
    per_sample = (noises[:12], noises[12:])
    draws = [max(ns, key=lambda n: n.shape[1])[0] for ns in per_sample]
    for ns, draw in zip(per_sample, draws):
        assert float(draw.abs().min()) > 0
        for n in ns:
            torch.testing.assert_close(n[0], draw[: n.shape[1]], rtol=0, atol=1e-5)
    assert float((draws[0] - draws[1]).abs().max()) > 0.1


def test_sigma_rule_on_the_clean_prompt_embedding(gpt2: Any, tokenizer: Any) -> None:
    smooth = SmoothLLMAttribution(FeatureAblation(gpt2), tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)
    with torch.no_grad():
        emb = gpt2.get_input_embeddings()(inp.to_model_input())
    sigma = 0.2 * float(emb.max() - emb.min())
    kw = {"target": TARGET, "n_weight_samples": 1, "weight_stdev": None, "nt_samples": 2}
    by_rule = smooth.attribute(inp, stdevs=RangeShareSigma(0.2), generator=3, **kw)
    absolute = smooth.attribute(inp, stdevs=sigma, generator=3, **kw)
    torch.testing.assert_close(by_rule.seq_attr, absolute.seq_attr, rtol=1e-4, atol=1e-5)


def test_bad_combinations_are_errors_and_leave_no_hook(gpt2: Any, tokenizer: Any) -> None:
    smooth = SmoothLLMAttribution(FeatureAblation(gpt2), tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)
    with pytest.raises(ValueError, match=r"nt_samples.*stdevs"):
        smooth.attribute(inp, target="mat", nt_samples=2)
    with pytest.raises(ValueError, match="use_cached_outputs=False"):
        smooth.attribute(inp, target="mat", stdevs=0.1, use_cached_outputs=True)
    with pytest.raises(ValueError, match="noise_layer"):
        smooth.attribute(inp, target="mat", stdevs=0.1, noise_layer=gpt2.transformer.wte)
    with pytest.raises(ValueError, match="stdevs"):
        smooth.attribute(inp, target="mat", stdevs=-1.0)
    before = snapshot(gpt2)
    calls = []

    def fail_later(module: Any, args: Any, output: Any) -> None:
        calls.append(1)
        if len(calls) == 5:  # inside the second sample, with hook and weight noise in place
            raise _ForwardError

    handle = gpt2.lm_head.register_forward_hook(fail_later)
    try:
        with pytest.raises(_ForwardError):
            smooth.attribute(
                inp, target="mat", stdevs=0.1, nt_samples=2, weight_stdev=0.1, n_weight_samples=2
            )
    finally:
        handle.remove()
    assert _no_hooks(gpt2)
    assert_identical(before, gpt2)


def test_one_pass_forward_takes_the_noise_too(gpt2: Any, tokenizer: Any) -> None:
    """``forward_in_tokens=False`` (one pass over prompt + target) with cached outputs allowed."""
    smooth = SmoothLLMAttribution(FeatureAblation(gpt2), tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)
    kw = {"target": TARGET, "n_weight_samples": 1, "weight_stdev": None, "generator": 0}
    plain = smooth.attribute(inp, forward_in_tokens=False, use_cached_outputs=True, **kw)
    noisy = smooth.attribute(inp, forward_in_tokens=False, stdevs=0.3, nt_samples=2, **kw)
    assert not torch.equal(plain.seq_attr, noisy.seq_attr)
    assert _no_hooks(gpt2)


def test_an_inner_failure_is_not_blamed_on_a_missing_target(gpt2: Any, tokenizer: Any) -> None:
    # perturbations_per_eval=0 would make Captum's FeatureAblation fail its own assertion; the
    # LLM wrapper passes the target tokens itself, so the error names the count, not `target`.
    smooth = SmoothLLMAttribution(FeatureAblation(gpt2), tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)
    with pytest.raises(ValueError, match="`perturbations_per_eval` must be >= 1") as err:
        smooth.attribute(inp, target=TARGET, n_weight_samples=1, perturbations_per_eval=0)
    assert "`target`" not in str(err.value)
