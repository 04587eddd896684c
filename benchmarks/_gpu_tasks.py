"""The GPU benchmark's measuring parts: sizes, models, synchronised timing, peak memory, tasks.

Used by :mod:`benchmarks.bench_gpu`, which makes the report. On CUDA every timed call ends with
``torch.cuda.synchronize()``, and peak memory is ``torch.cuda.max_memory_allocated`` over what
was allocated before the call; the CPU dry run reads the peak resident set size instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from captum.attr import NoiseTunnel, Saliency
from torch import nn

from benchmarks._harness import _rss_kb, paired_ratio, time_interleaved
from captum_smooth import NoiseGrad, SmoothTunnel

STDEV, WEIGHT_STDEV = 0.1, 0.2
MIB = 1 << 20


@dataclass(frozen=True)
class Sizes:
    """What one run measures: image sides, sample counts, hand-picked chunks, weight draws."""

    label: str
    size: int
    large: int
    n_small: int
    n_mid: int
    n_big: int
    chunks: tuple[int, ...]
    m: int
    repeats: int
    same_chunk: int


FULL = Sizes("CUDA", 224, 512, 10, 50, 200, (8, 16, 32, 64, 128, 200), 10, 5, 10)
DRY = Sizes(
    "CPU dry run (tiny sizes: the layout, not figures)", 32, 48, 4, 8, 16, (2, 4, 8, 16), 3, 1, 4
)


def _resnet() -> nn.Module:
    from captum_smooth.app.models.resnet import resnet18_like

    return resnet18_like(seed=0).eval()


def _efficientnet() -> nn.Module:
    from captum_smooth.app.models.efficientnet_lite import load_efficientnet_lite0

    return load_efficientnet_lite0(pretrained=True).eval()


MODELS: dict[str, Callable[[], nn.Module]] = {
    "ResNet-18-sized CNN": _resnet,
    "EfficientNet-Lite0": _efficientnet,
}


def _is_oom(err: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(err, oom)) or "out of memory" in str(err)


class Bench:
    """Timing and peak memory on one device (synchronised on CUDA)."""

    def __init__(self, device: torch.device, sizes: Sizes) -> None:
        self.device, self.sizes = device, sizes
        self.cuda = device.type == "cuda"

    def image(self, batch: int, size: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(0)
        return torch.rand(batch, 3, size, size, generator=gen).to(self.device)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def timed(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            out = fn()
            self.sync()
            return out

        return call

    def pair(self, a: Callable[[], Any], b: Callable[[], Any], repeats: int | None = None) -> Any:
        reps = self.sizes.repeats if repeats is None else repeats
        return paired_ratio(self.timed(a), self.timed(b), repeats=reps)

    def times(self, candidates: dict[str, Callable[[], Any]]) -> dict[str, float]:
        timed = {k: self.timed(fn) for k, fn in candidates.items()}
        return time_interleaved(timed, repeats=self.sizes.repeats)

    def peak_mib(self, fn: Callable[[], Any]) -> float:
        """Extra peak memory of one call over what was allocated before it (MiB)."""
        if self.cuda:
            self.sync()
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
            fn()
            self.sync()
            return (torch.cuda.max_memory_allocated(self.device) - base) / MIB
        base = _rss_kb("VmRSS")  # the dry run: peak RSS, in this process (layout only)
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        fn()
        return (_rss_kb("VmHWM") - base) / 1024


def guard(fn: Callable[[], Any]) -> Any:
    """``fn()``, or a short text saying why it failed (an out-of-memory error is expected)."""
    try:
        return fn()
    except Exception as err:
        lines = str(err).splitlines() or [""]
        text = (
            "out of memory" if _is_oom(err) else f"failed: {type(err).__name__}: {lines[0][:120]}"
        )
    # Outside the handler: the traceback no longer holds the failed call's tensors.
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return text


class ModelBench:
    """Every comparison on one model at the standard image size."""

    def __init__(self, bench: Bench, model: nn.Module) -> None:
        self.bench, self.s = bench, bench.sizes
        self.model = model.to(bench.device)
        self.x = bench.image(1, self.s.size)
        sal = Saliency(self.model)
        self.captum, self.ours = NoiseTunnel(sal), SmoothTunnel(sal)

    def captum_call(self, n: int, chunk: int | None = None) -> Callable[[], Any]:
        return lambda: self.captum.attribute(
            self.x, nt_samples=n, nt_samples_batch_size=chunk, stdevs=STDEV, target=0
        )

    def ours_call(self, n: int, chunk: int | str | None = "auto") -> Callable[[], Any]:
        return lambda: self.ours.attribute(
            self.x, nt_samples=n, nt_samples_batch_size=chunk, stdevs=STDEV, target=0
        )

    def auto_chunk(self, n: int) -> int:
        self.ours_call(n)()
        return self.ours.last_report.chunk_size

    def chunk_sweep(self) -> tuple[dict[str, float], Any]:
        n = self.s.n_big
        candidates = {f"chunk {c}": self.ours_call(n, c) for c in self.s.chunks if c <= n}
        candidates[f'"auto" (chunk {self.auto_chunk(n)})'] = self.ours_call(n)
        times = self.bench.times(candidates)
        auto = next(k for k in times if k.startswith('"auto"'))
        best = min((k for k in times if k != auto), key=times.__getitem__)
        ratio = times[auto] / times[best]
        return times, _Ratio(times[auto], times[best], ratio, best)

    def noisegrad(self, batch: int) -> Any:
        x, m = self.bench.image(batch, self.s.size), self.s.m
        sal, ng = Saliency(self.model), NoiseGrad(self.model)

        def plain() -> None:
            for _ in range(m):
                sal.attribute(x.clone().requires_grad_(), target=0)

        def noisy() -> None:
            ng.attribute(x, target=0, n_weight_samples=m, weight_stdev=WEIGHT_STDEV, generator=0)

        return self.bench.pair(noisy, plain)

    def vmap_weight_noise(self) -> Callable[[], Any]:
        """M weight draws' Saliency maps at once: vmap over functional_call (the alternative)."""
        from torch.func import functional_call, grad, vmap

        params = {k: p.detach() for k, p in self.model.named_parameters()}
        buffers = dict(self.model.named_buffers())
        gen = torch.Generator(self.bench.device).manual_seed(0)
        m, x = self.s.m, self.x

        def saliency(weights: dict[str, torch.Tensor]) -> torch.Tensor:
            def logit(inp: torch.Tensor) -> torch.Tensor:
                return functional_call(self.model, (weights, buffers), (inp,))[0, 0]

            return grad(logit)(x).abs()

        def run() -> torch.Tensor:
            noisy = {
                k: p * torch.empty((m, *p.shape), device=p.device).normal_(1.0, 0.2, generator=gen)
                for k, p in params.items()
            }
            return vmap(saliency)(noisy).mean(0)

        return run

    def inplace_vs_vmap(self) -> Any:
        ng = NoiseGrad(self.model)
        ours = lambda: ng.attribute(  # noqa: E731
            self.x, target=0, n_weight_samples=self.s.m, weight_stdev=WEIGHT_STDEV, generator=0
        )
        return self.bench.pair(ours, self.vmap_weight_noise())


@dataclass(frozen=True)
class _Ratio:
    """A ratio of two medians, shaped like PairedTiming for the table."""

    a: float
    b: float
    ratio: float
    best: str

    def summary(self) -> str:
        return f"{self.ratio:.3f} (best: {self.best})"
