"""bench_text: its pieces that decide the figures (the rank correlation, the skip rule)."""

from __future__ import annotations

import pytest

from benchmarks import __main__ as runner
from benchmarks import bench_text


def test_discovered_by_the_runner() -> None:
    assert "text" in runner.discover()


def test_spearman_is_the_rank_correlation() -> None:
    assert bench_text._spearman([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]) == pytest.approx(1.0)
    assert bench_text._spearman([1.0, 2.0, 3.0], [3.0, 2.0, 1.0]) == pytest.approx(-1.0)
    # Ranks (1, 2, 3, 4) against (2, 1, 4, 3): 1 - 6 * 4 / (4 * 15) = 0.6.
    assert bench_text._spearman([1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 9.0, 5.0]) == pytest.approx(0.6)


def test_skipped_without_the_text_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_text, "_available", lambda: False)
    result = bench_text.run(quick=True)
    assert result["skipped"] and "text" in result["markdown"]
