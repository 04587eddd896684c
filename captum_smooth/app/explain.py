"""Running ``explain`` and ``demo``: every method on every image, scored, reported, written.

Bad input (an unreadable image, an unknown method, a target outside the model's classes, a
model that does not load) raises :class:`~captum_smooth.app.errors.CLIError` before anything is
written; the outputs are written by :func:`~captum_smooth.app.report.write_outputs`.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .controls import control_maps
from .errors import CLIError, short
from .loading import LoadedModel, load_images, load_model, output_classes, resolve_target
from .methods import DEFAULT_METHODS, MethodSpec, get_method, resolve_methods
from .report import Row, format_report, summarise, versions, write_outputs

__all__ = ["Settings", "run"]


@dataclass
class Settings:
    """The options of one ``explain`` or ``demo`` run."""

    command: str
    images: list[str]
    model: str | None
    methods: list[str] | None
    target: str | None
    samples: int
    seed: int
    kernel: str | None
    out: Path
    size: int
    auc_steps: int
    controls: bool
    progress: bool
    style: str
    tolerance: float | None = None


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


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {str(out)!r} exists and is not a directory")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise CLIError(f"--out {str(out)!r}: cannot write in {str(parent)!r}")


def _check_numbers(settings: Settings) -> None:
    if settings.samples < 1:
        raise CLIError(f"--samples must be >= 1, got {settings.samples}")
    if settings.size < 8:
        raise CLIError(f"--size must be >= 8, got {settings.size}")
    if settings.tolerance is not None and not (
        math.isfinite(settings.tolerance) and settings.tolerance > 0
    ):
        raise CLIError(f"--tolerance must be a positive number, got {settings.tolerance}")
    if settings.auc_steps < 0:
        raise CLIError(f"--auc-steps must be >= 0, got {settings.auc_steps}")


def validate(settings: Settings) -> list[MethodSpec]:
    """Check the options (before anything is loaded or written); return the methods to run.

    Raises:
        CLIError: The first bad option.
    """
    from ..noise import kernel_names

    _check_numbers(settings)
    if settings.kernel is not None and settings.kernel not in kernel_names():
        raise CLIError(
            f"unknown kernel {settings.kernel!r}; known kernels: {', '.join(kernel_names())}"
        )
    _check_out(settings.out)
    names = list(DEFAULT_METHODS) if settings.methods is None else settings.methods
    try:
        return resolve_methods(names)
    except ValueError as exc:
        raise CLIError(str(exc)) from exc


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


def _load_inputs(settings: Settings) -> _Inputs:
    images, names = load_images(settings.images, settings.size)
    loaded = load_model(settings.model)
    logits = _predict(loaded.module, images)
    n_outputs = logits.shape[1]
    classes = output_classes(loaded.classes, n_outputs)
    fixed_target = resolve_target(settings.target, n_outputs, classes)
    probs = logits.softmax(dim=1)
    predicted = probs.argmax(dim=1)
    targets = [int(p) if fixed_target is None else fixed_target for p in predicted]
    return _Inputs(loaded, images, names, classes, probs, predicted, targets)


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, disable=not enabled, unit="map", leave=False, file=sys.stderr
    )


def _explain_one(
    spec: MethodSpec, settings: Settings, inputs: _Inputs, i: int
) -> tuple[Tensor, Row]:
    x = inputs.images[i : i + 1]
    start = time.perf_counter()
    sampling: dict[str, float] = {}
    try:
        maps = spec.attribute(
            inputs.loaded.module,
            x,
            inputs.targets[i],
            settings.samples,
            seed=settings.seed + i,
            kernel=settings.kernel,
            tolerance=settings.tolerance,
            report=sampling,
        )
    except Exception as exc:
        raise RuntimeError(f"{spec.label} failed on {inputs.names[i]}: {short(exc)}") from exc
    return maps, Row(
        inputs.names[i],
        spec.name,
        spec.label,
        "method",
        inputs.targets[i],
        inputs.classes[inputs.targets[i]],
        spec.evaluations(settings.samples),
        time.perf_counter() - start,
        dict(sampling),
    )


def _run_methods(
    specs: list[MethodSpec], settings: Settings, inputs: _Inputs
) -> tuple[dict[str, list[Tensor]], list[Row]]:
    attributions: dict[str, list[Tensor]] = {spec.name: [] for spec in specs}
    rows: list[Row] = []
    with _progress(len(specs) * len(inputs.images), settings.progress, "explaining") as bar:
        for spec in specs:
            for i in range(len(inputs.images)):
                bar.set_postfix_str(f"{spec.label} on {inputs.names[i]}")
                maps, row = _explain_one(spec, settings, inputs, i)
                attributions[spec.name].append(maps)
                rows.append(row)
                bar.update(1)
    return attributions, rows


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
            grad.attribute(model, inputs.images[i : i + 1], inputs.targets[i], 1)
            for i in range(n_images)
        ]
    for i in range(n_images):
        maps = control_maps(inputs.images[i : i + 1], gradients[i], settings.seed + i)
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
        kwargs = {"n_steps": auc_steps, "batch_size": 16}
        scores["deletion_auc"] = float(deletion_auc(model, image, ranking, target, **kwargs)[0])
        scores["insertion_auc"] = float(insertion_auc(model, image, ranking, target, **kwargs)[0])
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
    settings: Settings, inputs: _Inputs, specs: list[MethodSpec], rows: list[Row]
) -> dict[str, Any]:
    return {
        "command": settings.command,
        "model": inputs.loaded.description,
        "samples": settings.samples,
        "seed": settings.seed,
        "kernel": settings.kernel,
        "tolerance": settings.tolerance,
        "image_size": settings.size,
        "auc_steps": settings.auc_steps,
        "versions": versions(),
        "images": _image_info(settings, inputs),
        "methods": [
            {
                "name": s.name,
                "label": s.label,
                "summary": s.summary,
                "gradient_evaluations": s.evaluations(settings.samples),
                "settings": s.settings(settings.samples),
            }
            for s in specs
        ],
        "results": [r.as_dict() for r in rows],
        "summary": summarise(rows),
        "files": {"grid": "comparison.png", "json": "metrics.json", "csv": "metrics.csv"},
    }


def _write(
    settings: Settings,
    inputs: _Inputs,
    specs: list[MethodSpec],
    attributions: dict[str, list[Tensor]],
    rows: list[Row],
) -> None:
    report = _report(settings, inputs, specs, rows)
    image_info = report["images"]
    row_labels = [
        f"{info['name']}: {info['predicted_class']} {info['probability']:.2f}"
        for info in image_info
    ]
    n_images = len(inputs.images)
    titles = {}
    for spec in specs:
        seconds = sum(r.time_s for r in rows if r.method == spec.name) / n_images
        titles[spec.name] = f"{spec.label}\n{seconds:.2f} s/image"
    # The grid shows sum_c |a_c| (the quantity scored), not Captum's |sum_c a_c|.
    grid_maps = {spec.name: torch.cat(attributions[spec.name]).abs() for spec in specs}
    write_outputs(
        settings.out, settings.style, inputs.images, grid_maps, titles, row_labels, report, rows
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
    specs = validate(settings)
    inputs = _load_inputs(settings)
    # ---- compute (nothing written yet)
    torch.manual_seed(settings.seed)
    attributions, rows = _run_methods(specs, settings, inputs)
    if settings.controls:
        _add_controls(settings, inputs, attributions, rows)
    _score_rows(settings, inputs, attributions, rows)
    # ---- report
    _write(settings, inputs, specs, attributions, rows)
    return 0
