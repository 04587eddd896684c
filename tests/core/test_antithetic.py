"""Antithetic sampling: exact where the attribution is linear in the noise, unbiased elsewhere,
its reported error honest, its pairs whole on every chunk layout, and ``"iid"`` unchanged."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import Saliency
from torch import Tensor, nn

from captum_smooth import FusionGrad, NoiseGrad, SmoothGrad, SmoothTaylor, SmoothTunnel, WeightNoise
from captum_smooth.core.antithetic import Pairing, mirrored
from captum_smooth.core.error_model import ErrorTracking
from captum_smooth.core.reducers import MeanSquareReducer
from captum_smooth.core.router import COMMON_OPTIONS
from captum_smooth.llm.gradient import GRADIENT_ROUTER
from captum_smooth.llm.perturbation import PERTURBATION_ROUTER

from analytic_models import Cubic, Linear

A = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
X = torch.tensor([[0.3, -1.0, 2.0, 0.0], [1.0, 0.5, -0.5, 4.0]], dtype=torch.float64)


class Quadratic(nn.Module):
    """``f(x) = 1/2 sum a_i x_i^2``: the gradient ``a * x`` is linear in the noise."""

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * (A * x.pow(2)).sum(1, keepdim=True)


def _smoothgrad(model: nn.Module, x: Tensor, **kwargs: object) -> Tensor:
    return SmoothTunnel(Saliency(model)).attribute(x, abs=False, generator=0, **kwargs)


def test_mirrored_keeps_examples_and_pairs_adjacent() -> None:
    t = torch.arange(6.0).reshape(3, 2)
    assert mirrored(t).tolist() == [[0, 1], [0, -1], [2, 3], [-2, -3], [4, 5], [-4, -5]]


@pytest.mark.parametrize("chunk", [1, 2, 3, 8, "auto", None])
@pytest.mark.parametrize("kernel", ["gaussian", "laplace", "uniform", "student_t"])
def test_quadratic_smoothgrad_is_exact_for_every_chunk(chunk: object, kernel: str) -> None:
    attr = _smoothgrad(
        Quadratic(), X, nt_samples=8, stdevs=0.7, kernel=kernel, nt_samples_batch_size=chunk,
        sampling="antithetic",
    )  # fmt: skip
    assert torch.allclose(attr, A * X, rtol=0, atol=1e-12)
    iid = _smoothgrad(Quadratic(), X, nt_samples=8, stdevs=0.7, kernel=kernel)
    assert not torch.allclose(iid, A * X, atol=1e-3)  # i.i.d. is not


def test_chunks_hold_whole_pairs() -> None:
    tunnel = SmoothTunnel(Saliency(Quadratic()))
    for chunk, used in ((1, 2), (2, 2), (3, 2), (8, 8), (5, 4)):
        tunnel.attribute(
            X, nt_samples=8, stdevs=0.5, nt_samples_batch_size=chunk, sampling="antithetic"
        )
        assert tunnel.last_report is not None and tunnel.last_report.chunk_size == used


def test_per_example_tolerance_stops_after_whole_pairs() -> None:
    # Cubic: the pairs cancel the odd terms only; example 0 (flat, big) converges first.
    x = torch.tensor([[3.0, 3.0, 3.0, 3.0], [0.0, 0.1, -0.1, 0.0]], dtype=torch.float64)
    _, err = _smoothgrad(
        Cubic(), x, stdevs=0.5, tolerance=0.05, max_samples=2000, nt_samples_batch_size=6,
        sampling="antithetic", return_error=True,
    )  # fmt: skip
    n = err.n_samples.tolist()
    assert all(v % 2 == 0 for v in n) and n[0] < n[1], n
    assert bool((err.relative_error <= 0.05).all())
    # The quadratic needs one pair: every pair is the exact map, so its error is 0.
    _, err = _smoothgrad(
        Quadratic(), X, stdevs=0.5, tolerance=0.01, min_samples=4, max_samples=100,
        sampling="antithetic", return_error=True, nt_samples_batch_size=1,
    )  # fmt: skip
    assert err.n_samples.tolist() == [4, 4] and float(err.relative_error.max()) < 1e-6


@pytest.mark.parametrize("noise_type", ["multiplicative", "additive"])
def test_noisegrad_is_exact_on_a_model_linear_in_its_weights(noise_type: str) -> None:
    model = Linear(4, 3).double().eval()
    clean = model.weight.detach()[1].expand(2, 4)
    before = model.weight.detach().clone()
    attr = SmoothTunnel(Saliency(model)).attribute(
        X, target=1, abs=False, nt_samples=1, stdevs=0.0, generator=0, n_weight_samples=6,
        weight_noise=WeightNoise(0.4, noise_type=noise_type), sampling="antithetic",
    )  # fmt: skip
    assert torch.allclose(attr, clean, rtol=0, atol=1e-12)
    assert torch.equal(model.weight.detach(), before)  # restored bit for bit
    via_preset = NoiseGrad(model).attribute(
        X, target=1, abs=False, generator=0, n_weight_samples=6, weight_stdev=0.4,
        sampling="antithetic",
    )  # fmt: skip
    assert torch.allclose(via_preset, clean, rtol=0, atol=1e-12)


def _repeat(run: object, repeats: int) -> tuple[Tensor, Tensor]:
    """``(maps, reported standard errors)`` of ``repeats`` seeds, stacked."""
    maps, ses = [], []
    for seed in range(repeats):
        attr, err = run(seed)  # type: ignore[operator]
        maps.append(attr)
        ses.append(err.standard_error)
    return torch.stack(maps), torch.stack(ses)


def test_unbiased_and_honest_error_on_a_nonlinear_model() -> None:
    # Cubic: grad 3 (x + t)^2, expectation 3 x^2 + 3 sigma^2. A pair's mean is 3 x^2 + 3 t^2:
    # at x = 0 both halves are equal, so an i.i.d. error would be sqrt(2) too small there.
    x, sigma, n, repeats = X[:1].float(), 0.5, 40, 100
    maps, ses = _repeat(
        lambda seed: SmoothTunnel(Saliency(Cubic())).attribute(
            x,
            nt_samples=n,
            stdevs=sigma,
            abs=False,
            generator=seed,
            sampling="antithetic",
            return_error=True,
        ),
        repeats,
    )
    truth = 3 * x**2 + 3 * sigma**2
    spread = maps.std(0)
    z = (maps.mean(0) - truth) / (spread / math.sqrt(repeats))
    assert float(z.abs().max()) < 4, z
    # The mean square of the reported errors estimates the variance without the bias of a
    # square root (the samples 3 t^2 are heavy-tailed); the spread has ~10 % noise.
    ratio = ses.pow(2).mean(0).sqrt() / spread
    assert bool(((ratio - 1).abs() < 0.3).all()), ratio


class _AbsGradient(nn.Module):
    """f(x) = sum x |x| / 2: the gradient is |x|, the pair mean at x = 0 is |t|."""

    def forward(self, x: Tensor) -> Tensor:
        return (x * x.abs() / 2).flatten(1).sum(1, keepdim=True)


@pytest.mark.parametrize("sampling", ["antithetic", "iid"])
def test_the_clean_copy_is_a_fixed_term_not_a_sample_of_the_error(sampling: str) -> None:
    # include_clean (AdaptGrad's N + 1): the clean gradient is part of the mean but carries no
    # noise. At x = 0 it is 0 while every sample |t| is positive, far from it relative to
    # their spread: counted as a sample (beside the pairs, or among the i.i.d. copies) it
    # inflated the reported error.
    x, n, repeats = torch.zeros(1, 64, dtype=torch.float64), 4, 200
    maps, ses = _repeat(
        lambda seed: SmoothTunnel(Saliency(_AbsGradient())).attribute(
            x,
            nt_samples=n,
            stdevs=0.5,
            kernel="uniform",
            abs=False,
            generator=seed,
            sampling=sampling,
            include_clean=True,
            return_error=True,
        ),
        repeats,
    )
    # 64 elements of the same law: one ratio over all of them (a few percent of noise).
    ratio = float(ses.pow(2).mean().sqrt() / maps.std(0).pow(2).mean().sqrt())
    assert abs(ratio - 1) < 0.1, ratio


def test_noisegrad_pairs_report_their_spread() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).eval()
    x = torch.tensor([[0.5, -1.0, 0.2, 1.5]])
    maps, ses = _repeat(
        lambda seed: NoiseGrad(model).attribute(
            x,
            target=1,
            abs=False,
            generator=seed,
            n_weight_samples=16,
            weight_stdev=0.3,
            sampling="antithetic",
            return_error=True,
        ),
        60,
    )
    ratio = float(ses.pow(2).mean(0).sum().sqrt() / maps.std(0).norm())
    assert abs(ratio - 1) < 0.3, ratio


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"nt_samples": 5}, "nt_samples"),
        ({"nt_samples": 1}, "nt_samples"),
        ({"nt_samples": 4, "tolerance": 0.1, "max_samples": 9}, "max_samples"),
        (
            {"nt_samples": 1, "weight_noise": WeightNoise(0.1), "n_weight_samples": 3},
            "n_weight_samples",
        ),
    ],
)
def test_odd_counts_are_refused(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}` must be even") as info:
        _smoothgrad(Quadratic(), X, sampling="antithetic", **kwargs)
    assert "sampling" in str(info.value)


def test_bad_sampling_and_unpaired_reducers_are_refused() -> None:
    with pytest.raises(ValueError, match="`sampling` must be one of"):
        _smoothgrad(Quadratic(), X, nt_samples=4, sampling="stratified")
    with pytest.raises(ValueError, match="antithetic"):
        _smoothgrad(
            Cubic(), X, nt_samples=4, nt_type="vargrad", sampling="antithetic", return_error=True
        )
    # Without the error, vargrad samples antithetic pairs (and reports no error).
    tunnel = SmoothTunnel(Saliency(Cubic()))
    tunnel.attribute(X, nt_samples=4, nt_type="vargrad", sampling="antithetic", generator=0)
    assert tunnel.last_report is not None and tunnel.last_report.error is None


def test_iid_default_is_unchanged() -> None:
    for kwargs in ({}, {"nt_samples_batch_size": 3}, {"return_error": True}):
        default = _smoothgrad(Cubic(), X, nt_samples=7, stdevs=0.3, **kwargs)
        explicit = _smoothgrad(Cubic(), X, nt_samples=7, stdevs=0.3, sampling="iid", **kwargs)
        first = default[0] if isinstance(default, tuple) else default
        second = explicit[0] if isinstance(explicit, tuple) else explicit
        assert torch.equal(first, second)


def test_every_door_takes_the_option() -> None:
    assert COMMON_OPTIONS["sampling"] == "iid"
    assert "sampling" in GRADIENT_ROUTER.loop_defaults
    assert "sampling" in PERTURBATION_ROUTER.loop_defaults
    attr = SmoothGrad(Quadratic()).attribute(
        X, nt_samples=4, sampling="antithetic", abs=False, generator=0
    )
    assert torch.allclose(attr, A * X, rtol=0, atol=1e-12)


def test_layer_noise_is_paired_too() -> None:
    # Noise on the output h = W x of a layer, then g(h) = 1/2 sum a h^2: grad_x = W^T (a (h + t)),
    # linear in t, so the pairs give W^T a W x exactly.
    layer = nn.Linear(4, 4, bias=False).double()
    model = nn.Sequential(layer, Quadratic()).eval()
    w = layer.weight.detach()
    attr = SmoothTunnel(Saliency(model)).attribute(
        X, nt_samples=6, stdevs=0.5, noise_layer=layer, abs=False, generator=0,
        nt_samples_batch_size=3, sampling="antithetic",
    )  # fmt: skip
    assert torch.allclose(attr, (X @ w.t()) * A @ w, rtol=0, atol=1e-12)


def test_smoothtaylor_on_a_linear_model_cancels_exactly() -> None:
    # R = (x - z) * grad f(z) = -t * w: zero in expectation, and exactly zero for each pair.
    model = Linear(4, 2).double().eval()
    attr = SmoothTaylor(model).attribute(
        X, target=0, nt_samples=10, stdevs=0.5, generator=0, sampling="antithetic"
    )
    assert float(attr.abs().max()) < 1e-12


def test_fusiongrad_pairs_weights_and_inputs_and_counts_draws() -> None:
    model = Linear(4, 3).double().eval()
    attr, err = FusionGrad(model).attribute(
        X, target=2, abs=False, generator=0, n_weight_samples=4, nt_samples=4, stdevs=0.3,
        weight_stdev=0.3, sampling="antithetic", return_error=True,
    )  # fmt: skip
    assert torch.allclose(attr, model.weight.detach()[2].expand(2, 4), rtol=0, atol=1e-12)
    assert err.nested and err.n_samples.tolist() == [4, 4]


@pytest.mark.parametrize("sampling", ["antithetic", "iid"])
def test_beside_a_clean_copy_the_reducer_keeps_no_moments_of_its_own(sampling: str) -> None:
    # The groups (pairs, or single copies beside the clean one) give the error: a reducer also
    # tracking its own would reduce every chunk twice for nothing.
    asked: list[bool] = []

    def factory(batch: int, *, track_error: bool = False) -> MeanSquareReducer:
        asked.append(track_error)
        return MeanSquareReducer(batch, track_error=track_error)

    tracking = ErrorTracking(
        factory,
        2,
        weight_draws=False,
        wanted=True,
        pairing=Pairing(inputs=sampling != "iid"),
        include_clean=True,
    )
    assert tracking.groups is not None
    assert asked[0] is True and asked[-1] is False  # checked with the error, made without it
