"""THE method table: the methods of ``explain``, ``explain-dataset``, Insights and the benchmarks.

Each entry says how to build a method from a model and how to call it on a batch of images in
``[0, 1]`` with a budget of ``samples`` gradient evaluations per image, so that methods are
compared at (about) equal cost, as ``evaluation.md`` asks:

=====================  =========================================================  ===========
name                   what is called                                             gradients
=====================  =========================================================  ===========
``gradient``           ``Saliency(abs=False)``, the plain (signed) gradient       1
``smoothgrad``         :class:`~captum_smooth.SmoothGrad`, noise level 0.15       N
``adaptgrad``          :class:`~captum_smooth.AdaptGrad`, c = 0.95, clean term    N
``noisegrad``          ``NoiseGrad``, weight noise s = 0.2                        N
``fusiongrad``         ``FusionGrad``, M x n weight x input draws, sigma 0.2      ~N
``smoothtaylor``       ``SmoothTaylor``, sigma 0.25 (0.5 in the model's units)    N
``ig``                 Captum's ``IntegratedGradients``, black baseline           N
``input-x-gradient``   Captum's ``InputXGradient`` (not run by default)           1
``smoothgrad-<k>``     SmoothGrad with kernel ``<k>`` (any of ``kernel_names()``)  N
=====================  =========================================================  ===========

Map conventions (:meth:`MethodSpec.attribute`, ``magnitude=``): the table's arguments average
signed gradients (``abs=False``, what the benchmarks use). The command line's default view is the
*magnitude* (``magnitude=True``): each gradient sample is taken in absolute value before the
mean (the SmoothGrad paper's ImageNet convention), so its maps and their Monte-Carlo error are
those of ``mean |gradient|``. SmoothTaylor and Integrated Gradients are signed by construction
(their terms sum to an output difference): they are always averaged signed
(:attr:`MethodSpec.signed_only`). ``--sign`` averages every method signed.

Other front ends read the same entries: the benchmarks take a spec's class and its
:meth:`MethodSpec.kwargs` with their own overrides; ``explain-dataset`` offers
:func:`method_names`; Insights offers the table's smoothing methods; ``explain-text`` runs the
entries with a :class:`TextRecipe` (:func:`text_methods`) at a text model's embedding layer.
Every FusionGrad budget is split into weight x input draws by the one
:func:`~captum_smooth.app.fusion_split.fusion_split`.
Old names are aliases here (``saliency``, ``integrated-gradients``; see :data:`RENAMED`).
Kernels are named as the methods are, with hyphens (``student-t``, ``smoothgrad-student-t``;
:func:`kernel_cli_names`, :func:`resolve_kernel`); the library's spelling (``student_t``) is
accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from captum.attr import InputXGradient, IntegratedGradients, Saliency

from ..core.reducers import reducer_names
from ..methods import AdaptGrad, FusionGrad, NoiseGrad, SmoothGrad, SmoothTaylor
from ..noise import kernel_names
from .fusion_split import FUSION_INPUT_DRAWS, fusion_split
from .method_spec import MethodSpec, TextRecipe, kernel_cli_names, resolve_kernel

__all__ = [
    "DEFAULT_METHODS",
    "FUSION_INPUT_DRAWS",
    "RENAMED",
    "MethodSpec",
    "TextRecipe",
    "cli_method",
    "fusion_split",
    "get_method",
    "kernel_cli_names",
    "listing",
    "method_names",
    "resolve_kernel",
    "resolve_methods",
    "text_methods",
]

#: Images in ``[0, 1]``: the bounds of the input noise.
_IMAGE_BOUNDS = (0.0, 1.0)
#: Noisy copies per inner call (bounded memory; 8-16 was fastest on a 2-core CPU).
_CHUNK = 8
#: The demo's sampling (:attr:`MethodSpec.sampling`) where ``benchmarks/bench_antithetic.py``
#: measured antithetic pairs not worse than i.i.d. draws at equal gradients for the demo's
#: magnitude maps, on the digits CNN and on the demo's EfficientNet-Lite0 (benchmarks/README.md,
#: "Antithetic sampling"): SmoothGrad and NoiseGrad. AdaptGrad, FusionGrad and SmoothTaylor stay
#: i.i.d.: on EfficientNet-Lite0 their errors under pairs were 1.07x (1.02-1.13), 1.08x
#: (1.02-1.13) and 1.05x (1.02-1.09) the i.i.d. ones.
_PAIRED = "antithetic"


def _smoothgrad_args(samples: int) -> dict[str, Any]:
    return {
        "nt_samples": samples,
        "noise_level": 0.15,
        "bounds": _IMAGE_BOUNDS,
        "nt_samples_batch_size": _CHUNK,
        "abs": False,
    }


def _adaptgrad_args(samples: int) -> dict[str, Any]:
    # The clean gradient is one of the N terms (the authors' N + 1 with N = samples - 1).
    return {
        "nt_samples": max(1, samples - 1),
        "include_clean": True,
        "confidence": 0.95,
        "bounds": _IMAGE_BOUNDS,
        "nt_samples_batch_size": _CHUNK,
        "abs": False,
    }


def _fusiongrad_args(samples: int) -> dict[str, Any]:
    weight_draws, input_draws = fusion_split(samples)
    return {
        "n_weight_samples": weight_draws,
        "nt_samples": input_draws,
        "weight_stdev": 0.2,
        "stdevs": 0.2,
        "nt_samples_batch_size": _CHUNK,
        "abs": False,
    }


_METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "gradient",
            "Gradient",
            "the plain gradient of the target logit (Captum Saliency, signed)",
            Saliency,
            lambda n: {"abs": False},
            lambda n: 1,
            text=TextRecipe("plain"),
        ),
        MethodSpec(
            "smoothgrad",
            "SmoothGrad",
            "mean gradient over Gaussian input noise of 15 % of the range",
            SmoothGrad,
            _smoothgrad_args,
            lambda n: n,
            text=TextRecipe("smoothgrad", input_noise=True),
            sampling=_PAIRED,
        ),
        MethodSpec(
            "adaptgrad",
            "AdaptGrad",
            "SmoothGrad with per-pixel sigma kept inside [0, 1] at confidence 0.95",
            AdaptGrad,
            _adaptgrad_args,
            lambda n: max(1, n - 1) + 1,
        ),
        MethodSpec(
            "noisegrad",
            "NoiseGrad",
            "mean gradient over multiplicative weight noise N(1, 0.2^2)",
            NoiseGrad,
            lambda n: {"n_weight_samples": n, "weight_stdev": 0.2, "abs": False},
            lambda n: n,
            text=TextRecipe("noisegrad", weight_noise=True),
            sampling=_PAIRED,
        ),
        MethodSpec(
            "fusiongrad",
            "FusionGrad",
            "weight noise x input noise (NoiseGrad++), about sqrt(N) x sqrt(N) draws",
            FusionGrad,
            _fusiongrad_args,
            lambda n: math.prod(fusion_split(n)),
            text=TextRecipe("fusiongrad", input_noise=True, weight_noise=True),
        ),
        MethodSpec(
            "smoothtaylor",
            "SmoothTaylor",
            "Taylor smoothing: mean of (x - z) * grad f(z) over Gaussian roots z",
            SmoothTaylor,
            lambda n: {"nt_samples": n, "stdevs": 0.25, "nt_samples_batch_size": _CHUNK},
            lambda n: n,
        ),
        MethodSpec(
            "ig",
            "Integrated Gradients",
            "Captum IntegratedGradients from a black image, N steps",
            IntegratedGradients,
            lambda n: {"n_steps": n, "internal_batch_size": _CHUNK},
            lambda n: n,
        ),
        MethodSpec(
            "input-x-gradient",
            "Input x Gradient",
            "Captum InputXGradient: the input times its gradient (one gradient)",
            InputXGradient,
            lambda n: {},
            lambda n: 1,
        ),
    )
}

#: Names of earlier versions (``explain-dataset`` called the first two ``saliency`` and
#: ``integrated-gradients``): ``explain`` accepts them, ``explain-dataset`` names the new name.
RENAMED: dict[str, str] = {
    "saliency": "gradient",
    "integrated-gradients": "ig",
    "integrated_gradients": "ig",
}

_ALIASES: dict[str, str] = {
    "vanilla": "gradient",
    "grad": "gradient",
    "noisegrad++": "fusiongrad",
    **RENAMED,
}

#: The methods ``explain`` and ``demo`` run when none are named.
DEFAULT_METHODS: tuple[str, ...] = (
    "gradient",
    "smoothgrad",
    "adaptgrad",
    "noisegrad",
    "fusiongrad",
    "smoothtaylor",
    "ig",
)

_KERNEL_PREFIX = "smoothgrad-"


def method_names() -> list[str]:
    """Every method name ``get_method`` knows (kernel variants included).

    Returns:
        The names, the fixed ones first, then ``smoothgrad-<kernel>`` for each kernel.

    Examples::

        >>> "smoothgrad-laplace" in method_names()
        True
    """
    return list(_METHODS) + [_KERNEL_PREFIX + k for k in kernel_cli_names()]


def get_method(name: str) -> MethodSpec:
    """The method called ``name`` (case-insensitive; ``smoothgrad-<kernel>`` for any kernel).

    Args:
        name: A name of :func:`method_names` or an alias (``vanilla``, ``saliency``,
            ``integrated-gradients``, ``noisegrad++``).

    Returns:
        Its :class:`MethodSpec`.

    Raises:
        TypeError: If ``name`` is not a str.
        ValueError: If the name is unknown (the message lists the known names).

    Examples::

        >>> get_method("smoothgrad-laplace").fixed
        {'kernel': 'laplace'}
    """
    if not isinstance(name, str):
        raise TypeError(f"method name must be a str, got {type(name).__name__}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in _METHODS:
        return _METHODS[key]
    if key.startswith(_KERNEL_PREFIX):
        kernel = key[len(_KERNEL_PREFIX) :].replace("-", "_")
        if kernel in kernel_names():
            base = _METHODS["smoothgrad"]
            return MethodSpec(
                key,
                f"SmoothGrad ({kernel})",
                f"SmoothGrad with the {kernel} kernel",
                base.cls,
                base.arguments,
                base.evaluations,
                fixed={"kernel": kernel},
            )
    raise ValueError(f"unknown method {name!r}; known methods: {', '.join(method_names())}")


def text_methods() -> dict[str, MethodSpec]:
    """The entries ``explain-text`` offers, by its names (:attr:`TextRecipe.name`).

    Returns:
        ``{name: spec}`` in the table's order; each spec's :attr:`MethodSpec.text` is set.

    Examples::

        >>> list(text_methods())
        ['plain', 'smoothgrad', 'noisegrad', 'fusiongrad']
    """
    return {spec.text.name: spec for spec in _METHODS.values() if spec.text is not None}


def cli_method(text: str) -> MethodSpec:
    """A method named on the command line (``explain``, ``demo``, ``explain-dataset`` alike).

    The table's names and aliases, except the names of earlier versions (:data:`RENAMED`),
    which are refused with their new name so that every command speaks one naming scheme.

    Raises:
        ValueError: An old name (the message names the new one) or an unknown name.

    Examples::

        >>> cli_method("smoothgrad-student-t").fixed
        {'kernel': 'student_t'}
    """
    key = text.strip().lower()
    if key in RENAMED:
        raise ValueError(
            f"method {text!r} is now called {RENAMED[key]!r} (see `captum-smooth methods`)"
        )
    return get_method(key)


def resolve_methods(names: Sequence[str]) -> list[MethodSpec]:
    """Look up several names at once, refusing unknown and repeated ones.

    Args:
        names: Method names (see :func:`method_names`).

    Returns:
        The specs, in order.

    Raises:
        ValueError: For an empty list, unknown names (all listed in one message) or repeats.

    Examples::

        >>> [m.name for m in resolve_methods(["vanilla", "smoothgrad-uniform"])]
        ['gradient', 'smoothgrad-uniform']
    """
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError("no method given; known methods: " + ", ".join(method_names()))
    specs: list[MethodSpec] = []
    unknown: list[str] = []
    for name in names:
        try:
            specs.append(get_method(name))
        except ValueError:
            unknown.append(name)
    if unknown:
        listed = ", ".join(repr(n) for n in unknown)
        raise ValueError(
            f"unknown method{'s' if len(unknown) > 1 else ''} {listed}; "
            f"known methods: {', '.join(method_names())}"
        )
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"method {spec.name!r} is named twice")
        seen.add(spec.name)
    return specs


def listing() -> str:
    """What ``captum-smooth methods`` prints: this table, the noise kernels and the reducers.

    Returns:
        One line per method (name and summary), then the registered kernels and reducers
        (:func:`~captum_smooth.noise.kernels.register_kernel`,
        :func:`~captum_smooth.core.reducers.register_reducer`).
    """
    lines = [f"{name:28s} {get_method(name).summary}" for name in method_names()]
    lines.append(f"{'kernels (--kernel)':28s} {', '.join(kernel_cli_names())}")
    lines.append(f"{'reducers':28s} {', '.join(reducer_names())}")
    return "\n".join(lines)
