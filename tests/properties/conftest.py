"""The property suite's tally (tests/properties/doors.py), printed and saved at the end."""

from __future__ import annotations

import json
import os
from typing import Any

from doors import TALLY, table


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in table():
        terminalreporter.write_line(line)
    path = os.environ.get("CAPTUM_SMOOTH_PROPERTY_COUNTS")
    if path and TALLY:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({door: dict(c) for door, c in sorted(TALLY.items())}, f, indent=1)
