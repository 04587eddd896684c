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

import inspect
import math
import re
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
from .fusion_split import FUSION_INPUT_DRAWS, fusion_split

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


@dataclass(frozen=True)
class TextRecipe:
    """How an entry runs in ``explain-text``, at a text model's word-embedding layer.

    Text methods attribute to the embedding layer's output (token ids have no gradient): each
    runs Layer Integrated Gradients there, and a recipe says which noise the table's method
    draws around it (input noise on the embedding output, multiplicative weight noise, both).

    Attributes:
        name: ``explain-text``'s name of the row (``plain`` for the entry without noise).
        input_noise: Whether it draws noise on the embedding output.
        weight_noise: Whether it draws multiplicative weight noise.
    """

    name: str
    input_noise: bool = False
    weight_noise: bool = False

    @property
    def smoothed(self) -> bool:
        """Whether it draws any noise (else one exact Integrated Gradients call)."""
        return self.input_noise or self.weight_noise

    def draws(self, samples: int) -> tuple[int, int]:
        """``(weight draws, input draws)`` for ``samples`` samples (each of the IG steps).

        FusionGrad splits the budget with :func:`fusion_split` (its input draws rounded, as
        ``explain-text`` always did); the others spend all of it on their one kind of noise.
        """
        if self.input_noise and self.weight_noise:
            return fusion_split(samples, rounded="input")
        return (samples, 1) if self.weight_noise else (1, samples)


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
        text: How ``explain-text`` runs it at a text model's embedding layer (None: not offered
            there).
    """

    name: str
    label: str
    summary: str
    cls: type[Attribution]
    arguments: Callable[[int], dict[str, Any]]
    evaluations: Callable[[int], int]
    fixed: dict[str, Any] = field(default_factory=dict)
    text: TextRecipe | None = None

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

    @property
    def signed_only(self) -> bool:
        """Whether the method's terms are signed by construction (no magnitude convention)."""
        return "abs" not in self.arguments(2)

    def budget_kwargs(self, samples: int, tolerance: float | None) -> dict[str, Any]:
        """The arguments at ``samples`` gradients, or with ``samples`` as the cap of a tolerance.

        Under a tolerance, FusionGrad keeps :data:`FUSION_INPUT_DRAWS` input draws per weight
        draw and samples weight draws (its error is the spread between weight draws, so at
        least two) up to ``samples // FUSION_INPUT_DRAWS`` (:func:`fusion_split`).
        """
        kwargs = self.kwargs(samples)
        if tolerance is not None and _is_nested(kwargs):
            weight_draws, input_draws = fusion_split(
                samples, FUSION_INPUT_DRAWS, min_weight_draws=2
            )
            kwargs["n_weight_samples"], kwargs["nt_samples"] = weight_draws, input_draws
        return kwargs

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
        magnitude: bool = False,
        weight_noise: float | None = None,
    ) -> Tensor:
        """Build the method on ``model`` and explain ``inputs`` at budget ``samples``.

        Args:
            model: The model (an ``nn.Module`` for the weight-noise methods).
            inputs: Images ``(B, C, H, W)`` with values in ``[0, 1]``.
            target: The explained output index (int, list or tensor per example).
            samples: Gradient evaluations per image (>= 1).
            seed: Seed of the method's noise (None: torch's global random state).
            kernel: Input-noise kernel for the methods that draw input noise (ignored by the
                others and by ``smoothgrad-<kernel>``, whose kernel is fixed); either spelling.
            tolerance: For the smoothing methods: sample until the relative Monte-Carlo error of
                the map is at most this, with ``samples`` as the budget's maximum.
            report: If given, filled for the smoothing methods with ``mc_error`` (the map's
                relative Monte-Carlo error ``||SE|| / ||map||``, mean over examples),
                ``samples_used`` (samples averaged: weight draws for NoiseGrad and FusionGrad),
                ``gradients_used`` (gradient evaluations averaged) and, under a tolerance,
                ``tolerance_reached`` (1.0 or 0.0).
            magnitude: Average ``|gradient|`` per sample (the magnitude convention) instead of
                signed gradients; no effect on :attr:`signed_only` methods.
            weight_noise: The weight-noise scale ``s`` for NoiseGrad and FusionGrad (their
                ``weight_stdev``; None: the table's 0.2); ignored by the others.

        Returns:
            The attributions, shaped like ``inputs``, detached.

        Raises:
            TypeError, ValueError: If ``samples`` is not an int >= 1.

        Examples::

            >>> report = {}
            >>> maps = get_method("smoothgrad").attribute(
            ...     model, images, 3, 64, seed=0, tolerance=0.2, magnitude=True, report=report
            ... )  # doctest: +SKIP
            >>> report["mc_error"] <= 0.2 or not report["tolerance_reached"]  # doctest: +SKIP
            True
        """
        kwargs = self.budget_kwargs(samples, tolerance)
        method = self.cls(model)
        if kernel is not None and self.uses_kernel:
            kwargs["kernel"] = resolve_kernel(kernel)
        if seed is not None and self._accepts("generator"):
            kwargs["generator"] = seed
        if magnitude and "abs" in kwargs:
            kwargs["abs"] = True
        if weight_noise is not None and "weight_stdev" in kwargs:
            kwargs["weight_stdev"] = weight_noise
        smoothing = isinstance(method, SmoothingPreset)
        if smoothing:
            kwargs["return_error"] = True
            if tolerance is not None:
                kwargs["tolerance"] = tolerance
        result = _call_quietly(method, inputs, target, kwargs)
        if report is not None and smoothing:
            _fill_report(report, method.last_report, kwargs, tolerance)
        return result.detach()


def _call_quietly(
    method: Attribution, inputs: Tensor, target: Any, kwargs: dict[str, Any]
) -> Tensor:
    """``method.attribute``, without the warnings its caller reports itself.

    Captum's note that it set ``requires_grad`` is expected here; the library's warning that a
    tolerance was not reached (``ToleranceNotReachedWarning``, where the library has it) is
    replaced by the caller's own, from the report (one warning, not two).
    """
    with torch.enable_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = method.attribute(inputs, target=target, **kwargs)
    for item in caught:
        if _ignored(item):
            continue
        warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)
    if isinstance(result, tuple):
        result = result[0]
    return result


def _ignored(item: warnings.WarningMessage) -> bool:
    if item.category.__name__ == "ToleranceNotReachedWarning":
        return True
    return bool(re.match(r"Input Tensor \d+ did not already", str(item.message)))


def _fill_report(
    report: dict[str, float], last: Any, kwargs: dict[str, Any], tolerance: float | None
) -> None:
    if last is None or last.error is None:
        return
    used = last.error.n_samples.float()
    # Nested sampling (FusionGrad): a sample is a weight draw of `nt_samples` gradients.
    per_sample = kwargs["nt_samples"] if _is_nested(kwargs) else 1
    errors = last.error.relative_error
    report["mc_error"] = float(errors.mean())
    report["samples_used"] = float(used.mean())
    report["gradients_used"] = float(used.mean()) * per_sample
    if tolerance is not None:
        report["tolerance_reached"] = float(bool((errors <= tolerance).all()))


def _is_nested(kwargs: dict[str, Any]) -> bool:
    """Whether the arguments are FusionGrad's: weight draws, each of input draws."""
    return "n_weight_samples" in kwargs and "nt_samples" in kwargs


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


def kernel_cli_names() -> list[str]:
    """The registered kernels as the command line names them (hyphens: ``student-t``).

    Returns:
        One name per kernel of :func:`~captum_smooth.noise.kernel_names`, in its order.

    Examples::

        >>> "student-t" in kernel_cli_names()
        True
    """
    return [k.replace("_", "-") for k in kernel_names()]


def resolve_kernel(text: str) -> str:
    """The library's kernel name for ``text`` (``student-t`` or ``student_t``, any case).

    Args:
        text: A kernel name as the command line or the library spells it.

    Returns:
        The registered name (``student_t``).

    Raises:
        ValueError: An unknown kernel (the message lists :func:`kernel_cli_names`).

    Examples::

        >>> resolve_kernel("Student-T")
        'student_t'
    """
    key = text.strip().lower().replace("-", "_")
    if key in kernel_names():
        return key
    raise ValueError(f"unknown kernel {text!r}; known kernels: {', '.join(kernel_cli_names())}")


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
