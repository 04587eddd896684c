"""Loading what the command line is given: models, images and the explained target.

Models (``--model``): ``efficientnet-lite0`` (the default, embedded), ``torchvision:NAME[:WEIGHTS]``
(random weights unless cached ones are named; ImageNet normalisation is added in front; the only
path that imports torchvision), a TorchScript file, or ``module:callable`` (imported, called
with no arguments, must return an ``nn.Module``; an optional ``classes`` attribute names its
outputs). Images are RGB in ``[0, 1]``, ``(N, 3, size, size)``: files Pillow reads, or
``skimage:NAME`` for a photo bundled with scikit-image.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import CLIError, short

__all__ = [
    "DEFAULT_MODEL",
    "SAMPLE_PREFIX",
    "LoadedModel",
    "load_images",
    "load_model",
    "output_classes",
    "resolve_target",
]

DEFAULT_MODEL = "efficientnet-lite0"
SAMPLE_PREFIX = "skimage:"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class LoadedModel:
    """A model ready for the CLI: eval mode, takes ``[0, 1]`` images, with output names."""

    module: nn.Module
    description: str
    classes: list[str] | None = None
    #: What the user must know about this model (printed as warnings, kept in the report).
    warnings: list[str] = field(default_factory=list)


class _Normalized(nn.Module):
    """``model((x - mean) / std)``: lets an ImageNet-normalised model take ``[0, 1]`` images."""

    #: Buffers (declared for the type checker, which reads module attributes as Module | Tensor).
    mean: Tensor
    std: Tensor

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.model((x - self.mean) / self.std)


def _resolve_attribute(module_name: str, attribute: str) -> Any:
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise CLIError(f"cannot import module {module_name!r}: {short(exc)}") from exc
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"module {module_name!r} has no attribute {attribute!r}")
        obj = getattr(obj, part)
    return obj


def _load_callable(spec: str) -> nn.Module:
    module_name, _, attribute = spec.partition(":")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        obj = _resolve_attribute(module_name, attribute)
        if not callable(obj):
            raise CLIError(f"{spec!r} is not callable")
        try:
            model = obj()
        except Exception as exc:
            raise CLIError(f"calling {spec}() failed: {short(exc)}") from exc
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
        raise CLIError(f"torchvision models are not supported here: {short(exc)}") from exc
    kwargs = {"weights": parts[2]} if len(parts) == 3 else {}
    try:
        model = torchvision_model(parts[1], **kwargs)
    except Exception as exc:
        raise CLIError(short(exc)) from exc
    weights = parts[2] if len(parts) == 3 else "random weights"
    return _Normalized(model), f"torchvision {parts[1]} ({weights}, ImageNet normalisation)"


def _load_torchscript(path: str) -> nn.Module:
    if os.path.isdir(path):
        raise CLIError("it is a directory, not a TorchScript file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # jit is deprecated
            return torch.jit.load(path, map_location="cpu")
    except Exception as exc:
        raise CLIError(f"not a TorchScript file ({short(exc)})") from exc


def _load_default() -> LoadedModel:
    from .models import imagenet_classes, load_efficientnet_lite0

    try:
        module = load_efficientnet_lite0()
    except Exception as exc:
        raise CLIError(short(exc)) from exc
    return LoadedModel(module.eval(), "EfficientNet-Lite0 (ImageNet)", imagenet_classes())


def _load_other(spec: str) -> tuple[nn.Module, str]:
    if os.path.exists(spec):
        return _load_torchscript(spec), f"TorchScript {spec}"
    if spec.startswith("torchvision:"):
        return _load_torchvision(spec)
    if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", spec):
        return _load_callable(spec), spec
    raise CLIError(
        "expected 'efficientnet-lite0', 'torchvision:NAME', a TorchScript file or "
        "'module:callable' (no such file)"
    )


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
            return _load_default()
        module, description = _load_other(spec)
    except CLIError as exc:
        raise CLIError(f"--model {spec!r}: cannot load model: {exc}") from exc
    classes = getattr(module, "classes", None)
    if not (isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes)):
        classes = None
    notes = []
    if spec.startswith("torchvision:") and len(spec.split(":")) == 2:
        name = spec.split(":")[1]
        notes.append(
            f"{spec} has RANDOM weights (no WEIGHTS named): its predictions and maps explain an "
            f"untrained network; name cached weights, e.g. torchvision:{name}:DEFAULT"
        )
    return LoadedModel(module.eval(), description, list(classes) if classes else None, notes)


def output_classes(classes: list[str] | None, n_outputs: int) -> list[str]:
    """The model's output names: its own, else ImageNet's for 1000 outputs, else ``class i``."""
    if classes is not None and len(classes) == n_outputs:
        return classes
    if n_outputs == 1000:
        from .models import imagenet_classes

        return imagenet_classes()
    return [f"class {i}" for i in range(n_outputs)]


def _load_sample(source: str, size: int) -> tuple[Tensor, str]:
    from .data.images import SAMPLE_IMAGE_NAMES, load_sample_images

    name = source[len(SAMPLE_PREFIX) :]
    if name not in SAMPLE_IMAGE_NAMES:
        raise CLIError(
            f"unknown sample image {source!r}; choose from "
            + ", ".join(SAMPLE_PREFIX + n for n in SAMPLE_IMAGE_NAMES)
        )
    try:
        batch, _ = load_sample_images(name, size=size)
    except Exception as exc:
        raise CLIError(f"cannot load sample image {source!r}: {short(exc)}") from exc
    return batch[0], name


def _load_file(source: str, size: int) -> tuple[Tensor, str]:
    from .data.images import load_image

    try:
        return load_image(source, size=size), Path(source).stem
    except (ValueError, OSError) as exc:
        if not os.path.exists(source):
            raise CLIError(f"cannot read image {source!r}: no such file") from exc
        if os.path.isdir(source):
            raise CLIError(f"cannot read image {source!r}: it is a directory") from exc
        raise CLIError(f"cannot read image {source!r}: not a readable image file") from exc


def _unique(names: list[str]) -> list[str]:
    """Unique row names (two files called photo.jpg in different folders)."""
    seen: dict[str, int] = {}
    out = list(names)
    for i, name in enumerate(out):
        if name in seen:
            seen[name] += 1
            out[i] = f"{name}-{seen[name]}"
        else:
            seen[name] = 0
    return out


def load_images(sources: Sequence[str], size: int) -> tuple[Tensor, list[str]]:
    """The images ``(N, 3, size, size)`` in ``[0, 1]`` and a unique name for each.

    Raises:
        CLIError: An unreadable file or an unknown ``skimage:NAME``.
    """
    images, names = [], []
    for source in sources:
        if source.startswith(SAMPLE_PREFIX) and not os.path.exists(source):
            image, name = _load_sample(source, size)
        else:
            image, name = _load_file(source, size)
        images.append(image)
        names.append(name)
    return torch.stack(images), _unique(names)


def resolve_target(target: str | None, n_outputs: int, classes: list[str]) -> int | None:
    """``--target`` as an output index (None: each image's predicted class).

    Raises:
        CLIError: Neither an index in range nor a class name (case-insensitive).
    """
    if target is None or target.strip().lower() in ("", "predicted", "pred"):
        return None
    text = target.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        index = int(text)
        if not 0 <= index < n_outputs:
            raise CLIError(f"--target {index} is outside the model's classes (0..{n_outputs - 1})")
        return index
    if text in classes:
        return classes.index(text)
    lowered = [c.lower() for c in classes]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    raise CLIError(
        f"--target {target!r} is neither a class index (0..{n_outputs - 1}) nor a class name of "
        "the model"
    )
