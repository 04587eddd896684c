"""The in-place weight-noise session: back up, hand out a perturber, restore whatever happens.

Part of :mod:`captum_smooth.noise.weights` (import the public names from there).
:class:`WeightSession` is the context manager returned by
:meth:`~captum_smooth.noise.weights.WeightNoise.session`; :func:`model_lock` is the lock of one
module, which every session whose model contains that module holds from entry to exit.

Locks: a session changes, and restores, every parameter, buffer and train/eval flag of every
module of its model. Models may share modules and tensors (a model and ``nn.Sequential(model,
nn.Softmax(1))``, two heads tied to one embedding), so a session takes one re-entrant lock per
module and one per parameter or buffer object of its model (:func:`session_locks`): two
sessions whose models share anything run one after the other. The locks are taken in one
global order (by the locks' ``id``), so two sessions never wait for each other; a session that
cannot take them all within :data:`_LOCK_POLL_S` gives back those it took in this attempt and
starts again (a session nested in another may need locks out of that order), handling the
signals that arrived meanwhile.

A class, not a ``@contextmanager`` generator, on purpose: its ``__enter__`` and ``__exit__``
are critical sections (:mod:`captum_smooth.noise._signals`) from their first bytecode, so an
asynchronous signal (Ctrl-C, SIGTERM, SIGALRM, ...) is handled only once the model is whole.
A generator's ``finally`` can be skipped by a signal that arrives before its first statement.
"""

from __future__ import annotations

import random
import threading
from typing import Any, Protocol

from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from ._signals import GUARD, critical
from .weights_backup import ModelState, attempt
from .weights_perturber import WeightPerturber

__all__ = ["WeightSession", "model_lock", "session_locks"]

#: One lock per module and per parameter or buffer object, kept as long as that object lives
#: (keyed by identity: a tensor's ``==`` is elementwise).
_locks: WeakIdKeyDictionary = WeakIdKeyDictionary()
_locks_guard = threading.Lock()

#: How long a session waits for one lock before it gives back the others and handles signals.
_LOCK_POLL_S = 0.05


def _lock_of(obj: object) -> threading.RLock:
    """The re-entrant lock of one module or tensor (call with ``_locks_guard`` held)."""
    lock: threading.RLock | None = _locks.get(obj)
    if lock is None:
        lock = threading.RLock()
        _locks[obj] = lock
    return lock


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock of ``model`` that weight-noise sessions hold.

    One lock per module object (kept as long as the module lives). Every session on ``model``,
    or on a module that contains it (a wrapper such as ``nn.Sequential(model, nn.Softmax(1))``),
    holds it from entry to exit. Hold it in code that must not see perturbed weights while
    NoiseGrad runs on the same model, or on a wrapper of it, in another thread (a session on a
    submodule of ``model`` holds that submodule's lock, not this one).

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
        return _lock_of(model)


def session_locks(model: nn.Module) -> list[threading.RLock]:
    """The locks a session on ``model`` takes, in the order it takes them.

    One per module of ``model`` (``model_lock`` of each) and one per parameter or buffer object
    held by any of them (a tensor shared by two models is one lock), each once, sorted by
    ``id``: every session takes its locks in one global order.

    Args:
        model: The module.

    Returns:
        The locks, sorted.

    Examples::

        >>> shared = set(map(id, session_locks(model)))
        >>> shared <= set(map(id, session_locks(nn.Sequential(model, nn.Softmax(1)))))
        True
    """
    keys: dict[int, object] = {}
    for module in model.modules():
        keys[id(module)] = module
        for slots in (module._parameters, module._buffers):
            for tensor in slots.values():
                if tensor is not None:
                    keys[id(tensor)] = tensor
    with _locks_guard:
        locks = [_lock_of(key) for key in keys.values()]
    return sorted(locks, key=id)


class _NoiseSettings(Protocol):
    """What a session reads off its weight noise when it is entered (a ``WeightNoise``)."""

    @property
    def stdev(self) -> float: ...

    @property
    def noise_type(self) -> str: ...

    def selected_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]: ...


class WeightSession:
    """The context manager of :meth:`~captum_smooth.noise.weights.WeightNoise.session`.

    Entering selects the parameters, takes the model's locks (:func:`session_locks`), backs up
    the model and hands out a :class:`~captum_smooth.noise.weights.WeightPerturber`; the exit
    restores the model bit for bit (every step runs; the first error is raised after the last)
    and releases the locks.
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
        self._acquired: list[threading.RLock] = []
        self._held = False
        self._state: ModelState | None = None
        self._perturber: WeightPerturber | None = None

    @critical
    def __enter__(self) -> WeightPerturber:
        if self._held:
            raise RuntimeError("this weight-noise session is already open; open a new one")
        selected = self._noise.selected_parameters(self._model)  # nothing changed yet
        try:
            GUARD.hold()  # all or nothing (see SignalGuard)
            self._held = True
            self._acquire(session_locks(self._model))
            self._state = ModelState(self._model, [p for _, p in selected])
            self._perturber = WeightPerturber(selected, self._noise.stdev, self._noise.noise_type)
            self._state.set_grads_aside()  # the first change to the model
            GUARD.deliver()  # signals that came during the backup
        except BaseException as err:
            self.__exit__(type(err), err, err.__traceback__)
            raise
        return self._perturber

    def _acquire(self, locks: list[threading.RLock]) -> None:
        """Take every lock, in order; while waiting, signals are handled (nothing changed).

        A lock not had within a (randomised) poll interval: the locks taken in this attempt
        are given back before the signals are handled and the attempt starts again, so a
        session nested in another, whose locks it may need out of order, cannot deadlock.
        """
        while True:
            for lock in locks:
                if not lock.acquire(timeout=_LOCK_POLL_S * random.uniform(0.5, 1.5)):
                    break
                self._acquired.append(lock)  # no signal between: this is a critical section
            else:
                return
            self._release(self._acquired, [])
            GUARD.deliver()

    @staticmethod
    def _release(acquired: list[threading.RLock], errors: list[BaseException]) -> None:
        """Release the locks in ``acquired``, last taken first, and empty the list."""
        while acquired:
            attempt(errors, acquired.pop().release)

    @critical
    def __exit__(self, *exc_info: Any) -> None:
        errors: list[BaseException] = []
        if self._perturber is not None:
            self._perturber._close(errors)
        if self._state is not None:
            self._state.restore(errors)
        self._perturber = self._state = None
        self._release(self._acquired, errors)
        if self._held:
            self._held = False
            attempt(errors, GUARD.release)  # puts every handler back, even if cut short
        try:
            GUARD.deliver()  # the model is whole: the signals held back are handled now
        finally:
            if errors:
                raise errors[0]
