"""The in-place weight-noise session: back up, hand out a perturber, restore whatever happens.

Part of :mod:`captum_smooth.noise.weights` (import the public names from there).
:class:`WeightSession` is the context manager returned by
:meth:`~captum_smooth.noise.weights.WeightNoise.session`; :func:`model_lock` is the per-model
lock every session holds from entry to exit.

A class, not a ``@contextmanager`` generator, on purpose: its ``__enter__`` and ``__exit__``
are critical sections (:mod:`captum_smooth.noise._signals`) from their first bytecode, so an
asynchronous signal (Ctrl-C, SIGTERM, SIGALRM, ...) is handled only once the model is whole.
A generator's ``finally`` can be skipped by a signal that arrives before its first statement.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Protocol

from torch import nn

from ._signals import GUARD, critical
from .weights_backup import ModelState, attempt
from .weights_perturber import WeightPerturber

__all__ = ["WeightSession", "model_lock"]

_locks: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()

#: How often a session waiting for another thread's session on the same model looks for signals.
_LOCK_POLL_S = 0.05


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that weight-noise sessions on ``model`` hold.

    One lock per model object (kept as long as the model lives). Hold it in code that must not
    see perturbed weights while NoiseGrad runs on the same model in another thread.

    Args:
        model: The module.

    Returns:
        Its ``threading.RLock``.

    Examples::

        >>> with model_lock(model):
        ...     logits = model(images)  # never sees a NoiseGrad draw of another thread
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    with _locks_guard:
        lock = _locks.get(model)
        if lock is None:
            lock = threading.RLock()
            _locks[model] = lock
        return lock


class _NoiseSettings(Protocol):
    """What a session reads off its weight noise when it is entered (a ``WeightNoise``)."""

    @property
    def stdev(self) -> float: ...

    @property
    def noise_type(self) -> str: ...

    def selected_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]: ...


class WeightSession:
    """The context manager of :meth:`~captum_smooth.noise.weights.WeightNoise.session`.

    Entering selects the parameters, takes the model's lock, backs up the model and hands out a
    :class:`~captum_smooth.noise.weights.WeightPerturber`; the exit restores the model bit for
    bit (every step runs; the first error is raised after the last) and releases the lock.
    Not re-entrant: entering it again while it is open raises (open a second session instead;
    sessions on one model nest).

    Args:
        noise: The weight noise (read when the session is entered).
        model: The module whose weights are perturbed.

    Examples::

        >>> with WeightSession(WeightNoise(0.1), model) as perturber:
        ...     perturber.perturb(torch.Generator().manual_seed(0))
    """

    def __init__(self, noise: _NoiseSettings, model: nn.Module) -> None:
        self._noise = noise
        self._model = model
        self._lock = model_lock(model)
        self._locked = False
        self._held = False
        self._state: ModelState | None = None
        self._perturber: WeightPerturber | None = None

    @critical
    def __enter__(self) -> WeightPerturber:
        if self._held:
            raise RuntimeError("this weight-noise session is already open; open a new one")
        selected = self._noise.selected_parameters(self._model)  # nothing changed yet
        GUARD.hold()
        self._held = True
        try:
            self._acquire()
            self._state = ModelState(self._model, [p for _, p in selected])
            self._perturber = WeightPerturber(selected, self._noise.stdev, self._noise.noise_type)
            self._state.set_grads_aside()  # the first change to the model
            GUARD.deliver()  # signals that came during the backup
        except BaseException as err:
            self.__exit__(type(err), err, err.__traceback__)
            raise
        return self._perturber

    def _acquire(self) -> None:
        """Take the model's lock; while waiting for it, signals are handled (nothing changed)."""
        while not self._lock.acquire(timeout=_LOCK_POLL_S):
            GUARD.deliver()
        self._locked = True

    @critical
    def __exit__(self, *exc_info: Any) -> None:
        errors: list[BaseException] = []
        if self._perturber is not None:
            self._perturber._close(errors)
        if self._state is not None:
            self._state.restore(errors)
        self._perturber = self._state = None
        if self._locked:
            self._locked = False
            attempt(errors, self._lock.release)
        if self._held:
            self._held = False
            attempt(errors, GUARD.release)
        try:
            GUARD.deliver()  # the model is whole: the signals held back are handled now
        finally:
            if errors:
                raise errors[0]
