"""How time and peak memory grow with the number of samples and with the batch size.

Run: ``python -m benchmarks.bench_scaling`` (``--quick`` for a smaller check).

SmoothTunnel with ``nt_samples_batch_size="auto"`` against Captum's NoiseTunnel at its default
(every noisy copy in one batch), both around ``Saliency`` on the ResNet-18-sized CNN
(:func:`captum_smooth.app.models.resnet.resnet18_like`, random weights, seed 0) at 224 x 224
(112 x 112 with ``--quick``), Gaussian noise ``stdevs=0.1``, target 0:

* vs ``nt_samples`` (10, 25, 50, 100) for one image;
* vs batch size (1, 2, 4, 8) at 5 samples per image;
* the floor: the time of one plain gradient of the same batch times the number of samples (what
  a perfect implementation would cost), and its peak memory.

Times are measured in this process (default allocator), interleaved per point (Captum, ours,
gradient), after one warm-up of each, median over the repeats. Peak memory is measured in one
child process started for this purpose, with glibc's mmap threshold fixed at 64 KiB
(``MALLOC_MMAP_THRESHOLD_=65536``): freed tensors then go back to the operating system at once,
so the peak resident memory a call adds (``VmHWM`` after resetting it, minus ``VmRSS`` before)
does not depend on what ran before it in the process (checked: the same values as in a fresh
process under the same setting). That setting slows the allocation-heavy calls down (measured:
SmoothTunnel at 50 samples 2.8 s -> 4.6 s), so it is never used for timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import torch

from benchmarks._harness import environment, markdown_table, time_interleaved

__all__ = ["run"]

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
STDEVS = 0.1
BATCH_SWEEP_SAMPLES = 5


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _peak_mb(fn: Callable[[], Any]) -> float:
    """Extra peak resident memory (MiB) of one call: ``VmHWM`` after resetting it, minus
    ``VmRSS`` before."""
    base = _rss_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset VmHWM to the current RSS
    fn()
    return max(0.0, _rss_mb("VmHWM") - base)


def _setup(size: int, max_batch: int) -> Callable[[int, int], dict[str, Callable[[], Any]]]:
    """The model and images; returns ``(batch, n) -> {name: call}`` for the three calls."""
    from captum.attr import NoiseTunnel, Saliency

    from captum_smooth import SmoothTunnel
    from captum_smooth.app.models.resnet import resnet18_like

    model = resnet18_like(seed=0)
    saliency = Saliency(model)
    captum_nt, ours = NoiseTunnel(saliency), SmoothTunnel(saliency)
    images = torch.rand(max_batch, 3, size, size, generator=torch.Generator().manual_seed(0))

    def calls(batch: int, n: int) -> dict[str, Callable[[], Any]]:
        x = images[:batch]
        return {
            "captum": lambda: captum_nt.attribute(x, nt_samples=n, stdevs=STDEVS, target=0),
            "ours": lambda: ours.attribute(
                x,
                nt_samples=n,
                nt_samples_batch_size="auto",
                stdevs=STDEVS,
                target=0,
                generator=0,
            ),
            "gradient": lambda: saliency.attribute(x, target=0),
        }

    return calls


def _configs(samples: list[int], batches: list[int]) -> list[tuple[str, int, int]]:
    """``(sweep, batch, nt_samples)`` of every point."""
    return [("samples", 1, n) for n in samples] + [
        ("batch", b, BATCH_SWEEP_SAMPLES) for b in batches
    ]


def _child(spec: dict[str, Any]) -> dict[str, float]:
    """Runs in the memory-measuring process: the extra peak of every call, once each."""
    torch.manual_seed(0)
    calls = _setup(spec["size"], max(spec["batches"]))
    for fn in calls(1, min(spec["samples"])).values():  # warm-up
        fn()
    out = {}
    for sweep, batch, n in _configs(spec["samples"], spec["batches"]):
        for name, fn in calls(batch, n).items():
            out[f"{sweep}|{batch}|{n}|{name}"] = _peak_mb(fn)
    return out


def _memory(size: int, samples: list[int], batches: list[int]) -> dict[str, float]:
    """Peak memory of every call, measured in a child process with a fixed mmap threshold."""
    spec = {"size": size, "samples": samples, "batches": batches}
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scaling", "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=root,
        env=env,
    )
    if out.returncode != 0:
        raise RuntimeError(f"memory-measuring process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _times(size: int, samples: list[int], batches: list[int], repeats: int) -> dict[str, float]:
    """Wall time of every call, in this process (default allocator), interleaved."""
    torch.manual_seed(0)
    calls = _setup(size, max(batches))
    for fn in calls(1, min(samples)).values():  # warm-up
        fn()
    out = {}
    for sweep, batch, n in _configs(samples, batches):
        measured = time_interleaved(calls(batch, n), repeats=repeats, warmup=0)
        for name, seconds in measured.items():
            out[f"{sweep}|{batch}|{n}|{name}"] = seconds
    return out


def _measure_all(size: int, samples: list[int], batches: list[int], repeats: int) -> dict:
    times = _times(size, samples, batches, repeats)
    memory = _memory(size, samples, batches)
    return {k: {"seconds": times[k], "peak_mb": memory[k]} for k in times}


def _plot(series: dict[str, dict[str, list[float]]], samples: list[int], batches: list[int]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(RESULTS_DIR, exist_ok=True)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    styles = {
        "captum": ("Captum NoiseTunnel (default)", "o-"),
        "ours": ('SmoothTunnel "auto"', "s-"),
        "floor": ("floor: gradient x samples / one gradient", "k--"),
    }
    panels = [
        (axes[0, 0], "samples", "seconds", samples, "nt_samples (1 image)", "time (s)"),
        (
            axes[0, 1],
            "batch",
            "seconds",
            batches,
            f"batch size ({BATCH_SWEEP_SAMPLES} samples)",
            "time (s)",
        ),
        (axes[1, 0], "samples", "peak_mb", samples, "nt_samples (1 image)", "extra peak RSS (MiB)"),
        (
            axes[1, 1],
            "batch",
            "peak_mb",
            batches,
            f"batch size ({BATCH_SWEEP_SAMPLES} samples)",
            "extra peak RSS (MiB)",
        ),
    ]
    for ax, sweep, quantity, xs, xlabel, ylabel in panels:
        for name, (label, style) in styles.items():
            ax.plot(xs, series[f"{sweep}|{quantity}"][name], style, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(RESULTS_DIR, "scaling.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def run(quick: bool = False) -> dict[str, Any]:
    """Measure both sweeps; return the numbers, a markdown report and the plot."""
    size = 112 if quick else 224
    samples = [10, 25, 50] if quick else [10, 25, 50, 100]
    batches = [1, 2, 4] if quick else [1, 2, 4, 8]
    repeats = 1
    raw = _measure_all(size, samples, batches, repeats)
    grad_1 = raw[f"samples|1|{samples[0]}|gradient"]

    def get(sweep: str, batch: int, n: int, name: str) -> dict[str, float]:
        if name == "gradient" and sweep == "samples":
            return grad_1  # the same one-image gradient for every sample count
        return raw[f"{sweep}|{batch}|{n}|{name}"]

    series: dict[str, dict[str, list[float]]] = {}
    rows_samples, rows_batch = [], []
    for sweep, points in (("samples", samples), ("batch", batches)):
        for quantity in ("seconds", "peak_mb"):
            series[f"{sweep}|{quantity}"] = {"captum": [], "ours": [], "floor": []}
        for p in points:
            batch, n = (1, p) if sweep == "samples" else (p, BATCH_SWEEP_SAMPLES)
            c, o, g = (get(sweep, batch, n, k) for k in ("captum", "ours", "gradient"))
            floor_s = g["seconds"] * n
            for quantity, floor in (("seconds", floor_s), ("peak_mb", g["peak_mb"])):
                s = series[f"{sweep}|{quantity}"]
                s["captum"].append(c[quantity])
                s["ours"].append(o[quantity])
                s["floor"].append(floor)
            row = [
                p,
                c["seconds"],
                o["seconds"],
                floor_s,
                c["seconds"] / o["seconds"],
                o["seconds"] / floor_s,
                c["peak_mb"],
                o["peak_mb"],
                g["peak_mb"],
            ]
            (rows_samples if sweep == "samples" else rows_batch).append(row)
    header = [
        "Captum s",
        "ours s",
        "floor s",
        "Captum / ours",
        "ours / floor",
        "Captum MiB",
        "ours MiB",
        "1 gradient MiB",
    ]
    plot = _plot(series, samples, batches)
    report = (
        f"ResNet-18-sized CNN (random weights, seed 0), {size}x{size}, Saliency inside, "
        f"stdevs {STDEVS}; Captum's NoiseTunnel at its default (all copies in one batch) vs "
        'SmoothTunnel `nt_samples_batch_size="auto"`. Floor: one plain gradient of the same '
        "batch times the samples (a loop of single gradients; batching copies can beat it). "
        f"Times: {repeats} timed call per point after a warm-up, interleaved, default "
        "allocator. Memory: extra peak RSS of the call (MiB), measured in a separate process "
        "with glibc's mmap threshold fixed at 64 KiB (order-independent peaks).\n\n"
        f"vs nt_samples (one image):\n\n"
        + markdown_table(["nt_samples", *header], rows_samples)
        + f"\n\nvs batch size ({BATCH_SWEEP_SAMPLES} samples per image):\n\n"
        + markdown_table(["batch", *header], rows_batch)
        + "\n\n![scaling](results/scaling.png)"
    )
    figures = {
        "captum_over_ours_by_samples": dict(
            zip(samples, (r[4] for r in rows_samples), strict=True)
        ),
        "captum_over_ours_by_batch": dict(zip(batches, (r[4] for r in rows_batch), strict=True)),
        "ours_over_floor_by_samples": dict(zip(samples, (r[5] for r in rows_samples), strict=True)),
        "memory_ours_mb_by_samples": dict(zip(samples, (r[7] for r in rows_samples), strict=True)),
        "memory_captum_mb_by_samples": dict(
            zip(samples, (r[6] for r in rows_samples), strict=True)
        ),
    }
    return {
        "figures": figures,
        "raw": raw,
        "environment": environment(),
        "markdown": report,
        "plots": [plot],
        "seeds": [0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    result = run(quick=args.quick)
    print(result["markdown"])
    print(result["environment"])


if __name__ == "__main__":
    main()
