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

Every gradient method is called with signed gradients (``abs=False``): the maps are averaged
signed and shown and scored by magnitude. Other front ends read the same entries: the
benchmarks take a spec's class and its :meth:`MethodSpec.kwargs` with their own overrides;
``explain-dataset`` offers :func:`method_names`; Insights offers the table's smoothing methods.
Old names are aliases here (``saliency``, ``integrated-gradients``; see :data:`RENAMED`).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from captum.attr import InputXGradient, IntegratedGradients, Saliency
from captum.attr._utils.attribution import Attribution
from torch import Tensor

from .._checks import check_positive_int
from ..core.reducers import reducer_names
from ..methods import AdaptGrad, FusionGrad, NoiseGrad, SmoothGrad, SmoothTaylor
from ..methods._preset import SmoothingPreset
from ..noise import kernel_names

__all__ = [
    "DEFAULT_METHODS",
    "RENAMED",
    "MethodSpec",
    "get_method",
    "listing",
    "method_names",
    "resolve_methods",
]

#: Images in ``[0, 1]``: the bounds of the input noise.
_IMAGE_BOUNDS = (0.0, 1.0)
#: Noisy copies per inner call (bounded memory; 8-16 was fastest on a 2-core CPU).
_CHUNK = 8


def _fusion_split(samples: int) -> tuple[int, int]:
    """``(weight draws, input draws)`` with a product close to ``samples``."""
    weight_draws = max(1, round(math.sqrt(samples)))
    return weight_draws, max(1, samples // weight_draws)


@dataclass(frozen=True)
class MethodSpec:
    """One named method: its class, its arguments at a budget, and its cost.

    Attributes:
        name: The command-line name (lower case).
        label: The name shown in figures and tables.
        summary: One line saying what it is.
        cls: The attribution class (constructible as ``cls(model)``).
        arguments: ``samples -> keyword arguments`` of ``attribute`` at that budget.
        evaluations: ``samples -> gradient evaluations`` per image.
        fixed: Keyword arguments that do not depend on the budget (e.g. a fixed kernel).
    """

    name: str
    label: str
    summary: str
    cls: type[Attribution]
    arguments: Callable[[int], dict[str, Any]]
    evaluations: Callable[[int], int]
    fixed: dict[str, Any] = field(default_factory=dict)

    def _accepts(self, argument: str) -> bool:
        return argument in inspect.signature(self.cls.attribute).parameters

    @property
    def uses_kernel(self) -> bool:
        """Whether ``--kernel`` changes this method (it draws input noise, kernel not fixed)."""
        return "kernel" not in self.fixed and self._accepts("kernel")

    def kwargs(self, samples: int, **overrides: Any) -> dict[str, Any]:
        """The keyword arguments of ``attribute`` at budget ``samples``, then ``overrides``.

        Args:
            samples: Gradient evaluations per image (>= 1).
            **overrides: Arguments replacing or adding to the table's (a benchmark's chunk
                size, a seed, another confidence).

        Returns:
            A new dict.

        Examples::

            >>> get_method("adaptgrad").kwargs(10, confidence=0.9)["confidence"]
            0.9
        """
        check_positive_int(samples, "samples")
        return {**self.arguments(samples), **self.fixed, **overrides}

    def settings(self, samples: int) -> dict[str, Any]:
        """The keyword arguments used at budget ``samples`` (for reports), JSON friendly."""
        merged = {**self.arguments(samples), **self.fixed}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in merged.items()}

    def attribute(
        self,
        model: Callable[..., Tensor],
        inputs: Tensor,
        target: Any,
        samples: int,
        *,
        seed: int | None = None,
        kernel: str | None = None,
        tolerance: float | None = None,
        report: dict[str, float] | None = None,
    ) -> Tensor:
        """Build the method on ``model`` and explain ``inputs`` at budget ``samples``.

        Args:
            model: The model (an ``nn.Module`` for the weight-noise methods).
            inputs: Images ``(B, C, H, W)`` with values in ``[0, 1]``.
            target: The explained output index (int, list or tensor per example).
            samples: Gradient evaluations per image (>= 1).
            seed: Seed of the method's noise (None: torch's global random state).
            kernel: Input-noise kernel for the methods that draw input noise (ignored by the
                others and by ``smoothgrad-<kernel>``, whose kernel is fixed).
            tolerance: For the smoothing methods: sample until the relative Monte-Carlo error of
                the map is at most this, with ``samples`` as the budget's maximum.
            report: If given, filled for the smoothing methods with ``mc_error`` (the map's
                relative Monte-Carlo error ``||SE|| / ||map||``) and ``samples_used``.

        Returns:
            The attributions, shaped like ``inputs``, detached.

        Raises:
            TypeError, ValueError: If ``samples`` is not an int >= 1.
        """
        kwargs = self.kwargs(samples)
        method = self.cls(model)
        if kernel is not None and self.uses_kernel:
            kwargs["kernel"] = kernel
        if seed is not None and self._accepts("generator"):
            kwargs["generator"] = seed
        smoothing = isinstance(method, SmoothingPreset)
        if smoothing:
            kwargs["return_error"] = True
            if tolerance is not None:
                kwargs["tolerance"] = tolerance
        with torch.enable_grad(), warnings.catch_warnings():
            # Captum's note that it set requires_grad on the inputs itself: expected here.
            warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already")
            result = method.attribute(inputs, target=target, **kwargs)
        if isinstance(result, tuple):
            result = result[0]
        last = method.last_report if smoothing else None
        if report is not None and last is not None and last.error is not None:
            report["mc_error"] = float(last.error.relative_error.mean())
            report["samples_used"] = float(last.error.n_samples.float().mean())
        return result.detach()


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
    weight_draws, input_draws = _fusion_split(samples)
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
        ),
        MethodSpec(
            "smoothgrad",
            "SmoothGrad",
            "mean gradient over Gaussian input noise of 15 % of the range",
            SmoothGrad,
            _smoothgrad_args,
            lambda n: n,
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
        ),
        MethodSpec(
            "fusiongrad",
            "FusionGrad",
            "weight noise x input noise (NoiseGrad++), about sqrt(N) x sqrt(N) draws",
            FusionGrad,
            _fusiongrad_args,
            lambda n: _fusion_split(n)[0] * _fusion_split(n)[1],
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
    return list(_METHODS) + [_KERNEL_PREFIX + k.replace("_", "-") for k in kernel_names()]


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
    lines.append(f"{'kernels':28s} {', '.join(kernel_names())}")
    lines.append(f"{'reducers':28s} {', '.join(reducer_names())}")
    return "\n".join(lines)
