"""Weight noise cannot lose the model: random signals, failing forwards, TorchScript modules.

The guarantee checked everywhere here: after a NoiseGrad / FusionGrad / calibration call, or a
bare weight-noise session, that ended normally, by an exception, or by an exception raised from
a signal handler at any moment, the model is bit-identical to what it was (parameter objects
and values, buffers, ``.grad``, ``requires_grad``, every module's train/eval flag), the signal
handlers are the ones the process had, and the model's lock is free.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from captum.attr import Saliency
from torch import Tensor, nn

from captum_smooth.methods.calibration import calibrate_weight_noise
from captum_smooth.methods.noisegrad import FusionGrad, NoiseGrad
from captum_smooth.noise._signals import GUARD
from captum_smooth.noise.weights import WeightNoise, model_lock

from model_state import assert_identical, awkward_net, snapshot

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "setitimer"), reason="needs signal.setitimer (POSIX)"
)


class Stateful(nn.Module):
    """Everything a forward may change in place besides buffers: a frozen float parameter
    and an integer parameter (a counter), on top of the awkward net (BatchNorm in train mode,
    an existing .grad, a frozen bias)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = awkward_net()
        self.scale = nn.Parameter(torch.ones(1), requires_grad=False)
        self.count = nn.Parameter(torch.zeros(1, dtype=torch.long), requires_grad=False)
        self.calls = 0
        self.raise_at: int | None = None

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls == self.raise_at:
            raise RuntimeError("the forward fails at this draw")
        with torch.no_grad():
            self.scale.mul_(1.5)
            self.count.add_(1)
        return self.net(x) * self.scale.detach().clone()


def make_stateful() -> Stateful:
    model = Stateful()
    torch.manual_seed(1)
    return model


X = torch.rand(3, 1, 5, 5, generator=torch.Generator().manual_seed(0))
Y = torch.tensor([0, 1, 2])


def call_noisegrad(model: nn.Module) -> None:
    NoiseGrad(model).attribute(X, target=0, n_weight_samples=4, generator=0)


def call_fusiongrad(model: nn.Module) -> None:
    FusionGrad(model).attribute(
        X, target=1, n_weight_samples=3, nt_samples=2, stdevs=0.1, generator=0
    )


def call_calibration(model: nn.Module) -> None:
    calibrate_weight_noise(
        model, (X, Y), target_drop=0.5, n_draws=1, max_iter=3, generator=0, show_progress=False
    )


def call_session(model: nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad(), WeightNoise(0.3).session(model) as perturber:
        for _ in range(3):
            perturber.perturb(gen)
            model(X)


CALLS: dict[str, Callable[[nn.Module], None]] = {
    "noisegrad": call_noisegrad,
    "fusiongrad": call_fusiongrad,
    "calibration": call_calibration,
    "session": call_session,
}
EXCEPTIONS: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, RuntimeError)


def lock_is_free(model: nn.Module) -> bool:
    """Whether another thread can take the model's lock (the session released it)."""
    got: list[bool] = []

    def probe() -> None:
        lock = model_lock(model)
        ok = lock.acquire(blocking=False)
        if ok:
            lock.release()
        got.append(ok)

    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return got[0]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny models: intra-op threads only add spin-waits (10x slower on a loaded 2-core host).
    threads, grad_mode = torch.get_num_threads(), torch.is_grad_enabled()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    torch.set_grad_enabled(grad_mode)  # a signal may have hit torch.no_grad()'s own exit


@pytest.fixture
def alarm() -> Iterator[dict[str, Any]]:
    """A SIGALRM handler that raises the armed exception once, then does nothing."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals go to the main thread")
    armed: dict[str, Any] = {"exc": None, "fired": 0}

    def handler(signum: int, frame: Any) -> None:
        exc, armed["exc"] = armed["exc"], None
        if exc is not None:
            armed["fired"] += 1
            raise exc("alarm")

    previous = signal.signal(signal.SIGALRM, handler)
    armed["handler"] = handler
    try:
        yield armed
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


#: A test that counts interrupted calls tries at most this many calls per interruption it needs:
#: with the signal's moment drawn within the last complete call's duration, about half the
#: calls are interrupted, however slow or loaded the machine (no slow machine gets near 1 in 20).
ATTEMPTS_PER_INTERRUPT = 20


def timed(call: Callable[[nn.Module], None], model: nn.Module) -> float:
    start = time.perf_counter()
    call(model)
    return time.perf_counter() - start


def from_the_signal(err: BaseException) -> bool:
    """Whether ``err`` is (or was raised from) the exception a test's signal handler raised."""
    seen: BaseException | None = err
    while seen is not None:
        if seen.args == ("alarm",):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def interrupted(call: Callable[[nn.Module], None], model: nn.Module) -> bool:
    """Run ``call``; whether the signal's exception ended it (any other error is raised)."""
    try:
        call(model)
    except EXCEPTIONS as err:
        if not from_the_signal(err):
            raise
        return True
    return False


def interrupted_calls(alarm: dict[str, Any], name: str, n_interrupted: int, seed: int) -> int:
    """Calls hit by a signal at random moments until ``n_interrupted`` of them were ended by it.

    Every call, interrupted or not, is checked. The moment is drawn within an estimate of the
    call's duration: the duration of the last call that ran to its end (so it follows the
    machine's speed while the test runs), 10 % longer after each interrupted call (so that the
    signals reach the call's last moments, the restore). The test counts the calls the signal
    really interrupted, not the timers that fired. Returns the number of corrupted calls.
    """
    call = CALLS[name]
    model = make_stateful()
    if name == "calibration":
        model.net.features[1].eval()  # calibration evaluates in eval mode anyway
    duration = timed(call, model)
    before = snapshot(model)
    rng = random.Random(seed)
    calls = hits = corrupted = 0
    while hits < n_interrupted:
        assert calls < ATTEMPTS_PER_INTERRUPT * n_interrupted, f"{hits} of {calls} interrupted"
        calls += 1
        start = time.perf_counter()
        try:
            alarm["exc"] = rng.choice(EXCEPTIONS)
            signal.setitimer(signal.ITIMER_REAL, rng.uniform(1e-5, duration))
            if interrupted(call, model):
                hits, duration = hits + 1, duration * 1.1  # reach for the call's last moments
            else:
                duration = time.perf_counter() - start
            signal.setitimer(signal.ITIMER_REAL, 0)
            alarm["exc"] = None  # a signal still on its way does nothing from here
        except EXCEPTIONS:  # the signal came after the call: not counted as interrupted
            alarm["exc"] = None
        # A signal may land inside torch.no_grad()'s own __exit__: not the model's state, but
        # the process's grad mode, put back here so that later tests are not affected.
        torch.set_grad_enabled(True)
        try:
            assert_identical(before, model)
        except AssertionError:
            corrupted += 1
            before = snapshot(model)  # count each corruption once
        assert signal.getsignal(signal.SIGALRM) is alarm["handler"]
        assert GUARD.depth == 0 and not GUARD.pending
        assert lock_is_free(model)
    return corrupted


@pytest.mark.parametrize("name", list(CALLS))
def test_signals_at_random_moments_never_corrupt_the_model(
    alarm: dict[str, Any], name: str
) -> None:
    assert interrupted_calls(alarm, name, n_interrupted=30, seed=list(CALLS).index(name)) == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CALLS))
def test_signals_at_random_moments_many_calls(alarm: dict[str, Any], name: str) -> None:
    assert interrupted_calls(alarm, name, n_interrupted=200, seed=7) == 0


@pytest.fixture
def ctrl_c() -> Iterator[dict[str, Any]]:
    """SIGINT with a one-shot handler that raises KeyboardInterrupt, as Python's default does."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals go to the main thread")
    armed: dict[str, Any] = {"on": False, "fired": 0}

    def handler(signum: int, frame: Any) -> None:
        if armed["on"]:
            armed["on"] = False
            armed["fired"] += 1
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    armed["handler"] = handler
    try:
        yield armed
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("name", ["noisegrad", "fusiongrad"])  # calls long enough to hit
def test_ctrl_c_sent_by_another_thread_at_random_moments(ctrl_c: dict[str, Any], name: str) -> None:
    # A real SIGINT sent to the process (as a terminal's Ctrl-C is): the kernel may deliver it
    # to any thread; Python runs the handler in the main thread. Calls are made until 15 were
    # interrupted by it (a timer thread may send its signal late on a loaded machine: such a
    # call is checked too, and not counted).
    call, model = CALLS[name], make_stateful()
    duration = timed(call, model)
    before = snapshot(model)
    rng = random.Random(3)
    calls = hits = 0
    while hits < 15:
        assert calls < ATTEMPTS_PER_INTERRUPT * 15, f"{hits} of {calls} calls interrupted"
        calls += 1
        timer = threading.Timer(rng.uniform(0, duration), os.kill, (os.getpid(), signal.SIGINT))
        start = time.perf_counter()
        try:
            ctrl_c["on"] = True
            timer.start()
            try:
                call(model)
                duration = time.perf_counter() - start
            except KeyboardInterrupt:
                hits, duration = hits + 1, duration * 1.1
            timer.cancel()
            timer.join()
            ctrl_c["on"] = False
        except KeyboardInterrupt:  # after the call: not counted
            ctrl_c["on"] = False
            timer.join()
        torch.set_grad_enabled(True)  # as above: torch.no_grad()'s own exit may be hit
        assert_identical(before, model)
        assert signal.getsignal(signal.SIGINT) is ctrl_c["handler"]
    assert ctrl_c["fired"] >= hits


@pytest.mark.parametrize("name", ["noisegrad", "fusiongrad", "session"])
def test_a_forward_that_raises_at_each_draw(name: str) -> None:
    model = make_stateful()
    before = snapshot(model)
    CALLS[name](model)
    n_forwards = model.calls
    assert n_forwards >= 3
    assert_identical(before, model)
    for k in range(1, n_forwards + 1):
        model.calls, model.raise_at = 0, k
        with pytest.raises(RuntimeError, match="fails at this draw"):
            CALLS[name](model)
        # When the very first inner call fails, the loop runs the clean batch through the
        # model once more to tell whether `target` was the cause (core/targets.py).
        diagnosis = 1 if k == 1 and name != "session" else 0
        assert model.calls == k + diagnosis
        assert_identical(before, model)
        assert lock_is_free(model)


def test_every_restore_step_runs_and_the_first_error_is_raised() -> None:
    model = make_stateful()
    before = snapshot(model)
    bn = model.net.features[1]
    with pytest.raises(RuntimeError) as info, WeightNoise(0.3).session(model) as perturber:
        perturber.perturb(torch.Generator().manual_seed(0))
        # Two steps cannot be restored in place: a buffer and a parameter changed size.
        bn.running_var.resize_(2)
        model.scale.data = torch.ones(3)
    assert "size" in str(info.value) or "shape" in str(info.value)
    # Every other step ran: put the two broken tensors back by hand, the rest is intact.
    after = snapshot(model)
    assert after["training"] == before["training"]
    for name, (_, value, *_rest) in before["params"].items():
        if name != "scale":
            assert torch.equal(after["params"][name][1], value), name
    grad = model.net.classifier.weight.grad
    assert grad is not None and torch.equal(grad, before["params"]["net.classifier.weight"][5][1])
    assert torch.equal(bn.running_mean, before["buffers"]["net.features.1.running_mean"][1])
    assert lock_is_free(model) and GUARD.depth == 0


# --------------------------------------------------------------------------------------------
# TorchScript
# --------------------------------------------------------------------------------------------


def compiled(kind: str) -> tuple[nn.Module, nn.Module]:
    """An eager awkward net and its scripted or traced version (sharing no parameters)."""
    eager = awkward_net()
    twin = awkward_net()
    if kind == "script":
        return eager, torch.jit.script(twin)
    return eager, torch.jit.trace(twin, X, check_trace=False)


def eval_mode_predictions(model: nn.Module) -> Tensor:
    """The classes ``model`` predicts for X in eval mode; its train/eval flags are put back."""
    flags = [m.training for m in model.modules()]
    model.eval()
    with torch.no_grad():
        labels = model(X).argmax(1)
    for m, flag in zip(model.modules(), flags):
        m.training = flag
    return labels


@pytest.mark.parametrize("kind", ["script", "trace"])
def test_torchscript_noisegrad_fusiongrad_and_calibration(kind: str) -> None:
    eager, jit = compiled(kind)
    labels = eval_mode_predictions(jit)  # the clean model is right on every example
    before = snapshot(jit)
    for preset, kwargs in (
        (NoiseGrad, {"n_weight_samples": 3}),
        (FusionGrad, {"n_weight_samples": 2, "nt_samples": 2, "stdevs": 0.1}),
    ):
        got = preset(jit).attribute(X, target=1, generator=0, **kwargs)
        expected = preset(eager).attribute(X, target=1, generator=0, **kwargs)
        # The same draws on the same weights: the same map as the eager model.
        torch.testing.assert_close(got, expected)
        assert_identical(before, jit)
    result = calibrate_weight_noise(
        jit, (X, labels), target_drop=0.5, n_draws=2, max_iter=4, generator=0, show_progress=False
    )
    assert result.history
    assert_identical(before, jit)


@pytest.mark.parametrize("kind", ["script", "trace"])
def test_torchscript_restored_after_an_error_mid_session(kind: str) -> None:
    _, jit = compiled(kind)
    with torch.no_grad():
        getattr(jit.features, "1").running_mean.add_(0.5)
    before = snapshot(jit)
    with pytest.raises(RuntimeError, match="mid-session"), WeightNoise(0.3).session(jit) as p:
        p.perturb(torch.Generator().manual_seed(0))
        jit.train()
        jit(X)  # BatchNorm in train mode: running statistics change
        raise RuntimeError("mid-session")
    assert_identical(before, jit)


def test_saliency_inner_method_sees_a_scripted_model() -> None:
    # The inner method is built on the scripted module itself (its forward_func).
    _, jit = compiled("script")
    jit.eval()
    before = snapshot(jit)
    attr = NoiseGrad(jit, Saliency(jit)).attribute(X, target=0, n_weight_samples=2, generator=0)
    assert attr.shape == X.shape
    assert_identical(before, jit)


def test_cli_noisegrad_on_a_torchscript_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI loads TorchScript files for --model; NoiseGrad perturbs the loaded module.
    np = pytest.importorskip("numpy")
    image_module = pytest.importorskip("PIL.Image")
    from captum_smooth.app import cli

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "app"))
    from cli_models import tiny_cnn

    model_path = tmp_path / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(tiny_cnn()).save(str(model_path))
    image = tmp_path / "noise.png"
    pixels = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    image_module.fromarray(pixels).save(image)
    out = tmp_path / "out"
    args = ["explain", str(image), "--model", str(model_path), "--size", "24", "--samples", "2"]
    args += ["--auc-steps", "3", "--no-progress", "--out", str(out), "-m", "noisegrad"]
    assert cli.main(args) == 0
    assert (out / "comparison.png").is_file()


def test_a_signal_while_waiting_for_the_models_lock_is_handled_at_once(
    alarm: dict[str, Any],
) -> None:
    # Another thread's session holds the model; Ctrl-C (here SIGALRM) must not wait for it:
    # the other thread holds the lock until the interrupt has been handled here.
    model = make_stateful()
    before = snapshot(model)
    held, release = threading.Event(), threading.Event()
    released_by_us: list[bool] = []

    def other_session() -> None:
        with model_lock(model):
            held.set()
            # Bounded only so that a failing test cannot hang: this thread is released below.
            released_by_us.append(release.wait(600.0))

    thread = threading.Thread(target=other_session)
    thread.start()
    try:
        assert held.wait(600.0)
        alarm["exc"] = KeyboardInterrupt
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(KeyboardInterrupt), WeightNoise(0.2).session(model):
            pass  # pragma: no cover - never entered
    finally:
        release.set()
        thread.join()
    assert released_by_us == [True]  # the signal was handled while the lock was still held
    assert_identical(before, model)
    assert GUARD.depth == 0 and lock_is_free(model)
