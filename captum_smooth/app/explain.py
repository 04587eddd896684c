"""Running ``explain`` and ``demo``: every method on every image, scored, reported, written.

Bad input (an unreadable image, an unknown method, a target outside the model's classes, a
model that does not load) raises :class:`~captum_smooth.app.errors.CLIError` before anything is
written; the outputs are written by :func:`~captum_smooth.app.report.write_outputs`.
"""

from __future__ import annotations

import math
import re
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .controls import control_maps
from .errors import CLIError, check_seed, check_text, image_seed, short, warn
from .loading import LoadedModel, load_images, load_model, output_classes, resolve_target
from .methods import (
    DEFAULT_METHODS,
    RENAMED,
    MethodSpec,
    cli_method,
    get_method,
    resolve_kernel,
    resolve_methods,
)
from .report import (
    Row,
    check_out,
    format_report,
    legend,
    summarise,
    versions,
    write_outputs,
)
from .settings import (
    DEFAULT_MAX_SAMPLES,
    DEFAULT_TOLERANCE,
    Budget,
    Settings,
    budget,
    check_size,
    is_smoothing,
    sampling_of,
)

__all__ = ["DEFAULT_MAX_SAMPLES", "DEFAULT_TOLERANCE", "Budget", "Settings", "run"]


@dataclass
class _Inputs:
    """The loaded model and images, with the explained targets."""

    loaded: LoadedModel
    images: Tensor
    names: list[str]
    classes: list[str]
    probs: Tensor
    predicted: Tensor
    targets: list[int]
    budget: Budget
    #: The weight-noise scale s of NoiseGrad and FusionGrad (None: the table's) and how it was
    #: chosen (for the report).
    weight_noise: float | None = None
    weight_noise_choice: dict[str, Any] | None = None


def _check_numbers(settings: Settings) -> None:
    for option, value in (("--samples", settings.samples), ("--max-samples", settings.max_samples)):
        if value is not None and value < 1:
            raise CLIError(f"{option} must be >= 1, got {value}")
    check_seed(settings.seed)
    if settings.weight_noise is not None and not (
        math.isfinite(settings.weight_noise) and settings.weight_noise >= 0
    ):
        raise CLIError(f"--weight-noise must be a number >= 0, got {settings.weight_noise}")
    check_size(settings.size)
    if settings.tolerance is not None and not (
        math.isfinite(settings.tolerance) and settings.tolerance > 0
    ):
        raise CLIError(f"--tolerance must be a positive number, got {settings.tolerance}")
    if settings.auc_steps < 0:
        raise CLIError(f"--auc-steps must be >= 0, got {settings.auc_steps}")


#: ``--target`` spelled as a number (a class index must be a whole number >= 0).
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def check_target(target: str | None) -> None:
    """Refuse an empty ``--target`` and a number that is not a class index (before any work).

    Raises:
        CLIError: ``--target ""`` (or spaces), or a negative or fractional number.
    """
    check_text(target, "--target", _TARGET_HELP)
    text = "" if target is None else target.strip()
    if _NUMBER.fullmatch(text) and not re.fullmatch(r"\+?\d+", text):
        raise CLIError(f"--target {target!r} is not a class index (a whole number >= 0)")


_TARGET_HELP = (
    "give a class index (0, 1, ...) or a class name, or leave --target out to explain each "
    "image's predicted class"
)


def _check_effect(settings: Settings, specs: list[MethodSpec]) -> None:
    """Options that would change none of the methods run are errors, not silently ignored."""
    names = ", ".join(s.name for s in specs)
    if settings.kernel is not None and not any(s.uses_kernel for s in specs):
        raise CLIError(
            f"--kernel {settings.kernel} changes none of the methods run ({names}); it is for "
            "smoothgrad, adaptgrad, fusiongrad and smoothtaylor (smoothgrad-<kernel> fixes its own)"
        )
    if settings.weight_noise is not None and not any(_has_weight_noise(s) for s in specs):
        raise CLIError(
            f"--weight-noise changes none of the methods run ({names}); it is for "
            "noisegrad and fusiongrad"
        )
    if settings.tolerance is not None and not any(is_smoothing(s) for s in specs):
        raise CLIError(f"--tolerance changes none of the methods run ({names}): none samples")
    if settings.sampling == "antithetic" and not any(is_smoothing(s) for s in specs):
        raise CLIError(f"--sampling antithetic changes none of the methods run ({names})")


def _two_draws(spec: MethodSpec, cap: int, sampling: str) -> bool:
    """Whether ``spec`` draws at least two samples under the cap ``cap`` (a Monte-Carlo error
    needs two; AdaptGrad's clean gradient is one of its ``cap``)."""
    kwargs = spec.budget_kwargs(cap, DEFAULT_TOLERANCE, sampling)
    return max(kwargs.get("nt_samples", 1), kwargs.get("n_weight_samples", 1)) >= 2


def _check_cap(settings: Settings, specs: list[MethodSpec], plan: Budget) -> None:
    """Under a tolerance, ``--max-samples`` must let every smoothing method draw two samples."""
    if plan.tolerance is None:
        return
    for spec in filter(is_smoothing, specs):
        sampling = sampling_of(settings, spec)
        if not _two_draws(spec, plan.samples, sampling):
            need = next(n for n in range(plan.samples + 1, 1024) if _two_draws(spec, n, sampling))
            raise CLIError(
                f"--max-samples {plan.samples} is too small for {spec.name} sampling to a "
                f"tolerance (a Monte-Carlo error needs two samples): it needs --max-samples "
                f">= {need}, or give --samples N for a fixed count"
            )


def _has_weight_noise(spec: MethodSpec) -> bool:
    return "weight_stdev" in spec.kwargs(2)


def validate(settings: Settings) -> tuple[list[MethodSpec], Budget]:
    """Check the options (before anything is loaded or written); return the methods to run.

    Returns:
        The methods and the budget.

    Raises:
        CLIError: The first bad option.
    """
    _check_numbers(settings)
    check_target(settings.target)
    plan = budget(settings)
    if settings.kernel is not None:
        try:
            resolve_kernel(settings.kernel)
        except ValueError as exc:
            raise CLIError(f"--kernel: {exc}") from exc
    check_out(settings.out)
    names = list(DEFAULT_METHODS) if settings.methods is None else settings.methods
    try:
        for name in names:  # one naming scheme with explain-dataset: old names are refused
            if name.strip().lower() in RENAMED:
                cli_method(name)
        specs = resolve_methods(names)
    except ValueError as exc:
        raise CLIError(f"--methods: {exc}") from exc
    _check_effect(settings, specs)
    _check_cap(settings, specs, plan)
    return specs, plan


def _predict(model: nn.Module, images: Tensor) -> Tensor:
    with torch.no_grad():
        try:
            logits = model(images)
        except Exception as exc:
            raise CLIError(f"the model fails on the images: {short(exc)}") from exc
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != len(images):
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise CLIError(f"the model must return (N, classes) scores, got {shape}")
    return logits.float()


def _load_inputs(settings: Settings, plan: Budget) -> _Inputs:
    images, names = load_images(settings.images, settings.size)
    loaded = load_model(settings.model)
    for note in loaded.warnings:
        warn(note)
    logits = _predict(loaded.module, images)
    n_outputs = logits.shape[1]
    classes = output_classes(loaded.classes, n_outputs)
    fixed_target = resolve_target(settings.target, n_outputs, classes)
    probs = logits.softmax(dim=1)
    predicted = probs.argmax(dim=1)
    targets = [int(p) if fixed_target is None else fixed_target for p in predicted]
    return _Inputs(loaded, images, names, classes, probs, predicted, targets, plan)


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, disable=not enabled, unit="map", leave=False, file=sys.stderr
    )


def _call(
    spec: MethodSpec, settings: Settings, inputs: _Inputs, i: int, samples: int, **extra: Any
) -> Tensor:
    return spec.attribute(
        inputs.loaded.module,
        inputs.images[i : i + 1],
        inputs.targets[i],
        samples,
        seed=image_seed(settings.seed, i),
        kernel=settings.kernel,
        magnitude=not settings.sign,
        weight_noise=inputs.weight_noise,
        sampling=sampling_of(settings, spec),
        **extra,
    )


def _warm_up(spec: MethodSpec, settings: Settings, inputs: _Inputs) -> None:
    """One untimed small call, so that the timed ones do not pay for first-call set-up."""
    _call(spec, settings, inputs, 0, min(2, inputs.budget.of(spec)))


def _explain_one(
    spec: MethodSpec, settings: Settings, inputs: _Inputs, i: int
) -> tuple[Tensor, Row]:
    plan = inputs.budget
    sampling: dict[str, float] = {}
    start = time.perf_counter()
    try:
        maps = _call(
            spec,
            settings,
            inputs,
            i,
            plan.of(spec),
            tolerance=plan.tolerance_of(spec),
            report=sampling,
        )
    except Exception as exc:
        raise RuntimeError(f"{spec.label} failed on {inputs.names[i]}: {short(exc)}") from exc
    seconds = time.perf_counter() - start
    used = sampling.get("gradients_used")
    fixed = spec.gradients(plan.of(spec), sampling_of(settings, spec))
    evaluations = fixed if used is None else round(used)
    target = inputs.targets[i]
    row = Row(
        inputs.names[i],
        spec.name,
        spec.label,
        "method",
        target,
        inputs.classes[target],
        evaluations,
        seconds,
        dict(sampling),
    )
    return maps, row


def _run_methods(
    specs: list[MethodSpec], settings: Settings, inputs: _Inputs
) -> tuple[dict[str, list[Tensor]], list[Row]]:
    attributions: dict[str, list[Tensor]] = {spec.name: [] for spec in specs}
    rows: list[Row] = []
    with _progress(len(specs) * len(inputs.images), settings.progress, "explaining") as bar:
        for spec in specs:
            bar.set_postfix_str(f"{spec.label}: warm-up")
            _warm_up(spec, settings, inputs)
            for i in range(len(inputs.images)):
                bar.set_postfix_str(f"{spec.label} on {inputs.names[i]}")
                maps, row = _explain_one(spec, settings, inputs, i)
                attributions[spec.name].append(maps)
                rows.append(row)
                bar.update(1)
    return attributions, rows


def _tolerance_warnings(rows: list[Row], plan: Budget) -> list[str]:
    """One warning per method whose maps did not reach the tolerance under the cap."""
    messages = []
    for method in dict.fromkeys(r.method for r in rows):
        missed = [
            r for r in rows if r.method == method and r.metrics.get("tolerance_reached") == 0.0
        ]
        if not missed:
            continue
        where = ", ".join(f"{r.image} ({r.metrics['mc_error']:.2f})" for r in missed)
        messages.append(
            warn(
                f"{missed[0].label}: the relative Monte-Carlo error did not reach the tolerance "
                f"{plan.tolerance:g} within the cap of {plan.samples} gradients on {where}; those "
                "maps are marked * in the table (raise --max-samples, or read them as noisy)"
            )
        )
    return messages


def _add_controls(
    settings: Settings, inputs: _Inputs, attributions: dict[str, list[Tensor]], rows: list[Row]
) -> None:
    """The controls of evaluation.md (:mod:`captum_smooth.app.controls`), one gradient each."""
    n_images = len(inputs.images)
    if "gradient" in attributions:
        gradients = attributions["gradient"]
    else:
        grad = get_method("gradient")
        model = inputs.loaded.module
        gradients = [
            grad.attribute(
                model, inputs.images[i : i + 1], inputs.targets[i], 1, magnitude=not settings.sign
            )
            for i in range(n_images)
        ]
    for i in range(n_images):
        maps = control_maps(inputs.images[i : i + 1], gradients[i], image_seed(settings.seed, i))
        for name, control in maps.items():
            attributions.setdefault(name, []).append(control)
            target = inputs.targets[i]
            label = name.replace("-", " ")
            rows.append(
                Row(inputs.names[i], name, label, "control", target, inputs.classes[target], 0, 0.0)
            )


def _score(
    model: nn.Module, image: Tensor, maps: Tensor, target: int, auc_steps: int
) -> dict[str, float]:
    from ..metrics import complexity, deletion_auc, insertion_auc, sparseness, total_variation

    spatial = maps.abs().sum(dim=1)  # (1, H, W): what the heat map shows
    scores = {
        "total_variation": float(total_variation(spatial)[0]),
        "sparseness": float(sparseness(spatial)[0]),
        "complexity": float(complexity(spatial)[0]),
    }
    if auc_steps > 0:
        ranking = maps.abs()
        for name, curve in (("deletion_auc", deletion_auc), ("insertion_auc", insertion_auc)):
            auc = curve(model, image, ranking, target, n_steps=auc_steps, batch_size=16)
            scores[name] = float(auc[0])
    return scores


def _score_rows(
    settings: Settings, inputs: _Inputs, attributions: dict[str, list[Tensor]], rows: list[Row]
) -> None:
    with _progress(len(rows), settings.progress, "scoring") as bar:
        for row in rows:
            i = inputs.names.index(row.image)
            maps = attributions[row.method][i]
            image = inputs.images[i : i + 1]
            # Scores join the Monte-Carlo error and sample count the method reported.
            scores = _score(inputs.loaded.module, image, maps, row.target, settings.auc_steps)
            row.metrics = {**row.metrics, **scores}
            bar.update(1)


def _image_info(settings: Settings, inputs: _Inputs) -> list[dict[str, Any]]:
    info = []
    for i, name in enumerate(inputs.names):
        predicted, target = int(inputs.predicted[i]), inputs.targets[i]
        info.append(
            {
                "name": name,
                "source": settings.images[i],
                "predicted_index": predicted,
                "predicted_class": inputs.classes[predicted],
                "probability": round(float(inputs.probs[i, predicted]), 6),
                "target": target,
                "target_class": inputs.classes[target],
                "target_probability": round(float(inputs.probs[i, target]), 6),
            }
        )
    return info


def _report(
    settings: Settings,
    inputs: _Inputs,
    specs: list[MethodSpec],
    rows: list[Row],
    notes: list[str],
) -> dict[str, Any]:
    plan = inputs.budget
    return {
        "command": settings.command,
        "model": inputs.loaded.description,
        "samples": plan.samples,
        "sampling": "fixed" if plan.tolerance is None else "to tolerance",
        "tolerance": plan.tolerance,
        "seed": settings.seed,
        "kernel": settings.kernel,
        "convention": "signed" if settings.sign else "magnitude",
        "weight_noise": inputs.weight_noise_choice,
        "noise_sampling": {s.name: sampling_of(settings, s) for s in specs if is_smoothing(s)},
        "image_size": settings.size,
        "auc_steps": settings.auc_steps,
        "versions": versions(),
        "images": _image_info(settings, inputs),
        "methods": [_method_info(s, inputs, sampling_of(settings, s)) for s in specs],
        "results": [r.as_dict() for r in rows],
        "summary": summarise(rows),
        "warnings": notes,
        "legend": legend(plan.tolerance),
        "files": {"grid": "comparison.png", "json": "metrics.json", "csv": "metrics.csv"},
    }


def _method_info(spec: MethodSpec, inputs: _Inputs, sampling: str) -> dict[str, Any]:
    plan = inputs.budget
    settings = spec.settings(plan.of(spec), sampling)
    if "weight_stdev" in settings and inputs.weight_noise is not None:
        settings["weight_stdev"] = inputs.weight_noise
    return {
        "name": spec.name,
        "label": spec.label,
        "summary": spec.summary,
        "gradient_evaluations": spec.gradients(plan.of(spec), sampling),
        "tolerance": plan.tolerance_of(spec),
        "convention": "signed" if spec.signed_only else "magnitude or signed (--sign)",
        "settings": settings,
    }


def _row_label(info: dict[str, Any]) -> str:
    """The first column's title: the class explained, and the prediction when it differs."""
    label = f"{info['name']}: {info['target_class']} {info['target_probability']:.2f}"
    if info["target"] != info["predicted_index"]:
        label += f"\n(predicted {info['predicted_class']} {info['probability']:.2f})"
    return label


def _caption(row: Row) -> str:
    """What is printed under a map: gradients used and the Monte-Carlo error reached."""
    if row.kind == "control":
        return ""
    error = row.metrics.get("mc_error")
    n = row.gradient_evaluations
    text = f"{n} grad{'' if n == 1 else 's'}"
    if error is not None:
        mark = "*" if row.metrics.get("tolerance_reached") == 0.0 else ""
        text += f", MC err {error:.2f}{mark}"
    return text


def _write(
    settings: Settings,
    inputs: _Inputs,
    specs: list[MethodSpec],
    attributions: dict[str, list[Tensor]],
    rows: list[Row],
    notes: list[str],
) -> None:
    report = _report(settings, inputs, specs, rows, notes)
    image_info = report["images"]
    n_images = len(inputs.images)
    titles, captions = {}, {}
    for name in attributions:
        own = [r for r in rows if r.method == name]
        seconds = sum(r.time_s for r in own) / n_images
        timing = f"\n{seconds:.2f} s/image" if own[0].kind == "method" else "\n(control)"
        titles[name] = own[0].label + timing
        captions[name] = [_caption(r) for r in own]
    # Magnitude view: sum_c |a_c| (the quantity scored); signed view: sum_c a_c.
    grid_maps = {
        name: torch.cat(maps) if settings.sign else torch.cat(maps).abs()
        for name, maps in attributions.items()
    }
    write_outputs(
        settings.out,
        settings.style,
        inputs.images,
        grid_maps,
        titles,
        [_row_label(info) for info in image_info],
        report,
        rows,
        captions=captions,
        sign="all" if settings.sign else "absolute_value",
    )
    print(format_report(report, image_info))
    print(f"wrote {settings.out / 'comparison.png'}, metrics.json and metrics.csv")


def run(settings: Settings) -> int:
    """Run ``explain`` or ``demo``: compute everything, then write it all at once.

    Returns:
        0.

    Raises:
        CLIError: Bad input (nothing written).
    """
    warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require")
    specs, plan = validate(settings)
    if settings.intro:
        print(settings.intro, file=sys.stderr)
    inputs = _load_inputs(settings, plan)
    notes = list(inputs.loaded.warnings)
    notes += _choose_weight_noise(settings, specs, inputs)
    _say_sampling(settings, specs, plan)
    # ---- compute (nothing written yet)
    torch.manual_seed(settings.seed)
    attributions, rows = _run_methods(specs, settings, inputs)
    notes += _tolerance_warnings(rows, plan)
    if settings.controls:
        _add_controls(settings, inputs, attributions, rows)
    _score_rows(settings, inputs, attributions, rows)
    # ---- report
    _write(settings, inputs, specs, attributions, rows, notes)
    return 0


def _say_sampling(settings: Settings, specs: list[MethodSpec], plan: Budget) -> None:
    """Print which methods draw antithetic pairs, and the counts that rounded up to even."""
    paired = [s for s in specs if is_smoothing(s) and sampling_of(settings, s) == "antithetic"]
    if not paired:
        return
    chosen = (
        "--sampling antithetic"
        if settings.sampling
        else "the demo's choice where benchmarks/bench_antithetic.py measured it not worse "
        "than i.i.d.; --sampling iid turns it off"
    )
    line = f"note: antithetic sampling ({chosen}) for {', '.join(s.name for s in paired)}"
    rounded = [
        f"{s.name} {s.gradients(plan.samples)} -> {s.gradients(plan.samples, 'antithetic')}"
        for s in paired
        if s.gradients(plan.samples, "antithetic") != s.gradients(plan.samples)
    ]
    if rounded and plan.tolerance is None:
        line += "; pairs need even counts, gradients per image rounded up: " + ", ".join(rounded)
    print(line, file=sys.stderr)


def _choose_weight_noise(settings: Settings, specs: list[MethodSpec], inputs: _Inputs) -> list[str]:
    """Set the weight-noise scale: ``--weight-noise``, else calibrated (and cached)."""
    if not any(_has_weight_noise(s) for s in specs):
        return []
    if settings.weight_noise is not None:
        inputs.weight_noise = settings.weight_noise
        chosen = {"stdev": settings.weight_noise, "chosen_by": "--weight-noise"}
        inputs.weight_noise_choice = chosen
        return []
    from .calibrate import calibrated_weight_noise

    found = calibrated_weight_noise(
        inputs.loaded.module, settings.size, settings.seed, progress=settings.progress
    )
    inputs.weight_noise = found.stdev
    inputs.weight_noise_choice = found.as_dict()
    print(found.describe(), file=sys.stderr)
    return [warn(note) for note in found.warnings]
