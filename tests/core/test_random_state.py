"""Every draw under the generator: Captum methods that draw from global state reproduce.

GradientShap (and its layer and neuron forms) draws from numpy's global state, Lime, KernelShap,
FeaturePermutation and ShapleyValueSampling from torch's global generator. With ``generator=``
the loop seeds the global states from the generator for the inner calls and puts the caller's
back afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import (
    FeaturePermutation,
    GradientShap,
    KernelShap,
    LayerGradientShap,
    Lime,
    NeuronGradientShap,
    ShapleyValueSampling,
)
from captum.attr._utils.attribution import Attribution
from torch import Tensor, nn

from captum_smooth import SmoothGrad, SmoothTunnel, explain_dataset
from captum_smooth.core.random_state import seeded_global_states
from captum_smooth.methods.noisegrad import NoiseGrad


def mlp() -> nn.Module:
    with torch.random.fork_rng():  # the same model every time, the global state untouched
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).eval()


X = torch.rand(4, 6, generator=torch.Generator().manual_seed(1))
# One baseline, broadcast: GradientShap still draws its interpolation points from numpy.
BASELINES = torch.rand(1, 6, generator=torch.Generator().manual_seed(2))

#: name -> (inner method on a model, its attribute kwargs)
METHODS: dict[str, tuple[Callable[[nn.Module], Any], dict[str, Any]]] = {
    "GradientShap": (GradientShap, {"target": 0, "baselines": BASELINES, "n_samples": 3}),
    "LayerGradientShap": (
        lambda m: LayerGradientShap(m, m[0]),
        {"target": 0, "baselines": BASELINES, "n_samples": 3},
    ),
    "NeuronGradientShap": (
        lambda m: NeuronGradientShap(m, m[0]),
        {"baselines": BASELINES, "n_samples": 3, "neuron_selector": 1},
    ),
    "Lime": (Lime, {"target": 0, "n_samples": 8}),
    "KernelShap": (KernelShap, {"target": 0, "n_samples": 8}),
    "FeaturePermutation": (FeaturePermutation, {"target": 0}),
    "ShapleyValueSampling": (ShapleyValueSampling, {"target": 0, "n_samples": 2}),
}


def global_states() -> tuple[Any, ...]:
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def assert_same_states(a: tuple[Any, ...], b: tuple[Any, ...]) -> None:
    assert a[0] == b[0], "Python's random state changed"
    assert all(np.array_equal(x, y) for x, y in zip(a[1], b[1])), "numpy's state changed"
    assert torch.equal(a[2], b[2]), "torch's global state changed"


def smooth_tunnel(name: str, seed: int) -> Tensor:
    make, kwargs = METHODS[name]
    tunnel = SmoothTunnel(make(mlp()))
    return tunnel.attribute(X, nt_samples=3, stdevs=0.1, generator=seed, **kwargs)


def noisegrad(name: str, seed: int) -> Tensor:
    make, kwargs = METHODS[name]
    model = mlp()
    return NoiseGrad(model, make(model)).attribute(X, n_weight_samples=3, generator=seed, **kwargs)


@pytest.mark.parametrize("wrapper", [smooth_tunnel, noisegrad], ids=["SmoothTunnel", "NoiseGrad"])
@pytest.mark.parametrize("name", list(METHODS))
def test_same_generator_same_result_and_global_states_untouched(
    wrapper: Callable[[str, int], Tensor], name: str
) -> None:
    # Different global states before each run: only the generator may decide the result.
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    before = global_states()
    first = wrapper(name, 5)
    assert_same_states(before, global_states())
    random.seed(2)
    np.random.seed(2)
    torch.manual_seed(2)
    second = wrapper(name, 5)
    assert torch.equal(first, second)
    # A torch.Generator given twice in the same state reproduces too.
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(wrapper(name, g1), wrapper(name, g2))  # type: ignore[arg-type]


def test_the_generator_decides_the_inner_draws() -> None:
    # Not one fixed seed: another generator gives other baselines and interpolation points.
    assert not torch.equal(smooth_tunnel("GradientShap", 5), smooth_tunnel("GradientShap", 6))


def test_without_a_generator_the_global_states_are_the_callers() -> None:
    np.random.seed(3)
    torch.manual_seed(3)
    make, kwargs = METHODS["GradientShap"]
    tunnel = SmoothTunnel(make(mlp()))
    first = tunnel.attribute(X, nt_samples=2, stdevs=0.1, **kwargs)
    state_after = global_states()
    np.random.seed(3)
    torch.manual_seed(3)
    again = tunnel.attribute(X, nt_samples=2, stdevs=0.1, **kwargs)
    assert torch.equal(first, again)
    # The inner method drew from the caller's states, as Captum's NoiseTunnel would.
    assert not np.array_equal(np.random.get_state()[1], np.random.RandomState(3).get_state()[1])
    assert_same_states(state_after, global_states())


def test_states_are_put_back_after_an_error() -> None:
    before = global_states()
    with pytest.raises(RuntimeError, match="inside"), seeded_global_states(torch.Generator()):
        np.random.rand()
        random.random()
        torch.rand(1)
        raise RuntimeError("inside")
    assert_same_states(before, global_states())


def test_seeded_block_reproduces_and_leaves_the_generators_stream_to_the_block() -> None:
    g = torch.Generator().manual_seed(0)
    with seeded_global_states(g):
        drawn = torch.rand(3, generator=g)  # the block's own draws: the generator's stream
        a = (np.random.rand(), random.random(), torch.rand(1).item())
    assert torch.equal(drawn, torch.rand(3, generator=torch.Generator().manual_seed(0)))
    with seeded_global_states(torch.Generator().manual_seed(0)):
        assert (np.random.rand(), random.random(), torch.rand(1).item()) == a


def test_a_block_that_draws_nothing_from_the_generator_moves_it_once() -> None:
    g = torch.Generator().manual_seed(0)
    with seeded_global_states(g):
        first = np.random.rand()
    mirror = torch.Generator().manual_seed(0)
    torch.randint(0, 2**62, (1,), generator=mirror)  # the one seed drawn
    assert torch.equal(g.get_state(), mirror.get_state())
    with seeded_global_states(g):
        assert np.random.rand() != first  # the next block draws other numbers


class Crashing(Attribution):
    """Wraps a method; raises at a chosen call (an interrupted run)."""

    def __init__(self, inner: Any, fail_at: int | None = None) -> None:
        super().__init__(inner.forward_func)
        self.inner = inner
        self.fail_at = fail_at
        self.calls = 0

    def attribute(self, inputs: Any, target: Any = None, generator: Any = None, **kwargs: Any):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("simulated crash")
        return self.inner.attribute(inputs, target=target, generator=generator, **kwargs)


def test_resumed_dataset_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    model = mlp()
    x = torch.rand(12, 6, generator=torch.Generator().manual_seed(4))
    y = torch.randint(0, 3, (12,), generator=torch.Generator().manual_seed(5))
    method = SmoothGrad(model, GradientShap(model))
    kwargs = {"batch_size": 4, "shard_size": 4, "show_progress": False, "seed": 7}
    kwargs |= {"baselines": BASELINES, "n_samples": 3, "nt_samples": 2}
    reference = explain_dataset(Crashing(method), (x, y), tmp_path / "ref", **kwargs)[:]
    # Interrupted in the third batch, resumed after other draws moved the global states.
    with pytest.raises(RuntimeError, match="simulated crash"):
        explain_dataset(Crashing(method, fail_at=3), (x, y), tmp_path / "run", **kwargs)
    np.random.rand(17)
    torch.rand(5)
    resumed = Crashing(method)
    store = explain_dataset(resumed, (x, y), tmp_path / "run", **kwargs)
    assert resumed.calls == 1  # the third batch only
    assert torch.equal(store[:], reference)
