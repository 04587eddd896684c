"""Named parts: one registry per kind of part (kernels, reducers), read by the loop, the CLI,
the README's lists and the tests' parametrisation alike.

A part registered with :func:`~captum_smooth.noise.kernels.register_kernel` or
:func:`~captum_smooth.core.reducers.register_reducer` is accepted by name everywhere a built-in
one is, listed by the command line's ``methods`` subcommand and covered by the tests that run
over every registered part, without touching another file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


def _normalise(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


class Registry(Generic[T]):
    """Names to parts, with aliases; names are case-insensitive, ``-`` and spaces read as ``_``.

    Args:
        kind: What the registry holds, for messages (e.g. ``"kernel"``).
        argument: The argument that takes a name, for messages (e.g. ``"kernel"``).

    Examples::

        >>> widgets = Registry("widget", "widget")
        >>> @widgets.register("round")
        ... class Round: ...
        >>> widgets.get("Round") is Round
        True
    """

    def __init__(self, kind: str, argument: str) -> None:
        self.kind = kind
        self.argument = argument
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """A decorator registering its object under ``name`` (and ``aliases``).

        Raises:
            ValueError: ``name`` or an alias is taken already.
        """
        key = _normalise(name)

        def _add(obj: T) -> T:
            for taken in (key, *map(_normalise, aliases)):
                if taken in self._entries or taken in self._aliases:
                    raise ValueError(f"a {self.kind} named {taken!r} is registered already")
            self._entries[key] = obj
            self._aliases.update({_normalise(alias): key for alias in aliases})
            return obj

        return _add

    def unregister(self, name: str) -> None:
        """Remove ``name`` and its aliases (for tests and plugins that replace a part)."""
        key = _normalise(name)
        self._entries.pop(key, None)
        self._aliases = {a: k for a, k in self._aliases.items() if k != key}

    def names(self) -> list[str]:
        """The registered names in registration order (aliases excluded)."""
        return list(self._entries)

    def resolve(self, name: str) -> str:
        """The canonical name for ``name`` or an alias.

        Raises:
            ValueError: Unknown name (the message lists the known ones).
        """
        key = _normalise(name)
        key = self._aliases.get(key, key)
        if key not in self._entries:
            raise ValueError(f"Unknown `{self.argument}` {name!r}; known {self.kind}s: {self}")
        return key

    def get(self, name: str) -> T:
        """The part registered as ``name`` (or an alias of it)."""
        return self._entries[self.resolve(name)]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _normalise(name)
        return key in self._entries or key in self._aliases

    def items(self) -> list[tuple[str, T]]:
        """``(name, part)`` pairs in registration order."""
        return list(self._entries.items())

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __str__(self) -> str:
        text = ", ".join(self._entries)
        if self._aliases:
            aliases = ", ".join(f"{alias} (= {name})" for alias, name in self._aliases.items())
            text += f"; aliases: {aliases}"
        return text
