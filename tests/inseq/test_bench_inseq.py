"""benchmarks/bench_inseq at the smallest sizes: it runs, and its report has every row."""

from __future__ import annotations

import inseq_models  # noqa: F401  -- the torchvision shim before transformers; skips without it
import pytest

pytest.importorskip("inseq")

from benchmarks import bench_inseq


def test_measure_and_report() -> None:
    timings = {"t5": bench_inseq.measure("t5", n_samples=2, n_weight=1, repeats=1)}
    assert all(t.ratio > 0 for t in timings["t5"].values())
    report = bench_inseq._report(timings, {"n_samples": 2, "n_weight": 1, "repeats": 1})
    assert report.count("| T5") == 3 and "<= 1.1" in report
