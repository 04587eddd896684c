"""SmoothTunnel: the one sampling loop behind every smoothing method of this package.

Every method here is one Monte-Carlo estimator (the mollification view of gradient smoothing)::

    E(x) = reduce over k of  T( A(x_k; theta_k) )
    x_k = x + sigma(x) * t_k        t_k ~ kernel            (input noise, or at a layer)
    theta_k = theta * eta_k          eta_k ~ N(1, s^2)       (weight noise, optional)
    T = per-sample transform (e.g. SmoothTaylor's (x - x_k) * A), reduce = mean | mean sq | var

A call goes in four readable steps: the options are checked into a plan
(:mod:`~captum_smooth.core.plan`), the chunk loop samples it (:mod:`~captum_smooth.core.loop`),
the reducer (:mod:`~captum_smooth.core.reducers`) and the error model
(:mod:`~captum_smooth.core.error_model`) give the estimate and its Monte-Carlo error, and the
result comes back in Captum's return shapes. The parts plugged in: a kernel
(:mod:`captum_smooth.noise.kernels`), a sigma rule (:mod:`captum_smooth.noise.sigma`), weight
noise (:mod:`captum_smooth.noise.weights`), a per-sample transform and a reducer. The named
methods (SmoothGrad, AdaptGrad, NoiseGrad, FusionGrad, SmoothTaylor) are configurations of it.
"""

from __future__ import annotations

from typing import Any

import torch
from captum._utils.common import _format_output
from captum.attr import NoiseTunnel
from captum.attr._utils.attribution import Attribution
from captum.log import log_usage
from torch import Tensor, nn

from .._checks import GeneratorLike
from ..noise.kernels import Kernel
from .loop import LoopResult, SamplingLoop, SamplingReport
from .noising import StdevsType
from .plan import LoopOptions, SampleTransform, WeightNoiseLike, make_plan, options_doc
from .reducers import ReducerLike

__all__ = ["SmoothTunnel"]


def captum_result(result: LoopResult, want_delta: bool, return_error: bool) -> Any:
    """The loop's result in Captum's return shapes (deltas and the error appended on request)."""
    formatted = _format_output(result.is_tuple, result.attributions)
    out: Any = formatted
    if want_delta:
        out = (formatted, torch.cat(result.deltas, dim=0) if result.deltas else None)
    if return_error:
        return (*out, result.error) if want_delta else (out, result.error)
    return out


class SmoothTunnel(NoiseTunnel):
    r"""A drop-in :class:`captum.attr.NoiseTunnel` with any kernel, sigma rule and weight noise.

    Same constructor and ``attribute`` contract as Captum's NoiseTunnel (``isinstance(tunnel,
    NoiseTunnel)`` holds; Gaussian noise with a float ``stdevs`` under the same seed and
    ``nt_samples_batch_size`` gives Captum's numbers), plus:

    * ``kernel``: any registered kernel (gaussian, laplace, uniform, triangular, epanechnikov,
      cosine, student_t, bump, or one added with ``register_kernel``), or a Kernel object;
      scaled so that its standard deviation equals sigma;
    * ``stdevs`` as a float, a tuple per input, a tensor with the input's dimensions
      (``(B, 1, ...)`` per example, ``(1, ...)`` per element), or a sigma rule
      (:class:`~captum_smooth.noise.sigma.PerExampleSigma`,
      :class:`~captum_smooth.noise.sigma.RangeShareSigma`,
      :class:`~captum_smooth.noise.sigma.AdaptiveSigma`);
    * ``reducer``: Captum's three (``nt_type``), any registered with ``register_reducer``, or a
      factory; streamed, so memory is bounded by one chunk; ``nt_samples_batch_size="auto"``;
    * ``include_clean`` (average the un-noised attribution in) and NaN samples dropped;
    * ``generator`` (a torch.Generator or a seed) for the noise and the baseline draws;
    * ``noise_layer`` (noise at a layer's output, for integer inputs such as token ids);
    * ``weight_noise`` with ``n_weight_samples`` draws (NoiseGrad / FusionGrad) and a per-sample
      ``sample_transform`` (SmoothTaylor);
    * ``return_error`` and ``tolerance``: the Monte-Carlo error of each map, and sampling until
      it is small;
    * ``sampling="antithetic"``: input and weight noise in mirrored pairs (unbiased, exact where
      the attribution is linear in the noise), the error computed from the pairs.

    After each call, :attr:`last_report` (a :class:`~captum_smooth.core.loop.SamplingReport`)
    tells how many samples each example used and how many were dropped.

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
    def attribute(
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
        reducer: ReducerLike | None = None,
        show_progress: bool = False,
        return_error: bool = False,
        tolerance: float | None = None,
        min_samples: int | None = None,
        max_samples: int | None = None,
        sampling: str = "iid",
        **kwargs: Any,
    ) -> Any:
        options = LoopOptions(
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
            reducer=reducer,
            show_progress=show_progress,
            return_error=return_error,
            tolerance=tolerance,
            min_samples=min_samples,
            max_samples=max_samples,
            sampling=sampling,
        )
        return self.run(inputs, options, kwargs)

    # The loop is entered here, outside the decorated method: Captum bypasses the decorator when
    # it nests methods (``attribute.__wrapped__``), and the presets call it with their options.
    def run(
        self, inputs: Tensor | tuple[Tensor, ...], options: LoopOptions, kwargs: dict[str, Any]
    ) -> Any:
        """Check, sample, reduce: one call of the loop with ``options`` (see :meth:`attribute`).

        Args:
            inputs: A tensor or a tuple of tensors, batch first.
            options: The loop's options.
            kwargs: The inner method's keyword arguments.

        Returns:
            As :meth:`attribute`.
        """
        plan = make_plan(self.attribution_method, inputs, options, kwargs)
        result = SamplingLoop(self, plan).run()
        self.last_report = result.report
        return captum_result(result, plan.want_delta, plan.return_error)


_ATTRIBUTE_DOC = """Smooth the inner attribution over noisy copies of the inputs (and weights).

        Args:
            inputs: A tensor or a tuple of tensors, batch first, as for the inner method.
{options}
            **kwargs: Passed to the inner method (``target``, ``baselines``,
                ``additional_forward_args``, ``return_convergence_delta``, ...).

        Returns:
            Attributions shaped like the inner method's (tensor or tuple, as the input), and,
            with ``return_convergence_delta=True`` for methods that have one, the deltas of all
            inner calls concatenated (one per noisy sample, as Captum's NoiseTunnel); with
            ``return_error=True``, the
            :class:`~captum_smooth.core.error_model.MonteCarloError` last.
        """

SmoothTunnel.attribute.__doc__ = _ATTRIBUTE_DOC.format(
    options=options_doc({name: getattr(LoopOptions, name) for name in LoopOptions.names()})
)
