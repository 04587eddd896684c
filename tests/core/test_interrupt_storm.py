"""Interrupt storms: real signals at random moments over many smoothing calls.

Each call is SmoothGrad over Captum's LayerIntegratedGradients on a token model's embedding,
with a generator (so the loop seeds and puts back the global random states) and noise at the
embedding (the loop's own hooks too). A signal whose handler raises KeyboardInterrupt arrives
at a random moment of the call, sent by an interval timer or by another thread. The tests
count the calls the signal really interrupted (its KeyboardInterrupt came out of the call) and
require that every call, interrupted or not, left the model's hooks, its output, the global
random states and the grad mode exactly as they were; calls are made until enough of them were
interrupted (never "N timers fire in a time window": a loaded machine delivers them late, such
a call is checked and not counted).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from interrupt_cases import (
    IDS,
    TokenModel,
    armed_alarm,
    from_the_signal,
    hooks,
    random_states,
    same_random_states,
    smooth_layer_ig,
)

from captum_smooth.noise._signals import GUARD

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "setitimer"), reason="needs signal.setitimer (POSIX)"
)

alarm_fixture = pytest.fixture(armed_alarm, name="alarm")

#: At most this many calls per interruption needed: the moment is drawn within the duration
#: of the last complete call, so about half the calls are hit, however loaded the machine.
ATTEMPTS_PER_INTERRUPT = 20


@dataclass
class Storm:
    """What a storm did: calls made, calls the signal interrupted, calls that left damage."""

    calls: int = 0
    interrupted: int = 0
    hooks_left: int = 0
    random_states_changed: int = 0
    output_changed: int = 0
    grad_mode_changed: int = 0

    @property
    def corrupted(self) -> int:
        return (
            self.hooks_left
            + self.random_states_changed
            + self.output_changed
            + self.grad_mode_changed
        )


def by_timer(delay: float) -> Callable[[], None]:
    """SIGALRM from the process's interval timer after ``delay`` seconds; returns a canceller."""
    signal.setitimer(signal.ITIMER_REAL, delay)
    return lambda: signal.setitimer(signal.ITIMER_REAL, 0)


def by_thread(delay: float) -> Callable[[], None]:
    """SIGALRM sent to the process by another thread (as a terminal's Ctrl-C is sent)."""
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGALRM))
    timer.start()

    def cancel() -> None:
        timer.cancel()
        timer.join()

    return cancel


SENDERS = {"timer": by_timer, "thread": by_thread}


def one_call(
    alarm: dict[str, Any],
    send: Callable[[float], Callable[[], None]],
    delay: float,
    model: TokenModel,
    seed: int,
) -> bool:
    """One call with a signal on its way; whether the signal's KeyboardInterrupt ended it."""
    hit = False
    cancel: Callable[[], None] | None = None
    try:
        alarm["on"] = True
        cancel = send(delay)
        try:
            smooth_layer_ig(model, seed)
        except KeyboardInterrupt as err:
            if not from_the_signal(err):
                raise
            hit = True
        alarm["on"] = False  # a signal still on its way does nothing from here
        cancel()
    except KeyboardInterrupt:  # the signal came after the call: not counted
        alarm["on"] = False
        if cancel is not None:
            cancel()
    return hit


def storm(alarm: dict[str, Any], sender: str, n_interrupted: int, seed: int) -> Storm:
    """Calls hit by signals at random moments until ``n_interrupted`` were interrupted."""
    send, model, rng = SENDERS[sender], TokenModel(), random.Random(seed)
    start = time.perf_counter()
    smooth_layer_ig(model)
    duration = time.perf_counter() - start
    with torch.no_grad():
        logits = model(IDS)
    hooks_before, states_before = hooks(model), random_states()
    done = Storm()
    while done.interrupted < n_interrupted:
        assert done.calls < ATTEMPTS_PER_INTERRUPT * n_interrupted, done
        done.calls += 1
        start = time.perf_counter()
        if one_call(alarm, send, rng.uniform(1e-5, duration), model, done.calls):
            # 10 % longer after a hit: the signals reach the call's last moments (the restore).
            done.interrupted, duration = done.interrupted + 1, duration * 1.1
        else:
            duration = time.perf_counter() - start
        if not torch.is_grad_enabled():
            done.grad_mode_changed += 1
            torch.set_grad_enabled(True)
        if hooks(model) != hooks_before:
            done.hooks_left += 1
            hooks_before = hooks(model)  # each damage counted once
        if not same_random_states(states_before, random_states()):
            done.random_states_changed += 1
            states_before = random_states()
        with torch.no_grad():
            if not torch.equal(model(IDS), logits):
                done.output_changed += 1
                logits = model(IDS)
        assert GUARD.depth == 0 and not GUARD.originals and not GUARD.pending
        assert signal.getsignal(signal.SIGALRM) is alarm["handler"]
    print(f"\nstorm[{sender}]: {done} corrupted={done.corrupted}")
    return done


@pytest.mark.parametrize("sender", list(SENDERS))
def test_interrupt_storm_leaves_hooks_and_random_states(alarm: dict[str, Any], sender: str) -> None:
    done = storm(alarm, sender, n_interrupted=40, seed=list(SENDERS).index(sender))
    assert done.interrupted >= 40 and done.corrupted == 0, done


@pytest.mark.slow
@pytest.mark.parametrize("sender", list(SENDERS))
def test_interrupt_storm_many_calls(alarm: dict[str, Any], sender: str) -> None:
    done = storm(alarm, sender, n_interrupted=400, seed=7)
    assert done.interrupted >= 400 and done.corrupted == 0, done
