"""Bad input gets a clear error naming the argument; shapes and dtypes hold (hypothesis)."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import Saliency
from hypothesis import given, settings
from hypothesis import strategies as st

from captum_smooth import AdaptGrad, SmoothGrad, SmoothTunnel

from analytic_models import Linear


def _tunnel() -> SmoothTunnel:
    return SmoothTunnel(Saliency(Linear(3)))


X = torch.rand(2, 3)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(nt_samples=0), ValueError, "nt_samples"),
        (dict(nt_samples=-3), ValueError, "nt_samples"),
        (dict(nt_samples=2.5), TypeError, "nt_samples"),
        (dict(stdevs=-0.1), ValueError, "stdevs"),
        (dict(stdevs=math.inf), ValueError, "stdevs"),
        (dict(stdevs=math.nan), ValueError, "stdevs"),
        (dict(stdevs=torch.tensor([0.1, -1.0])), ValueError, "stdevs"),
        (dict(stdevs=torch.ones(5)), ValueError, "stdevs"),
        (dict(stdevs=(0.1, 0.2)), ValueError, "stdevs"),
        (dict(stdevs="big"), TypeError, "stdevs"),
        (dict(kernel="gauss-ish"), ValueError, "gaussian"),
        (dict(nt_type="smoothgrad_cubed"), ValueError, "nt_type"),
        (dict(nt_samples_batch_size=0), ValueError, "nt_samples_batch_size"),
        (dict(nt_samples_batch_size="fast"), ValueError, "nt_samples_batch_size"),
        (dict(generator="seed"), TypeError, "generator"),
        (dict(n_weight_samples=3), ValueError, "weight_noise"),
    ],
)
def test_tunnel_rejects(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        _tunnel().attribute(X, target=0, **kwargs)


def test_nan_inputs_rejected() -> None:
    x = X.clone()
    x[0, 1] = math.nan
    with pytest.raises(ValueError, match=r"inputs\[0\].*NaN"):
        _tunnel().attribute(x, target=0)


def test_integer_inputs_name_the_noise_layer_option() -> None:
    with pytest.raises(TypeError, match="noise_layer"):
        _tunnel().attribute(torch.tensor([[1, 2, 3]]), target=0)


def test_wrong_attribution_method() -> None:
    with pytest.raises(TypeError, match="attribution_method"):
        SmoothTunnel(Linear(3))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="attribution_method"):
        AdaptGrad(Linear(3), attribution_method=torch.nn.Linear)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(confidence=0.0), "confidence"),
        (dict(confidence=1.0), "confidence"),
        (dict(confidence=1.5), "confidence"),
        (dict(confidence="high"), "confidence"),
        (dict(bounds=(1.0, 0.0)), "lo < hi"),
        (dict(bounds=(0.0, 0.0)), "lo < hi"),
        (dict(bounds=(0.0,)), "bounds"),
        (dict(bounds=(0.0, 0.5), strict=True), r"outside `bounds`.*max found"),
        (dict(bounds=[(0.0, 1.0), (0.0, 1.0)]), "bounds"),
        (dict(bounds=(torch.zeros(7), 1.0)), "bounds"),
    ],
)
def test_adaptgrad_rejects(kwargs: dict, match: str) -> None:
    x = torch.tensor([[0.1, 0.6, 0.9]])
    with pytest.raises((ValueError, TypeError), match=match):
        AdaptGrad(Linear(3)).attribute(x, target=0, nt_samples=2, **kwargs)


def test_smoothgrad_rejects_negative_noise_level() -> None:
    with pytest.raises(ValueError, match="noise_level"):
        SmoothGrad(Linear(3)).attribute(X, target=0, noise_level=-0.1)


class _Sum(torch.nn.Module):
    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return sum(x.reshape(x.shape[0], -1).sum(1, keepdim=True) for x in xs) * torch.ones(1, 2)


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 3),
    shapes=st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3), min_size=1, max_size=3),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    nt_samples=st.integers(1, 5),
    chunk=st.one_of(st.none(), st.integers(1, 5), st.just("auto")),
    nt_type=st.sampled_from(["smoothgrad", "smoothgrad_sq", "vargrad"]),
    kernel=st.sampled_from(["gaussian", "uniform", "bump"]),
    as_tuple=st.booleans(),
)
def test_shapes_and_dtypes(batch, shapes, dtype, nt_samples, chunk, nt_type, kernel, as_tuple):
    g = torch.Generator().manual_seed(0)
    xs = tuple(torch.rand((batch, *s), generator=g, dtype=dtype) for s in shapes)
    inputs = xs if (as_tuple or len(xs) > 1) else xs[0]
    before = [x.clone() for x in xs]
    attr = SmoothTunnel(Saliency(_Sum())).attribute(
        inputs,
        nt_type=nt_type,
        nt_samples=nt_samples,
        nt_samples_batch_size=chunk,
        stdevs=0.1,
        kernel=kernel,
        target=0,
        generator=1,
    )
    out = attr if isinstance(inputs, tuple) else (attr,)
    assert isinstance(attr, tuple) == isinstance(inputs, tuple)
    for a, x, b in zip(out, xs, before):
        assert a.shape == x.shape and a.dtype == dtype
        assert torch.equal(x, b)
    # d/dx sum(x) = 1 everywhere, whatever the noise (Saliency takes abs).
    expected = {"smoothgrad": 1.0, "smoothgrad_sq": 1.0, "vargrad": 0.0}[nt_type]
    for a in out:
        torch.testing.assert_close(a, torch.full_like(a, expected))
