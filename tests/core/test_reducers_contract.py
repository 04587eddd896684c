"""Reducers are a part: the public contract, the registry, and the error model asking the reducer.

Parametrised over ``reducer_names()``: a newly registered reducer is tested here without
touching this file.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency
from torch import Tensor

from captum_smooth import (
    MonteCarloError,
    SmoothTunnel,
    WeightNoise,
    reducer_names,
    register_reducer,
)
from captum_smooth.core.reducers import REDUCERS, StreamingMoments, get_reducer

from analytic_models import Cubic


@pytest.fixture
def x() -> Tensor:
    return torch.randn(3, 4, generator=torch.Generator().manual_seed(0))


def _tunnel() -> SmoothTunnel:
    return SmoothTunnel(Saliency(Cubic()))


class Recording:
    """A user reducer (the README's contract): keeps every row it is fed, reports the mean."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.calls: list[tuple[int, list[int] | None, int]] = []
        self.samples: list[list[Tensor]] = [[] for _ in range(batch_size)]

    def update(self, attributions: tuple[Tensor, ...], k: int, rows: Tensor | None = None) -> None:
        ids = list(range(self.batch_size)) if rows is None else rows.tolist()
        (a,) = attributions
        assert a.shape[0] == len(ids) * k  # example-major, k rows per example
        self.calls.append((k, None if rows is None else ids, a.shape[0]))
        for i, row in enumerate(ids):
            self.samples[row].append(a[i * k : (i + 1) * k])

    def result(self) -> tuple[Tensor, ...]:
        return (torch.stack([torch.cat(s).mean(0) for s in self.samples]),)

    def standard_error(self) -> tuple[Tensor, ...]:
        return (
            torch.stack([torch.cat(s).std(0) / len(torch.cat(s)) ** 0.5 for s in self.samples]),
        )


@pytest.mark.parametrize("name", reducer_names())
def test_every_registered_reducer_by_nt_type_and_by_reducer(name: str, x: Tensor) -> None:
    kw = dict(nt_samples=6, nt_samples_batch_size=4, stdevs=0.3, generator=2, abs=False)
    by_nt_type = _tunnel().attribute(x, nt_type=name, **kw)
    by_reducer = _tunnel().attribute(x, reducer=name, **kw)
    by_factory = _tunnel().attribute(x, reducer=REDUCERS.get(name), **kw)
    assert by_nt_type.shape == x.shape
    assert torch.equal(by_nt_type, by_reducer) and torch.equal(by_nt_type, by_factory)


@pytest.mark.parametrize("name", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_builtin_reducers_are_captums_statistics(name: str, x: Tensor) -> None:
    recorder: list[Recording] = []

    def factory(batch_size: int) -> Recording:
        recorder.append(Recording(batch_size))
        return recorder[-1]

    kw = dict(nt_samples=7, nt_samples_batch_size=3, stdevs=0.3, generator=4, abs=False)
    ours = _tunnel().attribute(x, nt_type=name, **kw)
    _tunnel().attribute(x, reducer=factory, **kw)
    samples = torch.stack([torch.cat(s) for s in recorder[-1].samples])  # (B, N, 4)
    expected = {
        "smoothgrad": samples.mean(1),
        "smoothgrad_sq": (samples**2).mean(1),
        "vargrad": samples.var(1, unbiased=False),
    }[name]
    torch.testing.assert_close(ours, expected)


def test_user_reducer_sees_the_documented_layout_and_gives_the_error(x: Tensor) -> None:
    made: list[Recording] = []

    def factory(batch_size: int) -> Recording:
        made.append(Recording(batch_size))
        return made[-1]

    attr, error = _tunnel().attribute(
        x,
        reducer=factory,
        stdevs=0.5,
        nt_samples_batch_size=2,
        tolerance=1e-9,  # never reached: every example samples to max_samples
        max_samples=6,
        return_error=True,
        generator=0,
    )
    (reducer,) = made
    assert [k for k, _, _ in reducer.calls] == [2, 2, 2]
    assert isinstance(error, MonteCarloError)
    torch.testing.assert_close(error.standard_error, reducer.standard_error()[0])
    assert attr.shape == x.shape


def test_tolerance_feeds_only_the_examples_still_sampling(x: Tensor) -> None:
    made: list[Recording] = []

    def factory(batch_size: int) -> Recording:
        made.append(Recording(batch_size))
        return made[-1]

    xs = torch.cat([x[:1], x[:1] * 0 + 3.0, x[2:]])  # example 1: far out, tiny relative error
    _tunnel().attribute(
        xs, reducer=factory, stdevs=0.05, nt_samples_batch_size=2, tolerance=0.02,
        min_samples=2, max_samples=10, generator=0,
    )  # fmt: skip
    rows = [r for _, r, _ in made[0].calls]
    assert rows[0] is None  # the first chunks cover every example
    assert any(r is not None and 1 not in r for r in rows)  # example 1 stopped early


def test_reducer_without_error_refuses_return_error(x: Tensor) -> None:
    class NoError:
        def __init__(self, batch_size: int) -> None:
            self.inner = Recording(batch_size)

        def update(self, attributions, k, rows=None):
            self.inner.update(attributions, k, rows)

        def result(self):
            return self.inner.result()

    with pytest.raises(ValueError, match="standard_error"):
        _tunnel().attribute(x, reducer=NoError, return_error=True)
    assert _tunnel().attribute(x, reducer=NoError).shape == x.shape


def test_reducer_given_twice_or_wrong_is_an_error(x: Tensor) -> None:
    with pytest.raises(ValueError, match=r"nt_type.*reducer"):
        _tunnel().attribute(x, nt_type="vargrad", reducer="smoothgrad")
    with pytest.raises(ValueError, match="known reducers"):
        _tunnel().attribute(x, reducer="nope")
    with pytest.raises(ValueError, match="nt_type"):
        _tunnel().attribute(x, nt_type="nope")
    with pytest.raises(TypeError, match="reducer"):
        get_reducer(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="update"):
        _tunnel().attribute(x, reducer=lambda b: object())


def test_register_reducer_makes_a_name_work_everywhere(x: Tensor) -> None:
    @register_reducer("first_sample")
    class First:
        def __init__(self, batch_size: int) -> None:
            self.first: Tensor | None = None

        def update(self, attributions, k, rows=None):
            if self.first is None:
                self.first = attributions[0][::k].clone()

        def result(self):
            return (self.first,)

    try:
        assert "first_sample" in reducer_names()
        out = _tunnel().attribute(x, nt_type="first_sample", nt_samples=3, stdevs=0.0)
        torch.testing.assert_close(out, 3 * x**2)
        with pytest.raises(ValueError, match="registered already"):
            register_reducer("first_sample")(First)
    finally:
        REDUCERS.unregister("first_sample")
    assert "first_sample" not in reducer_names()


def test_nested_error_asks_the_reducer_whether_draws_average(x: Tensor) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    tunnel = SmoothTunnel(Saliency(model))
    kw = dict(
        weight_noise=WeightNoise(0.2), n_weight_samples=4, nt_samples=3, stdevs=0.1,
        generator=0, return_error=True, abs=False,
    )  # fmt: skip
    _, mean_error = tunnel.attribute(x, nt_type="smoothgrad", **kw)
    _, var_error = tunnel.attribute(x, nt_type="vargrad", **kw)
    assert mean_error.nested and mean_error.n_samples.tolist() == [4, 4, 4]
    assert not var_error.nested and var_error.n_samples.tolist() == [12, 12, 12]


def test_streaming_moments_match_two_pass_statistics() -> None:
    g = torch.Generator().manual_seed(1)
    data = torch.randn(2, 11, 5, generator=g) * 3 + 1
    moments = StreamingMoments(2, higher_moments=True)
    for start in range(0, 11, 4):
        chunk = data[:, start : start + 4]
        moments.update((chunk.reshape(-1, 5),), chunk.shape[1])
    torch.testing.assert_close(moments.reduce("smoothgrad")[0], data.mean(1))
    torch.testing.assert_close(moments.reduce("vargrad")[0], data.var(1, unbiased=False))
    torch.testing.assert_close(moments.reduce("smoothgrad_sq")[0], (data**2).mean(1))
