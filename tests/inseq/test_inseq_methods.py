"""captum_smooth.inseq: the registered methods on a decoder-only and an encoder-decoder model."""

from __future__ import annotations

from typing import Any

import inseq_models  # the torchvision shim before transformers; skips without it
import pytest
import torch

inseq = pytest.importorskip("inseq")

import captum_smooth.inseq as cs_inseq  # noqa: E402

from model_state import assert_identical, snapshot  # noqa: E402

TEXT = "the cat sat on"
GEN = {"generation_args": {"max_new_tokens": 2, "do_sample": False}, "show_progress": False}
# Cheap settings (inseq passes them to the method's attribute).
INNER_FAST = {"integrated_gradients": {"n_steps": 3}, "gradient_shap": {"n_samples": 2}}
SMOOTHED = ["smoothgrad", "noisegrad", "fusiongrad"] + [
    f"smooth_{name}"
    for name in [
        "saliency",
        "input_x_gradient",
        "integrated_gradients",
        "gradient_shap",
        "deeplift",
    ]
]


def attribute(model: Any, method: str, **kwargs: Any) -> Any:
    return model.attribute(
        TEXT, method=method, attribute_target=_is_enc_dec(model), **GEN, **kwargs
    )


def fast(method: str) -> dict[str, Any]:
    """Few samples; the inner method's own cheap settings."""
    if method == "noisegrad":
        return {"n_weight_samples": 2}
    counts = {"nt_samples": 2, **({"n_weight_samples": 2} if method == "fusiongrad" else {})}
    return {**counts, **INNER_FAST.get(method.removeprefix("smooth_"), {})}


def _is_enc_dec(model: Any) -> bool:
    return bool(model.is_encoder_decoder)


def scores(out: Any) -> list[torch.Tensor]:
    """Source and target attributions of the one sequence (those present)."""
    seq = out.sequence_attributions[0]
    return [t for t in (seq.source_attributions, seq.target_attributions) if t is not None]


def assert_same(a: Any, b: Any, exact: bool = True) -> None:
    tol = {"rtol": 0.0, "atol": 0.0} if exact else {"rtol": 1e-5, "atol": 1e-7}
    for x, y in zip(scores(a), scores(b), strict=True):
        torch.testing.assert_close(x, y, equal_nan=True, **tol)


def test_registered() -> None:
    names = set(inseq.list_feature_attribution_methods())
    assert set(SMOOTHED) | {"smooth_sequential_integrated_gradients"} <= names
    assert "adaptgrad" not in names  # no meaningful bounds for embeddings (module docstring)
    assert not any(n.startswith("smooth_layer") for n in names)
    assert "smooth_discretized_integrated_gradients" not in names


@pytest.mark.parametrize("method", SMOOTHED)
def test_runs_and_restores_the_model(inseq_model: Any, method: str) -> None:
    before = snapshot(inseq_model.model)
    plain = attribute(inseq_model, "saliency")
    out = attribute(inseq_model, method, generator=0, **fast(method))
    assert_identical(before, inseq_model.model)
    for x, y in zip(scores(out), scores(plain), strict=True):
        assert x.shape == y.shape
        assert torch.isfinite(x).sum() == torch.isfinite(y).sum() > 0
    assert out.info["attribution_method"] == method


def test_source_only_on_the_encoder_decoder() -> None:
    model = inseq_models.load("t5")
    plain = model.attribute(TEXT, **GEN)
    zero = model.attribute(TEXT, method="smoothgrad", stdevs=0.0, nt_samples=1, **GEN)
    noisy = model.attribute(TEXT, method="smoothgrad", nt_samples=2, generator=0, **GEN)
    assert out_target_is_none(plain) and out_target_is_none(noisy)
    assert_same(zero, plain)
    assert scores(noisy)[0].shape == scores(plain)[0].shape


def out_target_is_none(out: Any) -> bool:
    return out.sequence_attributions[0].target_attributions is None


@pytest.mark.parametrize("method", ["smoothgrad", "fusiongrad", "smooth_integrated_gradients"])
def test_seed_reproduces(inseq_model: Any, method: str) -> None:
    a = attribute(inseq_model, method, generator=0, **fast(method))
    b = attribute(inseq_model, method, generator=0, **fast(method))
    c = attribute(inseq_model, method, generator=1, **fast(method))
    assert_same(a, b)
    with pytest.raises(AssertionError):
        assert_same(a, c)


@pytest.mark.parametrize(
    ("method", "plain", "kwargs"),
    [
        ("smoothgrad", "saliency", {"stdevs": 0.0, "nt_samples": 1}),
        ("smooth_saliency", "saliency", {"noise_level": 0.0, "nt_samples": 1}),
        ("noisegrad", "saliency", {"weight_stdev": 0.0, "n_weight_samples": 1}),
        ("fusiongrad", "saliency", {"weight_stdev": 0.0, "stdevs": 0.0, "nt_samples": 1}),
        ("smooth_input_x_gradient", "input_x_gradient", {"stdevs": 0.0, "nt_samples": 1}),
        ("smooth_integrated_gradients", "integrated_gradients", {"stdevs": 0.0, "nt_samples": 1}),
    ],
)
def test_zero_noise_one_sample_is_the_plain_method(
    inseq_model: Any, method: str, plain: str, kwargs: dict[str, Any]
) -> None:
    extra = {"n_steps": 3} if "integrated" in method else {}
    expected = attribute(inseq_model, plain, **extra)
    assert_same(attribute(inseq_model, method, generator=0, **kwargs, **extra), expected)


def test_noise_changes_the_result_and_defaults_to_one_percent(inseq_model: Any) -> None:
    plain = attribute(inseq_model, "saliency")
    default = attribute(inseq_model, "smoothgrad", nt_samples=2, generator=0)
    one_percent = attribute(inseq_model, "smoothgrad", nt_samples=2, generator=0, noise_level=0.01)
    assert_same(default, one_percent)
    with pytest.raises(AssertionError):
        assert_same(default, plain, exact=False)


def test_inner_method_keywords_reach_it(inseq_model: Any) -> None:
    signed = attribute(inseq_model, "smooth_saliency", abs=False, nt_samples=2, generator=0)
    assert any((t < 0).any() for t in scores(signed))
    ig3 = attribute(inseq_model, "smooth_integrated_gradients", n_steps=3, **_zero())
    ig5 = attribute(inseq_model, "smooth_integrated_gradients", n_steps=5, **_zero())
    with pytest.raises(AssertionError):
        assert_same(ig3, ig5)


def _zero() -> dict[str, Any]:
    return {"stdevs": 0.0, "nt_samples": 1}


def test_kernel_and_sigma_rule(inseq_model: Any) -> None:
    from captum_smooth import RangeShareSigma

    a = attribute(
        inseq_model, "smoothgrad", stdevs=RangeShareSigma(0.01), nt_samples=2, generator=0
    )
    b = attribute(inseq_model, "smoothgrad", nt_samples=2, generator=0, kernel="laplace")
    assert all(torch.isfinite(t).any() for t in scores(a) + scores(b))


def test_return_error_is_refused(inseq_model: Any) -> None:
    with pytest.raises(ValueError, match="return_error"):
        attribute(inseq_model, "smoothgrad", nt_samples=2, return_error=True)


def test_an_option_the_method_does_not_take_is_an_error_with_a_pointer(inseq_model: Any) -> None:
    # Not dropped by inseq as an unused argument: the preset's own message says what to use.
    with pytest.raises(ValueError, match="n_weight_samples"):
        attribute(inseq_model, "noisegrad", nt_samples=4)
    # A loop option the method does not take, without a pointer: the router's one refusal.
    with pytest.raises(ValueError, match=r"NoiseGrad does not take the option `kernel`"):
        attribute(inseq_model, "noisegrad", kernel="laplace")


def test_antithetic_sampling_reaches_the_loop(inseq_model: Any) -> None:
    with pytest.raises(ValueError, match="sampling"):
        attribute(inseq_model, "smoothgrad", nt_samples=3, sampling="antithetic")
    out = attribute(inseq_model, "smoothgrad", nt_samples=2, sampling="antithetic", generator=0)
    assert all(torch.isfinite(t).any() for t in scores(out))


def test_aggregation_show_and_html(inseq_model: Any) -> None:
    out = attribute(inseq_model, "fusiongrad", generator=0, **fast("fusiongrad"))
    agg = out.aggregate()
    seq = agg.sequence_attributions[0]
    main = seq.source_attributions if _is_enc_dec(inseq_model) else seq.target_attributions
    assert main.ndim == 2  # the embedding dimension aggregated away
    html = out.show(display=False, return_html=True)
    assert isinstance(html, str) and "<" in html
    assert out.get_scores_dicts()


def test_smooth_method_is_idempotent_and_checked() -> None:
    from inseq.attr.feat.gradient_attribution import SaliencyAttribution

    cls = cs_inseq.smooth_method(SaliencyAttribution)
    assert cls is cs_inseq.SMOOTHED_METHODS["smooth_saliency"]
    assert issubclass(cls, SaliencyAttribution)
    with pytest.raises(TypeError):
        cs_inseq.smooth_method(object)


def test_an_int_seed_gives_each_step_its_own_seed(
    inseq_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from captum_smooth.core.random_state import derive_seed
    from captum_smooth.core.tunnel import SmoothTunnel

    seen: list[Any] = []
    run = SmoothTunnel.run

    def spy(self: Any, inputs: Any, options: Any, kwargs: Any) -> Any:
        seen.append(options.generator)
        return run(self, inputs, options, kwargs)

    monkeypatch.setattr(SmoothTunnel, "run", spy)
    attribute(inseq_model, "smoothgrad", nt_samples=2, generator=5)
    assert seen == [derive_seed(5, k) for k in range(len(seen))] and len(seen) >= 2
    seen.clear()
    gen = torch.Generator().manual_seed(5)
    attribute(inseq_model, "smoothgrad", nt_samples=2, generator=gen)
    assert seen and all(g is gen for g in seen)
