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

import importlib
import signal
import threading
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, TypeVar

__all__ = ["GUARD", "GuardedContext", "SignalGuard", "critical"]

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


#: ``signal.getsignal`` without its conversion of the result to an enum (20x faster: the guard
#: reads every signal's handler on each call it guards); the identity of a Python handler is
#: the same either way.
_getsignal: Callable[[int], object] = getattr(
    importlib.import_module("_signal"), "getsignal", signal.getsignal
)


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class SignalGuard:
    """The process's guard of Python-level signal handlers (one instance: :data:`GUARD`).

    :meth:`hold` installs the guard (the first time, on the main thread), :meth:`release`
    takes it away when the last holder releases it, :meth:`deliver` runs the handlers of the
    signals held back so far. Every method is a no-op off the main thread.

    Installing and taking away the guard go one signal after another, so a signal that is not
    (or no longer) under the guard may run its own handler half-way and raise. Both are all or
    nothing for such an exception: :meth:`hold` cut short takes away what it had installed and
    counts no holder; :meth:`release` cut short still puts back every original handler. Both
    are critical sections: once the guard is over a signal, that signal waits for
    :meth:`deliver` until they return, so the holder count and the installed handlers never
    disagree. A handler that runs during either (it raises, or it opens a session of its own,
    which holds and releases the guard) finds the guard in a consistent state.
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

    @critical
    def hold(self) -> None:
        """Install the guard over every signal that has a Python handler (nested: counted).

        Raises:
            BaseException: what a signal's own handler raised before the guard was over it;
                then nothing is held and every handler is the one the process had.
        """
        if not _on_main_thread():
            return
        if self.depth == 0:
            try:
                installed = self._install(_CATCHABLE)
                # A handler that ran meanwhile may have held and released the guard (a session
                # of its own), taking it off signals installed before: put it back over them.
                while installed:
                    installed = self._install(installed)
            except BaseException:
                self._uninstall()
                raise
        # The guard is over every signal now and this is a critical section: no signal's
        # exception can come between the installation and the count.
        self.depth += 1

    @critical
    def release(self) -> None:
        """Undo one :meth:`hold`; the last one puts the original handlers back.

        Raises:
            BaseException: what a signal's own handler raised once it was put back; every
                other original handler is put back all the same.
        """
        if not _on_main_thread() or self.depth == 0:
            return
        self.depth -= 1
        if self.depth == 0:
            self._uninstall()

    def deliver(self) -> None:
        """Run the handlers of the signals held back, in arrival order, every one of them.

        As Python would: a handler that raises does not stop the next one (Python runs that
        at its next check, while the first exception unwinds), and the last exception raised
        is the one that comes out, the earlier ones as its ``__context__``. No signal is left
        pending for a later, unrelated call (or for none).

        Raises:
            BaseException: the last exception a handler raised.
        """
        if not _on_main_thread():
            return
        error: BaseException | None = None
        while self.pending:
            handler, signum, frame = self.pending.pop(0)
            if handler is None:
                continue
            try:
                handler(signum, frame)
            except BaseException as err:
                if error is not None and err is not error and err.__context__ is None:
                    err.__context__ = error
                error = err
        if error is not None:
            raise error

    def _install(self, signals: tuple[int, ...]) -> tuple[int, ...]:
        """Put the guard over those of ``signals`` that have a Python handler.

        Returns:
            The signals it was put over, if a handler that is not the guard's ran meanwhile
            (the guard may have been taken off them); empty otherwise.
        """
        changed: list[int] = []
        for signum in signals:
            try:
                current = _getsignal(signum)
            except (ValueError, OSError):  # pragma: no cover - platform specific
                continue
            if current is self or not callable(current):
                continue
            # Known before the guard is in place: a signal right after it finds its handler.
            self.originals[signum] = current
            try:
                signal.signal(signum, self)
                changed.append(signum)
            except (ValueError, OSError):  # not the main interpreter, or not settable
                del self.originals[signum]
        if all(_getsignal(signum) is self for signum in changed):
            return ()
        return tuple(changed)

    @critical
    def _uninstall(self) -> None:
        """Put every original handler back, even if a signal's exception cuts the loop short.

        The loop takes the next signal from ``originals`` each time (not from a list made
        beforehand): a handler that runs in between may hold and release the guard itself,
        which empties ``originals``.
        """
        originals = self.originals
        try:
            while originals:
                signum = next(iter(originals))
                # A handler the user installed during the session stays where it is.
                if _getsignal(signum) is self:
                    signal.signal(signum, originals[signum])
                originals.pop(signum, None)
        finally:
            if originals:  # a signal put back already raised: finish, then let it through
                self._uninstall()


#: The one guard of this process.
GUARD = SignalGuard()


class GuardedContext:
    """A context manager whose entry and exit no signal's exception can cut short.

    Subclasses write :meth:`_enter` (the change) and :meth:`_exit` (its undoing); both run
    inside critical sections while the guard is held from the start of the entry to the end
    of the exit, so a signal that arrives during either is handled once it is complete (its
    exception then comes from ``__enter__``, after the change was undone, or from
    ``__exit__``). A class, not a ``@contextmanager`` generator: a signal that arrives in a
    generator's exit path, before its ``finally``, would skip the undoing.

    Examples::

        >>> class Flag(GuardedContext):
        ...     def _enter(self): state["on"] = True
        ...     def _exit(self, errors, failed): state["on"] = False
    """

    _holding = False

    def _enter(self) -> Any:
        """Make the change; what ``with ... as`` binds. Undone by :meth:`_exit` if it fails."""
        return None

    def _exit(self, errors: list[BaseException], failed: bool) -> None:
        """Undo whatever :meth:`_enter` did (also a part of it); append errors, do not raise.

        ``failed``: the block (or the entry) ended by an exception.
        """

    @critical
    def __enter__(self) -> Any:
        try:
            GUARD.hold()
            self._holding = True
            result = self._enter()
            GUARD.deliver()  # signals that came during the change, now that it is complete
        except BaseException as err:
            self.__exit__(type(err), err, err.__traceback__)
            raise
        return result

    @critical
    def __exit__(self, *exc_info: Any) -> None:
        errors: list[BaseException] = []
        try:
            self._exit(errors, exc_info[0] is not None)
        except BaseException as err:  # a subclass's own failure: the guard is released anyway
            errors.append(err)
        if self._holding:
            self._holding = False
            try:
                GUARD.release()
            except BaseException as err:
                errors.append(err)
        try:
            GUARD.deliver()  # the change is undone: the signals held back are handled now
        finally:
            if errors:
                raise errors[0]
