"""Property suite: every call ends in a correct result or a clear error naming the argument.

Hypothesis draws a method (SmoothTunnel or a preset), inputs (shapes, dtypes, a tensor or a
tuple), the options of that method in every kind they come in, and, in about half the cases,
one bad value of one argument (or bad inputs). The model is linear in every input,
``f_c(x) = (c + 1) * sum_i <w_i, x_i>``, so the right answer is known exactly:

* a valid case must return the exact smoothed gradient (``(c + 1) w_i``, its absolute value,
  square, or zero variance) in the inputs' shapes and dtypes, leave the inputs and the model
  untouched, and, under weight noise, fall within six standard errors of it;
* a bad case must raise ValueError or TypeError from this package (the innermost frame of the
  traceback is in ``captum_smooth``, not Captum or torch) with the argument's name in the
  message: never a deep traceback, never a silent result.

The counts (cases, clear errors, results) are printed at the end of the module.
"""

from __future__ import annotations

import math
import os
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from captum.attr import Saliency
from doors import TALLY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from captum_smooth import (
    AdaptGrad,
    AdaptiveSigma,
    FusionGrad,
    NoiseGrad,
    OutsideBoundsWarning,
    PerExampleSigma,
    RangeShareSigma,
    SmoothGrad,
    SmoothTunnel,
    ToleranceNotReachedWarning,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore", category=OutsideBoundsWarning),
    pytest.mark.filterwarnings("ignore", category=ToleranceNotReachedWarning),
]

COUNTS: Counter[str] = Counter()
NAMES: Counter[str] = Counter()  # the bad arguments, by name
N_CASES = int(os.environ.get("CAPTUM_SMOOTH_PROPERTY_CASES", "100"))

METHODS = ("tunnel", "smoothgrad", "adaptgrad", "noisegrad", "fusiongrad")
WEIGHT_NOISE = ("noisegrad", "fusiongrad")


class LinearInEachInput(nn.Module):
    """``f_c(x) = (c + 1) * sum_i <w_i, x_i>``: the gradient of output ``c`` is ``(c+1) w_i``."""

    N_OUT = 3

    def __init__(self, shapes: list[tuple[int, ...]], seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.ParameterList(nn.Parameter(torch.rand(s, generator=g) + 0.5) for s in shapes)
        self.register_buffer("scale", torch.arange(1.0, self.N_OUT + 1.0))

    def forward(self, *xs: Tensor) -> Tensor:
        total = sum((x * w.to(x.dtype)).reshape(x.shape[0], -1).sum(1) for x, w in zip(xs, self.w))
        return total.unsqueeze(1) * self.scale.to(total.dtype)


@dataclass
class Case:
    """One drawn call: the method, the inputs, the keyword arguments and what was corrupted."""

    method: str
    inputs: tuple[Tensor, ...]
    as_tuple: bool
    kwargs: dict[str, Any]
    bad: str | None = None  # the argument whose value is bad (its name must be in the message)
    labels: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- valid values


def _stdevs(draw: Any, inputs: tuple[Tensor, ...]) -> Any:
    x = inputs[0]
    g = torch.Generator().manual_seed(draw(st.integers(0, 9)))
    kind = draw(st.sampled_from(["float", "per_example", "per_element", "rule", "tuple"]))
    if kind == "float" or (len(inputs) > 1 and kind != "tuple"):
        return draw(st.sampled_from([0.0, 0.1, 1.0]))
    if kind == "per_example":
        values = torch.rand(x.shape[0], generator=g) * 0.5
        if draw(st.booleans()):
            return PerExampleSigma(values)
        return values.reshape((-1,) + (1,) * (x.dim() - 1))
    if kind == "per_element":
        return torch.rand((1, *x.shape[1:]), generator=g) * 0.5
    if kind == "rule":
        return draw(st.sampled_from([RangeShareSigma(0.1), AdaptiveSigma(0.9, (-1.0, 2.0)), 0.2]))
    return tuple(draw(st.sampled_from([0.0, 0.3])) for _ in inputs)


def _target(draw: Any, batch: int) -> Any:
    kind = draw(st.sampled_from(["int", "list", "tensor", "scalar_tensor", "tuple"]))
    c = draw(st.integers(0, LinearInEachInput.N_OUT - 1))
    if kind == "int":
        return c
    if kind == "tuple":
        return (c,)
    per_example = [draw(st.integers(0, LinearInEachInput.N_OUT - 1)) for _ in range(batch)]
    if kind == "list":
        return per_example
    if kind == "tensor":
        return torch.tensor(per_example)
    return torch.tensor(c)


def _common(draw: Any, case: Case) -> None:
    kw = case.kwargs
    kw["target"] = _target(draw, case.inputs[0].shape[0])
    kw["nt_type"] = draw(st.sampled_from(["smoothgrad", "smoothgrad_sq", "vargrad"]))
    kw["abs"] = draw(st.booleans())
    kw["generator"] = draw(st.sampled_from([None, 0, 2**63, -5, "gen"]))
    if kw["generator"] == "gen":
        kw["generator"] = torch.Generator().manual_seed(3)
    if draw(st.integers(0, 3)) == 0:
        kw["return_error"] = True
    if draw(st.integers(0, 4)) == 0:
        kw["tolerance"] = 0.5
        kw["max_samples"] = 4


def _input_noise(draw: Any, case: Case) -> None:
    kw = case.kwargs
    kw["nt_samples"] = draw(st.integers(1, 5))
    kw["nt_samples_batch_size"] = draw(st.sampled_from([None, 1, 2, "auto"]))
    kw["kernel"] = draw(st.sampled_from(["gaussian", "laplace", "uniform", "bump"]))
    kw["include_clean"] = draw(st.booleans())
    if case.method != "tunnel" and kw["nt_samples_batch_size"] is None:
        del kw["nt_samples_batch_size"]
    if kw.get("tolerance") is not None and kw["nt_samples"] < 2:
        kw["nt_samples"] = 2


def _method_options(draw: Any, case: Case) -> None:
    kw, m = case.kwargs, case.method
    if m in ("tunnel", "fusiongrad"):
        kw["stdevs"] = _stdevs(draw, case.inputs)
    if m == "smoothgrad":
        if draw(st.booleans()):
            kw["stdevs"] = _stdevs(draw, case.inputs)
        else:
            kw["noise_level"] = draw(st.sampled_from([0.0, 0.1, 0.3]))
            kw["bounds"] = draw(st.sampled_from([None, (-1.0, 2.0), [(-1.0, 2.0), (0.0, 3.0)]]))
            if isinstance(kw["bounds"], list) and len(case.inputs) != 2:
                kw["bounds"] = None
    if m == "adaptgrad":
        kw["confidence"] = draw(st.sampled_from([0.5, 0.95, 0.999]))
        kw["bounds"] = draw(st.sampled_from([None, (0.0, 1.0), (-0.5, 1.5)]))
    if m in WEIGHT_NOISE:
        kw["weight_stdev"] = draw(st.sampled_from([0.0, 0.1, 0.3]))
        kw["noise_type"] = draw(st.sampled_from(["multiplicative", "additive"]))
        kw["n_weight_samples"] = draw(st.integers(2 if "tolerance" in kw else 1, 3))
    if m != "noisegrad":
        _input_noise(draw, case)


# ----------------------------------------------------------------------------- bad values

BAD_COMMON: dict[str, list[Any]] = {
    "nt_type": ["smoothgrad_cubed", 1, None],
    "generator": [2**70, -(2**63) - 1, "seed", 1.5, True],
    "tolerance": [0.0, -1.0, math.nan, "small", True],
    "min_samples": [3],  # without tolerance: no effect, an error
    "return_error": ["yes", 2],
}
BAD_INPUT_NOISE: dict[str, list[Any]] = {
    "nt_samples": [0, -2, 2.5, "3", True, None],
    "nt_samples_batch_size": [0, -1, "fast", 1.5, True],
    "kernel": ["gauss-ish", 3, None],
    "include_clean": ["no", 1],
}
BAD_TUNNEL: dict[str, list[Any]] = {
    "sample_transform": [3, "taylor"],
    "reducer": ["nope", 3],
    "noise_layer": [3, "embedding"],
    "weight_noise": [0.2, "noisegrad"],
    "n_weight_samples": [2],  # without weight_noise: an error
}
BAD_STDEVS: list[Any] = [-0.1, math.nan, math.inf, "big", True, "1d", "3d", "neg_tensor", "cplx"]
BAD_PRESET: dict[str, dict[str, list[Any]]] = {
    "smoothgrad": {"noise_level": [-0.1, math.nan, "x"], "bounds": [1.0, (1.0, 0.0), "ab"]},
    "adaptgrad": {
        "confidence": [0.0, 1.0, 1.5, "high"],
        "bounds": [1.0, (1.0, 0.0), (0.0,), "ab"],
        "stdevs": [0.1],
        "strict": ["yes"],
    },
    "noisegrad": {
        "weight_stdev": [-0.1, math.nan, "x"],
        "noise_type": ["uniform"],
        "exclude": ["nope", 3],  # "nope" leaves nothing out: no effect
        "n_weight_samples": [0, 2.5],
        "nt_samples": [5],
        "stdevs": [0.1],
    },
    "fusiongrad": {"weight_stdev": [-1.0, "x"], "n_weight_samples": [0, -1]},
}


def _bad_stdevs(value: Any, x: Tensor) -> Any:
    if value == "1d":
        return torch.full((max(x.shape[0], 2),), 0.1)
    if value == "3d":
        return torch.full((7, 7, 7, 7, 7), 0.1)
    if value == "neg_tensor":
        return -torch.ones((1, *x.shape[1:]))
    if value == "cplx":
        return torch.ones(1, dtype=torch.complex64)
    return value


def bad_table(method: str) -> dict[str, list[Any]]:
    """The bad values of every argument ``method`` takes (or refuses), by argument name."""
    table = dict(BAD_COMMON)
    if method != "noisegrad":
        table.update(BAD_INPUT_NOISE)
    table.update(BAD_PRESET.get(method, {}))
    if method in ("tunnel", "fusiongrad"):
        table["stdevs"] = BAD_STDEVS
    if method == "tunnel":
        table.update(BAD_TUNNEL)
    table["target"] = ["too_long", 99, -99, -1, "neg_list", "uint8", "float", "2d", "name", None]
    return table


def _corrupt_argument(draw: Any, case: Case, name: str | None, value: Any) -> None:
    table = bad_table(case.method)
    if name is None:
        name = draw(st.sampled_from(sorted(table)))
        value = draw(st.sampled_from(table[name]))
    x = case.inputs[0]
    if name == "stdevs":
        value = _bad_stdevs(value, x)
        if isinstance(value, Tensor) and value.dim() == 1 and x.dim() == 1:
            value = torch.full((x.shape[0], 2, 2), 0.1)  # 1-D on 1-D inputs is per example
    if name == "target":
        value = {
            "too_long": [0] * (x.shape[0] + 1),
            "float": torch.zeros(x.shape[0]),
            "2d": torch.zeros(x.shape[0], 2, dtype=torch.long),
            "name": "cat",
            "neg_list": [-1] * x.shape[0],
            "uint8": torch.zeros(x.shape[0], dtype=torch.uint8),
        }.get(value, value)
    if name == "min_samples":
        case.kwargs.pop("tolerance", None)  # min_samples without tolerance has no effect
    if name == "nt_samples":
        case.kwargs.pop("tolerance", None)  # a tolerance raises nt_samples to 2
        case.kwargs.pop("max_samples", None)
    case.kwargs[name] = value
    case.bad = name


BAD_INPUTS = ("empty", "nan", "inf", "complex", "int", "batch", "none")


def _corrupt_inputs(draw: Any, case: Case, kind: str | None) -> None:
    kind = kind or draw(st.sampled_from(BAD_INPUTS))
    xs = list(case.inputs)
    if kind == "empty":
        xs[0] = xs[0][:0]
    elif kind in ("nan", "inf"):
        xs[-1] = xs[-1].clone()
        xs[-1].view(-1)[0] = math.nan if kind == "nan" else -math.inf
    elif kind == "complex":
        xs[0] = xs[0].to(torch.complex64)
    elif kind == "int":
        xs[0] = (xs[0] * 10).long()
    elif kind == "batch":
        xs.append(torch.rand(xs[0].shape[0] + 1, 2))
    else:
        xs[0] = None  # type: ignore[call-overload]
    case.inputs, case.as_tuple, case.bad = tuple(xs), case.as_tuple or len(xs) > 1, "inputs"
    case.labels.append(f"inputs:{kind}")


@st.composite
def cases(
    draw: Any,
    method: str | None = None,
    what: str | None = None,
    name: str | None = None,
    value: Any = None,
) -> Case:
    """A call: valid, or with one bad argument (``name``, ``value``) or bad inputs (``name``).

    Unset, the method, what is corrupted and how are drawn too.
    """
    method = method or draw(st.sampled_from(METHODS))
    batch = draw(st.integers(1, 3))
    n_inputs = draw(st.integers(1, 2))
    shapes = [
        tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))) for _ in range(n_inputs)
    ]
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 9)))
    inputs = tuple(torch.rand((batch, *s), generator=g, dtype=dtype) for s in shapes)
    case = Case(method, inputs, n_inputs > 1 or draw(st.booleans()), {})
    _common(draw, case)
    _method_options(draw, case)
    what = what or draw(st.sampled_from(["valid", "valid", "argument", "inputs"]))
    if what == "argument":
        _corrupt_argument(draw, case, name, value)
    elif what == "inputs":
        _corrupt_inputs(draw, case, name)
    return case


# ----------------------------------------------------------------------------- the checks


def _build(case: Case, model: nn.Module) -> Any:
    if case.method == "tunnel":
        return SmoothTunnel(Saliency(model))
    preset = {
        "smoothgrad": SmoothGrad,
        "adaptgrad": AdaptGrad,
        "noisegrad": NoiseGrad,
        "fusiongrad": FusionGrad,
    }[case.method]
    return preset(model)


def _per_example_class(target: Any, batch: int) -> Tensor:
    n = LinearInEachInput.N_OUT
    if isinstance(target, tuple):
        target = target[0]
    if isinstance(target, Tensor) and target.numel() == 1:
        target = int(target)
    if isinstance(target, int):
        return torch.full((batch,), target % n)
    return torch.as_tensor(target) % n


def _expected(case: Case, model: LinearInEachInput, x: Tensor, i: int) -> Tensor:
    kw = case.kwargs
    c = _per_example_class(kw["target"], x.shape[0]).to(x.dtype) + 1.0
    grad = c.reshape((-1,) + (1,) * (x.dim() - 1)) * model.w[i].detach().to(x.dtype)
    grad = grad.abs() if kw["abs"] else grad
    return {"smoothgrad": grad, "smoothgrad_sq": grad**2, "vargrad": grad * 0}[kw["nt_type"]]


def _check_result(case: Case, model: LinearInEachInput, out: Any, before: list) -> None:
    if case.kwargs.get("return_error"):
        out, error = out
        assert error.relative_error.shape == (case.inputs[0].shape[0],)
    attrs = out if case.as_tuple else (out,)
    assert isinstance(out, tuple) == case.as_tuple
    for i, (a, x) in enumerate(zip(attrs, case.inputs)):
        assert a.shape == x.shape and a.dtype == x.dtype
        assert torch.equal(x, before[i]), "the inputs were modified"
        expected = _expected(case, model, x, i)
        s = case.kwargs.get("weight_stdev", 0.0)
        if s == 0.0:
            rtol = 1e-4 if x.dtype == torch.float32 else 1e-9
            torch.testing.assert_close(a, expected, rtol=rtol, atol=rtol)
        elif case.kwargs["nt_type"] == "smoothgrad":
            # M weight draws: six standard errors of the mean of (c+1) w eta (or w + s eta).
            m = 2 if "tolerance" in case.kwargs else case.kwargs["n_weight_samples"]
            n_out = LinearInEachInput.N_OUT  # (c + 1) <= n_out
            bound = 6 * s * n_out * (float(model.w[i].abs().max()) + 1.0) / math.sqrt(m)
            assert float((a - expected).abs().max()) <= bound + 1e-5
        else:
            assert bool(torch.isfinite(a).all()) and float(a.min()) >= -1e-5


def _innermost_frame(err: BaseException) -> str:
    return traceback.extract_tb(err.__traceback__)[-1].filename


def _check_error(case: Case, err: Exception) -> None:
    where = _innermost_frame(err)
    detail = f"{type(err).__name__}: {err} (raised in {where}; bad: {case.bad}; {case.kwargs})"
    assert case.bad is not None, f"a valid case failed: {detail}"
    assert isinstance(err, (ValueError, TypeError)), f"not a clear error: {detail}"
    assert "captum_smooth" in where, f"a deep traceback: {detail}"
    assert case.bad in str(err), f"the message does not name `{case.bad}`: {detail}"


def _run(case: Case) -> str:
    seed = 0 if case.method == "tunnel" else 1
    model = LinearInEachInput([tuple(x.shape[1:]) for x in case.inputs if x is not None], seed)
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = [x.clone() if isinstance(x, Tensor) else x for x in case.inputs]
    method = _build(case, model)
    inputs = case.inputs if case.as_tuple else case.inputs[0]
    try:
        out = method.attribute(inputs, **case.kwargs)
    except Exception as err:
        _check_error(case, err)
        outcome = "clear error"
    else:
        assert case.bad is None, f"bad `{case.bad}` gave a result: {case.kwargs}"
        _check_result(case, model, out, before)
        outcome = "result"
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value), f"the model changed: {key}"
    return outcome


@pytest.fixture(scope="module", autouse=True)
def _report_counts(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    line = (
        f"property suite: {COUNTS['cases']} cases, {COUNTS['clear error']} clear errors "
        f"naming the argument, {COUNTS['result']} correct results "
        f"({COUNTS['bad argument']} bad arguments, {COUNTS['bad inputs']} bad inputs)"
    )
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if reporter is not None and capture is not None and COUNTS["cases"]:
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)
            reporter.write_line(f"bad arguments by name: {dict(sorted(NAMES.items()))}")


def _count(case: Case, outcome: str) -> None:
    COUNTS["cases"] += 1
    COUNTS[outcome] += 1
    # The suite-wide tally per door (doors.py); a failed case has failed its test already.
    door = TALLY["SmoothTunnel" if case.method == "tunnel" else f"preset {case.method}"]
    door["tried"] += 1
    door["exact result" if outcome == "result" else outcome] += 1
    if case.bad == "inputs":
        COUNTS["bad inputs"] += 1
    elif case.bad is not None:
        COUNTS["bad argument"] += 1
        NAMES[case.bad] += 1


SETTINGS = dict(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EVERY_BAD_VALUE = [
    (method, name, value)
    for method in METHODS
    for name, values in sorted(bad_table(method).items())
    for value in values
]


@pytest.mark.parametrize(("method", "name", "value"), EVERY_BAD_VALUE)
@settings(max_examples=1, **SETTINGS)
@given(data=st.data())
def test_every_bad_value_gets_a_clear_error_naming_it(method, name, value, data) -> None:
    case = data.draw(cases(method, "argument", name, value))
    _count(case, _run(case))


@pytest.mark.parametrize(("method", "kind"), [(m, k) for m in METHODS for k in BAD_INPUTS])
@settings(max_examples=2, **SETTINGS)
@given(data=st.data())
def test_bad_inputs_get_a_clear_error(method: str, kind: str, data) -> None:
    case = data.draw(cases(method, "inputs", kind))
    _count(case, _run(case))


@settings(max_examples=N_CASES, **SETTINGS)
@given(case=cases(what="valid"))
def test_valid_cases_give_the_exact_result(case: Case) -> None:
    _count(case, _run(case))


@settings(max_examples=N_CASES, **SETTINGS)
@given(case=cases())
def test_every_case_is_a_correct_result_or_a_clear_error(case: Case) -> None:
    _count(case, _run(case))
