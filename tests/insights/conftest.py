"""Captum Insights tests: they run in the captum 0.8 environment (make test-insights).

With captum 0.9 (the main environment) ``captum.insights`` does not exist and every test here
is skipped with that reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS_APP = Path(__file__).resolve().parents[1] / "app"
if str(TESTS_APP) not in sys.path:
    sys.path.insert(0, str(TESTS_APP))  # cli_models, the tiny test model


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from captum_smooth.app.insights import insights_available

    if insights_available():
        return
    import captum

    skip = pytest.mark.skip(
        reason=f"captum {captum.__version__} has no captum.insights (or flask is missing): "
        "run `make test-insights`"
    )
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(skip)
