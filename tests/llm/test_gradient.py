"""SmoothLLMGradientAttribution on a tiny random GPT-2 (nothing downloaded)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("transformers")

import torch
from captum.attr import (
    LayerGradientShap,
    LayerGradientXActivation,
    LayerIntegratedGradients,
    LLMAttributionResult,
    LLMGradientAttribution,
    TextTokenInput,
)

from captum_smooth import MonteCarloError, SmoothLLMGradientAttribution

from model_state import assert_identical, snapshot

PROMPT = "the cat sat on the"
TARGET = "mat . the"
N_STEPS = 6


def _pair(model: Any, tokenizer: Any, cls: type = LayerIntegratedGradients) -> tuple[Any, Any]:
    method = cls(model, model.transformer.wte)
    return SmoothLLMGradientAttribution(method, tokenizer), LLMGradientAttribution(
        method, tokenizer
    )


def _kw(method_cls: type) -> dict[str, Any]:
    return {"n_steps": N_STEPS} if method_cls is LayerIntegratedGradients else {}


def test_is_captums_class_and_returns_its_result(gpt2: Any, tokenizer: Any) -> None:
    smooth, _ = _pair(gpt2, tokenizer)
    assert isinstance(smooth, LLMGradientAttribution)
    result = smooth.attribute(
        TextTokenInput(PROMPT, tokenizer), target=TARGET, nt_samples=3, generator=0, n_steps=4
    )
    assert isinstance(result, LLMAttributionResult)
    assert result.token_attr is not None and result.token_attr.shape == (3, 5)
    assert result.seq_attr.shape == (5,)
    assert result.input_tokens == PROMPT.split() and result.output_tokens == TARGET.split()
    assert len(smooth.last_reports) == 3
    assert [int(r.n_samples[0]) for r in smooth.last_reports] == [3, 3, 3]


@pytest.mark.parametrize("method_cls", [LayerIntegratedGradients, LayerGradientXActivation])
@pytest.mark.parametrize("nt_samples", [1, 4])
def test_zero_noise_gives_captums_plain_result(
    gpt2: Any, tokenizer: Any, method_cls: type, nt_samples: int
) -> None:
    # With several samples this also shows the target tokens are not repeated per sample
    # (NoiseTunnel's expansion would shift the target index: a different result).
    smooth, plain = _pair(gpt2, tokenizer, method_cls)
    inp = TextTokenInput(PROMPT, tokenizer)
    want = plain.attribute(inp, target=TARGET, **_kw(method_cls))
    got = smooth.attribute(inp, target=TARGET, nt_samples=nt_samples, stdevs=0.0, **_kw(method_cls))
    torch.testing.assert_close(got.token_attr, want.token_attr, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.seq_attr, want.seq_attr, rtol=1e-5, atol=1e-6)


def test_skipped_tokens_zero_noise(gpt2: Any, tokenizer: Any) -> None:
    # Captum's interpretable mask (skip_tokens) drops tokens after the attribution.
    smooth, plain = _pair(gpt2, tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer, skip_tokens=["the"])
    want = plain.attribute(inp, target="mat .", n_steps=4)
    got, error = smooth.attribute(
        inp, target="mat .", nt_samples=2, stdevs=0.0, n_steps=4, return_error=True
    )
    assert got.token_attr.shape == (2, 3) == error.standard_error.shape
    torch.testing.assert_close(got.token_attr, want.token_attr, rtol=1e-5, atol=1e-6)


def test_reproducible_under_a_generator_and_really_noisy(gpt2: Any, tokenizer: Any) -> None:
    smooth, plain = _pair(gpt2, tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)
    run = [
        smooth.attribute(inp, target=TARGET, nt_samples=4, stdevs=0.05, generator=seed, n_steps=4)
        for seed in (0, 0, 1)
    ]
    assert torch.equal(run[0].token_attr, run[1].token_attr)
    assert not torch.equal(run[0].token_attr, run[2].token_attr)
    want = plain.attribute(inp, target=TARGET, n_steps=4)
    assert not torch.allclose(run[0].token_attr, want.token_attr, atol=1e-4)


def test_the_default_sigma_is_a_share_of_the_embedding_range(gpt2: Any, tokenizer: Any) -> None:
    # vargrad of LayerGradientXActivation's token scores, with a tiny sigma, is ~ sigma^2 times
    # sum_e (grad_e)^2 (to first order); its ratio between sigma 2s and s is 4.
    smooth, _ = _pair(gpt2, tokenizer, LayerGradientXActivation)
    inp = TextTokenInput(PROMPT, tokenizer)
    emb = gpt2.transformer.wte(inp.to_model_input())
    share = 0.01 * float((emb.max() - emb.min()).detach())
    kw = {"target": "mat", "nt_type": "vargrad", "nt_samples": 64, "generator": 0}
    default = smooth.attribute(inp, **kw).token_attr
    explicit = smooth.attribute(inp, stdevs=share, **kw).token_attr
    torch.testing.assert_close(default, explicit)


def test_the_model_comes_back_bit_identical(gpt2: Any, tokenizer: Any) -> None:
    smooth, _ = _pair(gpt2, tokenizer)
    before = snapshot(gpt2)
    smooth.attribute(
        TextTokenInput(PROMPT, tokenizer), target="mat .", nt_samples=2, stdevs=0.05,
        n_weight_samples=2, weight_stdev=0.1, generator=0, n_steps=4,
    )  # fmt: skip
    assert_identical(before, gpt2)
    assert all(not m._forward_hooks for m in gpt2.modules())


def test_weight_noise_alone_noisegrad(gpt2: Any, tokenizer: Any) -> None:
    smooth, plain = _pair(gpt2, tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)
    kw = {"target": "mat", "nt_samples": 1, "stdevs": 0.0, "weight_stdev": 0.2, "n_steps": 4}
    a = smooth.attribute(inp, n_weight_samples=3, generator=0, **kw)
    b = smooth.attribute(inp, n_weight_samples=3, generator=0, **kw)
    assert torch.equal(a.token_attr, b.token_attr)
    want = plain.attribute(inp, target="mat", n_steps=4)
    assert not torch.allclose(a.token_attr, want.token_attr, atol=1e-4)
    zero = smooth.attribute(inp, n_weight_samples=2, generator=0, **{**kw, "weight_stdev": 0.0})
    torch.testing.assert_close(zero.token_attr, want.token_attr, rtol=1e-5, atol=1e-6)


def test_error_per_target_token_and_tolerance(gpt2: Any, tokenizer: Any) -> None:
    smooth, _ = _pair(gpt2, tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)
    result, error = smooth.attribute(
        inp, target=TARGET, nt_samples=8, stdevs=0.05, generator=0, n_steps=4, return_error=True
    )
    assert isinstance(error, MonteCarloError)
    assert error.standard_error.shape == result.token_attr.shape
    assert error.relative_error.shape == (3,) and bool((error.standard_error > 0).all())
    # Sampling to a tolerance: each target token stops on its own.
    _, err = smooth.attribute(
        inp, target=TARGET, stdevs=0.05, generator=0, n_steps=4, tolerance=0.2,
        min_samples=4, max_samples=200, nt_samples_batch_size=4, return_error=True,
    )  # fmt: skip
    assert bool((err.relative_error <= 0.2).all()), err
    assert all(4 <= int(r.n_samples[0]) < 200 for r in smooth.last_reports)


def test_options_set_by_the_wrapper_are_refused(gpt2: Any, tokenizer: Any) -> None:
    smooth, _ = _pair(gpt2, tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)
    with pytest.raises(ValueError, match="noise_layer"):
        smooth.attribute(inp, target="mat", noise_layer=gpt2.transformer.wte)
    with pytest.raises(ValueError, match="weight_stdev"):
        smooth.attribute(inp, target="mat", n_weight_samples=3)


def test_layer_gradient_shap_takes_weight_noise_not_layer_noise(gpt2: Any, tokenizer: Any) -> None:
    # LayerGradientShap evaluates the inputs through an inner method: layer noise cannot reach
    # them (an error, not a silent un-noised result); weight noise needs no hook.
    smooth = SmoothLLMGradientAttribution(LayerGradientShap(gpt2, gpt2.transformer.wte), tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)
    base = {"target": "mat", "baselines": torch.zeros(1, 5, dtype=torch.long), "generator": 0}
    result = smooth.attribute(
        inp, nt_samples=1, stdevs=0.0, weight_stdev=0.1, n_weight_samples=2, **base
    )
    assert result.token_attr.shape == (1, 5)
    with pytest.raises(ValueError, match="LayerGradientShap"):
        smooth.attribute(inp, nt_samples=2, **base)


def test_captums_plots_work(gpt2: Any, tokenizer: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    smooth, _ = _pair(gpt2, tokenizer)
    result = smooth.attribute(
        TextTokenInput(PROMPT, tokenizer), target="mat .", nt_samples=2, generator=0, n_steps=4
    )
    fig, _ = result.plot_token_attr()
    assert fig is not None
