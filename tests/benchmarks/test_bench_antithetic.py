"""bench_antithetic: registered, measures both samplings at equal gradients by repetitions."""

from __future__ import annotations

import math

import torch

from benchmarks import __main__ as runner
from benchmarks import bench_antithetic as bench
from captum_smooth.app.methods import get_method


def _task() -> bench.Task:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1),
        torch.nn.Tanh(),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 6 * 6, 4),
    ).eval()
    x = torch.rand(2, 1, 6, 6)
    return bench.Task("tiny", model, x, torch.tensor([0, 1]), 4, 4, None)


def test_the_module_is_registered() -> None:
    assert "antithetic" in runner.discover()


def test_every_row_is_a_table_method_with_both_samplings_at_equal_gradients() -> None:
    task = _task()
    for row in bench.ROWS:
        spec = get_method(row.method)
        extra = 1 if row.method == "adaptgrad" else 0  # N - 1 noisy samples rounded up to N
        assert spec.gradients(task.budget) + extra == spec.gradients(task.budget, "antithetic")
    result = bench._measure(task, bench.ROWS[0])
    for sampling in bench.SAMPLINGS:
        figures = result[sampling]
        assert figures["gradients"] == 4
        assert figures["measured_error"] > 0
        # error ~ c / sqrt(N): the gradients to 0.1 are four times those to 0.2.
        to = figures["gradients_to"]
        assert math.isclose(to[0.1], 4 * to[0.2], rel_tol=1e-9)
    low, high = result["ratio_interval"]
    assert low <= high
    assert result["error_ratio"] == (
        result["antithetic"]["measured_error"] / result["iid"]["measured_error"]
    )


def test_verdicts_need_the_whole_interval() -> None:
    assert bench.verdict(0.5, (0.4, 0.6)).startswith("antithetic: 4.0x fewer")
    assert bench.verdict(0.9, (0.7, 1.1)) == "no difference (within noise)"
    assert bench.verdict(1.2, (1.1, 1.3)) == "antithetic worse"
    assert bench.verdict(math.nan) == "no signal"
