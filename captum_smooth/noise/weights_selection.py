"""Which parameters a weight noise perturbs: the filters and :func:`select_parameters`.

Part of :mod:`captum_smooth.noise.weights` (import the public names from there). A filter is a
regex on the dotted parameter names, module type(s) whose parameters are meant, or a predicate
``(name, param) -> bool``; tied parameters are listed once and matched under any of their names.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Union

from torch import nn

__all__ = ["ParameterFilter", "select_parameters"]

ModuleTypes = Union[type[nn.Module], tuple[type[nn.Module], ...]]
#: How parameters are chosen: a regex on the names, module type(s), or ``(name, param) -> bool``.
ParameterFilter = Union[str, "re.Pattern[str]", ModuleTypes, Callable[[str, nn.Parameter], bool]]


def _check_filter(value: Any, name: str) -> Any:
    """Validate a parameter filter; compile regex strings."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return re.compile(value)
        except re.error as err:
            raise ValueError(f"`{name}` is not a valid regular expression: {err}") from err
    if isinstance(value, re.Pattern):
        return value
    if isinstance(value, type):
        value = (value,)
    if isinstance(value, tuple):
        if not value:
            raise ValueError(f"`{name}` is an empty tuple of module types")
        for t in value:
            if not (isinstance(t, type) and issubclass(t, nn.Module)):
                raise TypeError(f"`{name}` as a tuple must hold nn.Module subclasses, got {t!r}")
        return value
    if callable(value):
        return value
    raise TypeError(
        f"`{name}` must be None, a regex string, an nn.Module type or tuple of types, or a "
        f"predicate (name, param) -> bool, got {type(value).__name__}"
    )


def _matches(flt: Any, names: list[str], param: nn.Parameter, in_types: set[int] | None) -> bool:
    """Whether a checked filter matches a parameter under any of its names (tied aliases)."""
    if isinstance(flt, re.Pattern):
        return any(flt.search(n) for n in names)
    if isinstance(flt, tuple):
        return in_types is not None and id(param) in in_types
    return any(bool(flt(n, param)) for n in names)


def _ids_in_modules(model: nn.Module, types: Any) -> set[int] | None:
    """For a module-type filter, the ids of the parameters inside such modules (else None)."""
    if not isinstance(types, tuple):
        return None
    return {id(p) for m in model.modules() if isinstance(m, types) for p in m.parameters()}


def select_parameters(
    model: nn.Module,
    parameters: ParameterFilter | None = None,
    exclude: ParameterFilter | None = None,
    trainable_only: bool = True,
) -> list[tuple[str, nn.Parameter]]:
    """The parameters a :class:`WeightNoise` perturbs, each once, in ``named_parameters`` order.

    A parameter shared by several modules (tied weights) is listed once under its first name; a
    filter matches it when it matches any of its names. Only floating-point parameters are
    candidates, and with ``trainable_only`` only those with ``requires_grad=True``. Buffers
    (BatchNorm running statistics) are never parameters.

    Args:
        model: The module.
        parameters: Which ones: None (all candidates), a regex string (``re.search`` on the
            dotted name), an nn.Module type or tuple of types (every parameter inside a module
            of that type, its submodules included), or a predicate ``(name, param) -> bool``.
        exclude: Which ones to leave out, in the same forms (e.g. ``"classifier"`` or
            ``nn.Linear`` for the head).
        trainable_only: Only parameters with ``requires_grad=True``. Default: True.

    Returns:
        ``[(name, parameter), ...]``.

    Raises:
        ValueError: when nothing is selected, ``exclude`` leaves nothing out, or a regex is
            invalid.
        TypeError: for a filter of another kind, or ``model`` not an nn.Module.

    Examples::

        >>> [n for n, _ in select_parameters(model, exclude="classifier")]
        ['features.conv1.weight', 'features.bn1.weight', 'features.bn1.bias', ...]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    include_f = _check_filter(parameters, "parameters")
    exclude_f = _check_filter(exclude, "exclude")
    aliases: dict[int, tuple[nn.Parameter, list[str]]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in aliases:
            aliases[id(p)][1].append(name)
        else:
            aliases[id(p)] = (p, [name])
    include_ids = _ids_in_modules(model, include_f)
    exclude_ids = _ids_in_modules(model, exclude_f)
    selected, n_excluded = [], 0
    for p, names in aliases.values():
        if not p.is_floating_point() or (trainable_only and not p.requires_grad):
            continue
        if include_f is not None and not _matches(include_f, names, p, include_ids):
            continue
        if exclude_f is not None and _matches(exclude_f, names, p, exclude_ids):
            n_excluded += 1
            continue
        selected.append((names[0], p))
    if exclude_f is not None and not n_excluded:
        # An exclude that leaves nothing out is a typo or a filter meant for another model:
        # the noise would reach the parameters the user meant to protect.
        first = ", ".join(names[0] for _, names in list(aliases.values())[:4])
        raise ValueError(
            f"`exclude={exclude!r}` leaves out no parameter of {type(model).__name__} (it has "
            f"no effect; parameter names start {first}, ...): fix it or pass `exclude=None`"
        )
    if not selected:
        n_total = len(aliases)
        n_trainable = sum(1 for p, _ in aliases.values() if p.requires_grad)
        hint = (
            " (no parameter has requires_grad=True: pass `trainable_only=False` for a frozen model)"
            if trainable_only and n_total and not n_trainable
            else ""
        )
        raise ValueError(
            f"the weight-noise filter selects no parameter of {type(model).__name__} "
            f"({n_total} parameters, {n_trainable} trainable; parameters={parameters!r}, "
            f"exclude={exclude!r}){hint}"
        )
    return selected
