"""The router: how a door into the loop states its options once and routes a call's keywords.

Every public way into the sampling loop other than :class:`~captum_smooth.core.tunnel.SmoothTunnel`
(which keeps Captum's explicit signature) is a *door*: the named presets (SmoothGrad, NoiseGrad,
...), the LLM wrappers and SmoothTaylor's adaptive search. A door is declared, not written out:

* ``loop_defaults``: the loop options (names of :class:`~captum_smooth.core.plan.LoopOptions`) a
  user may set through the door, with the door's defaults;
* ``parameters``: the door's own arguments (``noise_level``, ``weight_stdev``, ...), each with
  its default and one line of documentation;
* ``pointers``: options a user may reach for that the door does not take, each with a one-line
  pointer to what to use instead.

:class:`Router` splits a call's keywords into the door's parameters, the loop's options and the
inner method's keywords, refuses every loop option the door does not take with one exception
type (:class:`ValueError`, naming the door and the option), and generates the door's signature
and the ``Args:`` lines of its docstring from the same tables.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .plan import LoopOptions, options_doc

__all__ = ["COMMON_OPTIONS", "INPUT_NOISE_OPTIONS", "Routed", "Router"]

_LOOP_OPTIONS = frozenset(LoopOptions.names())

_F = TypeVar("_F", bound=Callable[..., Any])

#: Loop options every door offers, with the loop's defaults.
COMMON_OPTIONS: dict[str, Any] = {
    "nt_type": "smoothgrad",
    "reducer": None,
    "generator": None,
    "show_progress": False,
    "return_error": False,
    "tolerance": None,
    "min_samples": None,
    "max_samples": None,
    "sampling": "iid",
}

#: Loop options of doors that draw input noise.
INPUT_NOISE_OPTIONS: dict[str, Any] = {
    "nt_samples_batch_size": "auto",
    "kernel": "gaussian",
    "include_clean": False,
    "draw_baseline_from_distrib": False,
}


@dataclass
class Routed:
    """One call's keywords, routed.

    Attributes:
        params: The door's own arguments, defaults filled in.
        loop: The loop options, the door's defaults filled in (before what the door fixes).
        inner: The inner method's keyword arguments.
        given: The names of the door's own arguments and loop options the user gave.
    """

    params: dict[str, Any]
    loop: dict[str, Any]
    inner: dict[str, Any]
    given: set[str]

    def options(self, fixed: Mapping[str, Any] | None = None) -> LoopOptions:
        """The loop's options: the routed ones, then what the door fixes (``fixed`` wins)."""
        return LoopOptions(**{**self.loop, **(fixed or {})})


@dataclass(frozen=True)
class Router:
    """A door's declared options and the one routing of its keywords.

    Args:
        name: The door's name, used in its error messages.
        loop_defaults: The loop options the door takes, with its defaults.
        parameters: The door's own arguments: ``name -> (default, documentation)``.
        pointers: Names the door refuses, each with a pointer to what to use instead.
        docs: What a loop option means at this door, where it says more than the loop's own
            documentation (``LOOP_OPTION_DOCS``).

    Examples::

        >>> router = Router("MyMethod", {"nt_samples": 10, "generator": None},
        ...                 {"noise_level": (0.1, "Share of the input range.")},
        ...                 {"stdevs": "give the noise as `noise_level`"})
        >>> routed = router.route({"noise_level": 0.2, "nt_samples": 4, "abs": False})
        >>> routed.params, routed.loop, routed.inner
        ({'noise_level': 0.2}, {'nt_samples': 4, 'generator': None}, {'abs': False})
    """

    name: str
    loop_defaults: Mapping[str, Any]
    parameters: Mapping[str, tuple[Any, str]] = field(default_factory=dict)
    pointers: Mapping[str, str] = field(default_factory=dict)
    docs: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.loop_defaults) - _LOOP_OPTIONS
        if unknown:
            raise ValueError(f"{self.name}: {sorted(unknown)} are not loop options")
        # A parameter may share a loop option's name (SmoothGrad's own `stdevs`): the door
        # then computes that option itself, so it cannot also be one the door passes through.
        both = set(self.loop_defaults) & set(self.parameters)
        if both:
            raise ValueError(f"{self.name}: {sorted(both)} are both loop options and parameters")

    def route(self, kwargs: Mapping[str, Any]) -> Routed:
        """Split the user's keywords into the door's, the loop's and the inner method's.

        Args:
            kwargs: The keywords of the call (every argument but the door's explicit ones).

        Returns:
            The :class:`Routed` keywords, defaults filled in.

        Raises:
            ValueError: A name in ``pointers``, or a loop option the door does not take.
        """
        params = {name: default for name, (default, _) in self.parameters.items()}
        loop = dict(self.loop_defaults)
        inner: dict[str, Any] = {}
        for key, value in kwargs.items():
            self.check_taken(key)
            if key in self.parameters:
                params[key] = value
            elif key in self.loop_defaults:
                loop[key] = value
            else:
                inner[key] = value
        return Routed(params, loop, inner, set(kwargs) - set(inner))

    def check_taken(self, key: str) -> None:
        """Refuse ``key`` if the door points elsewhere for it or does not take that loop option.

        Raises:
            ValueError: Naming the door, the option and what to use instead.
        """
        if key in self.pointers:
            raise ValueError(f"{self.name} does not take `{key}`: {self.pointers[key]}")
        if key in _LOOP_OPTIONS and key not in self.loop_defaults and key not in self.parameters:
            raise ValueError(
                f"{self.name} does not take the option `{key}` (it fixes it or does not use "
                f"it); its options are {sorted(self.loop_defaults)} and "
                f"{sorted(self.parameters)}; SmoothTunnel takes every option"
            )

    def options_doc(self) -> str:
        """The ``Args:`` lines of the door's own arguments and loop options, from one table."""
        own = {**self.docs, **{name: doc for name, (_, doc) in self.parameters.items()}}
        defaults = {name: default for name, (default, _) in self.parameters.items()}
        return options_doc({**defaults, **self.loop_defaults}, own)

    def signature(self, head: list[inspect.Parameter]) -> inspect.Signature:
        """The door's signature: ``head`` (its explicit parameters, ``self`` first), then its own
        arguments and loop options as keyword-only parameters, then ``**kwargs``."""
        keyword = inspect.Parameter.KEYWORD_ONLY
        defaults = {name: default for name, (default, _) in self.parameters.items()}
        params = [p for p in head if p.kind is not inspect.Parameter.VAR_KEYWORD]
        params += [
            inspect.Parameter(n, keyword, default=d)
            for n, d in {**defaults, **self.loop_defaults}.items()
        ]
        params.append(inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD))
        return inspect.Signature(params)

    def document(self, method: _F, head: Callable[..., Any] | None = None) -> _F:
        """Give ``method`` the door's signature and fill the ``{options}`` of its docstring.

        Args:
            method: The door's ``attribute`` function (its docstring holds a line ``{options}``).
            head: The function whose explicit parameters come first (default: ``method``'s);
                a Captum class's ``attribute`` for the wrappers of Captum classes.

        Returns:
            ``method``, documented.
        """
        explicit = list(inspect.signature(head or method).parameters.values())
        method.__signature__ = self.signature(explicit)  # type: ignore[attr-defined]
        if method.__doc__:
            # The placeholder's own line is replaced (its indentation is the formatter's).
            lines = method.__doc__.split("\n")
            lines = [self.options_doc() if ln.strip() == "{options}" else ln for ln in lines]
            method.__doc__ = "\n".join(lines)
        return method
