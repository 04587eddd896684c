"""What every part of the command line shares: its name, exit statuses and the bad-input error."""

from __future__ import annotations

import sys

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILURE", "PROG", "CLIError", "short", "warn"]

PROG = "captum-smooth"
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


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
