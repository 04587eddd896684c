"""WeightNoise: selection, the exact draws, no compounding, and a model that is never lost."""

from __future__ import annotations

import copy
import math
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from captum_smooth.noise._signals import critical
from captum_smooth.noise.weights import (
    WeightNoise,
    model_lock,
    select_parameters,
)

from model_state import Net, assert_identical, awkward_net, make_net, snapshot

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


class Tied(nn.Module):
    """``a`` and ``c`` share one weight; ``b`` has its own."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 6, bias=False)
        self.b = nn.Linear(6, 6)
        self.c = nn.Linear(6, 6, bias=False)
        self.c.weight = self.a.weight

    def forward(self, x: Tensor) -> Tensor:
        return self.c(self.b(self.a(x)))


def replay(params: list[Tensor], generator: torch.Generator, mean: float, s: float) -> list[Tensor]:
    """The draws a perturb makes, reproduced from a copy of the generator."""
    return [torch.empty_like(p).normal_(mean, s, generator=generator) for p in params]


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------


def test_default_selects_trainable_parameters_not_buffers() -> None:
    net = make_net()
    names = [n for n, _ in select_parameters(net)]
    assert names == [n for n, _ in net.named_parameters()]
    assert not any("running" in n or "num_batches" in n for n in names)


def test_filters_regex_types_predicate_and_exclude() -> None:
    net = make_net()
    assert [n for n, _ in select_parameters(net, "classifier")] == [
        "classifier.weight",
        "classifier.bias",
    ]
    assert [n for n, _ in select_parameters(net, re.compile(r"\.bias$"))] == [
        "features.0.bias",
        "features.1.bias",
        "classifier.bias",
    ]
    assert [n for n, _ in select_parameters(net, nn.BatchNorm2d)] == [
        "features.1.weight",
        "features.1.bias",
    ]
    assert [n for n, _ in select_parameters(net, (nn.Conv2d, nn.Linear))] == [
        "features.0.weight",
        "features.0.bias",
        "classifier.weight",
        "classifier.bias",
    ]
    # A container type selects everything inside it.
    assert len(select_parameters(net, nn.Sequential)) == 4
    only_weights = select_parameters(net, lambda name, p: name.endswith("weight") and p.dim() > 1)
    assert [n for n, _ in only_weights] == ["features.0.weight", "classifier.weight"]
    no_head = [n for n, _ in select_parameters(net, exclude="classifier")]
    assert no_head == [
        "features.0.weight",
        "features.0.bias",
        "features.1.weight",
        "features.1.bias",
    ]
    assert [n for n, _ in select_parameters(net, nn.Conv2d, exclude="bias")] == [
        "features.0.weight"
    ]


def test_requires_grad_false_is_left_out_by_default() -> None:
    net = make_net()
    net.features[0].weight.requires_grad_(False)
    names = [n for n, _ in select_parameters(net)]
    assert "features.0.weight" not in names and len(names) == 5
    assert len(select_parameters(net, trainable_only=False)) == 6


def test_tied_parameter_is_selected_once_under_any_alias() -> None:
    model = Tied()
    assert [n for n, _ in select_parameters(model)] == ["a.weight", "b.weight", "b.bias"]
    # The alias name matches too, and excluding one alias excludes the shared tensor.
    assert [n for n, _ in select_parameters(model, "^c\\.")] == ["a.weight"]
    assert [n for n, _ in select_parameters(model, exclude="^c\\.")] == ["b.weight", "b.bias"]


def test_selecting_nothing_and_bad_filters_raise() -> None:
    net = make_net()
    with pytest.raises(ValueError, match="selects no parameter"):
        select_parameters(net, "no_such_layer")
    with pytest.raises(ValueError, match="selects no parameter"):
        WeightNoise(0.1, parameters=nn.GRU).session(net).__enter__()
    frozen = make_net().requires_grad_(False)
    with pytest.raises(ValueError, match="trainable_only=False"):
        select_parameters(frozen)
    with pytest.raises(ValueError, match=r"`parameters`.*regular expression"):
        WeightNoise(0.1, parameters="(")
    with pytest.raises(TypeError, match="`exclude`"):
        WeightNoise(0.1, exclude=3)
    with pytest.raises(TypeError, match="`parameters`"):
        WeightNoise(0.1, parameters=(nn.Linear, int))
    with pytest.raises(ValueError, match="`parameters`"):
        WeightNoise(0.1, parameters=())
    with pytest.raises(TypeError, match="`model`"):
        select_parameters(lambda x: x)  # type: ignore[arg-type]


@pytest.mark.parametrize("stdev", [-0.1, math.nan, math.inf])
def test_bad_stdev_raises_value_error(stdev: float) -> None:
    with pytest.raises(ValueError, match="`stdev`"):
        WeightNoise(stdev)


@pytest.mark.parametrize("stdev", ["0.1", True, None, torch.tensor(0.1)])
def test_stdev_of_wrong_type_raises_type_error(stdev: Any) -> None:
    with pytest.raises(TypeError, match="`stdev`"):
        WeightNoise(stdev)


def test_bad_noise_type_and_non_module() -> None:
    with pytest.raises(ValueError, match="`noise_type`"):
        WeightNoise(0.1, noise_type="gaussian")
    with (
        pytest.raises(TypeError, match=r"nn\.Module"),
        WeightNoise(0.1).session(lambda x: x),  # type: ignore[arg-type]
    ):
        pass


# --------------------------------------------------------------------------------------------
# The draws
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noise_type", ["multiplicative", "additive"])
def test_each_draw_is_backup_times_fresh_noise_no_compounding(noise_type: str) -> None:
    model = Tied()  # small: every parameter drawn from the generator itself, in order
    params = [p for _, p in select_parameters(model)]
    clean = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(3)
    mirror = torch.Generator().manual_seed(3)
    mean = 1.0 if noise_type == "multiplicative" else 0.0
    with WeightNoise(0.3, noise_type=noise_type).session(model) as perturber:
        # The weights are clean until the first draw.
        assert all(torch.equal(p, c) for p, c in zip(params, clean))
        for _ in range(4):
            perturber.perturb(gen)
            noise = replay(params, mirror, mean, 0.3)
            for p, c, e in zip(params, clean, noise):
                expected = c * e if noise_type == "multiplicative" else c + e
                # Exactly the clean weights times this draw's noise: nothing carried over.
                assert torch.equal(p.detach(), expected)
        # The tied weight is one tensor: both uses see the same draw.
        assert model.c.weight is model.a.weight
    assert all(torch.equal(p, c) for p, c in zip(params, clean))


def big_model() -> nn.Module:
    """Over 2**20 scalars: a model the size of a small real network."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(1024, 1024), nn.Linear(1024, 64))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand_like(p) + 0.5)  # away from 0: the ratio is well defined
    return model


def lockstep_noise(model: nn.Module, noise: WeightNoise, seed: int, n_draws: int) -> list[Any]:
    """Per draw, the live weights of ``model`` and the noise itself, read off a twin model.

    The twin has the same shapes with every weight 1 (multiplicative) or 0 (additive), so its
    draw is exactly eta (or eps), whatever the sampling scheme.
    """
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.fill_(1.0 if noise.noise_type == "multiplicative" else 0.0)
    g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    out = []
    with noise.session(model) as pm, noise.session(twin) as pt:
        for _ in range(n_draws):
            pm.perturb(g1)
            pt.perturb(g2)
            out.append(
                (
                    [p.detach().clone() for p in model.parameters()],
                    [p.detach().clone() for p in twin.parameters()],
                )
            )
    return out


@pytest.mark.parametrize("noise_type", ["multiplicative", "additive"])
def test_big_model_draws_are_exact_and_do_not_compound(noise_type: str) -> None:
    model = big_model()
    clean = [p.detach().clone() for p in model.parameters()]
    draws = lockstep_noise(model, WeightNoise(0.3, noise_type), seed=5, n_draws=3)
    for live, eta in draws:
        for p, c, e in zip(live, clean, eta):
            assert torch.equal(p, c * e if noise_type == "multiplicative" else c + e)
    assert not torch.equal(draws[0][1][0], draws[1][1][0])  # fresh noise each draw
    assert all(torch.equal(p, c) for p, c in zip(model.parameters(), clean))


def test_big_model_draws_do_not_depend_on_the_thread_count() -> None:
    model = big_model()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = lockstep_noise(model, WeightNoise(0.2), seed=1, n_draws=2)
    finally:
        torch.set_num_threads(threads)
    many = lockstep_noise(model, WeightNoise(0.2), seed=1, n_draws=2)
    for (a, _), (b, _) in zip(one, many):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("make", [Tied, big_model], ids=["tied", "big"])
def test_every_scalar_gets_an_independent_draw(make: Any) -> None:
    model = make()
    s = 0.2
    (_, eta1), (_, eta2) = lockstep_noise(model, WeightNoise(s), seed=1, n_draws=2)
    flat1 = torch.cat([e.flatten() for e in eta1]).double()
    flat2 = torch.cat([e.flatten() for e in eta2]).double()
    n = flat1.numel()
    z = (flat1 - 1) / s
    assert abs(z.mean().item()) < 5 / math.sqrt(n)  # mean of eta ~ 1
    assert abs(z.std().item() - 1) < 5 * math.sqrt(0.5 / n)  # std of eta ~ s

    def corr(a: Tensor, b: Tensor) -> float:
        return torch.corrcoef(torch.stack([a.double(), b.double()]))[0, 1].item()

    # Neighbouring scalars, neighbouring rows, two parameters (two tensors of the big
    # model), two draws: all uncorrelated.
    assert abs(corr(flat1[:-1], flat1[1:])) < 5 / math.sqrt(n)
    w = eta1[0]
    assert abs(corr(w[:-1].flatten(), w[1:].flatten())) < 5 / math.sqrt(w[1:].numel())
    k = min(eta1[0].numel(), eta1[2].numel())
    assert abs(corr(eta1[0].flatten()[:k], eta1[2].flatten()[:k])) < 5 / math.sqrt(k)
    assert abs(corr(flat1, flat2)) < 5 / math.sqrt(n)


def test_zero_stdev_leaves_weights_and_random_state_alone() -> None:
    net = make_net()
    before = snapshot(net)
    state = torch.get_rng_state()
    with WeightNoise(0.0).session(net) as perturber:
        perturber.perturb(None)
        assert_identical(before, net)
    assert torch.equal(torch.get_rng_state(), state)


def test_global_rng_when_no_generator() -> None:
    net = make_net()
    outs = []
    for _ in range(2):
        torch.manual_seed(11)
        with WeightNoise(0.2).session(net) as perturber:
            perturber.perturb(None)
            outs.append(net.classifier.weight.detach().clone())
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], net.classifier.weight)


def test_batchnorm_running_stats_are_never_perturbed() -> None:
    net = make_net()
    bn = net.features[1]
    stats = (bn.running_mean.clone(), bn.running_var.clone())
    with WeightNoise(0.5).session(net) as perturber:
        for seed in range(3):
            perturber.perturb(torch.Generator().manual_seed(seed))
            assert torch.equal(bn.running_mean, stats[0])
            assert torch.equal(bn.running_var, stats[1])
            assert not torch.equal(bn.weight, torch.ones(4))  # its affine weight is


def test_perturber_is_dead_after_the_session() -> None:
    net = make_net()
    with WeightNoise(0.2).session(net) as perturber:
        pass
    with pytest.raises(RuntimeError, match="session has ended"):
        perturber.perturb(None)


def test_sessions_nest() -> None:
    net = make_net()
    clean = net.classifier.weight.detach().clone()
    noise = WeightNoise(0.2)
    with noise.session(net) as outer:
        outer.perturb(torch.Generator().manual_seed(0))
        outer_draw = net.classifier.weight.detach().clone()
        with noise.session(net) as inner:  # re-entrant lock, same thread
            inner.perturb(torch.Generator().manual_seed(1))
            assert not torch.equal(net.classifier.weight, outer_draw)
        assert torch.equal(net.classifier.weight, outer_draw)
    assert torch.equal(net.classifier.weight, clean)


# --------------------------------------------------------------------------------------------
# The model is never lost
# --------------------------------------------------------------------------------------------


class Misbehaving(nn.Module):
    """A forward that changes everything it can, and raises at a chosen call."""

    def __init__(self, net: Net, raise_at: int | None, exc: type[BaseException]) -> None:
        super().__init__()
        self.net = net
        self.calls = 0
        self.raise_at = raise_at
        self.exc = exc

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls == self.raise_at:
            raise self.exc("boom")
        self.net.classifier.train()
        self.net.features[0].weight.requires_grad_(False)
        with torch.enable_grad():
            self.net(x).sum().backward()  # creates and accumulates .grad
        self.net.classifier.bias = nn.Parameter(torch.zeros(3))  # replaces a Parameter
        self.net.features[1].running_mean = torch.zeros(4)  # replaces a buffer
        return self.net(x)


@pytest.mark.parametrize(
    ("raise_at", "exc"), [(None, RuntimeError), (3, RuntimeError), (3, KeyboardInterrupt)]
)
def test_model_bit_identical_after_normal_exit_exception_and_interrupt(
    raise_at: int | None, exc: type[BaseException]
) -> None:
    model = Misbehaving(awkward_net(), raise_at, exc)
    before = snapshot(model)
    x = torch.rand(4, 1, 5, 5)
    gen = torch.Generator().manual_seed(0)

    def run() -> None:
        with torch.no_grad(), WeightNoise(0.3).session(model) as perturber:
            for _ in range(5):
                perturber.perturb(gen)
                model(x)

    if raise_at is None:
        run()
        assert model.calls == 5
    else:
        with pytest.raises(exc, match="boom"):
            run()
        assert model.calls == 3
    assert_identical(before, model)
    # The existing .grad was set aside during the session, so the backward passes inside it
    # could not accumulate into it.


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_big_model_restored_after_an_interrupted_session(exc: type[BaseException]) -> None:
    model = big_model()
    model[1].weight.grad = torch.ones_like(model[1].weight)
    before = snapshot(model)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(exc), WeightNoise(0.5).session(model) as perturber:
        for k in range(5):
            perturber.perturb(gen)
            if k == 2:
                raise exc()
    assert_identical(before, model)


@pytest.fixture
def sigint_handler() -> Iterator[Callable[[Any], None]]:
    """Sets SIGINT's handler for a test, and puts the process's own back afterwards.

    A shell starts background jobs with SIGINT ignored, and Python then keeps it ignored: the
    tests set the handler they mean instead of inheriting whatever launched pytest.
    """
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals go to the main thread")
    original = signal.getsignal(signal.SIGINT)
    yield lambda handler: signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGINT, original)


@critical
def _critical_kill(reached: list[str]) -> None:
    os.kill(os.getpid(), signal.SIGINT)
    reached.append("after the signal")


def test_sigint_in_a_critical_section_is_delivered_after_it(
    sigint_handler: Callable[[Any], None],
) -> None:
    sigint_handler(signal.default_int_handler)
    net = make_net()
    reached: list[str] = []
    with pytest.raises(KeyboardInterrupt), WeightNoise(0.2).session(net) as perturber:
        # The guard is installed for the session; a critical function defers the signal and
        # the next delivery point (here the draw) hands it to Python's handler.
        _critical_kill(reached)
        assert reached == ["after the signal"]
        perturber.perturb(torch.Generator().manual_seed(0))
        reached.append("not reached")
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ignored_sigint_stays_ignored_through_a_session(
    sigint_handler: Callable[[Any], None],
) -> None:
    sigint_handler(signal.SIG_IGN)
    with WeightNoise(0.2).session(make_net()):
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_handlers_are_put_back_and_a_handler_set_inside_stays(
    sigint_handler: Callable[[Any], None],
) -> None:
    sigint_handler(signal.default_int_handler)
    previous = signal.getsignal(signal.SIGUSR1)

    def mine(signum: int, frame: Any) -> None:
        return None

    try:
        with WeightNoise(0.2).session(make_net()):
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            signal.signal(signal.SIGUSR1, mine)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGUSR1) is mine
    finally:
        signal.signal(signal.SIGUSR1, previous)


# --------------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------------


class Slow(nn.Module):
    """Sleeps in every forward, so that another thread gets the interpreter mid-call."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.lin(x)
        threading.Event().wait(0.002)
        return h * self.lin(x)


def noisy_outputs(model: nn.Module, x: Tensor, seed: int, n: int = 10) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    outs = []
    with torch.no_grad(), WeightNoise(0.3).session(model) as perturber:
        for _ in range(n):
            perturber.perturb(gen)
            outs.append(model(x))
    return torch.stack(outs)


def test_concurrent_sessions_on_one_model_serialise() -> None:
    torch.manual_seed(0)
    model = Slow().eval()
    x = torch.rand(2, 8)
    before = snapshot(model)
    expected = {seed: noisy_outputs(model, x, seed) for seed in (1, 2, 3, 4)}
    results: dict[int, Tensor] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def work(seed: int) -> None:
        try:
            barrier.wait()
            results[seed] = noisy_outputs(model, x, seed)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in expected]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for seed, out in expected.items():
        assert torch.equal(results[seed], out), f"seed {seed} saw another thread's weights"
    assert_identical(before, model)


def test_model_lock_is_one_rlock_per_model() -> None:
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    assert model_lock(a) is model_lock(a)
    assert model_lock(a) is not model_lock(b)
    with model_lock(a), model_lock(a):  # re-entrant
        pass
    with pytest.raises(TypeError, match="`model`"):
        model_lock("model")  # type: ignore[arg-type]


def test_an_exclude_that_leaves_nothing_out_is_an_error() -> None:
    # It had no effect: the noise reached the parameters the user meant to protect.
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=r"exclude='classifier'.*no effect.*0\.weight"):
        select_parameters(net, exclude="classifier")
    with pytest.raises(ValueError, match="exclude="):
        select_parameters(net, exclude=nn.Conv2d)
    assert [n for n, _ in select_parameters(net, exclude="^1")] == ["0.weight", "0.bias"]
