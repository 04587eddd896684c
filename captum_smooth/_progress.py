"""Progress bars only where asked for.

A disabled ``tqdm`` still registers itself under tqdm's class-wide lock when it is made and
when it is closed: a signal arriving inside that lock can leave it held, and every later bar in
the process (another thread's sampling loop) then waits forever. A call with
``show_progress=False`` therefore makes no tqdm object at all.
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

from ._checks import check_bool

__all__ = ["NoProgress", "progress_bar"]


class NoProgress:
    """The progress bar of a call that shows none: every method does nothing."""

    def update(self, n: float = 1) -> None:
        """Nothing to advance."""

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to show."""

    def close(self) -> None:
        """Nothing to close."""

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def progress_bar(show: bool, **kwargs: Any) -> Any:
    """A ``tqdm(**kwargs)`` bar when ``show``, else a :class:`NoProgress`.

    Args:
        show: Whether the caller asked for a progress bar.
        **kwargs: tqdm's arguments (``total``, ``desc``, ``unit``, ...).

    Returns:
        An object with ``update``, ``set_postfix``, ``close`` and the context-manager protocol.

    Raises:
        TypeError: ``show`` is not a bool (``show_progress="no"`` would show a bar).
    """
    return tqdm(**kwargs) if check_bool(show, "show_progress") else NoProgress()
