"""The property suite's tally, per door: each bad value a clear error naming it, or an exact result.

A *door* is a public entry point (a preset, an LLM wrapper, ``explain_dataset``, a metric, a CLI
subcommand). Every property test of a door goes through one of three checks, which count what
they saw before they assert:

* :func:`expect_clear_error`: a Python call with one bad value must raise ``ValueError`` or
  ``TypeError`` (or the door's own error type) from this package, naming the argument;
* :func:`expect_cli_error`: a command line with one bad value must exit with status 2, print one
  line on stderr naming the option as typed, and write nothing;
* :func:`expect_exact`: a valid call must return the exact (or checked) result.

Outcomes: ``clear error``, ``exact result``, and the failures ``deep traceback`` (the innermost
frame is in Captum, torch or elsewhere), ``unclear error`` (wrong type, or the name missing, or
several lines, or the wrong exit status) and ``silent result`` (a bad value ran). The table is
printed at the end of the session (tests/properties/conftest.py) and, when
``$CAPTUM_SMOOTH_PROPERTY_COUNTS`` names a file, written there as JSON.
"""

from __future__ import annotations

import contextlib
import io
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "OUTCOMES",
    "TALLY",
    "expect_clear_error",
    "expect_cli_error",
    "expect_exact",
    "run_cli",
    "table",
]

OUTCOMES = ("clear error", "exact result", "deep traceback", "unclear error", "silent result")
#: door -> outcome -> count (and "tried").
TALLY: defaultdict[str, Counter[str]] = defaultdict(Counter)


def _innermost_file(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    return frames[-1].filename if frames else ""


def _classify(err: BaseException, names: Sequence[str], errors: tuple[type, ...]) -> str:
    if "captum_smooth" not in _innermost_file(err):
        return "deep traceback"
    if not isinstance(err, errors) or not any(name in str(err) for name in names):
        return "unclear error"
    return "clear error"


def expect_clear_error(
    door: str,
    call: Callable[[], Any],
    *names: str,
    errors: tuple[type, ...] = (ValueError, TypeError),
) -> BaseException:
    """Run ``call`` (one bad value); it must raise one of ``errors`` here, naming one of ``names``.

    Returns:
        The exception, for further checks.
    """
    TALLY[door]["tried"] += 1
    try:
        call()
    except Exception as err:
        outcome = _classify(err, names, errors)
        TALLY[door][outcome] += 1
        where = _innermost_file(err)
        assert outcome == "clear error", (
            f"{door}: {outcome} for bad {names}: {type(err).__name__}: {err} (raised in {where})"
        )
        return err
    TALLY[door]["silent result"] += 1
    pytest.fail(f"{door}: bad {names} gave a result, silently")


def expect_exact(door: str, call: Callable[[], Any], check: Callable[[Any], None]) -> Any:
    """Run ``call`` (valid); ``check`` asserts its result is the exact one. Returns the result."""
    TALLY[door]["tried"] += 1
    result = call()
    check(result)
    TALLY[door]["exact result"] += 1
    return result


def run_cli(main: Callable[[list[str]], int], argv: Sequence[str]) -> tuple[int, str, str]:
    """Run a command line's ``main`` in this process: (exit status, stdout, stderr).

    An uncaught exception is returned as status -1 with its traceback as stderr.
    """
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except Exception:
            traceback.print_exc(file=err)
            code = -1
    return code, out.getvalue(), err.getvalue()


def _files(folders: Iterable[Path]) -> set[Path]:
    return {p for folder in folders if folder.exists() for p in folder.rglob("*")}


def expect_cli_error(
    door: str,
    main: Callable[[list[str]], int],
    argv: Sequence[str],
    option: str,
    *,
    watch: Sequence[Path] = (),
) -> str:
    """Run a command line with one bad value: exit 2, one stderr line naming ``option``.

    Args:
        door: The subcommand, as counted.
        main: The command line's ``main(argv) -> int``.
        argv: The arguments.
        option: The option as the user typed it (``--limit``), or the word the message must hold.
        watch: Folders that must hold the same files after the call (nothing written).

    Returns:
        The stderr line.
    """
    TALLY[door]["tried"] += 1
    before = _files(watch)
    code, _, err = run_cli(main, argv)
    lines = [line for line in err.splitlines() if line.strip()]
    if code == -1:
        outcome = "deep traceback"
    elif code == 0:
        outcome = "silent result"
    elif code != 2 or len(lines) != 1 or option not in lines[0] or _files(watch) != before:
        outcome = "unclear error"
    else:
        outcome = "clear error"
    TALLY[door][outcome] += 1
    assert outcome == "clear error", f"{door} {list(argv)}: {outcome} (exit {code}): {err!r}"
    return lines[0]


def table() -> list[str]:
    """The tally as text lines, one per door, then the total."""
    if not TALLY:
        return []
    rows = ["property suite, per door: tried / " + " / ".join(OUTCOMES)]
    total: Counter[str] = Counter()
    for door in sorted(TALLY):
        counts = TALLY[door]
        total.update(counts)
        cells = " / ".join(str(counts[o]) for o in OUTCOMES)
        rows.append(f"  {door}: {counts['tried']} / {cells}")
    rows.append(f"  all doors: {total['tried']} / " + " / ".join(str(total[o]) for o in OUTCOMES))
    return rows
