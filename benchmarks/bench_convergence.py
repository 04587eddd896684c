"""Know when to stop: the cost of error tracking, and samples needed to reach an error.

Run: ``python -m benchmarks.bench_convergence`` (``--quick`` for a smaller check).

* Cost of Monte-Carlo error tracking vs plain smoothing at equal samples (target <= 1.05x),
  measured side by side, interleaved, for ``smoothgrad`` (error from M2, always on) and
  ``smoothgrad_sq`` (third and fourth moments tracked on request).
* Samples each method needs to reach a relative error
  (``||SE|| / sqrt(||map||^2 - ||SE||^2)``) on the embedded EfficientNet-Lite0 and the
  bundled photos, per method and per AdaptGrad confidence level.
* Relative error vs samples, as a plot (``benchmarks/results/convergence.png``).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from captum.attr import Saliency

from benchmarks._harness import (
    PAIRED_RATIO_NOTE,
    environment,
    markdown_table,
    paired_ratio,
    run_standalone,
)
from captum_smooth import AdaptiveSigma, RangeShareSigma, SmoothTunnel

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _embedded(quick: bool) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    from captum_smooth.app.data.images import load_sample_images
    from captum_smooth.app.models.efficientnet_lite import load_efficientnet_lite0

    model = load_efficientnet_lite0()
    size = 112 if quick else 224
    images, _ = load_sample_images(("chelsea",) if quick else ("chelsea", "coffee", "rocket"), size)
    with torch.no_grad():
        target = model(images).argmax(dim=1)
    return model, images, target


def _methods(quick: bool) -> dict[str, dict[str, Any]]:
    """Name -> SmoothTunnel arguments (bounds [0, 1])."""
    methods: dict[str, dict[str, Any]] = {
        "SmoothGrad (15 % range)": {"stdevs": RangeShareSigma(0.15, (0.0, 1.0))},
    }
    for c in (0.9, 0.95, 0.99) if not quick else (0.95,):
        methods[f"AdaptGrad c={c}"] = {"stdevs": AdaptiveSigma(c, (0.0, 1.0))}
    return methods


def run(quick: bool = False) -> dict[str, Any]:
    """Measure everything; return the figures and a markdown report."""
    model, images, target = _embedded(quick)
    tunnel = SmoothTunnel(Saliency(model))
    n = 16
    # The cost of tracking is per element and per sample: one photo measures it as well as
    # three, and leaves time for more pairs (of ~1 s calls: 2 chunks of 8 samples).
    one, one_target = images[:1], target[:1]
    base = dict(nt_samples=n, nt_samples_batch_size="auto", target=one_target, generator=0)
    repeats = 2 if quick else 6
    cost: dict[str, float] = {}
    cells: dict[str, str] = {}
    for nt_type in ("smoothgrad", "smoothgrad_sq"):
        timing = paired_ratio(
            lambda t=nt_type: tunnel.attribute(
                one, nt_type=t, stdevs=0.1, return_error=True, **base
            ),
            lambda t=nt_type: tunnel.attribute(one, nt_type=t, stdevs=0.1, **base),
            repeats=repeats,
        )
        cost[nt_type] = timing.ratio
        cells[nt_type] = timing.summary()

    tolerance = 0.2 if quick else 0.1
    max_samples = 64 if quick else 256
    needed_rows = []
    needed: dict[str, list[int]] = {}
    for name, kwargs in _methods(quick).items():
        tunnel.attribute(
            images,
            tolerance=tolerance,
            max_samples=max_samples,
            min_samples=8,
            nt_samples_batch_size=8,
            target=target,
            generator=0,
            **kwargs,
        )
        report = tunnel.last_report
        assert report is not None and report.error is not None
        needed[name] = report.n_samples.tolist()
        needed_rows.append(
            [
                name,
                ", ".join(str(v) for v in needed[name]),
                ", ".join(f"{v:.3f}" for v in report.error.relative_error.tolist()),
            ]
        )

    counts = [4, 8, 16] if quick else [4, 8, 16, 32, 64]
    curve: dict[str, list[float]] = {}
    for name, kwargs in list(_methods(quick).items())[:3]:
        curve[name] = []
        for c in counts:
            _, err = tunnel.attribute(
                images[:1],
                nt_samples=c,
                nt_samples_batch_size=8,
                target=target[:1],
                generator=1,
                return_error=True,
                **kwargs,
            )
            curve[name].append(float(err.relative_error[0]))
    plot_path = _plot(counts, curve)

    rows = [
        [
            f"error tracking / plain, {t}, {n} samples, 1 photo, {repeats} pairs",
            cells[t],
            "<= 1.05",
        ]
        for t in cost
    ]
    report_md = (
        f"EfficientNet-Lite0 (embedded), {images.shape[0]} photo(s) at {images.shape[-1]} px, "
        "Saliency with Captum's default abs=True (magnitude maps: signed SmoothGrad maps "
        "mostly cancel, and their relative error stays near 1 for hundreds of samples), "
        f"generator seed 0. {PAIRED_RATIO_NOTE}\n\n"
        + markdown_table(["comparison", "ratio", "target"], rows)
        + f"\n\nSamples needed for a relative error <= {tolerance} (max {max_samples}), "
        "per photo:\n\n"
        + markdown_table(["method", "samples per photo", "relative error reached"], needed_rows)
        + f"\n\nRelative error vs samples: `{os.path.relpath(plot_path, os.getcwd())}`"
        " (the dashed line is 1/sqrt(n)).\n"
    )
    return {
        "figures": {"cost_tracking": cost, "samples_needed": needed, "curve": curve},
        "environment": environment(),
        "markdown": report_md,
        "plots": [plot_path],
    }


def _plot(counts: list[int], curve: dict[str, list[float]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(RESULTS_DIR, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=120)
    for name, values in curve.items():
        ax.loglog(counts, values, marker="o", label=name)
    first = next(iter(curve.values()))[0]
    ax.loglog(
        counts, [first * (counts[0] / c) ** 0.5 for c in counts], "k--", lw=1, label="1/sqrt(n)"
    )
    ax.set_xlabel("noisy samples")
    ax.set_ylabel("relative Monte-Carlo error")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(RESULTS_DIR, "convergence.png")
    fig.savefig(path)
    plt.close(fig)
    return path


def main() -> None:
    run_standalone(run, __doc__)


if __name__ == "__main__":
    main()
