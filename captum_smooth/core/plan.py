"""The loop's options, checked once, into a plan: what one call of the loop will sample.

:class:`LoopOptions` lists every option of the loop with its default (Captum's NoiseTunnel
defaults where Captum has the option); :data:`LOOP_OPTION_DOCS` says once what each means (the
tunnel's and the presets' docstrings are made from it). :func:`make_plan` checks the options
against the inputs and returns a :class:`SamplingPlan`: the inputs, the sigma of each, the
kernel, the chunk size, the sample counts, the weight noise, the transform, the reducer and the
stopping rule.
"""

from __future__ import annotations

import contextlib
import dataclasses
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from captum._utils.common import _format_tensor_into_tuples, _is_tuple
from captum.attr._utils.attribution import GradientAttribution, LayerAttribution
from torch import Tensor, nn

from .._checks import (
    GeneratorLike,
    check_bool,
    check_passed_through,
    check_positive_int,
    check_target,
    resolve_generator,
)
from ..noise.kernels import Kernel, get_kernel
from .antithetic import Pairing
from .chunking import resolve_chunk_size
from .noising import SigmaSpec, StdevsType, evaluate_sigma, is_zero, split_stdevs
from .reducers import NT_TYPES, REDUCERS, ReducerFactory, ReducerLike, get_reducer
from .stopping import StoppingRule

__all__ = [
    "LOOP_OPTION_DOCS",
    "LoopOptions",
    "SampleTransform",
    "SamplingPlan",
    "WeightNoiseLike",
    "make_plan",
    "options_doc",
]

#: ``transform(clean, noisy, attributions, k) -> attributions``: clean inputs are ``(B, ...)``,
#: noisy inputs and attributions ``(B * k, ...)`` example-major.
SampleTransform = Callable[
    [tuple[Tensor, ...], tuple[Tensor, ...], tuple[Tensor, ...], int], tuple[Tensor, ...]
]


class WeightPerturbation(Protocol):
    """What a weight-noise session offers the loop: draw new weights for the next draw."""

    def perturb(self, generator: torch.Generator | None) -> None:
        """Replace the weights by a fresh noisy draw of the original ones."""


class WeightNoiseLike(Protocol):
    """Weight noise as a component: a session that restores the model on exit, whatever happens."""

    def session(self, model: nn.Module) -> contextlib.AbstractContextManager[WeightPerturbation]:
        """Enter: back up what will be perturbed. Exit: restore the model bit for bit."""


class NoWeightNoise:
    """The null weight noise: one draw of the unchanged model."""

    def perturb(self, generator: torch.Generator | None) -> None:
        return None

    @contextlib.contextmanager
    def session(self, model: Any) -> Iterator[NoWeightNoise]:
        yield self


@dataclass(frozen=True)
class LoopOptions:
    """Every option of the loop, with its default. See :data:`LOOP_OPTION_DOCS`."""

    nt_type: str = "smoothgrad"
    nt_samples: int = 5
    nt_samples_batch_size: int | str | None = None
    stdevs: StdevsType = 1.0
    draw_baseline_from_distrib: bool = False
    kernel: str | Kernel = "gaussian"
    include_clean: bool = False
    generator: GeneratorLike = None
    noise_layer: nn.Module | None = None
    weight_noise: WeightNoiseLike | None = None
    n_weight_samples: int = 1
    sample_transform: SampleTransform | None = None
    reducer: ReducerLike | None = None
    show_progress: bool = False
    return_error: bool = False
    tolerance: float | None = None
    min_samples: int | None = None
    max_samples: int | None = None
    sampling: str = "iid"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))


#: What each loop option means: stated once, read by every docstring that lists options.
LOOP_OPTION_DOCS: dict[str, str] = {
    "nt_type": "Captum's name of a reducer: ``smoothgrad`` (mean), ``smoothgrad_sq`` (mean of "
    "squares) or ``vargrad`` (variance), or any name registered with ``register_reducer``.",
    "nt_samples": "Noisy input samples per example (per weight draw).",
    "nt_samples_batch_size": "Noisy copies of each example per inner call: None (all at once, "
    'as Captum), a positive int, or ``"auto"`` (a fast chunk with bounded memory).',
    "stdevs": "Input noise scale: a float (absolute, Captum's convention), a tensor with the "
    "input's dimensions (``(B, 1, ...)`` per example, ``(1, ...)`` per element; a 1-D tensor on "
    "a multi-dimensional input is refused as ambiguous), a sigma rule (``PerExampleSigma``, "
    "``RangeShareSigma``, ``AdaptiveSigma``), or a tuple with one of these per input.",
    "draw_baseline_from_distrib": "Draw each copy's baseline from ``baselines`` (drawn through "
    "``generator``).",
    "kernel": "Name of the noise kernel (any registered with ``register_kernel``) or a Kernel "
    "object; scaled so that its standard deviation is sigma.",
    "include_clean": "Also average in the attribution of the un-noised input (one extra term "
    "per weight draw), as the AdaptGrad authors do.",
    "generator": "A ``torch.Generator``, an int seed, or None for torch's global random state "
    "(Captum's behaviour).",
    "noise_layer": "Add the noise to this layer's output instead of the inputs (token ids); "
    "``stdevs`` then applies to the layer's output.",
    "weight_noise": "A weight-noise component (``WeightNoise``); the model is restored bit for "
    "bit afterwards.",
    "n_weight_samples": "Weight draws (with weight noise).",
    "sample_transform": "``transform(clean, noisy, attributions, k)`` applied to each chunk's "
    "attributions before reduction (SmoothTaylor's Taylor term).",
    "reducer": "A registered reducer name or a factory ``factory(batch_size) -> reducer`` (see "
    "``captum_smooth.core.reducers.Reducer``); overrides ``nt_type``.",
    "show_progress": "Show a progress bar over the chunks.",
    "return_error": "Also return the Monte-Carlo error (a ``MonteCarloError``) as the last "
    "element of the result.",
    "tolerance": "Sample until each example's relative error ``||SE|| / sqrt(||map||^2 - "
    "||SE||^2)`` (``inf`` while the map cannot be told from its noise) is at most this, instead "
    "of a fixed count; examples stop one by one (input samples, or weight draws under weight "
    "noise).",
    "min_samples": "With ``tolerance``: the fewest samples (>= 2). Default: min(8, max).",
    "max_samples": "With ``tolerance``: the most samples. Default: ``nt_samples`` "
    "(``n_weight_samples`` under weight noise).",
    "sampling": '``"iid"`` (independent draws, Captum\'s numbers) or ``"antithetic"``: input '
    "noise in mirrored pairs ``t, -t``, weight noise as ``eta, 2 - eta`` (multiplicative) or "
    "``e, -e`` (additive); unbiased, exact where the attribution is linear in the noise, and "
    "the error is computed from the pairs. The paired counts (``nt_samples``, "
    "``n_weight_samples``, ``max_samples``) must be even; chunks hold whole pairs.",
}


def options_doc(defaults: dict[str, Any], extra: dict[str, str] | None = None) -> str:
    """An ``Args:`` block for the given options (``name -> default``), from one table.

    Args:
        defaults: The options to document with the defaults shown.
        extra: Documentation of arguments that are not loop options (a preset's own).

    Returns:
        The indented lines of a Google-style ``Args:`` section (without the header).
    """
    docs = {**LOOP_OPTION_DOCS, **(extra or {})}
    lines = []
    for name, default in defaults.items():
        text = f"{name}: {docs.get(name, 'Passed to the inner method.')} Default: {default!r}."
        lines.extend(textwrap.wrap(text, 92, initial_indent=" " * 12, subsequent_indent=" " * 16))
    return "\n".join(lines)


@dataclass
class SamplingPlan:
    """What one call of the loop samples, all options checked.

    Attributes:
        inputs: The clean inputs, a tuple of ``(B, ...)`` tensors.
        is_tuple: Whether the user gave a tuple (the output mirrors it).
        kernel: The input-noise kernel.
        sigmas: The evaluated sigma of each input, or None when the noise is at a layer.
        layer_sigma: The sigma spec of the layer output (``noise_layer``), else None.
        noise_layer: The layer whose output takes the noise, or None.
        chunk: Noisy copies of each example per inner call.
        stop: The stopping rule (sample counts, tolerance).
        weight_noise: The weight-noise component (the null one without weight noise).
        n_weight_samples: The weight draws asked for.
        transform: The per-sample transform, or None.
        reducer: The reducer factory.
        generator: The generator of every draw (None: torch's global state).
        include_clean: Average in the un-noised attribution once per weight draw.
        draw_baselines: Draw each copy's baseline from the given ones.
        want_delta: Collect Captum's convergence deltas.
        return_error: Return the Monte-Carlo error.
        error_wanted: Track the error (``return_error`` or ``tolerance``).
        show_progress: Show a progress bar.
        kwargs: The inner method's keyword arguments.
        pairing: Which draws come in antithetic pairs (``sampling``).
    """

    inputs: tuple[Tensor, ...]
    is_tuple: bool
    kernel: Kernel
    sigmas: tuple[float | Tensor, ...] | None
    layer_sigma: SigmaSpec | None
    noise_layer: nn.Module | None
    chunk: int
    stop: StoppingRule
    weight_noise: Any
    n_weight_samples: int
    transform: SampleTransform | None
    reducer: ReducerFactory
    generator: torch.Generator | None
    include_clean: bool
    draw_baselines: bool
    want_delta: bool
    return_error: bool
    error_wanted: bool
    show_progress: bool
    kwargs: dict[str, Any] = field(default_factory=dict)
    pairing: Pairing = field(default_factory=Pairing)

    @property
    def batch(self) -> int:
        """The number of examples ``B``."""
        return self.inputs[0].shape[0]

    @property
    def has_weight_draws(self) -> bool:
        """Whether several weight draws are made."""
        return not isinstance(self.weight_noise, NoWeightNoise) and self.stop.max_weight_draws > 1


def _check_input(i: int, inputs: tuple[Any, ...]) -> None:
    x = inputs[i]
    if not isinstance(x, Tensor):
        raise TypeError(f"`inputs[{i}]` must be a tensor, got {type(x).__name__}")
    if x.dim() == 0 or x.shape[0] != inputs[0].shape[0]:
        shapes = [tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in inputs]
        raise ValueError(
            "`inputs` must be batch first with the same batch size in every tensor, "
            f"got shapes {shapes}"
        )
    if x.is_complex():
        raise TypeError(
            f"`inputs[{i}]` has complex dtype {x.dtype}: the noise and the gradients are "
            "defined for real floating-point inputs"
        )
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        n_nan, n_inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
        raise ValueError(f"`inputs[{i}]` contains {n_nan} NaN and {n_inf} +-inf value(s)")


def _check_integer_input(i: int, x: Tensor, spec: Any, at_layer: bool, needs_grad: bool) -> None:
    if x.is_floating_point() or at_layer:
        return
    if not is_zero(spec):
        raise TypeError(
            f"`inputs[{i}]` has dtype {x.dtype}, not floating point (e.g. token ids), and "
            "cannot take noise: pass `noise_layer=` the layer (such as the embedding) whose output "
            "should be noised instead"
        )
    if needs_grad:
        raise TypeError(
            f"`inputs[{i}]` has dtype {x.dtype}, not floating point: the inner method takes "
            "gradients with respect to the inputs; for token ids use a layer method (e.g. "
            "LayerIntegratedGradients on the embedding), with `noise_layer=` for noise"
        )


def _format_inputs(
    inputs: Any, options: LoopOptions, needs_grad: bool
) -> tuple[tuple[Tensor, ...], tuple]:
    """The inputs as a checked tuple, and one sigma spec per input (one at a layer)."""
    if not isinstance(inputs, (Tensor, tuple)):
        raise TypeError(
            f"`inputs` must be a tensor or a tuple of tensors, got {type(inputs).__name__}"
        )
    inputs_t = _format_tensor_into_tuples(inputs)
    if len(inputs_t) == 0:
        raise ValueError("`inputs` is empty")
    first = inputs_t[0]
    if isinstance(first, Tensor) and first.dim() > 0 and first.shape[0] == 0:
        raise ValueError(f"`inputs` has an empty batch (shape {tuple(first.shape)})")
    for i in range(len(inputs_t)):
        _check_input(i, inputs_t)
    at_layer = options.noise_layer is not None
    specs = split_stdevs(options.stdevs, 1 if at_layer else len(inputs_t))
    for i in range(len(inputs_t)):
        _check_integer_input(i, inputs_t[i], specs[min(i, len(specs) - 1)], at_layer, needs_grad)
    return inputs_t, specs


def _resolve_reducer(options: LoopOptions) -> ReducerFactory:
    if options.reducer is not None:
        if options.nt_type != LoopOptions.nt_type:
            raise ValueError(
                f"give the reducer once: `nt_type={options.nt_type!r}` or "
                f"`reducer={options.reducer!r}`, not both"
            )
        return get_reducer(options.reducer)
    if not isinstance(options.nt_type, str) or options.nt_type not in REDUCERS:
        raise ValueError(
            f"`nt_type` must be one of {list(NT_TYPES)} (or a registered reducer: "
            f"{REDUCERS.names()}), got {options.nt_type!r}"
        )
    return REDUCERS.get(options.nt_type)


def _weight_noise(options: LoopOptions, n_weight_samples: int) -> Any:
    if options.weight_noise is None:
        if n_weight_samples != 1:
            raise ValueError("`n_weight_samples` > 1 needs `weight_noise`")
        return NoWeightNoise()
    if not callable(getattr(options.weight_noise, "session", None)):
        raise TypeError(
            "`weight_noise` must be a weight-noise component with a `session(model)` method "
            f"(e.g. captum_smooth.WeightNoise(0.2)), got {options.weight_noise!r}"
        )
    return options.weight_noise


def _check_transform(transform: Any) -> SampleTransform | None:
    if transform is not None and not callable(transform):
        raise TypeError(
            "`sample_transform` must be None or a callable "
            f"transform(clean, noisy, attributions, k), got {transform!r}"
        )
    return transform


def _input_sigmas(
    specs: tuple, inputs: tuple[Tensor, ...], at_layer: bool
) -> tuple[float | Tensor, ...] | None:
    # Sigma of input noise depends only on the clean inputs: each rule is evaluated once.
    if at_layer:
        return None
    return tuple(
        evaluate_sigma(spec, x) if x.is_floating_point() else 0.0 for spec, x in zip(specs, inputs)
    )


def make_plan(
    attribution_method: Any, inputs: Any, options: LoopOptions, kwargs: dict[str, Any]
) -> SamplingPlan:
    """Check the options against the inputs and make the plan of one call.

    Args:
        attribution_method: The inner Captum method.
        inputs: A tensor or a tuple of tensors, batch first.
        options: The loop's options.
        kwargs: The inner method's keyword arguments.

    Returns:
        The :class:`SamplingPlan`.

    Raises:
        TypeError, ValueError: Any option or input that is wrong, naming the argument.
    """
    flags = ("include_clean", "draw_baseline_from_distrib", "return_error", "show_progress")
    for name in flags:
        check_bool(getattr(options, name), name)
    if options.noise_layer is not None and not isinstance(options.noise_layer, nn.Module):
        raise TypeError(
            f"`noise_layer` must be an nn.Module, got {type(options.noise_layer).__name__}"
        )
    nt_samples = check_positive_int(options.nt_samples, "nt_samples")
    n_weight_samples = check_positive_int(options.n_weight_samples, "n_weight_samples")
    reducer = _resolve_reducer(options)
    weight_noise = _weight_noise(options, n_weight_samples)
    kernel = get_kernel(options.kernel)
    # Gradients with respect to the inputs (not a layer's) need floating-point inputs.
    needs_grad = isinstance(attribution_method, GradientAttribution) and not isinstance(
        attribution_method, LayerAttribution
    )
    inputs_t, specs = _format_inputs(inputs, options, needs_grad)
    check_target(kwargs.get("target"), inputs_t[0].shape[0])
    check_passed_through(kwargs, inputs_t, options.draw_baseline_from_distrib)
    at_layer = options.noise_layer is not None
    stop = StoppingRule.create(
        options.tolerance,
        options.min_samples,
        options.max_samples,
        nt_samples,
        n_weight_samples,
        over_weight_draws=options.weight_noise is not None,
    )
    pairing = Pairing.create(
        options.sampling,
        stop,
        weight_noise=options.weight_noise is not None,
        max_given=options.max_samples is not None,
    )
    return SamplingPlan(
        inputs=inputs_t,
        is_tuple=_is_tuple(inputs),
        kernel=kernel,
        sigmas=_input_sigmas(specs, inputs_t, at_layer),
        layer_sigma=specs[0] if at_layer else None,
        noise_layer=options.noise_layer,
        chunk=pairing.chunk(
            resolve_chunk_size(
                options.nt_samples_batch_size, nt_samples, inputs_t, attribution_method, kwargs
            )
        ),
        stop=stop,
        weight_noise=weight_noise,
        n_weight_samples=n_weight_samples,
        transform=_check_transform(options.sample_transform),
        reducer=reducer,
        generator=resolve_generator(options.generator, inputs_t[0].device),
        include_clean=bool(options.include_clean),
        draw_baselines=bool(options.draw_baseline_from_distrib),
        want_delta=attribution_method.has_convergence_delta()
        and bool(kwargs.get("return_convergence_delta", False)),
        return_error=bool(options.return_error),
        error_wanted=bool(options.return_error) or options.tolerance is not None,
        show_progress=bool(options.show_progress),
        kwargs=kwargs,
        pairing=pairing,
    )
