"""SignalGuard.hold and release, cut short or re-entered by a signal's handler, deterministically.

The guard is installed and taken away one signal after another: a signal that is not (or no
longer) under the guard runs its own handler in between. Each test puts a real signal
(``signal.raise_signal``) at one chosen point of that sequence, right after the guard was put
over, or taken off, one chosen signal, and checks the state the guard leaves: the holder count,
the handlers the process sees, the guard's own bookkeeping.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from captum_smooth.noise._signals import GUARD

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGUSR2") or threading.current_thread() is not threading.main_thread(),
    reason="needs SIGUSR1/SIGUSR2 (POSIX) and the main thread",
)

SIGNALS = ("SIGINT", "SIGUSR1", "SIGUSR2")  # in the order the guard goes through them


class Handlers:
    """Three Python handlers (SIGINT, SIGUSR1, SIGUSR2); SIGUSR1's action is set by each test."""

    def __init__(self) -> None:
        self.usr1: Callable[[], None] = lambda: None
        self.calls = 0
        self.own: dict[int, Any] = {
            signal.SIGINT: self._other,
            signal.SIGUSR1: self._usr1,
            signal.SIGUSR2: self._other,
        }

    def _usr1(self, signum: int, frame: Any) -> None:
        self.calls += 1
        self.usr1()

    @staticmethod
    def _other(signum: int, frame: Any) -> None:
        return None

    def installed(self) -> dict[str, Any]:
        """The handler the process sees for each signal: ``"guard"`` or ``"own"``."""
        seen = {}
        for name in SIGNALS:
            current = signal.getsignal(getattr(signal, name))
            seen[name] = (
                "guard"
                if current is GUARD
                else "own"
                if current is self.own[getattr(signal, name)]
                else current
            )
        return seen


@pytest.fixture
def handlers() -> Iterator[Handlers]:
    assert GUARD.depth == 0 and not GUARD.originals
    own = Handlers()
    previous = {signum: signal.signal(signum, handler) for signum, handler in own.own.items()}
    try:
        yield own
    finally:
        GUARD.depth = 0
        GUARD.originals.clear()
        GUARD.pending.clear()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def raise_usr1_after(
    monkeypatch: pytest.MonkeyPatch, signum: int, *, to_guard: bool
) -> dict[str, int]:
    """Send SIGUSR1 once, right after ``signal.signal`` put the guard over (``to_guard``) or
    took it off ``signum``. Returns a counter of the signals sent."""
    real = signal.signal
    sent = {"n": 0}

    def signal_then_raise(sig: int, handler: Any) -> Any:
        previous = real(sig, handler)
        if sig == signum and (handler is GUARD) == to_guard and not sent["n"]:
            sent["n"] += 1
            signal.raise_signal(signal.SIGUSR1)
        return previous

    monkeypatch.setattr(signal, "signal", signal_then_raise)
    return sent


def interrupt() -> None:
    raise KeyboardInterrupt("usr1")


def test_hold_cut_short_leaves_nothing_installed(
    handlers: Handlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The guard is over SIGINT, not yet over SIGUSR1, whose own handler raises.
    handlers.usr1 = interrupt
    sent = raise_usr1_after(monkeypatch, signal.SIGINT, to_guard=True)
    with pytest.raises(KeyboardInterrupt, match="usr1"):
        GUARD.hold()
    assert sent["n"] == 1 and handlers.calls == 1
    assert handlers.installed() == dict.fromkeys(SIGNALS, "own")
    assert GUARD.depth == 0 and not GUARD.originals


def test_release_cut_short_still_puts_every_handler_back(
    handlers: Handlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    GUARD.hold()
    assert handlers.installed() == dict.fromkeys(SIGNALS, "guard")
    # SIGUSR1 is its own again and raises; SIGUSR2 still has the guard.
    handlers.usr1 = interrupt
    sent = raise_usr1_after(monkeypatch, signal.SIGUSR1, to_guard=False)
    with pytest.raises(KeyboardInterrupt, match="usr1"):
        GUARD.release()
    assert sent["n"] == 1 and handlers.calls == 1
    assert handlers.installed() == dict.fromkeys(SIGNALS, "own")
    assert GUARD.depth == 0 and not GUARD.originals


def test_a_handler_that_holds_and_releases_during_release(
    handlers: Handlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGUSR1's handler opens a session of its own (hold, release) while the outer release is
    # half-way: it empties the guard's bookkeeping under the outer loop.
    def own_session() -> None:
        GUARD.hold()
        GUARD.release()

    GUARD.hold()
    handlers.usr1 = own_session
    raise_usr1_after(monkeypatch, signal.SIGUSR1, to_guard=False)
    GUARD.release()
    assert handlers.calls == 1
    assert handlers.installed() == dict.fromkeys(SIGNALS, "own")
    assert GUARD.depth == 0 and not GUARD.originals and not GUARD.pending


def test_a_handler_that_holds_and_releases_during_hold(
    handlers: Handlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The inner release takes the guard off SIGINT, installed before the handler ran: the
    # outer hold must still end with the guard over every signal.
    def own_session() -> None:
        GUARD.hold()
        GUARD.release()

    handlers.usr1 = own_session
    raise_usr1_after(monkeypatch, signal.SIGINT, to_guard=True)
    GUARD.hold()
    assert handlers.calls == 1
    assert GUARD.depth == 1
    assert handlers.installed() == dict.fromkeys(SIGNALS, "guard")
    GUARD.release()
    assert handlers.installed() == dict.fromkeys(SIGNALS, "own")
    assert GUARD.depth == 0 and not GUARD.originals


def test_a_signal_under_the_guard_during_release_waits_for_deliver(
    handlers: Handlers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGUSR1 arrives while the guard is still over it (SIGINT was just put back): release is
    # a critical section, so the handler runs at deliver(), after every handler is back.
    handlers.usr1 = interrupt
    GUARD.hold()
    raise_usr1_after(monkeypatch, signal.SIGINT, to_guard=False)
    # (main ran the handler at once, in the middle of the release: the test fails below)
    with contextlib.suppress(KeyboardInterrupt):
        GUARD.release()
    assert handlers.calls == 0
    assert handlers.installed() == dict.fromkeys(SIGNALS, "own")
    assert [signum for _, signum, _ in GUARD.pending] == [signal.SIGUSR1]
    with pytest.raises(KeyboardInterrupt, match="usr1"):
        GUARD.deliver()
    assert handlers.calls == 1 and not GUARD.pending


def test_two_signals_held_back_both_run_and_none_stays_pending(handlers: Handlers) -> None:
    # SIGUSR1 (KeyboardInterrupt) and SIGUSR2 (SystemExit) both arrive in a critical section:
    # deliver() runs both handlers, as Python would, and leaves nothing for a later call.
    from captum_smooth.noise._signals import critical

    def usr2(signum: int, frame: Any) -> None:
        raise SystemExit("usr2")

    signal.signal(signal.SIGUSR2, usr2)
    handlers.usr1 = interrupt

    @critical
    def restore() -> None:
        signal.raise_signal(signal.SIGUSR1)
        signal.raise_signal(signal.SIGUSR2)

    GUARD.hold()
    try:
        restore()
        assert len(GUARD.pending) == 2
        with pytest.raises(BaseException) as info:  # which one: checked below
            GUARD.deliver()
    finally:
        GUARD.release()
    assert isinstance(info.value, SystemExit) and info.value.args == ("usr2",)
    assert isinstance(info.value.__context__, KeyboardInterrupt)
    assert handlers.calls == 1 and not GUARD.pending
