"""The reducer contract: required and optional members, as the loop reads them and as documented.

A minimal user reducer (``update`` and ``result`` only) works without an error; one with every
optional member has each of them used; the ``Reducer`` docstring lists every member the loop
reads, and the loop reads no other.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
from captum.attr import Saliency
from torch import Tensor

import captum_smooth.core as core_package
from captum_smooth import SmoothTunnel, WeightNoise
from captum_smooth.core import CountingReducer, ErrorReducer, Reducer, ReducerTraits
from captum_smooth.core.reducers import (
    REDUCER_FLAGS,
    REDUCER_MEMBERS,
    MeanReducer,
    MeanSquareReducer,
    VarianceReducer,
)

from analytic_models import Cubic


@pytest.fixture
def x() -> Tensor:
    return torch.randn(3, 4, generator=torch.Generator().manual_seed(0))


class Minimal:
    """Only the required members: the running sum of the samples, divided at the end."""

    def __init__(self, batch_size: int) -> None:
        self.total: Tensor | None = None
        self.n = torch.zeros(batch_size)

    def update(self, attributions: tuple[Tensor, ...], k: int, rows: Tensor | None = None) -> None:
        (a,) = attributions
        b = a.shape[0] // k
        ids = torch.arange(b) if rows is None else rows
        if self.total is None:
            self.total = a.new_zeros((self.n.shape[0], *a.shape[1:]))
        self.total = self.total.index_add(0, ids, a.reshape(b, k, *a.shape[1:]).sum(1))
        self.n = self.n.index_add(0, ids, torch.full((b,), float(k)))

    def result(self) -> tuple[Tensor, ...]:
        assert self.total is not None
        return (self.total / self.n.reshape(-1, *([1] * (self.total.dim() - 1))),)


class Complete(Minimal):
    """Every optional member: an error, counts (one made-up drop per example) and both flags."""

    draw_average = True
    error_is_free = True

    def __init__(self, batch_size: int) -> None:
        super().__init__(batch_size)
        self.squares: Tensor | None = None

    def update(self, attributions: tuple[Tensor, ...], k: int, rows: Tensor | None = None) -> None:
        (a,) = attributions
        b = a.shape[0] // k
        ids = torch.arange(b) if rows is None else rows
        if self.squares is None:
            self.squares = a.new_zeros((self.n.shape[0], *a.shape[1:]))
        self.squares = self.squares.index_add(0, ids, (a * a).reshape(b, k, *a.shape[1:]).sum(1))
        super().update(attributions, k, rows)

    def standard_error(self) -> tuple[Tensor, ...]:
        assert self.squares is not None
        (mean,) = self.result()
        n = self.n.reshape(-1, *([1] * (mean.dim() - 1)))
        variance = (self.squares / n - mean * mean) * n / (n - 1)
        return ((variance.clamp_min(0) / n).sqrt(),)

    @property
    def count(self) -> Tensor | None:
        return self.n.long() if self.total is not None else None

    @property
    def n_dropped(self) -> Tensor | None:
        return torch.ones_like(self.n, dtype=torch.long) if self.total is not None else None


def _tunnel(model: torch.nn.Module | None = None) -> SmoothTunnel:
    return SmoothTunnel(Saliency(model if model is not None else Cubic()))


def test_a_minimal_reducer_is_a_reducer_without_optional_members(x: Tensor) -> None:
    reducer = Minimal(3)
    assert isinstance(reducer, Reducer)
    assert not isinstance(reducer, ErrorReducer) and not isinstance(reducer, CountingReducer)
    assert ReducerTraits.of(reducer) == ReducerTraits(False, False, False, False)


def test_a_minimal_reducer_smooths_and_reports_without_an_error(x: Tensor) -> None:
    tunnel = _tunnel()
    kw = dict(nt_samples=6, nt_samples_batch_size=4, stdevs=0.3, generator=1, abs=False)
    ours = tunnel.attribute(x, reducer=Minimal, **kw)
    report = tunnel.last_report
    torch.testing.assert_close(ours, tunnel.attribute(x, nt_type="smoothgrad", **kw))
    assert report is not None and report.error is None
    assert report.n_samples.tolist() == [6, 6, 6]  # every sample fed counts
    assert report.n_dropped_nan.tolist() == [0, 0, 0]


@pytest.mark.parametrize("option", [{"return_error": True}, {"tolerance": 0.1}])
def test_a_minimal_reducer_refuses_the_error_saying_why(x: Tensor, option: dict) -> None:
    with pytest.raises(ValueError, match=r"no `standard_error\(\)`.*ErrorReducer"):
        _tunnel().attribute(x, reducer=Minimal, **option)


def test_every_optional_member_is_read(x: Tensor) -> None:
    reducer = Complete(3)
    assert isinstance(reducer, ErrorReducer) and isinstance(reducer, CountingReducer)
    assert ReducerTraits.of(reducer) == ReducerTraits(True, True, True, True)
    tunnel = _tunnel()
    with pytest.warns(RuntimeWarning, match="dropped"):  # the made-up drops are reported
        tunnel.attribute(x, reducer=Complete, nt_samples=5, stdevs=0.3, generator=0)
    report = tunnel.last_report
    assert report is not None
    assert report.error is not None and not report.error.nested  # error_is_free: unasked
    assert report.n_samples.tolist() == [5, 5, 5]  # count
    assert report.n_dropped_nan.tolist() == [1, 1, 1]  # n_dropped, as the reducer says


@pytest.mark.filterwarnings("ignore:.*dropped:RuntimeWarning")
def test_draw_average_gives_the_nested_error_under_weight_noise(x: Tensor) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    kw = dict(
        weight_noise=WeightNoise(0.2), n_weight_samples=4, nt_samples=3, stdevs=0.1,
        generator=0, return_error=True,
    )  # fmt: skip
    _, averaged = _tunnel(model).attribute(x, reducer=Complete, **kw)
    assert averaged.nested and averaged.n_samples.tolist() == [4, 4, 4]

    class NotAveraged(Complete):
        draw_average = False

    _, pooled = _tunnel(model).attribute(x, reducer=NotAveraged, **kw)
    assert not pooled.nested


@pytest.mark.parametrize(
    ("factory", "traits"),
    [
        (MeanReducer, ReducerTraits(True, True, True, True)),
        (MeanSquareReducer, ReducerTraits(True, True, True, False)),
        (VarianceReducer, ReducerTraits(True, True, False, False)),
    ],
)
def test_builtin_reducers_traits(factory: type, traits: ReducerTraits) -> None:
    assert ReducerTraits.of(factory(2)) == traits


def _declared(protocol: type) -> set[str]:
    return {name for name in vars(protocol) if not name.startswith("_")}


def test_the_members_are_the_protocols_and_the_flags() -> None:
    declared = _declared(Reducer) | _declared(ErrorReducer) | _declared(CountingReducer)
    assert set(REDUCER_MEMBERS) == declared | set(REDUCER_FLAGS)
    assert {n for n, required in REDUCER_MEMBERS.items() if required} == _declared(Reducer)


@pytest.mark.parametrize("name", sorted(REDUCER_MEMBERS))
def test_the_docstring_lists_every_member(name: str) -> None:
    kind = "required" if REDUCER_MEMBERS[name] else "optional"
    # One bullet per member (or pair of members): the names, then whether they are required.
    bullets = re.split(r"\n\s*\* ", Reducer.__doc__ or "")[1:]
    heads = [b.partition(f" ({kind}")[0] for b in bullets if f" ({kind}" in b]
    assert any(f"``{name}" in head for head in heads), f"{name} ({kind}) is not documented"


def _string_getattrs(path: Path) -> set[str]:
    """The attribute names read by ``getattr(obj, "name", ...)`` with a literal name."""
    calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]
    return {
        str(call.args[1].value)
        for call in calls
        if isinstance(call.func, ast.Name)
        and call.func.id == "getattr"
        and len(call.args) >= 2
        and isinstance(call.args[1], ast.Constant)
    }


def test_the_loop_reads_no_member_outside_the_contract() -> None:
    core = Path(core_package.__file__).parent
    for path in core.glob("*.py"):
        read = _string_getattrs(path) & set(REDUCER_MEMBERS)
        assert not read, f"{path.name} reads reducer members {read} by getattr"
