"""Captum Insights with the smoothing methods of this package (captum <= 0.8 only).

Captum Insights (``captum.insights``, shipped up to captum 0.8.0, retired in 0.9) offers the
attribution methods listed in two module-level dicts of ``captum.insights.attr_vis.config``:
``ATTRIBUTION_NAMES_TO_METHODS`` (``get_name()`` -> class) and ``ATTRIBUTION_METHOD_CONFIG``
(name -> the argument fields of the web page). There is no registration API, so
:func:`register` adds our methods to those dicts in place (rebinding them would not be seen by
Insights' modules, which imported the objects).

The web page parses number fields with ``parseInt``: a float typed there becomes an int. Float
arguments (noise levels, confidence, sigmas) are therefore offered as choice fields of strings
turned into floats by a ``post_process`` function; counts are number fields.

The methods are the method table's (:mod:`captum_smooth.app.methods`): its entries that Insights
does not offer itself (Insights has Saliency and Integrated Gradients already), with the class
the table holds; :data:`INSIGHTS_METHODS` only adds each one's web-page fields.

Examples::

    >>> from captum_smooth.app import insights
    >>> insights.register()  # doctest: +SKIP
    ['SmoothGrad', 'AdaptGrad', 'NoiseGrad', 'FusionGrad', 'SmoothTaylor']
    >>> insights.serve(model, images, port=8080, blocking=True)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from captum.attr import Attribution
from torch import Tensor, nn

from .methods import fusion_split, get_method

__all__ = [
    "INSIGHTS_METHODS",
    "build_visualizer",
    "insights_available",
    "insights_method_names",
    "register",
    "serve",
    "unregister",
]


def _table_value(method: str, argument: str) -> str:
    """The method table's value of ``method``'s ``argument``, spelled as a choice field."""
    return str(get_method(method).kwargs(1)[argument])


#: The gradient evaluations the input-noise count fields start at; FusionGrad's weight x input
#: draws split it by the one rule (3 x 3).
_START_BUDGET = 10
_FUSION_DRAWS = fusion_split(_START_BUDGET)

#: The table's methods offered to Insights (keys are names of the method table) and their
#: argument fields
#: ``{argument: ("number", default, (lo, hi)) | ("float", default, choices) | ("kernel",)}``;
#: the float defaults are the table's.
INSIGHTS_METHODS: dict[str, dict[str, tuple[Any, ...]]] = {
    "smoothgrad": {
        "nt_samples": ("number", _START_BUDGET, (1, 500)),
        "noise_level": (
            "float",
            _table_value("smoothgrad", "noise_level"),
            ("0.05", "0.1", "0.15", "0.2", "0.3"),
        ),
        "kernel": ("kernel",),
    },
    "adaptgrad": {
        "nt_samples": ("number", _START_BUDGET, (1, 500)),
        "confidence": (
            "float",
            _table_value("adaptgrad", "confidence"),
            ("0.8", "0.9", "0.95", "0.99", "0.999"),
        ),
        "kernel": ("kernel",),
    },
    "noisegrad": {
        "n_weight_samples": ("number", 5, (1, 200)),
        "weight_stdev": (
            "float",
            _table_value("noisegrad", "weight_stdev"),
            ("0.05", "0.1", "0.2", "0.3", "0.5"),
        ),
    },
    "fusiongrad": {
        "n_weight_samples": ("number", _FUSION_DRAWS[0], (1, 100)),
        "nt_samples": ("number", _FUSION_DRAWS[1], (1, 100)),
        "weight_stdev": (
            "float",
            _table_value("fusiongrad", "weight_stdev"),
            ("0.05", "0.1", "0.2", "0.3", "0.5"),
        ),
        "stdevs": (
            "float",
            _table_value("fusiongrad", "stdevs"),
            ("0.05", "0.1", "0.2", "0.4", "0.8"),
        ),
        "kernel": ("kernel",),
    },
    "smoothtaylor": {
        "nt_samples": ("number", 20, (1, 500)),
        "stdevs": (
            "float",
            _table_value("smoothtaylor", "stdevs"),
            ("0.05", "0.1", "0.25", "0.5", "1.0"),
        ),
    },
}


def insights_method_names() -> list[str]:
    """The names (of the method table) that :func:`register` offers, in its order."""
    return list(INSIGHTS_METHODS)


def insights_available() -> bool:
    """Whether ``captum.insights`` (captum <= 0.8, with flask and flask-compress) imports.

    Returns:
        True when Insights can be used here.
    """
    try:
        importlib.import_module("captum.insights.attr_vis.config")
        importlib.import_module("captum.insights")
    except Exception:
        return False
    return True


def _config_module() -> Any:
    try:
        importlib.import_module("captum.insights")
        return importlib.import_module("captum.insights.attr_vis.config")
    except ImportError as exc:
        import captum

        raise ImportError(
            f"Captum Insights is not available with captum {captum.__version__} ({exc}); it "
            "needs captum <= 0.8 with flask and flask-compress (make insights-env)"
        ) from exc


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {value!r}") from None


def _method_class(key: str) -> type[Attribution]:
    return get_method(key).cls


def _parameters(cls: type[Attribution], fields: dict[str, tuple[Any, ...]], config: Any) -> Any:
    from ..noise import kernel_names

    accepted = inspect.signature(cls.attribute).parameters
    params: dict[str, Any] = {}
    post: dict[str, Callable[[Any], Any]] = {}
    for argument, spec in fields.items():
        if argument not in accepted:
            continue
        if spec[0] == "number":
            params[argument] = config.NumberConfig(value=spec[1], limit=spec[2])
            post[argument] = int
        elif spec[0] == "float":
            params[argument] = config.StrEnumConfig(value=spec[1], limit=list(spec[2]))
            post[argument] = _to_float
        else:
            params[argument] = config.StrEnumConfig(value="gaussian", limit=kernel_names())
            post[argument] = str
    return config.ConfigParameters(params=params, post_process=post)


def register(methods: Sequence[str] | None = None) -> list[str]:
    """Offer our methods in Captum Insights (idempotent).

    Adds each method to ``ATTRIBUTION_NAMES_TO_METHODS`` under its ``get_name()`` and its
    argument fields to ``ATTRIBUTION_METHOD_CONFIG``, both mutated in place.

    Args:
        methods: Keys of :data:`INSIGHTS_METHODS` (default: all of them).

    Returns:
        The names registered, as Insights shows them.

    Raises:
        ImportError: If ``captum.insights`` is not available (captum 0.9 has none).
        ValueError: For an unknown method key.

    Examples::

        >>> register(["smoothgrad"])  # doctest: +SKIP
        ['SmoothGrad']
    """
    config = _config_module()
    keys = list(INSIGHTS_METHODS) if methods is None else list(methods)
    unknown = [k for k in keys if k not in INSIGHTS_METHODS]
    if unknown:
        raise ValueError(
            f"unknown Insights method(s) {unknown}; known: {', '.join(INSIGHTS_METHODS)}"
        )
    names = []
    for key in keys:
        cls = _method_class(key)
        name = cls.get_name()
        config.ATTRIBUTION_NAMES_TO_METHODS[name] = cls
        config.ATTRIBUTION_METHOD_CONFIG[name] = _parameters(cls, INSIGHTS_METHODS[key], config)
        names.append(name)
    return names


def unregister(methods: Sequence[str] | None = None) -> list[str]:
    """Remove what :func:`register` added (in place).

    Args:
        methods: Keys of :data:`INSIGHTS_METHODS` (default: all of them).

    Returns:
        The names removed.

    Raises:
        ImportError: If ``captum.insights`` is not available.
    """
    config = _config_module()
    removed = []
    for key in INSIGHTS_METHODS if methods is None else methods:
        cls = _method_class(key)
        name = cls.get_name()
        if config.ATTRIBUTION_NAMES_TO_METHODS.get(name) is cls:
            del config.ATTRIBUTION_NAMES_TO_METHODS[name]
            config.ATTRIBUTION_METHOD_CONFIG.pop(name, None)
            removed.append(name)
    return removed


def build_visualizer(
    model: nn.Module,
    images: Tensor,
    classes: Sequence[str] | None = None,
    labels: Tensor | None = None,
) -> Any:
    """An ``AttributionVisualizer`` over ``images`` with our methods registered.

    Args:
        model: A classifier taking ``images`` (``(N, C, H, W)`` in ``[0, 1]``).
        images: The images to explain, one Insights example each.
        classes: Output names (default: the model's ``classes`` attribute, else ImageNet names
            for 1000 outputs, else ``class i``).
        labels: The "true" label of each image (default: the model's prediction, as the
            bundled photos have no ImageNet label).

    Returns:
        A ``captum.insights.AttributionVisualizer`` (call ``serve()`` on it).

    Raises:
        ImportError: If ``captum.insights`` is not available.
        ValueError: If ``images`` is not a batch ``(N, C, H, W)`` or labels do not match it.
    """
    _config_module()
    from captum.insights import AttributionVisualizer, Batch
    from captum.insights.attr_vis.features import ImageFeature

    if not isinstance(images, Tensor) or images.dim() != 4:
        raise ValueError("images must be a (N, C, H, W) tensor")
    register()
    model = model.eval()
    with torch.no_grad():
        logits = model(images)
    n_outputs = logits.shape[-1]
    if classes is None:
        classes = getattr(model, "classes", None)
    from .loading import output_classes

    classes = output_classes(None if classes is None else list(classes), n_outputs)
    if labels is None:
        labels = logits.argmax(dim=-1)
    labels = torch.as_tensor(labels).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"labels has {len(labels)} entries for {len(images)} images")
    dataset = [
        Batch(inputs=images[i : i + 1], labels=labels[i : i + 1]) for i in range(len(images))
    ]
    return AttributionVisualizer(
        models=[model],
        classes=list(classes),
        features=[ImageFeature("Photo", baseline_transforms=[], input_transforms=[])],
        dataset=dataset,
        score_func=lambda out: torch.softmax(out, dim=-1),
    )


def serve(
    model: nn.Module,
    images: Tensor,
    classes: Sequence[str] | None = None,
    port: int | None = None,
    blocking: bool = False,
    bind_all: bool = False,
) -> int:
    """Serve Captum Insights on ``images`` with our methods (Flask, localhost).

    Insights runs its server in a non-daemon thread: a process that calls this with
    ``blocking=False`` does not exit until the server does (tests run it in a subprocess).

    Args:
        model: The classifier.
        images: ``(N, C, H, W)`` images in ``[0, 1]``.
        classes: Output names (see :func:`build_visualizer`).
        port: The port (default: a free one).
        blocking: Wait for the server thread.
        bind_all: Listen on all interfaces instead of localhost only.

    Returns:
        The port.

    Raises:
        ImportError: If ``captum.insights`` is not available.
    """
    visualizer = build_visualizer(model, images, classes)
    return visualizer.serve(blocking=blocking, port=port, bind_all=bind_all)
