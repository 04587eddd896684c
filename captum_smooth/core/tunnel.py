"""SmoothTunnel: the one sampling loop behind every smoothing method of this package.

Every method here is one Monte-Carlo estimator (the mollification view of gradient smoothing)::

    E(x) = reduce over k of  T( A(x_k; theta_k) )
    x_k = x + sigma(x) * t_k        t_k ~ kernel            (input noise, or at a layer)
    theta_k = theta * eta_k          eta_k ~ N(1, s^2)       (weight noise, optional)
    T = per-sample transform (e.g. SmoothTaylor's (x - x_k) * A), reduce = mean | mean sq | var

The loop below combines these parts: a kernel (:mod:`captum_smooth.noise.kernels`), a sigma
rule (:mod:`captum_smooth.noise.sigma`), an optional weight noise (anything with a
``session(model)`` context manager), an optional per-sample transform and a streaming reducer
(:mod:`captum_smooth.core.reducers`). The named methods (SmoothGrad, AdaptGrad, NoiseGrad,
FusionGrad, SmoothTaylor) are presets of it.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, Union

import torch
from captum._utils.common import _format_output, _format_tensor_into_tuples, _is_tuple
from captum.attr import NoiseTunnel
from captum.attr._utils.attribution import Attribution
from captum.log import log_usage
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..noise.kernels import Kernel, get_kernel
from ..noise.sigma import SigmaRule
from .chunking import resolve_chunk_size
from .expansion import PER_EXAMPLE_KWARGS, expand_kwargs, select_examples
from .layer_noise import LayerNoise
from .reducers import NT_TYPES, StreamingMoments

__all__ = ["SampleTransform", "SamplingReport", "SmoothTunnel", "StdevsType", "WeightNoiseLike"]

SigmaSpec = Union[float, Tensor, SigmaRule]
StdevsType = Union[float, Tensor, SigmaRule, tuple[SigmaSpec, ...]]
GeneratorLike = Union[torch.Generator, int, None]

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


@dataclass
class SamplingReport:
    """What the last call of the loop did, per example where it differs between examples.

    Attributes:
        n_samples: Valid samples averaged per example (clean term included), ``(B,)``.
        n_dropped_nan: Samples dropped because their attribution held a NaN, ``(B,)``.
        chunk_size: Noisy copies of each example per inner call.
        n_inner_calls: Calls of the inner attribution method.
        n_weight_samples: Weight draws (1 without weight noise).
        error: The Monte-Carlo error (always for ``smoothgrad`` with i.i.d. samples; otherwise
            when ``return_error`` or ``tolerance`` was given).
    """

    n_samples: Tensor
    n_dropped_nan: Tensor
    chunk_size: int
    n_inner_calls: int
    n_weight_samples: int
    error: MonteCarloError | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class _NoWeightNoise:
    """The null weight noise: one draw of the unchanged model."""

    def perturb(self, generator: torch.Generator | None) -> None:
        return None

    @contextlib.contextmanager
    def session(self, model: Any) -> Iterator[_NoWeightNoise]:
        yield self


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"`{name}` must be >= 1, got {value}")
    return value


def resolve_generator(generator: GeneratorLike, device: torch.device) -> torch.Generator | None:
    """Turn ``generator`` (a torch.Generator, an int seed or None) into a generator or None.

    ``None`` keeps torch's global random state, as Captum's NoiseTunnel uses it; an int seeds a
    fresh generator on ``device``.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise TypeError(
            f"`generator` must be a torch.Generator, an int seed or None, got {generator!r}"
        )
    gen_device = device if device.type != "meta" else torch.device("cpu")
    return torch.Generator(device=gen_device).manual_seed(generator)


def _check_sigma_value(sigma: Any, name: str) -> float | Tensor:
    if isinstance(sigma, bool):
        raise TypeError(f"`{name}` must be a number, a tensor or a sigma rule, got {sigma!r}")
    if isinstance(sigma, (int, float)):
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"`{name}` must be finite and >= 0, got {sigma!r}")
        return float(sigma)
    if isinstance(sigma, Tensor):
        if not sigma.is_floating_point():
            sigma = sigma.float()
        if not bool(torch.isfinite(sigma).all()) or bool((sigma < 0).any()):
            raise ValueError(f"`{name}` must be finite and >= 0 everywhere")
        return sigma
    raise TypeError(
        f"`{name}` must be a float, a tensor, a SigmaRule or a tuple of these, "
        f"got {type(sigma).__name__}"
    )


def _sigma_for(spec: SigmaSpec, clean: Tensor, name: str) -> float | Tensor:
    """Evaluate one sigma spec on a clean ``(B, ...)`` tensor: a float or a broadcastable tensor."""
    if isinstance(spec, SigmaRule) or (callable(spec) and not isinstance(spec, Tensor)):
        sigma = _check_sigma_value(spec(clean.detach()), name)
    else:
        sigma = _check_sigma_value(spec, name)
    if isinstance(sigma, float):
        return sigma
    sigma = sigma.to(device=clean.device, dtype=clean.dtype)
    if sigma.dim() == 0:
        return sigma
    if sigma.dim() == 1 and sigma.shape[0] == clean.shape[0] and clean.dim() > 1:
        # One sigma per example.
        return sigma.reshape((-1,) + (1,) * (clean.dim() - 1))
    sigma = sigma.reshape((1,) * max(0, clean.dim() - sigma.dim()) + tuple(sigma.shape))
    try:
        shape = torch.broadcast_shapes(sigma.shape, clean.shape)
    except RuntimeError as err:
        raise ValueError(
            f"`{name}` of shape {tuple(sigma.shape)} does not broadcast to the input of shape "
            f"{tuple(clean.shape)}; give one value per example (B,) or per element"
        ) from err
    if shape != clean.shape:
        raise ValueError(
            f"`{name}` of shape {tuple(sigma.shape)} would enlarge the input of shape "
            f"{tuple(clean.shape)}"
        )
    return sigma


def _is_zero(spec: Any) -> bool:
    """Whether a sigma spec is exactly zero (no noise: integer inputs are then fine)."""
    return isinstance(spec, (int, float)) and not isinstance(spec, bool) and spec == 0


def _split_stdevs(stdevs: Any, n_inputs: int) -> tuple[Any, ...]:
    if isinstance(stdevs, (tuple, list)):
        if len(stdevs) != n_inputs:
            raise ValueError(
                f"`stdevs` has {len(stdevs)} entries but there are {n_inputs} input tensors; "
                "give one per input or a single value"
            )
        return tuple(stdevs)
    return (stdevs,) * n_inputs


def draw_noise(
    kernel: Kernel,
    clean: Tensor,
    sigma: float | Tensor,
    samples_per_example: int,
    generator: torch.Generator | None,
) -> Tensor:
    """Draw ``sigma * t`` for ``k`` copies of each example, example-major ``(B * k, ...)``.

    The draw goes through ``generator`` on its own device, then moves to the input's device.
    """
    b, k = clean.shape[0], samples_per_example
    rest = tuple(clean.shape[1:])
    device = clean.device
    if generator is not None and generator.device != device:
        device = generator.device
    noise = kernel.sample((b * k, *rest), generator=generator, device=device, dtype=clean.dtype)
    noise = noise.to(clean.device)
    if isinstance(sigma, float) or sigma.dim() == 0:
        # The same operation order as Captum (normal(0, std) == randn * std), bit for bit.
        return noise.mul_(sigma)
    return noise.view((b, k, *rest)).mul_(sigma.unsqueeze(1)).view((b * k, *rest))


@dataclass
class MonteCarloError:
    """The Monte-Carlo error of a smoothed attribution (no extra forward or backward pass).

    Attributes:
        standard_error: Per-element standard error, shaped like the attributions (a tensor, or a
            tuple as the attributions).
        relative_error: Per example, ``||standard_error|| / ||attribution||`` over all its
            elements (``inf`` where the attribution is zero but the error is not), ``(B,)``.
        n_samples: Valid samples per example, ``(B,)`` (weight draws for the nested estimate).
        nested: True when the error comes from the spread between weight draws (weight noise
            with input noise inside each draw): samples of one draw share the weights, so they
            are not independent, and the draw means are.
    """

    standard_error: Any
    relative_error: Tensor
    n_samples: Tensor
    nested: bool


def _relative(se: tuple[Tensor, ...], estimate: tuple[Tensor, ...]) -> Tensor:
    err = sum(t.reshape(t.shape[0], -1).float().pow(2).sum(1) for t in se)
    size = sum(t.reshape(t.shape[0], -1).float().pow(2).sum(1) for t in estimate)
    rel = (err / size).sqrt()
    return torch.where(size > 0, rel, torch.where(err > 0, torch.inf, torch.zeros_like(rel)))


class _ErrorTracking:
    """Which error the loop tracks: i.i.d. moments, or the spread between weight draws."""

    def __init__(self, nt_type: str, batch: int, nested: bool, wanted: bool) -> None:
        self.nt_type = nt_type
        self.batch = batch
        self.wanted = wanted or (nt_type == "smoothgrad" and not nested)
        # VarGrad is not a mean of per-draw quantities: its error stays the i.i.d. estimate.
        self.nested = nested and wanted and nt_type != "vargrad"
        self.higher_moments = wanted and nt_type != "smoothgrad" and not self.nested
        self.between = StreamingMoments(batch) if self.nested else None

    @classmethod
    def create(cls, *, nt_type: str, batch: int, nested: bool, wanted: bool) -> _ErrorTracking:
        return cls(nt_type, batch, nested, wanted)

    def new_draw(self) -> StreamingMoments | None:
        return StreamingMoments(self.batch) if self.nested else None

    def end_draw(self, draw: StreamingMoments | None, rows: Tensor | None) -> None:
        if draw is None or self.between is None:
            return
        quantity = draw.reduce(self.nt_type)
        if rows is not None:
            quantity = tuple(q[rows] for q in quantity)
        self.between.update(quantity, 1, rows=rows)

    def standard_error(self, moments: StreamingMoments) -> tuple[Tensor, ...]:
        if self.between is not None and self.between.count is not None:
            return self.between.standard_error("smoothgrad")
        return moments.standard_error(self.nt_type)

    def relative_error(self, moments: StreamingMoments, n_draws: int | None) -> Tensor:
        return _relative(self.standard_error(moments), moments.reduce(self.nt_type))

    def error(self, moments: StreamingMoments, is_tuple: bool) -> MonteCarloError:
        se = self.standard_error(moments)
        nested = self.between is not None and self.between.count is not None
        counts = self.between.count if nested else moments.count
        assert counts is not None
        return MonteCarloError(
            standard_error=_format_output(is_tuple, se),
            relative_error=_relative(se, moments.reduce(self.nt_type)),
            n_samples=counts.clone(),
            nested=nested,
        )


@dataclass
class _StoppingRule:
    """Fixed sample counts, or sampling until the relative error is below a tolerance."""

    tolerance: float | None
    min_samples: int
    max_input_samples: int
    max_weight_draws: int
    per_input_sample: bool
    per_weight_draw: bool

    @classmethod
    def create(
        cls,
        tolerance: float | None,
        min_samples: int | None,
        max_samples: int | None,
        nt_samples: int,
        n_weight_samples: int,
        *,
        over_weight_draws: bool,
    ) -> _StoppingRule:
        if tolerance is None:
            if min_samples is not None or max_samples is not None:
                raise ValueError("`min_samples` and `max_samples` go with `tolerance`")
            return cls(None, 0, nt_samples, n_weight_samples, False, False)
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
            raise TypeError(f"`tolerance` must be a positive float, got {tolerance!r}")
        if not math.isfinite(tolerance) or tolerance <= 0:
            raise ValueError(f"`tolerance` must be finite and > 0, got {tolerance!r}")
        default_max = n_weight_samples if over_weight_draws else nt_samples
        hi = default_max if max_samples is None else _check_positive_int(max_samples, "max_samples")
        lo = min(8, hi) if min_samples is None else _check_positive_int(min_samples, "min_samples")
        if lo < 2 or lo > hi:
            raise ValueError(
                f"`min_samples` must be >= 2 (an error needs two samples) and <= `max_samples`, "
                f"got min_samples={lo}, max_samples={hi}"
            )
        if over_weight_draws:
            return cls(float(tolerance), lo, nt_samples, hi, False, True)
        return cls(float(tolerance), lo, hi, 1, True, False)

    def still_active(self, active: Tensor | None, rel_error: Tensor, batch: int) -> Tensor | None:
        rows = torch.arange(batch, device=rel_error.device) if active is None else active
        keep = rows[rel_error[rows] > float(self.tolerance or 0.0)]
        return None if keep.numel() == batch else keep


@dataclass
class _Subset:
    """The inputs, kwargs and sigmas of the examples still sampling."""

    inputs: tuple[Tensor, ...]
    kwargs: dict[str, Any]
    sigmas: tuple[float | Tensor, ...]

    @classmethod
    def of(
        cls,
        inputs: tuple[Tensor, ...],
        kwargs: dict[str, Any],
        sigmas: tuple[float | Tensor, ...],
        rows: Tensor | None,
        batch: int,
        draw_baselines: bool = False,
    ) -> _Subset:
        if rows is None:
            return cls(inputs, kwargs, sigmas)
        sub_kwargs = dict(kwargs)
        for key in PER_EXAMPLE_KWARGS:
            # Baselines drawn from a distribution are not per example.
            if key in sub_kwargs and not (key == "baselines" and draw_baselines):
                sub_kwargs[key] = select_examples(sub_kwargs[key], rows, batch)
        return cls(
            tuple(x[rows.to(x.device)] for x in inputs),
            sub_kwargs,
            tuple(select_examples(sg, rows, batch) for sg in sigmas),
        )


class SmoothTunnel(NoiseTunnel):
    r"""A drop-in :class:`captum.attr.NoiseTunnel` with any kernel, sigma rule and weight noise.

    Same constructor and ``attribute`` contract as Captum's NoiseTunnel (``isinstance(tunnel,
    NoiseTunnel)`` holds; Gaussian noise with a float ``stdevs`` under the same seed and
    ``nt_samples_batch_size`` gives Captum's numbers), plus:

    * ``kernel``: gaussian (default), laplace, uniform, triangular, epanechnikov, cosine,
      student_t, bump, or any :class:`~captum_smooth.noise.kernels.Kernel`; scaled so that its
      standard deviation equals sigma;
    * ``stdevs`` as a float, a tuple per input, a tensor per example ``(B,)`` or per element, or
      a sigma rule (:class:`~captum_smooth.noise.sigma.RangeShareSigma`,
      :class:`~captum_smooth.noise.sigma.AdaptiveSigma`);
    * streaming reducers (memory bounded by one chunk) and ``nt_samples_batch_size="auto"``;
    * ``include_clean`` (average the un-noised attribution in) and NaN samples dropped;
    * ``generator`` (a torch.Generator or a seed) for the noise and the baseline draws;
    * ``noise_layer`` (noise at a layer's output, for integer inputs such as token ids);
    * ``weight_noise`` with ``n_weight_samples`` draws (NoiseGrad / FusionGrad) and a per-sample
      ``sample_transform`` (SmoothTaylor).

    After each call, :attr:`last_report` (a :class:`SamplingReport`) tells how many samples each
    example used and how many were dropped.

    References: Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017; Adebayo et al.
    2018 (VarGrad); Captum's NoiseTunnel.

    Args:
        attribution_method: Any Captum attribution instance (Saliency, IntegratedGradients, layer
            and neuron methods, ...).

    Examples::

        >>> from captum.attr import Saliency
        >>> tunnel = SmoothTunnel(Saliency(model))
        >>> attr = tunnel.attribute(images, nt_samples=50, stdevs=0.15, kernel="laplace",
        ...                         nt_samples_batch_size="auto", generator=0, target=3)
    """

    last_report: SamplingReport | None

    def __init__(self, attribution_method: Attribution) -> None:
        if not isinstance(attribution_method, Attribution):
            raise TypeError(
                "`attribution_method` must be a Captum Attribution instance such as "
                f"Saliency(model), got {type(attribution_method).__name__}"
            )
        super().__init__(attribution_method)
        self.last_report = None

    @classmethod
    def get_name(cls) -> str:
        return "SmoothTunnel"

    @log_usage(part_of_slo=True)
    def attribute(  # type: ignore[override]
        self,
        inputs: Tensor | tuple[Tensor, ...],
        nt_type: str = "smoothgrad",
        nt_samples: int = 5,
        nt_samples_batch_size: int | str | None = None,
        stdevs: StdevsType = 1.0,
        draw_baseline_from_distrib: bool = False,
        *,
        kernel: str | Kernel = "gaussian",
        include_clean: bool = False,
        generator: GeneratorLike = None,
        noise_layer: nn.Module | None = None,
        weight_noise: WeightNoiseLike | None = None,
        n_weight_samples: int = 1,
        sample_transform: SampleTransform | None = None,
        show_progress: bool = False,
        return_error: bool = False,
        tolerance: float | None = None,
        min_samples: int | None = None,
        max_samples: int | None = None,
        **kwargs: Any,
    ) -> Any:
        r"""Smooth the inner attribution over noisy copies of the inputs (and of the weights).

        Args:
            inputs: A tensor or a tuple of tensors, batch first, as for the inner method.
            nt_type: ``smoothgrad`` (mean), ``smoothgrad_sq`` (mean of squares) or ``vargrad``
                (variance). Default: ``smoothgrad``.
            nt_samples: Noisy samples per example (per weight draw). Default: 5.
            nt_samples_batch_size: Noisy copies of each example per inner call: None (all at
                once, as Captum), a positive int, or ``"auto"`` (a fast chunk with bounded
                memory). Default: None.
            stdevs: Noise scale: a float (absolute, Captum's convention), a tensor per example
                ``(B,)`` or per element, a :class:`~captum_smooth.noise.sigma.SigmaRule`, or a
                tuple with one of these per input. Default: 1.0.
            draw_baseline_from_distrib: Draw each copy's baseline from ``baselines`` (drawn
                through ``generator``). Default: False.
            kernel: Name of the noise kernel or a Kernel object. Default: ``gaussian``.
            include_clean: Also average in the attribution of the un-noised input (one extra
                term per weight draw), as the AdaptGrad authors do. Default: False.
            generator: A ``torch.Generator``, an int seed, or None for torch's global random
                state (Captum's behaviour). Default: None.
            noise_layer: Add the noise to this layer's output instead of the inputs (required
                for integer inputs such as token ids). ``stdevs`` then applies to the layer's
                output. Default: None.
            weight_noise: A weight-noise component (see :mod:`captum_smooth.noise.weights`);
                the model is restored bit for bit afterwards. Default: None.
            n_weight_samples: Weight draws when ``weight_noise`` is given. Default: 1.
            sample_transform: ``transform(clean, noisy, attributions, k)`` applied to each
                chunk's attributions before reduction. Default: None.
            show_progress: Show a progress bar over the chunks. Default: False.
            return_error: Also return the Monte-Carlo error (a :class:`MonteCarloError`) as the
                last element of the result. Default: False (Captum's return contract).
            tolerance: Sample until each example's relative error (``||SE|| / ||map||``) is at
                most this, instead of a fixed count; examples stop one by one. The count is of
                input samples, or of weight draws under ``weight_noise``. Default: None.
            min_samples: With ``tolerance``: the fewest samples (>= 2). Default: min(8, max).
            max_samples: With ``tolerance``: the most samples. Default: ``nt_samples``
                (``n_weight_samples`` under weight noise).
            **kwargs: Passed to the inner method (``target``, ``baselines``,
                ``additional_forward_args``, ``return_convergence_delta``, ...).

        Returns:
            Attributions shaped like the inner method's (tensor or tuple, as the input), and,
            with ``return_convergence_delta=True`` for methods that have one, the deltas of all
            inner calls concatenated (one per noisy sample, as Captum's NoiseTunnel); with
            ``return_error=True``, the :class:`MonteCarloError` last.
        """
        return self._smooth(
            inputs,
            nt_type=nt_type,
            nt_samples=nt_samples,
            nt_samples_batch_size=nt_samples_batch_size,
            stdevs=stdevs,
            draw_baseline_from_distrib=draw_baseline_from_distrib,
            kernel=kernel,
            include_clean=include_clean,
            generator=generator,
            noise_layer=noise_layer,
            weight_noise=weight_noise,
            n_weight_samples=n_weight_samples,
            sample_transform=sample_transform,
            show_progress=show_progress,
            return_error=return_error,
            tolerance=tolerance,
            min_samples=min_samples,
            max_samples=max_samples,
            **kwargs,
        )

    # The loop lives here, outside the decorated method: Captum bypasses the decorator when it
    # nests methods (``attribute.__wrapped__``), and presets call it directly.
    def _smooth(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        *,
        nt_type: str = "smoothgrad",
        nt_samples: int = 5,
        nt_samples_batch_size: int | str | None = None,
        stdevs: StdevsType = 1.0,
        draw_baseline_from_distrib: bool = False,
        kernel: str | Kernel = "gaussian",
        include_clean: bool = False,
        generator: GeneratorLike = None,
        noise_layer: nn.Module | None = None,
        weight_noise: WeightNoiseLike | None = None,
        n_weight_samples: int = 1,
        sample_transform: SampleTransform | None = None,
        show_progress: bool = False,
        return_error: bool = False,
        tolerance: float | None = None,
        min_samples: int | None = None,
        max_samples: int | None = None,
        **kwargs: Any,
    ) -> Any:
        if nt_type not in NT_TYPES:
            raise ValueError(f"`nt_type` must be one of {list(NT_TYPES)}, got {nt_type!r}")
        nt_samples = _check_positive_int(nt_samples, "nt_samples")
        n_weight_samples = _check_positive_int(n_weight_samples, "n_weight_samples")
        kernel_obj = get_kernel(kernel)
        is_inputs_tuple = _is_tuple(inputs)
        inputs_t = _format_tensor_into_tuples(inputs)
        if len(inputs_t) == 0:
            raise ValueError("`inputs` is empty")
        stdev_specs = _split_stdevs(stdevs, 1 if noise_layer is not None else len(inputs_t))
        for i, x in enumerate(inputs_t):
            if not isinstance(x, Tensor):
                raise TypeError(f"`inputs[{i}]` must be a tensor, got {type(x).__name__}")
            if x.dim() == 0 or x.shape[0] != inputs_t[0].shape[0]:
                raise ValueError(
                    "`inputs` must be batch first with the same batch size in every tensor, "
                    f"got shapes {[tuple(t.shape) for t in inputs_t]}"
                )
            if x.is_floating_point() and bool(torch.isnan(x).any()):
                raise ValueError(f"`inputs[{i}]` contains NaN values")
            if not x.is_floating_point() and noise_layer is None and not _is_zero(stdev_specs[i]):
                raise TypeError(
                    f"`inputs[{i}]` has integer dtype {x.dtype} (e.g. token ids) and cannot take "
                    "noise: pass `noise_layer=` the layer (such as the embedding) whose output "
                    "should be noised instead"
                )
        batch = inputs_t[0].shape[0]
        gen = resolve_generator(generator, inputs_t[0].device)
        chunk = resolve_chunk_size(
            nt_samples_batch_size, nt_samples, inputs_t, self.attribution_method, kwargs
        )
        return_delta = bool(kwargs.get("return_convergence_delta", False))
        want_delta = self.is_delta_supported and return_delta

        if weight_noise is None:
            if n_weight_samples != 1:
                raise ValueError("`n_weight_samples` > 1 needs `weight_noise`")
            weights: Any = _NoWeightNoise()
        else:
            weights = weight_noise
        model = self.attribution_method.forward_func

        # Expanded once per chunk size while every example samples (the common case).
        expanded: dict[int, dict[str, Any]] = {}

        # Sigma of input noise depends only on the clean inputs: evaluate each rule once.
        sigmas: tuple[float | Tensor, ...] = ()
        if noise_layer is None:
            sigmas = tuple(
                _sigma_for(spec, x, "stdevs") if x.is_floating_point() else 0.0
                for spec, x in zip(stdev_specs, inputs_t)
            )
        layer_ctx: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        layer_noise: LayerNoise | None = None
        if noise_layer is not None:
            spec = stdev_specs[0]

            def _draw_at_layer(clean: Tensor, k: int) -> Tensor:
                return draw_noise(kernel_obj, clean, _sigma_for(spec, clean, "stdevs"), k, gen)

            layer_noise = LayerNoise(noise_layer, _draw_at_layer)
            layer_ctx = layer_noise

        tracking = _ErrorTracking.create(
            nt_type=nt_type,
            batch=batch,
            nested=weight_noise is not None and n_weight_samples > 1,
            wanted=return_error or tolerance is not None,
        )
        stop = _StoppingRule.create(
            tolerance,
            min_samples,
            max_samples,
            nt_samples,
            n_weight_samples,
            over_weight_draws=weight_noise is not None,
        )
        moments = StreamingMoments(batch, higher_moments=tracking.higher_moments)
        deltas: list[Tensor] = []
        is_attrib_tuple = is_inputs_tuple
        n_calls = 0
        n_draws = stop.max_weight_draws
        input_max = stop.max_input_samples
        n_chunks = -(-input_max // chunk)
        progress = tqdm(
            total=n_draws * (n_chunks + int(include_clean)),
            disable=not show_progress,
            desc=self.get_name(),
            leave=False,
        )
        active: Tensor | None = None  # None: every example is still sampling

        def _run(
            k: int,
            noisy_fn: Callable[[tuple[Tensor, ...], Any], tuple[Tensor, ...]],
            draw_moments: StreamingMoments | None,
        ) -> None:
            nonlocal is_attrib_tuple, n_calls
            sub = _Subset.of(inputs_t, kwargs, sigmas, active, batch, draw_baseline_from_distrib)
            noisy = noisy_fn(sub.inputs, sub.sigmas)
            if draw_baseline_from_distrib:
                kw = expand_kwargs(sub.kwargs, sub.inputs, k, True, gen)
            elif active is None:
                kw = expanded.setdefault(k, expand_kwargs(kwargs, inputs_t, k, False, None))
            else:
                kw = expand_kwargs(sub.kwargs, sub.inputs, k, False, None)
            attrs, is_attrib_tuple, delta = self._call_inner(noisy, kw, is_inputs_tuple, want_delta)
            n_calls += 1
            if sample_transform is not None:
                attrs = tuple(sample_transform(sub.inputs, noisy, attrs, k))
            moments.update(attrs, k, rows=active)
            if draw_moments is not None:
                draw_moments.update(attrs, k, rows=active)
            if want_delta and delta is not None:
                deltas.append(delta)
            progress.update(1)

        try:
            with torch.no_grad(), weights.session(model) as perturber, layer_ctx:
                for draw in range(n_draws):
                    perturber.perturb(gen)
                    draw_moments = tracking.new_draw()
                    n_active = batch if active is None else int(active.numel())
                    if include_clean:
                        if layer_noise is not None:
                            layer_noise.disarm()
                        _run(
                            1,
                            lambda x, _s: self._prepare(x, 1, None, gen, kernel_obj),
                            draw_moments,
                        )
                    done = 0
                    while done < input_max:
                        k = min(chunk, input_max - done)
                        if layer_noise is not None:
                            layer_noise.arm(n_active, k)
                        _run(
                            k,
                            lambda x, sig, k=k: self._prepare(
                                x, k, sig if noise_layer is None else None, gen, kernel_obj
                            ),
                            draw_moments,
                        )
                        done += k
                        if stop.per_input_sample and done >= stop.min_samples:
                            active = stop.still_active(
                                active, tracking.relative_error(moments, None), batch
                            )
                            if active is not None and active.numel() == 0:
                                break
                            n_active = batch if active is None else int(active.numel())
                    tracking.end_draw(draw_moments, active)
                    if stop.per_weight_draw and draw + 1 >= stop.min_samples:
                        active = stop.still_active(
                            active, tracking.relative_error(moments, draw + 1), batch
                        )
                    if active is not None and active.numel() == 0:
                        break
        finally:
            progress.close()

        attributions = moments.reduce(nt_type)
        if moments.count is None or moments.n_dropped is None:
            raise RuntimeError("the smoothing loop ran no sample")
        error = tracking.error(moments, is_attrib_tuple) if tracking.wanted else None
        self.last_report = SamplingReport(
            n_samples=moments.count.clone(),
            n_dropped_nan=moments.n_dropped.clone(),
            chunk_size=chunk,
            n_inner_calls=n_calls,
            n_weight_samples=n_weight_samples,
            error=error,
        )
        n_dropped = int(moments.n_dropped.sum())
        if n_dropped:
            warnings.warn(
                f"{n_dropped} noisy sample(s) gave an attribution containing NaN and were "
                f"dropped (per example: {moments.n_dropped.tolist()}); see `last_report`",
                RuntimeWarning,
                stacklevel=3,
            )
        formatted = _format_output(is_attrib_tuple, attributions)
        result: Any = formatted
        if want_delta:
            result = (formatted, torch.cat(deltas, dim=0) if deltas else None)
        if return_error:
            return (*result, error) if want_delta else (result, error)
        return result

    def _call_inner(
        self,
        noisy: tuple[Tensor, ...],
        kwargs: dict[str, Any],
        is_inputs_tuple: bool,
        want_delta: bool,
    ) -> tuple[tuple[Tensor, ...], bool, Tensor | None]:
        """Run the inner method on one chunk: ``(attributions, is_tuple, delta)``."""
        method = self.attribution_method
        # Captum's own nesting convention: call the undecorated function so that the usage
        # logger does not fire per chunk. A user's undecorated method is called as it is.
        wrapped = getattr(type(method).attribute, "__wrapped__", None)
        arg = noisy if is_inputs_tuple else noisy[0]
        out = (
            wrapped(method, arg, **kwargs)
            if wrapped is not None
            else method.attribute(arg, **kwargs)
        )
        delta = None
        if want_delta:
            out, delta = out
        return _format_tensor_into_tuples(out), _is_tuple(out), delta

    def _prepare(
        self,
        inputs: tuple[Tensor, ...],
        k: int,
        sigmas: tuple[float | Tensor, ...] | None,
        generator: torch.Generator | None,
        kernel: Kernel,
    ) -> tuple[Tensor, ...]:
        """The ``B * k`` copies of one chunk, noised unless ``sigmas`` is None."""
        out = []
        for i, x in enumerate(inputs):
            if sigmas is None or not x.is_floating_point():
                noisy = x.repeat_interleave(k, dim=0) if k > 1 else x.detach().clone()
            else:
                noise = draw_noise(kernel, x, sigmas[i], k, generator)
                rest = tuple(x.shape[1:])
                noisy = (
                    noise.view((x.shape[0], k, *rest))
                    .add_(x.detach().unsqueeze(1))
                    .view((x.shape[0] * k, *rest))
                )
            if self.is_gradient_method and noisy.is_floating_point():
                noisy.requires_grad_()
            out.append(noisy)
        return tuple(out)
