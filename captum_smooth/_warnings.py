"""Warnings that point at the user's line, however deep in the library they start.

A fixed ``stacklevel`` is right for one call path only: the same warning raised by the loop is
reached through :class:`~captum_smooth.core.tunnel.SmoothTunnel` (behind Captum's usage-logging
decorator), through every preset, through the LLM wrappers, each at a different depth. So the
level is computed instead: the warning is attributed to the first frame, walking outwards from
the library's call, whose module belongs to none of the packages in :data:`LIBRARY_MODULES`.
"""

from __future__ import annotations

import sys
import warnings
from types import FrameType

__all__ = ["LIBRARY_MODULES", "user_stacklevel", "warn"]

#: Top-level modules whose frames are never the user's line: this package, Captum and torch
#: (which the library calls through), and the standard library's decorator helpers
#: (``contextlib`` for context managers used as decorators, ``functools`` for ``wraps`` and
#: ``partial``), which sit between a user's call and the library.
LIBRARY_MODULES: frozenset[str] = frozenset(
    {"captum_smooth", "captum", "torch", "contextlib", "functools"}
)


def _is_library(frame: FrameType) -> bool:
    module = frame.f_globals.get("__name__")
    if not isinstance(module, str):  # exec'd code without a name: count it as the user's
        return False
    return module.partition(".")[0] in LIBRARY_MODULES


def user_stacklevel(frame: FrameType | None) -> int:
    """The ``stacklevel`` that, passed along with ``frame``'s call, names the user's frame.

    Args:
        frame: The frame that will call :func:`warnings.warn` (its level is 1).

    Returns:
        The level of the first frame outside the library; 2 (the library's caller) when the
        whole stack is the library's, e.g. in a thread it started.
    """
    level, current = 1, frame
    while current is not None and _is_library(current):
        current = current.f_back
        level += 1
    return level if current is not None else 2


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue ``message`` as a ``category`` warning attributed to the user's line.

    Args:
        message: The warning's text.
        category: The warning class (default :class:`UserWarning`).

    Examples::

        >>> warn("3 noisy sample(s) were dropped", RuntimeWarning)
    """
    # Frame 0 is this function (itself in the library): walking starts there, so its level is 1,
    # the level ``warnings.warn`` gives the line that calls it.
    warnings.warn(message, category, stacklevel=user_stacklevel(sys._getframe(0)))
