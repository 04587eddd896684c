"""Shared measuring tools: interleaved timing, peak memory in a fresh process, tables.

Absolute times drift between machines and runs, so every claim is a ratio of two things
measured side by side, in the same process, interleaved with the order alternating (A B, B A,
...): :func:`time_interleaved` gives the median of each; :func:`paired_ratio`, for tight
targets, the ratio from back-to-back pairs (see :data:`PAIRED_RATIO_NOTE`).
Peak memory is measured in a fresh subprocess per configuration: the peak resident set size
(VmHWM) after resetting it once the model is built, so it counts what the call itself adds.
The child runs with glibc's mmap threshold fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_=65536``):
freed tensors go back to the operating system at once, so the peak does not depend on what the
warm-up call left in glibc's free lists (without it a call that reuses the warm-up's freed
blocks looks several times smaller than one that does not).
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "BENCH_DEVICES",
    "DEVICE_ENV",
    "PAIRED_RATIO_NOTE",
    "PairedTiming",
    "bench_device",
    "environment",
    "markdown_table",
    "paired_ratio",
    "peak_memory_mb",
    "run_standalone",
    "time_interleaved",
]

#: How :func:`paired_ratio` reads, for the reports that print its figures.
PAIRED_RATIO_NOTE = (
    "Times are medians; each pair runs back to back, the order alternating, and a ratio is the "
    "median over the run of the geometric means of two consecutive pairs (drift cancels), with "
    "the smallest and largest single pair in brackets."
)


#: How ``python -m benchmarks --device`` tells the modules (run in child processes) the device.
DEVICE_ENV = "CAPTUM_SMOOTH_BENCH_DEVICE"
#: ``cpu`` (the default: every module as it always ran), ``cuda``, ``cpu-dry-run`` (the GPU
#: module's comparisons on the CPU at tiny sizes, to check its report without a GPU).
BENCH_DEVICES = ("cpu", "cuda", "cpu-dry-run")


def bench_device() -> str:
    """The device asked of the benchmarks (:data:`DEVICE_ENV`, default ``cpu``)."""
    value = os.environ.get(DEVICE_ENV, "cpu")
    if value not in BENCH_DEVICES:
        raise ValueError(f"{DEVICE_ENV}={value!r}: expected one of {BENCH_DEVICES}")
    return value


def time_interleaved(
    candidates: dict[str, Callable[[], Any]], repeats: int = 3, warmup: int = 1
) -> dict[str, float]:
    """Median wall time (s) of each candidate, run interleaved ``repeats`` times (A B, B A, ...)."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for r in range(repeats):
        # Alternate the order (A B, B A, ...) so neither candidate always runs second.
        for name in names if r % 2 == 0 else names[::-1]:
            fn = candidates[name]
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


@dataclass(frozen=True)
class PairedTiming:
    """Two calls timed in back-to-back pairs: the median time of each and their ratio a/b.

    ``ratio`` is the median of the geometric means of consecutive pairs (see
    :func:`paired_ratio`); ``ratio_low``/``ratio_high`` the smallest and largest single pair.
    """

    a: float
    b: float
    ratio: float
    ratio_low: float
    ratio_high: float

    def summary(self) -> str:
        """The ratio with the smallest and largest single pair, for a table cell."""
        return f"{self.ratio:.3f} ({self.ratio_low:.2f}-{self.ratio_high:.2f})"


def paired_ratio(
    a: Callable[[], Any], b: Callable[[], Any], repeats: int = 5, warmup: int = 1
) -> PairedTiming:
    """Ratio a/b from pairs timed back to back, the order alternating (A B, then B A, ...).

    The machine's speed drifts by several % over a minute on a shared 2-core box. Both halves
    of one pair see nearly the same speed, and what drift is left within a pair favours the
    first call in one pair and the second in the next: the geometric mean of two consecutive
    pairs cancels it. ``ratio`` is the median of those means over the run (robust to a pair
    hit by a hiccup); ``ratio_low``/``ratio_high`` are the smallest and largest single pair.
    """
    for _ in range(warmup):
        a()
        b()
    times_a: list[float] = []
    times_b: list[float] = []
    for r in range(repeats):
        order = ((a, times_a), (b, times_b))
        for fn, into in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn()
            into.append(time.perf_counter() - start)
    ratios = [ta / tb for ta, tb in zip(times_a, times_b, strict=True)]
    balanced = [(q * q_next) ** 0.5 for q, q_next in itertools.pairwise(ratios)] or ratios
    return PairedTiming(
        a=statistics.median(times_a),
        b=statistics.median(times_b),
        ratio=statistics.median(balanced),
        ratio_low=min(ratios),
        ratio_high=max(ratios),
    )


def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _child(spec: str, kwargs_json: str) -> None:
    module_name, func_name = spec.split(":")
    setup = getattr(importlib.import_module(module_name), func_name)
    # Builds the model, returns the call to measure, or (a cheaper warm-up call, the call).
    made = setup(**json.loads(kwargs_json))
    warmup, run = made if isinstance(made, tuple) else (made, made)
    warmup()  # lazily allocated pools, thread teams
    base = _rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak RSS to the current RSS
    run()
    peak = _rss_kb("VmHWM")
    print(json.dumps({"base_mb": base / 1024, "peak_mb": peak / 1024}))


def peak_memory_mb(spec: str, **kwargs: Any) -> float:
    """Extra peak RSS (MiB) of one call, measured in a fresh process.

    Args:
        spec: ``"module:function"``; the function takes ``kwargs`` and returns a no-argument
            callable (the call to measure), or a pair ``(warm_up, call)`` when a cheaper call
            warms up as well.
        **kwargs: JSON-serialisable arguments for the function.

    Returns:
        Peak RSS during the call minus RSS before it, in MiB.
    """
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks._harness", spec, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["peak_mb"] - result["base_mb"])


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def environment() -> dict[str, str]:
    """Versions and thread counts, recorded beside every result."""
    import captum

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "captum": captum.__version__,
        "threads": str(torch.get_num_threads()),
        "cpu": platform.processor() or platform.machine(),
        "cores": str(os.cpu_count()),
    }


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])


def run_standalone(run: Callable[..., dict[str, Any]], description: str | None) -> None:
    """``python -m benchmarks.bench_x [--quick]``: run one module and print its report."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    result = run(quick=parser.parse_args().quick)
    print(result["markdown"])
    print(result["environment"])
