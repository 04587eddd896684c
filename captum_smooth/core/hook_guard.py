"""Hooks left on the model by an interrupted call are removed.

Captum registers hooks on the user's model during a call (LayerIntegratedGradients on its
layer, DeepLift and GuidedBackprop on every module) and removes them in a ``finally``. A
signal's exception (Ctrl-C) that arrives between the registration and the ``try``, or inside
the ``finally`` before the removal, leaves the hook on the model: every later forward of the
user's model runs it (an embedding whose output is replaced by a stale tensor: other logits).

:class:`HookGuard` removes, when a call ends by an exception, every hook registered during the
call that is still on a module of the model, or in torch's global hook dictionaries. A hook is
"registered during the call" when its handle's id is at least the id torch's next handle had
on entry (torch numbers every hook handle from one counter, ``RemovableHandle.next_id``): the
entry costs one integer and no walk of the model, the exit one look at each module's hook
dictionaries.

What is removed, and what is not:

* Hooks the user had before the call are never touched.
* A call that ends normally removes nothing: every ``finally`` of Captum's ran, so a hook still
  there was registered on purpose (a model whose forward registers a hook of its own keeps it).
* A call that ends by an exception removes every hook registered during it, also one the
  user's own forward registered (the guard cannot tell it from Captum's), and one another
  thread registered on the same model meanwhile.
* Tensor hooks are not looked at: Captum puts them on the tensors of one pass (outputs,
  inputs), never on parameters, and those tensors are dropped with the call.

:class:`NoGrad` is the call's ``torch.no_grad()`` with the same protection: the caller's grad
mode comes back whatever interrupts the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.modules.module as torch_module
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..noise._signals import GuardedContext

__all__ = ["HookGuard", "NoGrad", "modules_of"]

#: The hook dictionaries of a module, keyed by handle id (torch 2.x; absent ones are skipped).
MODULE_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)

#: torch's global hook dictionaries (``register_module_forward_hook`` and the like).
GLOBAL_HOOK_DICTS = tuple(
    value
    for name, value in vars(torch_module).items()
    if name.startswith("_global_") and "hooks" in name and isinstance(value, dict)
)

#: The attributes through which a Captum method (or a forward function) reaches modules.
_OWNER_ATTRIBUTES = ("__self__", "forward_func", "layer", "model")


def modules_of(*owners: Any, depth: int = 3) -> list[nn.Module]:
    """The modules reachable from ``owners``, each once, submodules not listed.

    Args:
        *owners: Modules, lists of them, Captum methods (their ``forward_func``, ``layer``,
            ``model``), bound methods of modules, or anything else (ignored).
        depth: How many attributes deep to look from an owner that is not a module.

    Returns:
        The modules found (the roots; their submodules are walked by :class:`HookGuard`).

    Examples::

        >>> modules_of(LayerIntegratedGradients(model, model.embedding)) == [model, model.embedding]
        True
    """
    found: dict[int, nn.Module] = {}
    for owner in owners:
        for module in _reachable(owner, depth):
            found.setdefault(id(module), module)
    return list(found.values())


def _reachable(owner: Any, depth: int) -> Iterator[nn.Module]:
    if isinstance(owner, nn.Module):
        yield owner
    elif isinstance(owner, (list, tuple)):
        for item in owner:
            yield from _reachable(item, depth)
    elif owner is not None and depth > 0:
        for name in _OWNER_ATTRIBUTES:
            yield from _reachable(getattr(owner, name, None), depth - 1)


def _drop_newer(hooks: dict[Any, Any], first_new: int) -> int:
    """Remove the hooks whose handle id is ``first_new`` or later; how many were removed."""
    new = [key for key in hooks if key >= first_new]
    for key in new:
        hooks.pop(key, None)
    return len(new)


def _hook_dicts(roots: Iterable[nn.Module]) -> Iterator[dict[Any, Any]]:
    seen: set[int] = set()
    for root in roots:
        for module in root.modules():
            if id(module) in seen:
                continue
            seen.add(id(module))
            for name in MODULE_HOOK_DICTS:
                hooks = module.__dict__.get(name)
                if hooks:
                    yield hooks


class HookGuard(GuardedContext):
    """Remove the hooks a call registered on ``owners``' modules if the call ends by an exception.

    A :class:`~captum_smooth.noise._signals.GuardedContext`: entry and exit hold the signal
    guard, so a Ctrl-C that arrives while the hooks are being removed is raised once they are.
    See the module docstring for what is removed.

    Args:
        *owners: What the call's hooks may be put on: the model, the inner Captum method (its
            forward function, layer, model), a layer (see :func:`modules_of`).

    Attributes:
        removed: How many hooks the last exit removed.

    Examples::

        >>> with HookGuard(model, method):
        ...     method.attribute(inputs, target=0)  # a Ctrl-C here leaves no hook behind
    """

    def __init__(self, *owners: Any) -> None:
        self._owners = owners
        self._first_new: int | None = None
        self.removed = 0

    def _enter(self) -> Any:
        self._first_new = RemovableHandle.next_id
        self.removed = 0
        return None

    def _exit(self, errors: list[BaseException], failed: bool) -> None:
        first_new, self._first_new = self._first_new, None
        if first_new is None or not failed:
            return
        roots = modules_of(*self._owners)
        for hooks in (*GLOBAL_HOOK_DICTS, *_hook_dicts(roots)):
            self.removed += _drop_newer(hooks, first_new)


class NoGrad(GuardedContext):
    """``torch.no_grad()`` whose exit no signal's exception can skip.

    ``torch.no_grad().__exit__`` puts the caller's grad mode back in its one statement; a
    Ctrl-C that arrives at its first bytecode skips it, and the caller's process is left with
    gradients off. Here the exit is a critical section: the mode is put back first, then the
    signal's exception is raised.

    Examples::

        >>> with NoGrad():
        ...     assert not torch.is_grad_enabled()
    """

    def __init__(self) -> None:
        self._previous: bool | None = None

    def _enter(self) -> None:
        self._previous = torch.is_grad_enabled()
        torch.set_grad_enabled(False)

    def _exit(self, errors: list[BaseException], failed: bool) -> None:
        previous, self._previous = self._previous, None
        if previous is not None:
            torch.set_grad_enabled(previous)
