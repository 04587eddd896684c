"""The ``captum-smooth`` command line: explain images with every smoothing method, side by side.

Commands:

* ``captum-smooth explain IMAGE... [--model M] [--methods A,B] [--target T] [--samples N]
  [--seed S] [--kernel K] [--out DIR]``: runs each method on each image, writes a comparison
  grid (``comparison.png``) and a table of metrics and wall times (``metrics.json``,
  ``metrics.csv``), and prints the table.
* ``captum-smooth demo [--out DIR]``: the same on the embedded EfficientNet-Lite0 and three
  photos bundled with scikit-image (nothing is downloaded).
* ``captum-smooth methods``: the method names and whether each is available.
* ``captum-smooth insights [--port P]``: Captum Insights with these methods (captum <= 0.8).
* ``captum-smooth explain-dataset ...``: a whole data set into a resumable store
  (:mod:`captum_smooth.app.dataset_cli`).

Images are fed to the model as RGB in ``[0, 1]``, ``(N, 3, size, size)``. Models (``--model``):
``efficientnet-lite0`` (the default, embedded), ``torchvision:NAME[:WEIGHTS]`` (random weights
unless cached ones are named; ImageNet normalisation is added in front), a TorchScript file,
or ``module:callable`` (imported, called with no arguments, must return an ``nn.Module``; an
optional ``classes`` attribute names its outputs).

Bad input (an unreadable image, an unknown method, a target outside the model's classes, a
model that does not load) is reported in one line on stderr with exit status 2, before anything
is written. Results are written to a temporary folder beside ``--out`` and moved into place at
the end, so ``--out`` never holds a half-written result.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import io
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CLIError", "build_parser", "load_model", "main"]

PROG = "captum-smooth"
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
DEFAULT_MODEL = "efficientnet-lite0"
DEMO_IMAGES = ("chelsea", "coffee", "rocket")
DEMO_SAMPLES = 16
DEFAULT_SAMPLES = 16
DEFAULT_AUC_STEPS = 10
_SAMPLE_PREFIX = "skimage:"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_METRIC_COLUMNS = (
    ("total_variation", "TV (lower smoother)"),
    ("sparseness", "sparseness (higher)"),
    ("complexity", "complexity (lower)"),
    ("deletion_auc", "deletion AUC (lower)"),
    ("insertion_auc", "insertion AUC (higher)"),
    ("mc_error", "MC error (rel.)"),
    ("samples_used", "samples used"),
)


class CLIError(Exception):
    """Bad input: reported in one line on stderr, exit status 2, nothing written."""


# --------------------------------------------------------------------------------------------
# Models


@dataclass
class LoadedModel:
    """A model ready for the CLI: eval mode, takes ``[0, 1]`` images, with output names."""

    module: nn.Module
    description: str
    classes: list[str] | None = None


class _Normalized(nn.Module):
    """``model((x - mean) / std)``: lets an ImageNet-normalised model take ``[0, 1]`` images."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x - self.mean) / self.std)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _load_callable(spec: str) -> nn.Module:
    module_name, _, attribute = spec.partition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        try:
            obj: Any = importlib.import_module(module_name)
        except Exception as exc:
            raise CLIError(f"cannot import module {module_name!r}: {_short(exc)}") from exc
        for part in attribute.split("."):
            if not hasattr(obj, part):
                raise CLIError(f"module {module_name!r} has no attribute {attribute!r}")
            obj = getattr(obj, part)
        if not callable(obj):
            raise CLIError(f"{spec!r} is not callable")
        try:
            model = obj()
        except Exception as exc:
            raise CLIError(f"calling {spec}() failed: {_short(exc)}") from exc
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    if not isinstance(model, nn.Module):
        raise CLIError(f"{spec}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _load_torchvision(spec: str) -> tuple[nn.Module, str]:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[1]:
        raise CLIError(
            "torchvision models are named 'torchvision:NAME' or 'torchvision:NAME:WEIGHTS'"
        )
    try:
        from .models._torchvision import torchvision_model
    except ImportError as exc:
        raise CLIError(f"torchvision models are not supported here: {_short(exc)}") from exc
    kwargs = {"weights": parts[2]} if len(parts) == 3 else {}
    try:
        model = torchvision_model(parts[1], **kwargs)
    except Exception as exc:
        raise CLIError(_short(exc)) from exc
    weights = parts[2] if len(parts) == 3 else "random weights"
    return _Normalized(model), f"torchvision {parts[1]} ({weights}, ImageNet normalisation)"


def load_model(spec: str | None = None) -> LoadedModel:
    """Load the model named on the command line (see the module docstring for the forms).

    Args:
        spec: ``efficientnet-lite0`` (None means it), ``torchvision:NAME[:WEIGHTS]``, the path
            of a TorchScript file, or ``module:callable``.

    Returns:
        A :class:`LoadedModel` in eval mode.

    Raises:
        CLIError: If the model cannot be loaded (the message says why, in one line).

    Examples::

        >>> loaded = load_model("efficientnet-lite0")  # doctest: +SKIP
        >>> loaded.classes[967]  # doctest: +SKIP
        'espresso'
    """
    spec = DEFAULT_MODEL if spec is None else spec
    try:
        if spec in (DEFAULT_MODEL, "default"):
            from .models import imagenet_classes, load_efficientnet_lite0

            try:
                module = load_efficientnet_lite0()
            except Exception as exc:
                raise CLIError(_short(exc)) from exc
            return LoadedModel(module.eval(), "EfficientNet-Lite0 (ImageNet)", imagenet_classes())
        if os.path.exists(spec):
            if os.path.isdir(spec):
                raise CLIError("it is a directory, not a TorchScript file")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)  # jit is deprecated
                    module = torch.jit.load(spec, map_location="cpu")
            except Exception as exc:
                raise CLIError(f"not a TorchScript file ({_short(exc)})") from exc
            description = f"TorchScript {spec}"
        elif spec.startswith("torchvision:"):
            module, description = _load_torchvision(spec)
        elif re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", spec):
            module = _load_callable(spec)
            description = spec
        else:
            raise CLIError(
                "expected 'efficientnet-lite0', 'torchvision:NAME', a TorchScript file or "
                "'module:callable' (no such file)"
            )
    except CLIError as exc:
        raise CLIError(f"cannot load model {spec!r}: {exc}") from exc
    classes = getattr(module, "classes", None)
    if not (isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes)):
        classes = None
    return LoadedModel(module.eval(), description, list(classes) if classes else None)


# --------------------------------------------------------------------------------------------
# Inputs


def _load_images(sources: Sequence[str], size: int) -> tuple[Tensor, list[str]]:
    from .data.images import SAMPLE_IMAGE_NAMES, load_image, load_sample_images

    images, names = [], []
    for source in sources:
        if source.startswith(_SAMPLE_PREFIX) and not os.path.exists(source):
            name = source[len(_SAMPLE_PREFIX) :]
            if name not in SAMPLE_IMAGE_NAMES:
                raise CLIError(
                    f"unknown sample image {source!r}; choose from "
                    + ", ".join(_SAMPLE_PREFIX + n for n in SAMPLE_IMAGE_NAMES)
                )
            try:
                batch, _ = load_sample_images(name, size=size)
            except Exception as exc:
                raise CLIError(f"cannot load sample image {source!r}: {_short(exc)}") from exc
            images.append(batch[0])
            names.append(name)
            continue
        try:
            images.append(load_image(source, size=size))
        except (ValueError, OSError) as exc:
            if not os.path.exists(source):
                raise CLIError(f"cannot read image {source!r}: no such file") from exc
            if os.path.isdir(source):
                raise CLIError(f"cannot read image {source!r}: it is a directory") from exc
            raise CLIError(f"cannot read image {source!r}: not a readable image file") from exc
        names.append(Path(source).stem)
    # Unique row names (two files called photo.jpg in different folders).
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            seen[name] += 1
            names[i] = f"{name}-{seen[name]}"
        else:
            seen[name] = 0
    return torch.stack(images), names


def _resolve_target(target: str | None, n_outputs: int, classes: list[str]) -> int | None:
    if target is None or target.strip().lower() in ("", "predicted", "pred"):
        return None
    text = target.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        index = int(text)
        if not 0 <= index < n_outputs:
            raise CLIError(f"target {index} is outside the model's classes (0..{n_outputs - 1})")
        return index
    if text in classes:
        return classes.index(text)
    lowered = [c.lower() for c in classes]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    raise CLIError(
        f"target {target!r} is neither a class index (0..{n_outputs - 1}) nor a class name of "
        "the model"
    )


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {str(out)!r} exists and is not a directory")
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise CLIError(f"--out {str(out)!r}: cannot write in {str(parent)!r}")


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class _Row:
    image: str
    method: str
    label: str
    kind: str
    target: int
    target_class: str
    gradient_evaluations: int
    time_s: float
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        base = {
            "image": self.image,
            "method": self.method,
            "label": self.label,
            "kind": self.kind,
            "target": self.target,
            "target_class": self.target_class,
            "gradient_evaluations": self.gradient_evaluations,
            "time_s": round(self.time_s, 4),
        }
        base.update({k: _finite(v) for k, v in self.metrics.items()})
        return base


def _finite(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, desc=desc, disable=not enabled, unit="map", leave=False, file=sys.stderr
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


def _gaussian_blur(maps: Tensor, sigma: float) -> Tensor:
    radius = max(1, int(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = maps.shape[1]
    h = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    v = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    padded = F.pad(maps, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(padded, h, groups=channels)
    out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), v, groups=channels)
    return out


def _controls(image: Tensor, gradient: Tensor, seed: int) -> dict[str, Tensor]:
    """The controls of evaluation.md: a blurred gradient, an edge map, a random map."""
    sigma = max(1.0, image.shape[-1] / 50)
    grey = image.mean(dim=1, keepdim=True)
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    padded = F.pad(grey, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(padded, sobel.view(1, 1, 3, 3))
    gy = F.conv2d(padded, sobel.t().reshape(1, 1, 3, 3))
    generator = torch.Generator().manual_seed(seed)
    return {
        "control-blurred-gradient": _gaussian_blur(gradient.abs(), sigma),
        "control-edges": torch.sqrt(gx**2 + gy**2),
        "control-random": torch.rand(grey.shape, generator=generator),
    }


@dataclass
class _Settings:
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


def _validate(settings: _Settings) -> tuple[list[Any], bool]:
    from .methods import DEFAULT_METHODS, MethodUnavailableError, resolve_methods
    from ..noise import kernel_names

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
    if settings.kernel is not None and settings.kernel not in kernel_names():
        raise CLIError(
            f"unknown kernel {settings.kernel!r}; known kernels: {', '.join(kernel_names())}"
        )
    _check_out(settings.out)
    default = settings.methods is None
    names = list(DEFAULT_METHODS) if default else settings.methods
    if default:
        specs = []
        for name in names:
            try:
                specs.extend(resolve_methods([name]))
            except MethodUnavailableError:
                print(
                    f"{PROG}: note: method {name!r} is not available here, skipped", file=sys.stderr
                )
        return specs, default
    try:
        return resolve_methods(names), default
    except (ValueError, MethodUnavailableError) as exc:
        raise CLIError(str(exc)) from exc


def _predict(model: nn.Module, images: Tensor) -> Tensor:
    with torch.no_grad():
        try:
            logits = model(images)
        except Exception as exc:
            raise CLIError(f"the model fails on the images: {_short(exc)}") from exc
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != len(images):
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise CLIError(f"the model must return (N, classes) scores, got {shape}")
    return logits.float()


def _run(settings: _Settings) -> int:
    warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already require")
    specs, _ = _validate(settings)
    images, names = _load_images(settings.images, settings.size)
    loaded = load_model(settings.model)
    model = loaded.module
    logits = _predict(model, images)
    n_outputs = logits.shape[1]
    classes = loaded.classes
    if classes is None or len(classes) != n_outputs:
        if n_outputs == 1000:
            from .models import imagenet_classes

            classes = imagenet_classes()
        else:
            classes = [f"class {i}" for i in range(n_outputs)]
    fixed_target = _resolve_target(settings.target, n_outputs, classes)
    probs = logits.softmax(dim=1)
    predicted = probs.argmax(dim=1)
    targets = [int(p) if fixed_target is None else fixed_target for p in predicted]

    # ---- compute (nothing written yet)
    torch.manual_seed(settings.seed)
    n_images = len(images)
    attributions: dict[str, list[Tensor]] = {spec.name: [] for spec in specs}
    rows: list[_Row] = []
    gradients: list[Tensor] = []
    from .methods import get_method

    total = len(specs) * n_images
    with _progress(total, settings.progress, "explaining") as bar:
        for spec in specs:
            evaluations = spec.evaluations(settings.samples)
            for i in range(n_images):
                x = images[i : i + 1]
                bar.set_postfix_str(f"{spec.label} on {names[i]}")
                start = time.perf_counter()
                sampling: dict[str, float] = {}
                try:
                    maps = spec.attribute(
                        model,
                        x,
                        targets[i],
                        settings.samples,
                        seed=settings.seed + i,
                        kernel=settings.kernel,
                        tolerance=settings.tolerance,
                        report=sampling,
                    )
                except Exception as exc:
                    raise RuntimeError(f"{spec.label} failed on {names[i]}: {_short(exc)}") from exc
                elapsed = time.perf_counter() - start
                attributions[spec.name].append(maps)
                rows.append(
                    _Row(
                        names[i],
                        spec.name,
                        spec.label,
                        "method",
                        targets[i],
                        classes[targets[i]],
                        evaluations,
                        elapsed,
                        dict(sampling),
                    )
                )
                bar.update(1)
    if settings.controls:
        if "gradient" in attributions:
            gradients = attributions["gradient"]
        else:
            grad = get_method("gradient")
            gradients = [
                grad.attribute(model, images[i : i + 1], targets[i], 1) for i in range(n_images)
            ]
        for i in range(n_images):
            for name, maps in _controls(images[i : i + 1], gradients[i], settings.seed + i).items():
                attributions.setdefault(name, []).append(maps)
                rows.append(
                    _Row(
                        names[i],
                        name,
                        name.replace("-", " "),
                        "control",
                        targets[i],
                        classes[targets[i]],
                        0,
                        0.0,
                    )
                )
    with _progress(len(rows), settings.progress, "scoring") as bar:
        for row in rows:
            i = names.index(row.image)
            maps = attributions[row.method][i]
            # Scores join the Monte-Carlo error and sample count the method reported.
            row.metrics = {
                **row.metrics,
                **_score(model, images[i : i + 1], maps, row.target, settings.auc_steps),
            }
            bar.update(1)

    # ---- report
    image_info = [
        {
            "name": names[i],
            "source": settings.images[i],
            "predicted_index": int(predicted[i]),
            "predicted_class": classes[int(predicted[i])],
            "probability": round(float(probs[i, predicted[i]]), 6),
            "target": targets[i],
            "target_class": classes[targets[i]],
            "target_probability": round(float(probs[i, targets[i]]), 6),
        }
        for i in range(n_images)
    ]
    summary = _summary(rows)
    report = {
        "command": settings.command,
        "model": loaded.description,
        "samples": settings.samples,
        "seed": settings.seed,
        "kernel": settings.kernel,
        "tolerance": settings.tolerance,
        "image_size": settings.size,
        "auc_steps": settings.auc_steps,
        "versions": _versions(),
        "images": image_info,
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
        "summary": summary,
        "files": {"grid": "comparison.png", "json": "metrics.json", "csv": "metrics.csv"},
    }
    row_labels = [
        f"{info['name']}: {info['predicted_class']} {info['probability']:.2f}"
        for info in image_info
    ]
    titles = {}
    for spec in specs:
        seconds = sum(r.time_s for r in rows if r.method == spec.name) / n_images
        titles[spec.name] = f"{spec.label}\n{seconds:.2f} s/image"
    # The grid shows sum_c |a_c| (the quantity scored), not Captum's |sum_c a_c|.
    grid_maps = {spec.name: torch.cat(attributions[spec.name]).abs() for spec in specs}
    _write_outputs(settings, images, grid_maps, titles, row_labels, report, rows)
    print(_format_report(report, image_info))
    print(f"wrote {settings.out / 'comparison.png'}, metrics.json and metrics.csv")
    return 0


def _summary(rows: list[_Row]) -> list[dict[str, Any]]:
    order: list[str] = []
    for row in rows:
        if row.method not in order:
            order.append(row.method)
    summary = []
    for name in order:
        group = [r for r in rows if r.method == name]
        entry: dict[str, Any] = {
            "method": name,
            "label": group[0].label,
            "kind": group[0].kind,
            "gradient_evaluations": group[0].gradient_evaluations,
            "time_s": round(sum(r.time_s for r in group) / len(group), 4),
        }
        for key, _ in _METRIC_COLUMNS:
            values = [r.metrics[key] for r in group if key in r.metrics]
            if values:
                entry[key] = _finite(sum(values) / len(values))
        summary.append(entry)
    return summary


def _versions() -> dict[str, Any]:
    import captum
    import numpy

    from .. import __version__

    return {
        "captum_smooth": __version__,
        "captum": captum.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "torch_threads": torch.get_num_threads(),
    }


def _format_report(report: dict[str, Any], image_info: list[dict[str, Any]]) -> str:
    lines = [f"model: {report['model']}; samples: {report['samples']}; seed: {report['seed']}"]
    for info in image_info:
        lines.append(
            f"  {info['name']}: predicted {info['predicted_class']!r} "
            f"({info['probability']:.3f}); explained {info['target_class']!r}"
        )
    keys = [k for k, _ in _METRIC_COLUMNS if any(k in e for e in report["summary"])]
    header = ["method", "grads", "s/image"] + [dict(_METRIC_COLUMNS)[k] for k in keys]
    table = [header]
    for entry in report["summary"]:
        cells = [entry["label"], str(entry["gradient_evaluations"]), f"{entry['time_s']:.3f}"]
        for key in keys:
            value = entry.get(key)
            cells.append("-" if value is None else f"{value:.4f}")
        table.append(cells)
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    lines.append("mean over images (controls are not methods: a method should beat them):")
    for n, row in enumerate(table):
        lines.append("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _write_outputs(
    settings: _Settings,
    images: Tensor,
    grid_maps: dict[str, Tensor],
    titles: dict[str, str],
    row_labels: list[str],
    report: dict[str, Any],
    rows: list[_Row],
) -> None:
    from .visualization import comparison_grid

    out = settings.out
    parent = out.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would become --out's mode
        comparison_grid(
            images,
            grid_maps,
            titles=titles,
            row_labels=row_labels,
            path=staging / "comparison.png",
            method=settings.style,
        )
        (staging / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", "utf-8")
        buffer = io.StringIO()
        fields = list(rows[0].as_dict()) if rows else []
        for key, _ in _METRIC_COLUMNS:
            if key not in fields and any(key in r.metrics for r in rows):
                fields.append(key)
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.as_dict().items()})
        (staging / "metrics.csv").write_text(buffer.getvalue(), "utf-8")
        if not out.exists():
            os.replace(staging, out)
        else:
            for item in staging.iterdir():
                os.replace(item, out / item.name)
            staging.rmdir()
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Insights and the method list


def _run_insights(args: argparse.Namespace) -> int:
    from . import insights

    if not insights.insights_available():
        import captum

        print(
            f"{PROG}: Captum Insights is not available: captum {captum.__version__} has no "
            "captum.insights (it was retired after 0.8.0; `make insights-env` builds a captum "
            f"0.8 environment). Use `{PROG} explain IMAGE...` for comparison pictures.",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    sources = args.images or [_SAMPLE_PREFIX + n for n in DEMO_IMAGES]
    images, _ = _load_images(sources, args.size)
    loaded = load_model(args.model)
    port = insights.serve(
        loaded.module, images, classes=loaded.classes, port=args.port, bind_all=args.bind_all
    )
    print(f"Captum Insights: http://localhost:{port}/ (Ctrl-C stops)", flush=True)
    try:
        while True:  # Insights' server thread is not a daemon: wait here until Ctrl-C
            time.sleep(3600)
    except KeyboardInterrupt:
        sys.stdout.flush()
        os._exit(0)  # the Flask thread cannot be stopped otherwise


def _run_methods() -> int:
    from .methods import get_method, method_names

    for name in method_names():
        spec = get_method(name)
        state = "" if spec.available else "  (not available here)"
        print(f"{name:28s} {spec.summary}{state}")
    return 0


# --------------------------------------------------------------------------------------------
# Arguments


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line too (with exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _split_methods(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    names = [n.strip() for value in values for n in value.split(",") if n.strip()]
    return names


def _add_run_options(parser: argparse.ArgumentParser, demo: bool) -> None:
    parser.add_argument(
        "--methods",
        "-m",
        action="append",
        metavar="A,B",
        help="methods to run, comma-separated or repeated (default: all available; "
        "see `captum-smooth methods`)",
    )
    parser.add_argument(
        "--samples",
        "-n",
        type=int,
        default=DEMO_SAMPLES if demo else DEFAULT_SAMPLES,
        help="gradient evaluations per image and method (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--kernel",
        default=None,
        help="input-noise kernel for the sampling methods (default: gaussian)",
    )
    parser.add_argument(
        "--out",
        "-o",
        type=Path,
        default=Path("out/demo" if demo else "out/explain"),
        help="output folder (default: %(default)s)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="sample each smoothing method until the relative Monte-Carlo error of its map "
        "is at most this (--samples is then the maximum); the table shows the samples used",
    )
    parser.add_argument(
        "--auc-steps",
        type=int,
        default=DEFAULT_AUC_STEPS,
        help="steps of the deletion/insertion curves, 0 to skip them (default: %(default)s)",
    )
    parser.add_argument(
        "--no-controls",
        action="store_true",
        help="leave out the control rows (blurred gradient, edge map, random map)",
    )
    parser.add_argument(
        "--style",
        default="heat_map",
        choices=["heat_map", "blended_heat_map", "alpha_scaling", "masked_image"],
        help="Captum visualisation method of the grid (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The ``captum-smooth`` argument parser.

    Returns:
        The parser, with the sub-commands ``explain``, ``demo``, ``methods``, ``insights`` and
        ``explain-dataset`` (:mod:`captum_smooth.app.dataset_cli`).
    """
    parser = _Parser(
        prog=PROG,
        description="Gradient smoothing for Captum: explain images with SmoothGrad, AdaptGrad, "
        "NoiseGrad, FusionGrad, SmoothTaylor and more, side by side.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    explain = sub.add_parser("explain", help="explain image files with every method")
    explain.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files (any format Pillow reads) or skimage:NAME for a bundled photo",
    )
    explain.add_argument(
        "--model",
        default=None,
        help="efficientnet-lite0 (default), torchvision:NAME[:WEIGHTS], a TorchScript file or "
        "module:callable",
    )
    explain.add_argument(
        "--target",
        "-t",
        default=None,
        help="class index or name to explain (default: each image's predicted class)",
    )
    explain.add_argument(
        "--size", type=int, default=224, help="image side in pixels (default: 224)"
    )
    _add_run_options(explain, demo=False)
    demo = sub.add_parser(
        "demo", help="the comparison on the embedded EfficientNet-Lite0 and three sample photos"
    )
    _add_run_options(demo, demo=True)
    sub.add_parser("methods", help="list the method names")
    try:  # data-set-scale attribution into a resumable store (captum_smooth.dataset)
        from .dataset_cli import add_explain_dataset_parser
    except ImportError:
        pass
    else:
        add_explain_dataset_parser(sub)
    insights = sub.add_parser("insights", help="serve Captum Insights with these methods")
    insights.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    insights.add_argument("--model", default=None, help="as for explain")
    insights.add_argument("--images", nargs="*", default=None, help="as for explain")
    insights.add_argument("--size", type=int, default=224, help="image side (default: 224)")
    insights.add_argument(
        "--bind-all", action="store_true", help="listen on all interfaces, not only localhost"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for bad input (nothing written), 1 on a failure
        during the run.

    Examples::

        >>> main(["demo", "--out", "out/demo"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exc:  # --help, or a usage error already reported in one line
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        if args.command == "methods":
            return _run_methods()
        if args.command == "insights":
            return _run_insights(args)
        if args.command == "explain-dataset":
            return int(args.func(args))
        demo = args.command == "demo"
        settings = _Settings(
            command=args.command,
            images=[_SAMPLE_PREFIX + n for n in DEMO_IMAGES] if demo else list(args.images),
            model=None if demo else args.model,
            methods=_split_methods(args.methods),
            target=None if demo else args.target,
            samples=args.samples,
            seed=args.seed,
            kernel=args.kernel,
            out=args.out,
            size=224 if demo else args.size,
            auc_steps=args.auc_steps,
            controls=not args.no_controls,
            progress=not args.no_progress,
            style=args.style,
            tolerance=args.tolerance,
        )
        return _run(settings)
    except CLIError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted, nothing written", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("CAPTUM_SMOOTH_DEBUG"):
            raise
        print(
            f"{PROG}: error: {_short(exc)} (CAPTUM_SMOOTH_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
