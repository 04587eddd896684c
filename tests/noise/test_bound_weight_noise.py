"""WeightNoise.bound_to: one weight-noise binding that perturbs the bound model, whatever the
sampling loop's forward function is, and restores it bit for bit, whatever happens."""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from captum.attr import Saliency
from torch import Tensor, nn

import captum_smooth.noise as noise_pkg
from captum_smooth import SmoothTunnel
from captum_smooth.noise import weights as weights_module
from captum_smooth.noise._signals import GUARD
from captum_smooth.noise.weights import BoundWeightNoise, WeightNoise, WeightSession, model_lock

from model_state import assert_identical, awkward_net, make_net, snapshot

X = torch.rand(4, 1, 5, 5, generator=torch.Generator().manual_seed(0))


def wrappers(model: nn.Module) -> dict[str, Callable[..., Any]]:
    """Forward functions around ``model`` that are not ``model`` itself."""
    return {
        "lambda": lambda x: model(x).softmax(-1),
        "sequential": nn.Sequential(model, nn.Linear(3, 3)),
        "model": model,
    }


WRAPPERS = ["lambda", "sequential", "model"]


def params(model: nn.Module) -> dict[str, Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.fixture
def sigint_handler() -> Iterator[None]:
    """Python's own SIGINT handler for the test (a background shell may have set SIG_IGN)."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals go to the main thread")
    original = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, original)


# --------------------------------------------------------------------------------------------
# The binding
# --------------------------------------------------------------------------------------------


def test_bound_to_holds_the_noise_and_the_model() -> None:
    noise, net = WeightNoise(0.3, exclude="classifier"), make_net()
    bound = noise.bound_to(net)
    assert isinstance(bound, BoundWeightNoise)
    assert bound.noise is noise and bound.model is net
    assert repr(bound) == f"BoundWeightNoise(noise={noise!r}, model=Net)"
    assert noise_pkg.BoundWeightNoise is BoundWeightNoise


def test_bound_to_refuses_what_holds_no_weights() -> None:
    not_a_module: Any = lambda x: x  # noqa: E731
    not_a_noise: Any = 0.1
    with pytest.raises(TypeError, match=r"nn\.Module"):
        WeightNoise(0.1).bound_to(not_a_module)
    with pytest.raises(TypeError, match="WeightNoise"):
        BoundWeightNoise(not_a_noise, make_net())


def test_session_is_the_noise_session_itself_not_a_generator() -> None:
    net = make_net()
    noise = WeightNoise(0.1)
    session = noise.bound_to(net).session(lambda x: net(x))
    # A generator-based context manager could skip the restore when a signal arrives in its
    # exit path; the bound session must be the signal-safe class itself.
    assert type(session) is type(noise.session(net)) is WeightSession
    assert not isinstance(session, contextlib._GeneratorContextManager)
    assert not inspect.isgeneratorfunction(BoundWeightNoise.session)


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_session_draws_the_bound_models_weights_through_a_wrapper(wrapper: str) -> None:
    net, twin = make_net(), make_net()
    forward_func = wrappers(net)[wrapper]
    head = forward_func[1] if wrapper == "sequential" else nn.Identity()
    clean, clean_head = params(net), params(head)
    with WeightNoise(0.3).bound_to(net).session(forward_func) as perturber:
        perturber.perturb(torch.Generator().manual_seed(0))
        noisy = params(net)
        with WeightNoise(0.3).session(twin) as twin_perturber:
            twin_perturber.perturb(torch.Generator().manual_seed(0))
            # Exactly the draw of a session opened on the model itself.
            for name, p in twin.named_parameters():
                assert torch.equal(noisy[name], p), name
        # Multiplicative noise keeps zeros (a fresh BatchNorm's bias): the others all moved.
        assert all(not torch.equal(noisy[n], clean[n]) for n in clean if clean[n].any())
        # The wrapper's own parameters (the Sequential's head) are not the model's: untouched.
        assert all(torch.equal(p, clean_head[n]) for n, p in head.named_parameters())
    assert all(torch.equal(p, clean[n]) for n, p in net.named_parameters())


# --------------------------------------------------------------------------------------------
# Restore, whatever happens
# --------------------------------------------------------------------------------------------


def change_everything(net: nn.Module, x: Tensor) -> Tensor:
    """A forward through the wrapper that changes all the session must put back."""
    net.classifier.train()
    net.features[0].weight.requires_grad_(False)
    with torch.enable_grad():
        net(x).sum().backward()  # creates and accumulates .grad
    net.classifier.bias = nn.Parameter(torch.zeros(3))  # replaces a Parameter
    net.features[1].running_mean = torch.zeros(4)  # replaces a buffer
    return net(x)


def run_session(net: nn.Module, wrapper: str, fail: Callable[[int], None]) -> None:
    forward_func = wrappers(net)[wrapper]
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad(), WeightNoise(0.3).bound_to(net).session(forward_func) as perturber:
        for k in range(4):
            perturber.perturb(gen)
            change_everything(net, X)
            forward_func(X)
            fail(k)


def no_failure(k: int) -> None:
    return None


def raise_at_2(exc: type[BaseException]) -> Callable[[int], None]:
    def fail(k: int) -> None:
        if k == 2:
            raise exc("boom")

    return fail


def sigint_at_2(k: int) -> None:
    if k == 2:
        os.kill(os.getpid(), signal.SIGINT)  # Python's handler raises KeyboardInterrupt here


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize(
    ("fail", "exc"),
    [
        (no_failure, None),
        (raise_at_2(RuntimeError), RuntimeError),
        (raise_at_2(KeyboardInterrupt), KeyboardInterrupt),
        (sigint_at_2, KeyboardInterrupt),
    ],
    ids=["exit", "exception", "keyboard-interrupt", "sigint"],
)
def test_model_bit_identical_after_exit_exception_and_interrupt(
    sigint_handler: None,
    wrapper: str,
    fail: Callable[[int], None],
    exc: type[BaseException] | None,
) -> None:
    net = awkward_net()  # existing .grad, a frozen bias, BatchNorm in train mode
    before = snapshot(net)
    if exc is None:
        run_session(net, wrapper, fail)
    else:
        with pytest.raises(exc):
            run_session(net, wrapper, fail)
    assert_identical(before, net)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert GUARD.depth == 0 and not GUARD.pending
    assert model_lock(net).acquire(blocking=False)
    model_lock(net).release()


class SignalsDuringRestore(nn.Module):
    """Sends itself SIGINT when the session's restore sets its train/eval flag back."""

    def __init__(self) -> None:
        super().__init__()
        self.net = awkward_net()
        self.armed = False

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "training" and self.__dict__.get("armed"):
            self.__dict__["armed"] = False
            os.kill(os.getpid(), signal.SIGINT)


def test_sigint_in_the_bound_sessions_exit_waits_for_the_whole_restore(
    sigint_handler: None,
) -> None:
    model = SignalsDuringRestore()
    before = snapshot(model)
    bound = WeightNoise(0.3).bound_to(model)
    with pytest.raises(KeyboardInterrupt), bound.session(lambda x: model(x)) as perturber:
        perturber.perturb(torch.Generator().manual_seed(0))
        model.net.train()  # every flag differs from the entry: each must be set back
        model.__dict__["armed"] = True
    # The signal arrived half-way through the restore; its KeyboardInterrupt came after it.
    assert not model.__dict__["armed"]
    assert_identical(before, model)
    assert GUARD.depth == 0 and not GUARD.pending


def sigint_on_entering_exit(cm: object) -> Callable[..., Any]:
    """A trace function that sends SIGINT as ``cm.__exit__`` starts, before its first line."""

    def tracer(frame: Any, event: str, arg: Any) -> None:
        if (
            event == "call"
            and frame.f_code.co_name == "__exit__"
            and frame.f_locals.get("self") is cm
        ):
            sys.settrace(None)
            os.kill(os.getpid(), signal.SIGINT)

    return tracer


def test_sigint_as_the_bound_sessions_exit_starts_cannot_skip_the_restore(
    sigint_handler: None,
) -> None:
    # The moment a generator-based wrapper loses: its __exit__ is not critical, so the
    # KeyboardInterrupt would be raised there, before the inner session is ever closed.
    net = awkward_net()
    before = snapshot(net)
    session = WeightNoise(0.3).bound_to(net).session(lambda x: net(x))
    try:
        with pytest.raises(KeyboardInterrupt), session as perturber:
            perturber.perturb(torch.Generator().manual_seed(0))
            net.eval()
            sys.settrace(sigint_on_entering_exit(session))
    finally:
        sys.settrace(None)
    assert_identical(before, net)
    assert GUARD.depth == 0 and not GUARD.pending


# --------------------------------------------------------------------------------------------
# In the sampling loop
# --------------------------------------------------------------------------------------------


def test_loop_perturbs_the_bound_model_behind_a_lambda() -> None:
    net = make_net()
    before = snapshot(net)
    saliency = Saliency(lambda x: net(x).softmax(-1))
    tunnel = SmoothTunnel(saliency)
    common: dict[str, Any] = {"target": 1, "nt_samples": 1, "stdevs": 0.0, "generator": 0}
    clean = tunnel.attribute(X, **common)
    bound = WeightNoise(0.3).bound_to(net)
    noisy = tunnel.attribute(X, weight_noise=bound, n_weight_samples=3, **common)
    again = tunnel.attribute(X, weight_noise=bound, n_weight_samples=3, **common)
    assert not torch.allclose(noisy, clean)  # the draws reached the model behind the lambda
    assert torch.equal(noisy, again)
    assert_identical(before, net)


# --------------------------------------------------------------------------------------------
# The split: every name still where it was
# --------------------------------------------------------------------------------------------


def test_public_names_importable_from_weights_and_noise() -> None:
    for name in weights_module.__all__:
        assert hasattr(weights_module, name), name
    for name in [n for n in weights_module.__all__ if n != "WeightSession"]:
        assert getattr(noise_pkg, name) is getattr(weights_module, name), name
    assert callable(weights_module.check_stdev)  # used by methods.calibration
