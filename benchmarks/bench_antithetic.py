"""Antithetic against i.i.d. sampling: gradients to reach a relative error, measured by repetitions.

Run: ``python -m benchmarks.bench_antithetic`` (``--quick`` for a smaller check); also part of
``python -m benchmarks``. Raw figures: ``benchmarks/results/antithetic.json``.

For each method of the app's method table (:mod:`captum_smooth.app.methods`, at a budget of
``N`` gradients per example, :meth:`MethodSpec.budget_kwargs` with ``sampling="iid"`` and
``"antithetic"``: equal gradient counts, ``N`` even) the map is estimated ``R`` times with
different seeds, on the digits CNN (sklearn digits, trained in seconds) and on EfficientNet-Lite0
(3 bundled photos, small). Per example:

* the **measured error** of one estimate: ``sqrt(sum_j var_r(A[r, j])) / ||mu||``, the spread
  of the ``R`` repetitions (unbiased variance over ``r``, summed over the map's elements)
  against the pooled reference ``mu`` = the mean of all ``2 R`` estimates of both samplings
  (both unbiased), whose norm is corrected for its own noise
  (``||mu||^2 - ||SE(mu)||^2``, as the library's error is; inf when not positive);
* the **reported error**: the library's ``relative_error`` of the same calls, the median over
  the repetitions (one noise-dominated call reports inf), against the measured one (a ratio
  per example, then the mean: 1 is honest);
* **gradients to reach** 0.2 and 0.1: extrapolated from the measured error ``e`` at ``G``
  gradients by ``e ~ c / sqrt(G)``, i.e. ``G (e / target)^2`` (per example, then the mean);
* the ratio's **5-95 % interval** over bootstrap resamples of the repetitions: a verdict says
  better or worse only where the whole interval is;
* a **bias check**: ``||mean_iid - mean_anti||^2`` over its expectation under no bias
  (``sum_j (var_iid + var_anti) / R``): about 1 when both are unbiased.

The ratio ``antithetic / iid`` of the measured errors at equal gradients is the verdict; its
square is the share of gradients antithetic sampling needs for the same error. Every row runs
``N`` gradients both ways but AdaptGrad, whose ``N - 1`` noisy samples (plus the clean
gradient) antithetic pairs round up to ``N`` (``N + 1`` gradients): its ratio compares
``e sqrt(G)``.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from benchmarks._harness import environment, markdown_table, run_standalone
from captum_smooth.app.methods import get_method

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
TARGETS = (0.2, 0.1)
SAMPLINGS = ("iid", "antithetic")


@dataclass(frozen=True)
class Row:
    """One benchmarked configuration: a table method, its map convention, overrides."""

    label: str
    method: str
    magnitude: bool = False


ROWS = (
    Row("SmoothGrad, signed", "smoothgrad"),
    Row("SmoothGrad, magnitude", "smoothgrad", magnitude=True),
    Row("AdaptGrad, magnitude", "adaptgrad", magnitude=True),
    Row("SmoothTaylor", "smoothtaylor"),
    Row("NoiseGrad, signed", "noisegrad"),
    Row("NoiseGrad, magnitude", "noisegrad", magnitude=True),
    Row("FusionGrad, signed", "fusiongrad"),
    Row("FusionGrad, magnitude", "fusiongrad", magnitude=True),
)


@dataclass(frozen=True)
class Task:
    """A model, its inputs and targets, and the sizes it is measured at."""

    name: str
    model: nn.Module
    inputs: Tensor
    target: Tensor
    budget: int
    repetitions: int
    weight_noise: float | None  # None: the table's 0.2


def _digits(quick: bool) -> Task:
    from captum_smooth.app.models.digits import load_digits_data, trained_digits_cnn

    model = trained_digits_cnn(seed=0).eval()
    data = load_digits_data(seed=0)
    x = data.x_test[: 4 if quick else 16]
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    return Task("digits CNN", model, x, target, 16, 8 if quick else 32, None)


def _efficientnet(quick: bool) -> Task:
    from captum_smooth.app.data.images import load_sample_images
    from captum_smooth.app.models.efficientnet_lite import load_efficientnet_lite0

    model = load_efficientnet_lite0().eval()
    names = ("chelsea",) if quick else ("chelsea", "coffee", "rocket")
    images, _ = load_sample_images(names, 64 if quick else 96)
    with torch.no_grad():
        target = model(images).argmax(dim=1)
    # s = 0.0056: the weight noise `captum-smooth demo` calibrates for this model.
    return Task("EfficientNet-Lite0", model, images, target, 16, 3 if quick else 16, 0.0056)


#: The first seed of each sampling's repetitions (disjoint ranges).
SEED_BASE = {"iid": 1000, "antithetic": 2000}


def _estimate(task: Task, row: Row, sampling: str, seed: int) -> tuple[Tensor, Tensor, int]:
    """One estimate: ``(maps (B, D), reported relative error (B,), gradients per example)``."""
    spec = get_method(row.method)
    kwargs = spec.budget_kwargs(task.budget, None, sampling)
    if "abs" in kwargs:
        kwargs["abs"] = row.magnitude
    if "weight_stdev" in kwargs and task.weight_noise is not None:
        kwargs["weight_stdev"] = task.weight_noise
    if "nt_samples_batch_size" in kwargs:
        kwargs["nt_samples_batch_size"] = 16
    method = spec.cls(task.model)
    with torch.enable_grad():
        attr, error = method.attribute(
            task.inputs, target=task.target, generator=seed, return_error=True, **kwargs
        )
    gradients = int(kwargs.get("n_weight_samples", 1)) * int(kwargs.get("nt_samples", 1))
    gradients += 1 if kwargs.get("include_clean") else 0
    flat = attr.detach().reshape(attr.shape[0], -1).double()
    return flat, error.relative_error.detach().double(), gradients


def _measure(task: Task, row: Row) -> dict[str, Any]:
    """Both samplings of one row: measured and reported errors, gradients to the targets."""
    maps: dict[str, Tensor] = {}
    reported: dict[str, Tensor] = {}
    gradients: dict[str, int] = {}
    for sampling in SAMPLINGS:
        # Other seeds per sampling: with counter-based noise the same seed gives both samplings
        # the same first draws, and the bias check (and the pooled map) assume them independent
        # (shared seeds read the bias ratio 0.46-0.84 instead of about 1).
        first = SEED_BASE[sampling]
        runs = [_estimate(task, row, sampling, first + r) for r in range(task.repetitions)]
        maps[sampling] = torch.stack([m for m, _, _ in runs])  # (R, B, D)
        reported[sampling] = torch.stack([e for _, e, _ in runs])  # (R, B)
        gradients[sampling] = runs[0][2]
    reps = task.repetitions
    var = {s: maps[s].var(dim=0, unbiased=True).sum(-1) for s in SAMPLINGS}  # (B,)
    means = {s: maps[s].mean(dim=0) for s in SAMPLINGS}  # (B, D)
    pooled = (means["iid"] + means["antithetic"]) / 2
    signal2 = pooled.pow(2).sum(-1) - (var["iid"] + var["antithetic"]) / (4 * reps)
    bias = (means["iid"] - means["antithetic"]).pow(2).sum(-1) / (
        (var["iid"] + var["antithetic"]) / reps
    )
    out: dict[str, Any] = {"bias_ratio": float(bias.mean())}
    for s in SAMPLINGS:
        measured = torch.where(
            signal2 > 0, var[s].sqrt() / signal2.clamp_min(1e-300).sqrt(), math.inf
        )
        shown = reported[s].median(dim=0).values  # robust to one repetition's inf
        needed = {t: float((gradients[s] * (measured / t) ** 2).mean()) for t in TARGETS}
        out[s] = {
            "gradients": gradients[s],
            "measured_error": float(measured.mean()),
            "reported_error": float(shown.mean()),
            "reported_over_measured": float((shown / measured).mean()),
            "gradients_to": needed,
        }
    out["error_ratio"] = error_ratio(out)
    out["ratio_interval"] = _bootstrap(maps, signal2, gradients)
    return out


def _bootstrap(
    maps: dict[str, Tensor], signal2: Tensor, gradients: dict[str, int], draws: int = 400
) -> list[float]:
    """The 5-95 % interval of the error ratio over bootstrap resamples of the repetitions
    (each sampling's ``R`` estimates resampled with replacement; the reference kept)."""
    generator = torch.Generator().manual_seed(0)
    scale = {s: math.sqrt(gradients[s]) for s in SAMPLINGS}
    signal = signal2.clamp_min(1e-300).sqrt()
    ratios = []
    for _ in range(draws):
        errors = {}
        for s in SAMPLINGS:
            reps = maps[s].shape[0]
            pick = torch.randint(reps, (reps,), generator=generator)
            spread = maps[s][pick].var(dim=0, unbiased=True).sum(-1).sqrt()
            errors[s] = float((spread / signal).mean()) * scale[s]
        if errors["iid"] > 0:  # a resample of one repeated estimate has no spread
            ratios.append(errors["antithetic"] / errors["iid"])
    ordered = torch.tensor(ratios, dtype=torch.float64).quantile(
        torch.tensor([0.05, 0.95], dtype=torch.float64)
    )
    return [float(v) for v in ordered]


def error_ratio(out: dict[str, Any]) -> float:
    """Measured error antithetic / i.i.d. at equal gradients: each error scaled to one gradient
    by ``e sqrt(G)`` (error ~ c / sqrt(G)), for AdaptGrad, whose antithetic pairs round its
    N - 1 noisy samples up to N (N + 1 gradients); the others run equal counts."""
    iid, anti = (out[s]["measured_error"] * math.sqrt(out[s]["gradients"]) for s in SAMPLINGS)
    return anti / iid if math.isfinite(iid) and iid > 0 else math.nan


def verdict(ratio: float, interval: tuple[float, float] | list[float] = (0.0, 0.0)) -> str:
    """The reading of an error ratio antithetic / i.i.d. at equal gradients and its 5-95 %
    bootstrap interval: better or worse only where the whole interval is."""
    if not math.isfinite(ratio):
        return "no signal"
    low, high = interval
    if high < 1.0:
        return f"antithetic: {1 / ratio**2:.1f}x fewer gradients"
    return "antithetic worse" if low > 1.0 else "no difference (within noise)"


def _grads(value: float) -> str:
    return "inf" if not math.isfinite(value) else f"{value:,.0f}"


def _table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    header = ["model", "method", "error at N (iid / anti)", "ratio anti/iid (5-95 %)"]
    header += [f"grads to {t} (iid / anti)" for t in TARGETS]
    header += ["reported/measured (iid / anti)", "bias ||d||^2 / E", "verdict"]
    rows = []
    for model, per_row in results.items():
        for label, r in per_row.items():
            i, a = r["iid"], r["antithetic"]
            rows.append(
                [model, label, f"{i['measured_error']:.3f} / {a['measured_error']:.3f}",
                 f"{r['error_ratio']:.2f} ({r['ratio_interval'][0]:.2f}-"
                 f"{r['ratio_interval'][1]:.2f})"]
                + [f"{_grads(i['gradients_to'][t])} / {_grads(a['gradients_to'][t])}"
                   for t in TARGETS]
                + [f"{i['reported_over_measured']:.2f} / {a['reported_over_measured']:.2f}",
                   f"{r['bias_ratio']:.2f}", verdict(r["error_ratio"], r["ratio_interval"])]
            )  # fmt: skip
    return markdown_table(header, rows)


def run(quick: bool = False) -> dict[str, Any]:
    """Measure every row on each model; return the figures and a markdown report."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    tasks = [_digits(quick), _efficientnet(quick)]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    settings: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    for task in tasks:
        start = time.perf_counter()
        results[task.name] = {row.label: _measure(task, row) for row in ROWS}
        seconds[task.name] = round(time.perf_counter() - start, 1)
        settings[task.name] = {
            "examples": task.inputs.shape[0],
            "input_shape": list(task.inputs.shape[1:]),
            "gradients_N": task.budget,
            "repetitions_R": task.repetitions,
            "weight_noise": task.weight_noise or 0.2,
            "seconds": seconds[task.name],
        }
    described = "; ".join(
        f"{name}: {s['examples']} examples of {'x'.join(map(str, s['input_shape']))}, "
        f"N = {s['gradients_N']} gradients, R = {s['repetitions_R']} repetitions per sampling, "
        f"weight noise s = {s['weight_noise']}, {s['seconds']} s"
        for name, s in settings.items()
    )
    markdown = (
        f"Antithetic against i.i.d. sampling at equal gradients ({described}). Errors measured "
        "by the spread of the repetitions against the pooled map of both samplings; gradients "
        "to a target extrapolated by error ~ c / sqrt(N).\n\n" + _table(results) + "\n"
    )
    figures = {"settings": settings, "results": results}
    os.makedirs(RESULTS_DIR, exist_ok=True)
    name = "antithetic-quick.json" if quick else "antithetic.json"
    with open(os.path.join(RESULTS_DIR, name), "w") as handle:
        json.dump({"figures": figures, "environment": environment()}, handle, indent=1)
    return {"figures": figures, "environment": environment(), "markdown": markdown}


def main() -> None:
    run_standalone(run, __doc__)


if __name__ == "__main__":
    main()
