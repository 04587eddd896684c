"""The tally's own checks: each outcome is recognised (so a door's counts can be trusted)."""

from __future__ import annotations

from collections import Counter, defaultdict

import doors
import pytest
import torch

from captum_smooth import SmoothGrad
from captum_smooth.app.cli import main


@pytest.fixture(autouse=True)
def _own_tally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doors, "TALLY", defaultdict(Counter))


def _model() -> torch.nn.Module:
    return torch.nn.Linear(3, 2)


def test_a_clear_error_naming_the_argument_is_counted_clear() -> None:
    sg = SmoothGrad(_model())
    doors.expect_clear_error(
        "sg", lambda: sg.attribute(torch.ones(1, 3), nt_samples=0), "nt_samples"
    )
    assert doors.TALLY["sg"] == Counter({"tried": 1, "clear error": 1})


def test_a_deep_traceback_a_silent_result_and_an_unnamed_argument_fail() -> None:
    with pytest.raises(AssertionError, match="deep traceback"):
        doors.expect_clear_error("x", lambda: torch.ones(2) @ torch.ones(3), "anything")
    with pytest.raises(pytest.fail.Exception, match="silently"):
        doors.expect_clear_error("x", lambda: 1, "anything")
    sg = SmoothGrad(_model())
    with pytest.raises(AssertionError, match="unclear error"):
        doors.expect_clear_error("x", lambda: sg.attribute(torch.ones(1, 3), nt_samples=0), "zzz")
    assert doors.TALLY["x"] == Counter(
        {"tried": 3, "deep traceback": 1, "silent result": 1, "unclear error": 1}
    )


def test_a_command_line_error_is_one_line_exit_two_naming_the_option(tmp_path) -> None:
    line = doors.expect_cli_error(
        "explain", main, ["explain", "a.png", "--nope"], "--nope", watch=[tmp_path]
    )
    assert line.startswith("captum-smooth")
    with pytest.raises(AssertionError, match="silent result"):
        doors.expect_cli_error("methods", main, ["methods"], "--x")
    assert doors.table()[-1].startswith("  all doors: 2 / 1 / 0 / 0 / 0 / 1")
