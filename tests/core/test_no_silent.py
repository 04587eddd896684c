"""Nothing silent: ambiguous sigma refused, bad inputs named before any work, targets checked
against the model's output, unreached tolerances warned, short reprs, the dtype of float64 noise."""

from __future__ import annotations

import inspect
import math
import pathlib
import warnings

import pytest
import torch
from captum.attr import Saliency
from torch import nn

import captum_smooth
from captum_smooth import (
    FusionGrad,
    NoiseGrad,
    PerExampleSigma,
    SmoothGrad,
    SmoothTunnel,
    ToleranceNotReachedWarning,
    WeightNoise,
)

from analytic_models import Cubic, Linear, Probe

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _tunnel(model: nn.Module | None = None) -> SmoothTunnel:
    return SmoothTunnel(Saliency(model if model is not None else Linear(4)))


# ---------------------------------------------------------------- one spelling per sigma shape


@pytest.mark.parametrize("batch", [1, 3, 4, 5])
def test_a_1d_stdevs_is_refused_whatever_the_batch_and_names_both_spellings(batch: int) -> None:
    x = torch.rand(batch, 4)
    with pytest.raises(ValueError, match="stdevs") as err:
        _tunnel().attribute(x, target=0, stdevs=torch.tensor([0.0, 0.0, 0.0, 1.0]))
    message = str(err.value)
    assert "per example" in message and "PerExampleSigma" in message
    assert "reshape(-1, 1)" in message and "per element" in message


@pytest.mark.parametrize("batch", [4, 5])
def test_per_feature_sigma_noises_that_feature_alone_for_any_batch(batch: int) -> None:
    # The case: (0, 0, 0, 1) read per example when B == 4, per feature otherwise.
    probe = Probe(Linear(4))
    x = torch.rand(batch, 4)
    SmoothTunnel(Saliency(probe)).attribute(
        x, target=0, nt_samples=3, stdevs=torch.tensor([[0.0, 0.0, 0.0, 1.0]]), generator=0
    )
    noise = probe.seen[0] - x.repeat_interleave(3, dim=0)
    assert torch.equal(noise[:, :3], torch.zeros(batch * 3, 3))
    assert bool((noise[:, 3] != 0).all())


def test_the_two_per_example_spellings_agree_bit_for_bit() -> None:
    x = torch.rand(3, 2, 5)
    values = torch.tensor([0.0, 0.5, 2.0])
    a = _tunnel(Linear(10)).attribute(
        x, target=1, stdevs=values.reshape(3, 1, 1), generator=4, abs=False
    )
    b = _tunnel(Linear(10)).attribute(x, target=1, stdevs=PerExampleSigma(values), generator=4)
    c = _tunnel(Linear(10)).attribute(
        x, target=1, stdevs=PerExampleSigma(values), generator=4, abs=False
    )
    torch.testing.assert_close(a, c, rtol=0, atol=0)
    assert b.shape == x.shape


def test_per_example_sigma_noises_each_example_at_its_own_scale() -> None:
    probe = Probe(Linear(6))
    x = torch.rand(3, 6)
    SmoothTunnel(Saliency(probe)).attribute(
        x, target=0, nt_samples=2, stdevs=PerExampleSigma([0.0, 1.0, 0.0]), generator=0
    )
    noise = (probe.seen[0] - x.repeat_interleave(2, dim=0)).reshape(3, 2, 6)
    assert torch.equal(noise[0], torch.zeros(2, 6)) and torch.equal(noise[2], torch.zeros(2, 6))
    assert bool((noise[1] != 0).all())


def test_per_example_sigma_checks_its_length_and_values() -> None:
    with pytest.raises(ValueError, match="PerExampleSigma holds 2"):
        _tunnel().attribute(torch.rand(3, 4), target=0, stdevs=PerExampleSigma([0.1, 0.2]))
    with pytest.raises(ValueError, match="`values` must be finite and >= 0"):
        PerExampleSigma([0.1, -0.2])
    with pytest.raises(TypeError, match="values"):
        PerExampleSigma([[0.1, 0.2]])
    assert len(repr(PerExampleSigma(torch.rand(1000)))) < 120


def test_a_1d_stdevs_on_1d_inputs_is_per_example() -> None:
    # One dimension: per example and per element are the same thing.
    probe = Probe(_Scalar())
    x = torch.zeros(3)
    SmoothTunnel(Saliency(probe)).attribute(
        x, nt_samples=2, stdevs=torch.tensor([0.0, 1.0, 0.0]), generator=0
    )
    noise = probe.seen[0].reshape(3, 2)
    assert torch.equal(noise[0], torch.zeros(2)) and bool((noise[1] != 0).all())


class _Scalar(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0


# ---------------------------------------------------------------- inputs refused before any work


class _Counting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.inner = Linear(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("preset", [None, SmoothGrad])
def test_non_finite_inputs_are_refused_naming_the_input(value: float, preset) -> None:
    model = _Counting()
    x = torch.rand(2, 4)
    x[1, 2] = value
    method = _tunnel(model) if preset is None else preset(model)
    with pytest.raises(ValueError, match=r"`inputs\[0\]` contains") as err:
        method.attribute(x, target=0)
    assert "stdevs" not in str(err.value)
    assert model.calls == 0


def test_complex_inputs_are_called_complex() -> None:
    with pytest.raises(TypeError, match="complex dtype") as err:
        _tunnel().attribute(torch.rand(2, 4).to(torch.complex64), target=0)
    assert "integer" not in str(err.value)


def test_empty_batch() -> None:
    model = _Counting()
    with pytest.raises(ValueError, match="`inputs` has an empty batch"):
        _tunnel(model).attribute(torch.rand(0, 4), target=0)
    assert model.calls == 0


@pytest.mark.parametrize(
    ("target", "error"),
    [
        (torch.tensor([0, 1, 0]), ValueError),
        (torch.tensor([[0], [1]]), ValueError),
        (torch.tensor([0.0, 1.0]), TypeError),
        (torch.tensor([True, False]), TypeError),
        ([0, 1, 0], ValueError),
        ([0, "a"], TypeError),
        (-3, ValueError),
        ([-1, 0], ValueError),
        (torch.tensor([0, 1], dtype=torch.uint8), TypeError),
        ("a", TypeError),
        (True, TypeError),
        (1.0, TypeError),
    ],
)
def test_target_of_the_wrong_kind_shape_or_dtype_before_any_work(target, error) -> None:
    model = _Counting()
    with pytest.raises(error, match="`target`"):
        _tunnel(model).attribute(torch.rand(2, 4), target=target)
    assert model.calls == 0


@pytest.mark.parametrize(
    "target", [7, (0, 1), torch.tensor([0, 5]), [0, 2], [(0,), (9,)], torch.tensor(4)]
)
@pytest.mark.parametrize("preset", [None, SmoothGrad, NoiseGrad, FusionGrad])
def test_target_out_of_range_is_named_at_the_first_call(target, preset) -> None:
    model = Linear(4).eval()  # two outputs
    method = _tunnel(model) if preset is None else preset(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"`target` .* output of shape \(2, 2\)") as err:
        method.attribute(torch.rand(2, 4), target=target)
    assert isinstance(err.value.__cause__, (IndexError, AssertionError, RuntimeError))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_missing_target_on_a_model_with_several_outputs() -> None:
    with pytest.raises(ValueError, match=r"`target` is needed.*\(2, 2\)"):
        _tunnel().attribute(torch.rand(2, 4))


@pytest.mark.parametrize(
    "name", ["include_clean", "return_error", "show_progress", "draw_baseline_from_distrib"]
)
def test_flags_must_be_bools(name: str) -> None:
    with pytest.raises(TypeError, match=f"`{name}` must be True or False"):
        _tunnel().attribute(torch.rand(2, 4), target=0, **{name: "no"})


def test_sample_transform_must_be_callable() -> None:
    with pytest.raises(TypeError, match="`sample_transform`"):
        _tunnel().attribute(torch.rand(2, 4), target=0, sample_transform=3)


def test_target_on_a_model_without_a_class_dimension() -> None:
    with pytest.raises(ValueError, match="`target`"):
        _tunnel(_Scalar()).attribute(torch.rand(3), target=0)


@pytest.mark.parametrize(
    "target",
    [
        0,
        1,
        [0, 1],
        torch.tensor([1, 0]),
        torch.tensor([1, 0], dtype=torch.int32),
        torch.tensor(1),
        (1,),
        [(0,), (1,)],
    ],
)
def test_valid_targets_still_give_the_exact_gradient(target) -> None:
    model = Linear(4)
    attr = _tunnel(model).attribute(torch.rand(2, 4), target=target, abs=False, generator=0)
    rows = {
        0: [0, 0],
        1: [1, 1],
    }.get(target if isinstance(target, int) else -99)
    if rows is None:
        flat = torch.as_tensor(target).flatten().tolist()
        rows = flat if len(flat) == 2 else flat * 2
    torch.testing.assert_close(attr, model.weight[rows])


def test_other_errors_of_the_first_call_are_left_as_they_are() -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise IndexError("the model's own bug")

    with pytest.raises(IndexError, match="own bug"):
        _tunnel(Broken()).attribute(torch.rand(2, 4), target=0)


@pytest.mark.parametrize(
    ("generator", "error"), [(2**70, ValueError), (-(2**63) - 1, ValueError), (1.5, TypeError)]
)
def test_generator_seed_out_of_64_bits(generator, error) -> None:
    with pytest.raises(error, match="`generator`"):
        _tunnel().attribute(torch.rand(2, 4), target=0, generator=generator)


@pytest.mark.parametrize("seed", [2**64 - 1, -(2**63), -1])
def test_generator_seed_range_ends_work(seed: int) -> None:
    _tunnel().attribute(torch.rand(2, 4), target=0, generator=seed)


@pytest.mark.parametrize("bounds", [1.0, "01", (0.0, 1.0, 2.0), (0.0, "a")])
def test_smoothgrad_bounds_of_the_wrong_type(bounds) -> None:
    with pytest.raises((TypeError, ValueError), match="`bounds`"):
        SmoothGrad(Linear(4)).attribute(torch.rand(2, 4), target=0, bounds=bounds)


def test_weight_noise_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match=r"`weight_noise`.*WeightNoise"):
        _tunnel().attribute(torch.rand(2, 4), target=0, weight_noise=0.2)
    with pytest.raises(ValueError, match="weight_noise"):
        FusionGrad(Linear(4)).attribute(torch.rand(2, 4), target=0, weight_noise=0.2)


@pytest.mark.parametrize(("value", "error"), [(-0.1, ValueError), ("a", TypeError)])
def test_noisegrad_names_weight_stdev(value, error) -> None:
    for preset in (NoiseGrad, FusionGrad):
        with pytest.raises(error, match="`weight_stdev`"):
            preset(Linear(4)).attribute(torch.rand(2, 4), target=0, weight_stdev=value)


def test_frozen_model_hint_names_arguments_that_exist() -> None:
    model = Linear(4).requires_grad_(False)
    x = torch.rand(2, 4)
    with pytest.raises(ValueError, match="frozen") as err:
        NoiseGrad(model).attribute(x, target=0)
    message = str(err.value)
    assert "requires_grad_(True)" in message and "WeightNoise(" in message
    # The presets take no `trainable_only`; WeightNoise does, and the hint's spelling works.
    assert "trainable_only" not in inspect.signature(NoiseGrad.attribute).parameters
    assert "trainable_only" in inspect.signature(WeightNoise).parameters
    attr = _tunnel(model).attribute(
        x,
        target=0,
        nt_samples=1,
        stdevs=0.0,
        n_weight_samples=2,
        generator=0,
        weight_noise=WeightNoise(0.2, trainable_only=False),
    )
    assert attr.shape == x.shape


# ---------------------------------------------------------------- tolerance, reprs, typing


def test_unreached_tolerance_warns_once_and_the_report_names_the_examples() -> None:
    tunnel = _tunnel(Cubic())
    x = torch.rand(3, 4)
    with pytest.warns(ToleranceNotReachedWarning) as record:
        tunnel.attribute(x, tolerance=1e-6, max_samples=12, stdevs=0.5, generator=0, abs=False)
    assert len([w for w in record if w.category is ToleranceNotReachedWarning]) == 1
    report = tunnel.last_report
    assert report is not None and report.error is not None
    expected = torch.nonzero(report.error.relative_error > 1e-6).flatten()
    assert torch.equal(report.tolerance_not_reached, expected)
    assert expected.tolist() == [0, 1, 2]
    assert issubclass(captum_smooth.ToleranceNotReachedWarning, Warning)


def test_reached_tolerance_does_not_warn() -> None:
    tunnel = _tunnel()  # linear: every sample has the same gradient, relative error 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tunnel.attribute(torch.rand(3, 4), target=0, tolerance=0.01, stdevs=0.5, generator=0)
    assert tunnel.last_report.tolerance_not_reached.numel() == 0
    tunnel.attribute(torch.rand(3, 4), target=0)
    assert tunnel.last_report.tolerance_not_reached is None


def test_report_and_error_reprs_are_short_for_a_large_batch() -> None:
    tunnel = _tunnel(Cubic())
    x = torch.rand(1000, 4)
    _, error = tunnel.attribute(x, nt_samples=3, stdevs=0.2, generator=0, return_error=True)
    with pytest.warns(ToleranceNotReachedWarning):
        tunnel.attribute(x, nt_samples=3, stdevs=0.2, generator=0, tolerance=1e-9)
    for obj in (tunnel.last_report, error):
        text = repr(obj)
        assert len(text) < 500 and "tensor(" not in text and "..." in text
        assert str(obj) == text


def test_py_typed_ships() -> None:
    assert (ROOT / "captum_smooth" / "py.typed").is_file()
    # tomllib is 3.11+: the package-data line is read as text.
    lines = (ROOT / "pyproject.toml").read_text().splitlines()
    start = lines.index("[tool.setuptools.package-data]")
    assert lines[start + 1].startswith("captum_smooth = [") and '"py.typed"' in lines[start + 1]


# ---------------------------------------------------------------- the dtype noise is drawn in
# Captum's parity itself (float32 and float64, each nt_type, chunked or not) is
# tests/core/test_tunnel_captum_equivalence.py::test_equals_captum.


class _Recorder(nn.Module):
    """Keeps the noisy inputs it is given; its output is linear, so Saliency runs."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x.sum(dim=1, keepdim=True)


@pytest.mark.parametrize(
    ("stdevs", "drawn_in"),
    [(0.5, torch.float32), (torch.tensor(0.5, dtype=torch.float64), torch.float64)],
)
def test_float64_noise_is_drawn_in_float32_for_a_float_sigma_only(stdevs, drawn_in) -> None:
    # A zero input and sigma 0.5 (a power of two): the noisy input / 0.5 is the draw exactly.
    model = _Recorder()
    x = torch.zeros(3, 40, dtype=torch.float64)
    SmoothTunnel(Saliency(model)).attribute(x, nt_samples=4, stdevs=stdevs, target=0)
    draws = torch.cat(model.seen) / 0.5
    assert draws.dtype == torch.float64 and draws.abs().max() > 0
    fits_float32 = torch.equal(draws.float().double(), draws)
    assert fits_float32 == (drawn_in == torch.float32)
