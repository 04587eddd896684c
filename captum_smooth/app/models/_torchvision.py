"""Optional torchvision access that works next to a CPU-only torch, and never downloads.

torchvision is not a dependency of captum-smooth and stays out of the core import path; this
module imports it only when asked.

The torchvision 0.28.0 wheel on PyPI is a CUDA build. Next to the CPU build of torch its C++
extension cannot load, and ``import torchvision`` then fails with
``RuntimeError: operator torchvision::nms does not exist``: its Python fake-tensor registrations
refer to the operators the extension would have defined. :func:`import_torchvision` retries the
import after declaring the two operator schemas those registrations need (``torchvision::nms`` and
``torchvision::qnms``, exactly as torchvision's C++ code defines them) through
:mod:`torch.library`. Models, weights enums and transforms then work; the compiled operators
themselves (``torchvision.ops.nms``, ``roi_align``, image decoding) still raise torchvision's own
"Couldn't load custom C++ ops" error when called. A torchvision that imports normally is
imported normally.

:func:`torchvision_model` builds a torchvision model with random weights by default; pretrained
weights are loaded only from the local torch hub cache, never downloaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import threading
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

__all__ = ["import_torchvision", "torchvision_model"]

_INSTALL_HINT = (
    "pip install --no-deps torchvision==0.28.0  (pinned and without dependencies: an unpinned "
    "torchvision replaces torch with a CUDA build)"
)
# Schemas as torchvision's csrc/ops/nms.cpp and csrc/ops/quantized/cpu/qnms_kernel.cpp
# define them (TORCH_LIBRARY_FRAGMENT(torchvision, m)).
_MISSING_OP_SCHEMAS: dict[str, str] = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LOCK = threading.Lock()
# The fragment that holds the declared schemas; it must stay alive (a collected
# torch.library.Library removes its definitions).
_fragment: torch.library.Library | None = None


def _op_exists(name: str) -> bool:
    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):
        return False
    return True


def _declare_missing_ops() -> None:
    """Declare the torchvision operator schemas that are not registered yet (no kernels)."""
    global _fragment
    missing = [name for name in _MISSING_OP_SCHEMAS if not _op_exists(name)]
    if not missing:
        return
    if _fragment is None:
        _fragment = torch.library.Library("torchvision", "FRAGMENT")
    for name in missing:
        _fragment.define(_MISSING_OP_SCHEMAS[name])


def _forget_partial_import() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def _is_missing_op_error(exc: BaseException) -> bool:
    text = str(exc)
    return "torchvision::" in text and "does not exist" in text


def import_torchvision() -> ModuleType:
    """Import torchvision, working around the CUDA-only wheel next to a CPU-only torch.

    Tries a plain ``import torchvision`` first. If that fails because an operator such as
    ``torchvision::nms`` does not exist (the wheel's C++ extension did not load), the partial
    import is discarded, the missing schemas ``torchvision::nms`` and ``torchvision::qnms`` are
    declared through :mod:`torch.library` (schemas only, no kernels) and the import is retried.
    Safe to call any number of times, also from several threads.

    Returns:
        The ``torchvision`` module.

    Raises:
        ImportError: If torchvision is not installed, or cannot be imported even with the
            declared schemas (the message gives the cause and the pinned pip command).

    Examples::

        >>> torchvision = import_torchvision()  # doctest: +SKIP
        >>> torchvision.models.resnet18(weights=None).fc.out_features  # doctest: +SKIP
        1000
    """
    module = sys.modules.get("torchvision")
    if module is not None and hasattr(module, "models"):
        return module
    with _LOCK:
        if importlib.util.find_spec("torchvision") is None:
            raise ImportError(f"torchvision is not installed. Install it with: {_INSTALL_HINT}")
        try:
            return importlib.import_module("torchvision")
        except RuntimeError as exc:
            if not _is_missing_op_error(exc):
                raise ImportError(f"torchvision failed to import: {exc}") from exc
            first_error = exc
        _forget_partial_import()
        _declare_missing_ops()
        try:
            return importlib.import_module("torchvision")
        except (ImportError, RuntimeError) as exc:
            _forget_partial_import()
            raise ImportError(
                "torchvision failed to import even with the torchvision::nms and "
                f"torchvision::qnms schemas declared ({exc}); first error: {first_error}. Check "
                f"that torchvision matches torch {torch.__version__}: {_INSTALL_HINT}"
            ) from exc


def _resolve_weights(enum_class: Any, weights: Any, argument: str) -> Any:
    """Turn a weights enum member or its name into the member (``None`` stays ``None``)."""
    if weights is None:
        return None
    try:
        return enum_class.verify(weights)
    except (KeyError, TypeError) as exc:
        choices = ", ".join(member.name for member in enum_class)
        raise ValueError(
            f"{argument} must be None, a {enum_class.__name__} member or one of its names "
            f"({choices}, DEFAULT), got {weights!r}"
        ) from exc


def _resolve_backbone(models: ModuleType, backbone: Any, default: Any) -> Any:
    """Resolve ``weights_backbone``: an enum member, a full name or a name of the default's enum."""
    if isinstance(backbone, models.WeightsEnum):
        return backbone
    if isinstance(default, models.WeightsEnum):
        return _resolve_weights(type(default), backbone, "weights_backbone")
    if isinstance(backbone, str):
        try:
            return models.get_weight(backbone)
        except (KeyError, ValueError, AttributeError) as exc:
            raise ValueError(
                "weights_backbone must be a weights enum member or its full name such as "
                f"'ResNet50_Weights.IMAGENET1K_V1', got {backbone!r}"
            ) from exc
    raise TypeError(
        f"weights_backbone must be None, a weights enum member or a str, got "
        f"{type(backbone).__name__}"
    )


def _require_cached(weights: Any, argument: str) -> None:
    """Raise unless the checkpoint of ``weights`` is already in the torch hub cache."""
    file_name = os.path.basename(urlparse(weights.url).path)
    path = os.path.join(torch.hub.get_dir(), "checkpoints", file_name)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{argument}={weights!r} needs the checkpoint {path!r}, which is not in the local "
            f"torch hub cache, and captum-smooth never downloads. Place the file from "
            f"{weights.url} there (the directory follows TORCH_HOME), or pass None for random "
            "weights."
        )


def torchvision_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a torchvision model by name, with random weights unless cached ones are asked for.

    Wraps ``torchvision.models.get_model(name, weights=..., **kwargs)`` after
    :func:`import_torchvision`. Nothing is downloaded: ``weights`` defaults to None (random
    initialisation), the backbone weights of detection and segmentation models default to None
    as well, and pretrained weights that are given (an enum member such as
    ``ResNet18_Weights.IMAGENET1K_V1`` or its name, e.g. ``"IMAGENET1K_V1"`` or ``"DEFAULT"``)
    must already be in ``<torch hub dir>/checkpoints`` (``$TORCH_HOME/hub/checkpoints``).

    Args:
        name: A torchvision model name, e.g. ``"resnet18"`` (see
            ``torchvision.models.list_models()``).
        **kwargs: Passed to the model builder; ``weights`` and ``weights_backbone`` as described
            above. The legacy ``pretrained`` / ``pretrained_backbone`` flags are refused.

    Returns:
        The model, in eval mode on the CPU.

    Raises:
        TypeError: If ``name`` is not a str, or a legacy ``pretrained`` flag is passed.
        ValueError: If ``name`` is not a torchvision model or the weights are not valid for it.
        FileNotFoundError: If requested pretrained weights are not in the local hub cache.
        ImportError: If torchvision is not installed or cannot be imported.

    Examples::

        >>> model = torchvision_model("resnet18")  # doctest: +SKIP
        >>> sum(p.numel() for p in model.parameters())  # doctest: +SKIP
        11689512
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    for legacy in ("pretrained", "pretrained_backbone"):
        if legacy in kwargs:
            replacement = "weights" if legacy == "pretrained" else "weights_backbone"
            raise TypeError(
                f"{legacy} is torchvision's deprecated flag; pass {replacement}= (None, a weights "
                "enum member or its name) instead"
            )
    torchvision = import_torchvision()
    models = torchvision.models
    available = models.list_models()
    if name.lower() not in available:
        raise ValueError(
            f"name must be a torchvision model name, got {name!r}; available: "
            f"{', '.join(sorted(available))}"
        )
    name = name.lower()
    weights = _resolve_weights(
        models.get_model_weights(name), kwargs.pop("weights", None), "weights"
    )
    if weights is not None:
        _require_cached(weights, "weights")
    parameters = inspect.signature(models.get_model_builder(name)).parameters
    if "weights_backbone" in parameters:
        default = parameters["weights_backbone"].default
        backbone = kwargs.pop("weights_backbone", None)
        if backbone is not None:
            backbone = _resolve_backbone(models, backbone, default)
            _require_cached(backbone, "weights_backbone")
        kwargs["weights_backbone"] = backbone
    model = models.get_model(name, weights=weights, **kwargs)
    return model.eval()
