"""One entry of the method table: :class:`MethodSpec` (how a method is built and called at a
budget of gradients), :class:`TextRecipe` (how it runs in ``explain-text``), and the kernels'
names on the command line (:func:`kernel_cli_names`, :func:`resolve_kernel`).

The table itself, and the lookups by name, are in :mod:`captum_smooth.app.methods`.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from captum.attr._utils.attribution import Attribution
from torch import Tensor

from .._checks import check_positive_int
from ..methods._preset import SmoothingPreset
from ..noise import kernel_names
from .fusion_split import FUSION_INPUT_DRAWS, fusion_split

__all__ = [
    "MethodSpec",
    "TextRecipe",
    "antithetic_counts",
    "gradient_count",
    "kernel_cli_names",
    "resolve_kernel",
]


def _even(count: int) -> int:
    return count + count % 2


def antithetic_counts(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with ``sampling="antithetic"`` and its paired counts rounded up to even.

    Antithetic sampling draws in mirrored pairs, so the counts it pairs must be even (the
    library refuses odd ones): the weight draws ``n_weight_samples`` always, the input draws
    ``nt_samples`` without weight noise or when there are more than one per weight draw
    (:mod:`captum_smooth.core.antithetic`). Each odd one is rounded *up* (a budget of 5
    SmoothGrad samples runs 6 gradients; FusionGrad's 3 x 3 runs 4 x 4).

    Args:
        kwargs: A method's ``attribute`` arguments (the table's, or ``explain-text``'s).

    Returns:
        A new dict.

    Examples::

        >>> antithetic_counts({"nt_samples": 5})
        {'nt_samples': 6, 'sampling': 'antithetic'}
        >>> antithetic_counts({"n_weight_samples": 3, "nt_samples": 1})["nt_samples"]
        1
    """
    out = dict(kwargs)
    weights = "n_weight_samples" in out
    if weights:
        out["n_weight_samples"] = _even(int(out["n_weight_samples"]))
    inputs = out.get("nt_samples")
    if inputs is not None and (not weights or inputs > 1):
        out["nt_samples"] = _even(int(inputs))
    out["sampling"] = "antithetic"
    return out


def gradient_count(kwargs: dict[str, Any]) -> int:
    """Gradient evaluations per example of a smoothing method's fixed-count ``kwargs``.

    Weight draws times input draws, plus the clean gradient of ``include_clean``.
    """
    draws = int(kwargs.get("n_weight_samples", 1)) * int(kwargs.get("nt_samples", 1))
    return draws + (1 if kwargs.get("include_clean") else 0)


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
        sampling: The sampling ``captum-smooth demo`` uses for it without ``--sampling``:
            ``"antithetic"`` where ``benchmarks/bench_antithetic.py`` measured it not worse
            than ``"iid"`` at equal gradients (``explain`` and the others default to ``"iid"``).
    """

    name: str
    label: str
    summary: str
    cls: type[Attribution]
    arguments: Callable[[int], dict[str, Any]]
    evaluations: Callable[[int], int]
    fixed: dict[str, Any] = field(default_factory=dict)
    text: TextRecipe | None = None
    sampling: str = "iid"

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

    def settings(self, samples: int, sampling: str = "iid") -> dict[str, Any]:
        """The keyword arguments used at budget ``samples`` (for reports), JSON friendly."""
        merged = self.sampled({**self.arguments(samples), **self.fixed}, sampling)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in merged.items()}

    @property
    def samples_noise(self) -> bool:
        """Whether it draws noise (a smoothing preset): what ``sampling`` applies to."""
        return issubclass(self.cls, SmoothingPreset)

    def sampled(self, kwargs: dict[str, Any], sampling: str) -> dict[str, Any]:
        """``kwargs`` under ``sampling``: unchanged for ``"iid"`` and the methods without
        noise, else :func:`antithetic_counts` (the paired counts rounded up to even)."""
        if sampling == "iid" or not self.samples_noise:
            return kwargs
        return antithetic_counts(kwargs)

    def gradients(self, samples: int, sampling: str = "iid") -> int:
        """Gradient evaluations per image at budget ``samples`` under ``sampling`` (more than
        :attr:`evaluations` where antithetic sampling rounded a count up to even)."""
        if sampling == "iid" or not self.samples_noise:
            return self.evaluations(samples)
        return gradient_count(self.sampled(self.kwargs(samples), sampling))

    @property
    def signed_only(self) -> bool:
        """Whether the method's terms are signed by construction (no magnitude convention)."""
        return "abs" not in self.arguments(2)

    def budget_kwargs(
        self, samples: int, tolerance: float | None, sampling: str = "iid"
    ) -> dict[str, Any]:
        """The arguments at ``samples`` gradients, or with ``samples`` as the cap of a tolerance.

        Under a tolerance, FusionGrad keeps :data:`FUSION_INPUT_DRAWS` input draws per weight
        draw and samples weight draws (its error is the spread between weight draws, so at
        least two) up to ``samples // FUSION_INPUT_DRAWS`` (:func:`fusion_split`). Under
        ``sampling="antithetic"`` the paired counts are rounded up to even (:meth:`sampled`).
        """
        kwargs = self.kwargs(samples)
        if tolerance is not None and _is_nested(kwargs):
            weight_draws, input_draws = fusion_split(
                samples, FUSION_INPUT_DRAWS, min_weight_draws=2
            )
            kwargs["n_weight_samples"], kwargs["nt_samples"] = weight_draws, input_draws
        return self.sampled(kwargs, sampling)

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
        sampling: str = "iid",
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
                relative Monte-Carlo error ``||SE|| / sqrt(||map||^2 - ||SE||^2)``, mean over
                examples: inf when a map cannot be told from its noise),
                ``samples_used`` (samples averaged: weight draws for NoiseGrad and FusionGrad),
                ``gradients_used`` (gradient evaluations averaged) and, under a tolerance,
                ``tolerance_reached`` (1.0 or 0.0).
            magnitude: Average ``|gradient|`` per sample (the magnitude convention) instead of
                signed gradients; no effect on :attr:`signed_only` methods.
            weight_noise: The weight-noise scale ``s`` for NoiseGrad and FusionGrad (their
                ``weight_stdev``; None: the table's 0.2); ignored by the others.
            sampling: ``"iid"`` or ``"antithetic"`` (noise in mirrored pairs, the paired
                counts rounded up to even: :func:`antithetic_counts`); ignored by the methods
                without noise.

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
        kwargs = self.budget_kwargs(samples, tolerance, sampling)
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
