"""What every part of the command line shares: its name, exit statuses and the bad-input error."""

from __future__ import annotations

import sys

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "MAX_SEED",
    "PROG",
    "CLIError",
    "check_seed",
    "check_text",
    "image_seed",
    "short",
    "warn",
]

PROG = "captum-smooth"
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
#: The largest seed: torch seeds its generators with an unsigned 64-bit integer (it also takes
#: negative ones down to -2**63, as the same unsigned seeds: two spellings, so refused here).
MAX_SEED = 2**64 - 1


class CLIError(Exception):
    """Bad input: reported in one line on stderr, exit status 2, nothing written."""


def short(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def warn(message: str) -> str:
    """Print ``captum-smooth: warning: message`` on stderr (one line); return the message.

    The command line's warnings are for a person reading the terminal (a run that explains
    random weights, a map that did not converge), so they are printed, not issued through
    :mod:`warnings` (whose filters could hide them); reports also keep them.
    """
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)
    return message


def check_seed(seed: int, option: str = "--seed", bits: int = 64) -> None:
    """Refuse a seed torch cannot take, or one it would take as another (a negative one).

    Args:
        seed: The option's value.
        option: The option as typed.
        bits: The seeds taken are ``0..2**bits-1`` (64: torch's; 63: explain_dataset's).

    Raises:
        CLIError: ``seed`` outside ``0..2**bits-1``.
    """
    if not 0 <= seed < 2**bits:
        raise CLIError(f"{option} must be in 0..2**{bits}-1, got {seed}")


def image_seed(seed: int, index: int) -> int:
    """The seed of the ``index``-th image of a run seeded ``seed``: ``seed + index``, wrapped
    into torch's range (so that every seed :func:`check_seed` accepts runs)."""
    return (seed + index) % (MAX_SEED + 1)


def check_text(text: str | None, option: str, what: str) -> None:
    """Refuse an empty (or blank) text option: it would run on nothing, silently.

    Args:
        text: The option's value (None: not given).
        option: The option as typed (``--target``).
        what: What to give instead, for the message.

    Raises:
        CLIError: ``text`` is empty or only spaces.
    """
    if text is not None and not text.strip():
        raise CLIError(f"{option} is empty: {what}")
