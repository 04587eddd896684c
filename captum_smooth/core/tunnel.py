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
from .expansion import expand_kwargs
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
    """

    n_samples: Tensor
    n_dropped_nan: Tensor
    chunk_size: int
    n_inner_calls: int
    n_weight_samples: int
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
            **kwargs: Passed to the inner method (``target``, ``baselines``,
                ``additional_forward_args``, ``return_convergence_delta``, ...).

        Returns:
            Attributions shaped like the inner method's (tensor or tuple, as the input), and,
            with ``return_convergence_delta=True`` for methods that have one, the deltas of all
            inner calls concatenated (one per noisy sample, as Captum's NoiseTunnel).
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
            if not x.is_floating_point() and noise_layer is None:
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
        stdev_specs = _split_stdevs(stdevs, 1 if noise_layer is not None else len(inputs_t))
        return_delta = bool(kwargs.get("return_convergence_delta", False))
        want_delta = self.is_delta_supported and return_delta

        if weight_noise is None:
            if n_weight_samples != 1:
                raise ValueError("`n_weight_samples` > 1 needs `weight_noise`")
            weights: Any = _NoWeightNoise()
        else:
            weights = weight_noise
        model = self.attribution_method.forward_func

        sizes = [chunk] * (nt_samples // chunk)
        if nt_samples % chunk:
            sizes.append(nt_samples % chunk)
        # Expanded once per chunk size; baselines drawn from a distribution are drawn per chunk.
        expanded = (
            {}
            if draw_baseline_from_distrib
            else {k: expand_kwargs(kwargs, inputs_t, k, False, None) for k in set(sizes) | {1}}
        )

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

        moments = StreamingMoments(batch)
        deltas: list[Tensor] = []
        is_attrib_tuple = is_inputs_tuple
        n_calls = 0
        total_steps = n_weight_samples * (len(sizes) + int(include_clean))
        progress = tqdm(
            total=total_steps, disable=not show_progress, desc=self.get_name(), leave=False
        )

        def _run(k: int, noisy: tuple[Tensor, ...]) -> None:
            nonlocal is_attrib_tuple, n_calls
            kw = (
                expand_kwargs(kwargs, inputs_t, k, True, gen)
                if draw_baseline_from_distrib
                else expanded[k]
            )
            attrs, is_attrib_tuple, delta = self._call_inner(noisy, kw, is_inputs_tuple, want_delta)
            n_calls += 1
            if sample_transform is not None:
                attrs = tuple(sample_transform(inputs_t, noisy, attrs, k))
            moments.update(attrs, k)
            if want_delta and delta is not None:
                deltas.append(delta)
            progress.update(1)

        try:
            with torch.no_grad(), weights.session(model) as perturber, layer_ctx:
                for _ in range(n_weight_samples):
                    perturber.perturb(gen)
                    if include_clean:
                        if layer_noise is not None:
                            layer_noise.disarm()
                        _run(1, self._prepare(inputs_t, 1, None, gen, kernel_obj))
                    for k in sizes:
                        if layer_noise is not None:
                            layer_noise.arm(batch, k)
                        _run(k, self._prepare(inputs_t, k, sigmas or None, gen, kernel_obj))
        finally:
            progress.close()

        attributions = moments.reduce(nt_type)
        assert moments.count is not None and moments.n_dropped is not None
        self.last_report = SamplingReport(
            n_samples=moments.count.clone(),
            n_dropped_nan=moments.n_dropped.clone(),
            chunk_size=chunk,
            n_inner_calls=n_calls,
            n_weight_samples=n_weight_samples,
        )
        n_dropped = int(moments.n_dropped.sum())
        if n_dropped:
            warnings.warn(
                f"{n_dropped} noisy sample(s) gave an attribution containing NaN and were "
                f"dropped (per example: {moments.n_dropped.tolist()}); see `last_report`",
                RuntimeWarning,
                stacklevel=3,
            )
        delta_out = torch.cat(deltas, dim=0) if want_delta and deltas else None
        formatted = _format_output(is_attrib_tuple, attributions)
        if want_delta:
            return formatted, delta_out
        return formatted

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
