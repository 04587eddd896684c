"""The backup of everything a weight-noise session could change, and its bit-for-bit restore.

Part of :mod:`captum_smooth.noise.weights`. :class:`ModelState` records, at session entry, the
values of every buffer and of every parameter the session does not perturb (the perturbed ones
are backed up by the :class:`~captum_smooth.noise.weights.WeightPerturber`), the identity of
every Parameter and buffer object held by every submodule (TorchScript modules included),
``requires_grad`` flags, ``.grad`` tensors and train/eval flags. :meth:`ModelState.restore`
puts all of it back; every step runs even when one fails (:func:`attempt`), so one broken
tensor cannot leave the rest of the model perturbed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ModelState", "attempt"]


def attempt(errors: list[BaseException], step: Callable[..., Any], *args: Any) -> None:
    """Run one restore step; keep its error and go on (the first error is raised at the end).

    Args:
        errors: Where a failed step's exception is appended.
        step: The step.
        *args: Its arguments.

    Examples::

        >>> errors: list[BaseException] = []
        >>> attempt(errors, param.copy_, backup)
        >>> if errors:
        ...     raise errors[0]
    """
    try:
        step(*args)
    except BaseException as err:  # every later step must still run
        errors.append(err)


def _slots(entries: Mapping[str, Tensor | None]) -> dict[str, Tensor | None]:
    """A copy of a module's ``_parameters`` or ``_buffers`` entries (a Parameter is a Tensor)."""
    return dict(entries.items())


def _put_back_slots(current: Any, saved: dict[str, Tensor | None]) -> None:
    """Put a module's ``_parameters`` or ``_buffers`` entries back as they were at entry.

    A plain module holds a dict; a TorchScript module an ``OrderedDictWrapper`` over its C++
    attributes, whose keys are fixed (no ``clear``): its entries are set back one by one.
    """
    if isinstance(current, dict):
        if list(current) != list(saved) or any(current[k] is not v for k, v in saved.items()):
            current.clear()
            current.update(saved)
        return
    for key, value in saved.items():
        if current[key] is not value:
            current[key] = value


def _put_back_flags(param: Tensor, requires_grad: bool, grad: Tensor | None) -> None:
    param.requires_grad_(requires_grad)
    param.grad = grad


def _distinct(slots: Iterable[dict[str, Tensor | None]]) -> list[Tensor]:
    """The tensors held in ``slots``, each once (a tied tensor sits in several), in order."""
    seen: dict[int, Tensor] = {}
    for slot in slots:
        for t in slot.values():
            if t is not None:
                seen.setdefault(id(t), t)
    return list(seen.values())


class ModelState:
    """What the model looked like at session entry, and how to put it back bit for bit.

    Taking the snapshot changes nothing; :meth:`set_grads_aside` is the first change.

    Args:
        model: The module.
        perturbed: The parameters the session perturbs (their values are backed up by the
            :class:`~captum_smooth.noise.weights.WeightPerturber`); every other parameter's
            value is kept here, with the buffers, since a forward may change it in place (a
            frozen or integer parameter).

    Examples::

        >>> state = ModelState(model, perturbed=[p for _, p in selected])
        >>> state.set_grads_aside()
        >>> ...  # forward and backward passes on perturbed weights
        >>> errors: list[BaseException] = []
        >>> state.restore(errors)
    """

    def __init__(self, model: nn.Module, perturbed: Sequence[Tensor]) -> None:
        self.modules = list(model.modules())
        self.training = [m.training for m in self.modules]
        self.param_slots = [_slots(m._parameters) for m in self.modules]
        self.buffer_slots = [_slots(m._buffers) for m in self.modules]
        self.params = _distinct(self.param_slots)
        self.requires_grad = [p.requires_grad for p in self.params]
        self.grads = [p.grad for p in self.params]
        perturbed_ids = {id(p) for p in perturbed}
        kept = [
            *_distinct(self.buffer_slots),
            *(p for p in self.params if id(p) not in perturbed_ids),
        ]
        with torch.no_grad():
            self.values = [(t, t.detach().clone()) for t in kept]

    def set_grads_aside(self) -> None:
        """Set existing .grad tensors aside: a backward pass in the session cannot reach them."""
        for p in self.params:
            p.grad = None

    def restore(self, errors: list[BaseException]) -> None:
        """Put everything back; every step runs, errors are appended to ``errors``.

        Args:
            errors: Where the errors of failed steps are appended, in order.
        """
        for m, slot in zip(self.modules, self.param_slots):
            attempt(errors, _put_back_slots, m._parameters, slot)
        for m, slot in zip(self.modules, self.buffer_slots):
            attempt(errors, _put_back_slots, m._buffers, slot)
        with torch.no_grad():
            for t, saved in self.values:
                attempt(errors, t.copy_, saved)
        for p, flag, grad in zip(self.params, self.requires_grad, self.grads):
            attempt(errors, _put_back_flags, p, flag, grad)
        for m, flag in zip(self.modules, self.training):
            attempt(errors, setattr, m, "training", flag)
