"""explain_dataset at scale: throughput of 1 vs 2 processes, and memory vs data-set size.

Run: ``python -m benchmarks.bench_dataset`` (``--quick`` for a smaller check).

Throughput: the same SmoothGrad job (a small CNN on 3 x 32 x 32 images generated on the fly)
in one process with 1 and 2 threads and in two gloo ranks with 1 thread each (the same cores),
timed inside the processes from a barrier before ``explain_dataset`` to its return (index
written), interleaved, median of the repeats. Memory: the peak RSS that one
``explain_dataset`` call adds (fresh process, see ``_harness``) for 200 and 2000 examples of
3 x 64 x 64 (Saliency of a linear model): bounded by one shard, not by the data set.

Targets (issue "Dataset-scale attribution"): 2 ranks of 1 thread >= 1.6x the examples/s of 1
process of 1 thread on two idle cores, at the same CPU time per example (splitting costs
nothing); the peak memory grows by less than 10 MiB from 200 to 2000 examples (keeping the
attributions in RAM would add 85 MiB). Against one process with 2 intra-op threads the gain
depends on how well the model parallelises inside an operator (little for this small CNN on
an idle machine; a lot on a busy one, where 2-thread operators stall).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from captum.attr import Saliency
from torch import nn
from torch.utils.data import Dataset

from benchmarks._harness import environment, markdown_table, peak_memory_mb
from captum_smooth import SmoothGrad, explain_dataset

_SHARD = 64
_BATCH = 16


class _SyntheticImages(Dataset):
    """``n`` random images in [0, 1], each generated from its index (nothing kept in memory)."""

    def __init__(self, n: int, size: int) -> None:
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        gen = torch.Generator().manual_seed(i)
        return torch.rand(3, self.size, self.size, generator=gen), i % 10


def _model() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, 10),
        )
    return model.eval()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, threads: int, port: int, out: str, n: int, result: str) -> None:
    torch.set_num_threads(threads)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        method, data = SmoothGrad(_model()), _SyntheticImages(n, 32)
        kwargs = {"nt_samples": 8, "bounds": (0.0, 1.0), "show_progress": False}
        if world > 1:
            dist.barrier()
        t0, cpu0 = time.perf_counter(), time.process_time()
        explain_dataset(method, data, out, batch_size=_BATCH, shard_size=_SHARD, **kwargs)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        Path(f"{result}.{rank}").write_text(json.dumps({"seconds": elapsed, "cpu": cpu}))
    finally:
        if world > 1:
            dist.destroy_process_group()


def _throughput(world: int, threads: int, n: int) -> tuple[float, float]:
    """Wall seconds (rank 0) and CPU seconds (all ranks) of one run of ``world`` processes."""
    work = tempfile.mkdtemp(prefix="bench_dataset_")
    try:
        result = os.path.join(work, "result.json")
        out = os.path.join(work, "store")
        args = (world, threads, _free_port(), out, n, result)
        mp.spawn(_worker, args=args, nprocs=world, join=True)
        reports = [json.loads(Path(f"{result}.{r}").read_text()) for r in range(world)]
        return float(reports[0]["seconds"]), float(sum(r["cpu"] for r in reports))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def memory_setup(n: int, size: int = 64) -> Any:
    """For the peak-memory subprocess: the explain_dataset call over ``n`` examples.

    The model is a cheap linear one: what is measured is the store's memory, not the model's.
    """
    torch.manual_seed(0)
    linear = nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(3 * (size // 4) ** 2, 10))
    method, data = Saliency(linear.eval()), _SyntheticImages(n, size)

    def call() -> None:
        work = tempfile.mkdtemp(prefix="bench_dataset_mem_")
        try:
            explain_dataset(
                method, data, work, batch_size=_BATCH, shard_size=_SHARD, show_progress=False
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)

    return call


def run(quick: bool = False) -> dict[str, Any]:
    """Measure everything; return the figures and a markdown report."""
    n = 128 if quick else 512
    repeats = 1 if quick else 2
    configs = {"1x1": (1, 1), "1x2": (1, 2), "2x1": (2, 1)}  # processes x threads
    times: dict[str, list[float]] = {name: [] for name in configs}
    cpus: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(repeats):  # interleaved
        for name, (world, threads) in configs.items():
            wall, cpu = _throughput(world, threads, n)
            times[name].append(wall)
            cpus[name].append(cpu)
    seconds = {name: statistics.median(t) for name, t in times.items()}
    cpu_ms = {name: 1000 * statistics.median(t) / n for name, t in cpus.items()}
    rate = {name: n / s for name, s in seconds.items()}
    speedup = rate["2x1"] / rate["1x1"]
    vs_threads = rate["2x1"] / rate["1x2"]

    sizes = (200, 2000)
    peaks = {
        m: statistics.median(
            peak_memory_mb("benchmarks.bench_dataset:memory_setup", n=m) for _ in range(repeats)
        )
        for m in sizes
    }
    in_ram = {m: m * 3 * 64 * 64 * 4 / 2**20 for m in sizes}
    memory_ratio = peaks[sizes[1]] / max(peaks[sizes[0]], 1e-9)
    growth = peaks[sizes[1]] - peaks[sizes[0]]

    rows = [
        ["examples/s, 1 process x 1 thread", rate["1x1"], f"{n} examples, SmoothGrad 8 samples"],
        ["examples/s, 1 process x 2 threads", rate["1x2"], "same job"],
        ["examples/s, 2 gloo ranks x 1 thread", rate["2x1"], "same job, same 2 cores"],
        ["speed-up 2 ranks vs 1 process x 1 thread", speedup, "target >= 1.6 (idle cores)"],
        ["speed-up 2 ranks vs 1 process x 2 threads", vs_threads, "vs intra-op threads"],
        ["CPU ms per example, 1 process x 1 thread", cpu_ms["1x1"], "all ranks' CPU time / n"],
        ["CPU ms per example, 2 gloo ranks x 1 thread", cpu_ms["2x1"], "the cost of splitting"],
        [f"peak RSS added, {sizes[0]} examples (MiB)", peaks[sizes[0]], "3x64x64, linear model"],
        [f"peak RSS added, {sizes[1]} examples (MiB)", peaks[sizes[1]], "shards of 64"],
        ["peak RSS ratio 2000 / 200", memory_ratio, "allocator noise: a few MiB"],
        ["peak RSS growth 200 -> 2000 (MiB)", growth, "target < 10 (attributions: +85)"],
        [
            "all attributions in RAM would take (MiB)",
            f"{in_ram[sizes[0]]:.0f} / {in_ram[sizes[1]]:.0f}",
            "for comparison",
        ],
    ]
    report = markdown_table(["measure", "value", "note"], rows)
    env = environment()
    env["load_average"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return {
        "examples": n,
        "seconds": seconds,
        "examples_per_s": rate,
        "speedup_2_vs_1": speedup,
        "speedup_2_ranks_vs_2_threads": vs_threads,
        "cpu_ms_per_example": cpu_ms,
        "peak_rss_mb": peaks,
        "peak_rss_ratio": memory_ratio,
        "peak_rss_growth_mb": growth,
        "environment": env,
        "report": report,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster check")
    figures = run(quick=parser.parse_args().quick)
    print(figures["report"])
    print()
    print(json.dumps(figures["environment"]))
