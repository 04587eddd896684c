"""Critical sections that no asynchronous signal can cut in half.

A signal handler written in Python (Ctrl-C's ``KeyboardInterrupt``, a SIGTERM or SIGALRM handler
that raises ``SystemExit`` or a timeout error) runs in the main thread between two bytecodes,
wherever the main thread happens to be: half-way through restoring a model, the restore would
stop there. A restore started from a ``finally`` clause is not protected either: the handler can
run before the first statement that would have deferred it.

While a weight-noise session is open on the main thread, :class:`SignalGuard` replaces every
Python-level signal handler by a guard. When a signal arrives, the guard looks at the main
thread's stack: if a function marked with :func:`critical` is on it (from that function's very
first bytecode), the signal is recorded and handed to its own handler later, by
:meth:`SignalGuard.deliver`, at a point where the model is whole; otherwise the handler runs at
once, as if the guard were not there. Deciding by the stack, not by a flag set on entry, leaves
no window between "the section started" and "the deferral is in place".

Signals whose disposition is ``SIG_DFL`` or ``SIG_IGN`` have no Python handler and are left
alone (they cannot raise an exception in the process). Only the main thread receives Python
signal handlers and may install them: elsewhere the guard is a no-op, and nothing there can be
interrupted by a signal's exception anyway.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, TypeVar

__all__ = ["GUARD", "SignalGuard", "critical"]

F = TypeVar("F", bound=Callable[..., Any])
#: A Python-level signal handler, as ``signal.signal`` installs it.
Handler = Callable[[int, FrameType | None], Any]

#: The code objects of the critical functions.
_CRITICAL_CODE: set[CodeType] = set()


def critical(func: F) -> F:
    """Mark ``func`` critical: signals that reach it wait for :meth:`SignalGuard.deliver`.

    Args:
        func: A plain Python function or method (not a generator).

    Returns:
        ``func`` itself.

    Examples::

        >>> @critical
        ... def restore(model): ...
    """
    _CRITICAL_CODE.add(func.__code__)
    return func


def in_critical_section(frame: FrameType | None) -> bool:
    """Whether a critical function is on the stack that ends at ``frame``."""
    while frame is not None:
        if frame.f_code in _CRITICAL_CODE:
            return True
        frame = frame.f_back
    return False


#: The signals a handler can be set for (``valid_signals()`` costs ~0.5 ms: read once).
_CATCHABLE = tuple(
    sorted(set(signal.valid_signals()) - {getattr(signal, "SIGKILL", -1), signal.SIGSTOP})
    if hasattr(signal, "SIGSTOP")
    else sorted(signal.valid_signals())
)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class SignalGuard:
    """The process's guard of Python-level signal handlers (one instance: :data:`GUARD`).

    :meth:`hold` installs the guard (the first time, on the main thread), :meth:`release`
    takes it away when the last holder releases it, :meth:`deliver` runs the handlers of the
    signals held back so far. Every method is a no-op off the main thread.
    """

    def __init__(self) -> None:
        self.originals: dict[int, Handler] = {}
        self.pending: list[tuple[Handler | None, int, FrameType | None]] = []
        self.depth = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        """The handler installed in place of the original ones."""
        original = self.originals.get(signum)
        if not callable(original):  # taken away meanwhile: behave as Python would
            original = signal.default_int_handler if signum == signal.SIGINT else None
        if in_critical_section(frame):
            self.pending.append((original, signum, frame))
        elif original is not None:
            original(signum, frame)

    def hold(self) -> None:
        """Install the guard over every signal that has a Python handler (nested: counted)."""
        if not _on_main_thread():
            return
        if self.depth == 0:
            self._install()
        self.depth += 1

    def release(self) -> None:
        """Undo one :meth:`hold`; the last one puts the original handlers back."""
        if not _on_main_thread() or self.depth == 0:
            return
        self.depth -= 1
        if self.depth == 0:
            self._uninstall()

    def deliver(self) -> None:
        """Run the handlers of the signals held back, in arrival order.

        Raises:
            BaseException: whatever a handler raises (the signals after it stay pending).
        """
        if not _on_main_thread():
            return
        while self.pending:
            handler, signum, frame = self.pending.pop(0)
            if handler is not None:
                handler(signum, frame)

    def _install(self) -> None:
        for signum in _CATCHABLE:
            try:
                current = signal.getsignal(signum)
            except (ValueError, OSError):  # pragma: no cover - platform specific
                continue
            if current is self or not callable(current):
                continue
            # Known before the guard is in place: a signal right after it finds its handler.
            self.originals[signum] = current
            try:
                signal.signal(signum, self)
            except (ValueError, OSError):  # not the main interpreter, or not settable
                del self.originals[signum]

    def _uninstall(self) -> None:
        # Held apart from `self`: the identity test below narrows `self` to getsignal's type.
        originals = self.originals
        for signum in list(originals):
            # A handler the user installed during the session stays where it is.
            if signal.getsignal(signum) is self:
                signal.signal(signum, originals[signum])
            del originals[signum]


#: The one guard of this process.
GUARD = SignalGuard()
