"""What every part of the command line shares: its name, exit statuses and the bad-input error."""

from __future__ import annotations

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILURE", "PROG", "CLIError", "short"]

PROG = "captum-smooth"
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


class CLIError(Exception):
    """Bad input: reported in one line on stderr, exit status 2, nothing written."""


def short(exc: BaseException) -> str:
    """The first line of ``exc``'s message (its type's name when it has none)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
