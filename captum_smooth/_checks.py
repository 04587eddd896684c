"""Argument checks shared by the whole package: one helper per repeated check.

Every public entry point checks its arguments with these, so that the same mistake gets the same
message (naming the argument) wherever it is made.
"""

from __future__ import annotations

import numbers
from typing import Any, Union

import torch

__all__ = [
    "GeneratorLike",
    "check_positive_int",
    "check_real",
    "resolve_generator",
    "seed_from",
]

GeneratorLike = Union[torch.Generator, int, None]

_GENERATOR_TYPES = "a torch.Generator, an int seed or None"


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an int ``>= minimum`` (bools refused), else raise.

    Args:
        value: The argument's value.
        name: The argument's name, for the message.
        minimum: The smallest accepted value. Default: 1.

    Returns:
        ``value``.

    Raises:
        TypeError: Not an int (or a bool).
        ValueError: Below ``minimum``.

    Examples::

        >>> check_positive_int(8, "nt_samples")
        8
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return int(value)


def check_real(value: Any, name: str) -> float:
    """Return ``value`` as a float if it is a real number (bools refused), else raise TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    return float(value)


def _check_generator_type(generator: Any) -> None:
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, bool) or not isinstance(generator, numbers.Integral):
        raise TypeError(f"`generator` must be {_GENERATOR_TYPES}, got {generator!r}")


def resolve_generator(generator: GeneratorLike, device: torch.device) -> torch.Generator | None:
    """Turn ``generator`` (a torch.Generator, an int seed or None) into a generator or None.

    ``None`` keeps torch's global random state, as Captum's NoiseTunnel uses it; an int seeds a
    fresh generator on ``device`` (the CPU for a meta device).

    Raises:
        TypeError: Anything else.
    """
    _check_generator_type(generator)
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    gen_device = device if device.type != "meta" else torch.device("cpu")
    return torch.Generator(device=gen_device).manual_seed(int(generator))


def seed_from(generator: GeneratorLike) -> int:
    """An int seed: the int itself, or one drawn from the generator (torch's global state for None).

    Raises:
        TypeError: Anything but a torch.Generator, an int or None.
    """
    _check_generator_type(generator)
    if generator is not None and not isinstance(generator, torch.Generator):
        return int(generator)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=gen_device))
