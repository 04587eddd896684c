"""AdaptGrad: smoothing with a per-element sigma that keeps noisy samples in the valid range."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from captum.log import log_usage
from torch import Tensor

from ..noise.kernels import Kernel
from ..noise.sigma import AdaptiveSigma, Bounds, SigmaRule
from ._preset import SmoothingPreset

__all__ = ["AdaptGrad", "per_input_rules"]


def per_input_rules(
    inputs: Tensor | tuple[Tensor, ...],
    bounds: Bounds | list[Bounds] | None,
    make_rule: Callable[[Bounds | None], SigmaRule],
) -> SigmaRule | tuple[SigmaRule, ...]:
    """One sigma rule for all inputs, or one per input when ``bounds`` is a list of pairs."""
    if isinstance(bounds, list):
        n_inputs = len(inputs) if isinstance(inputs, tuple) else 1
        if len(bounds) != n_inputs:
            raise ValueError(
                f"`bounds` lists {len(bounds)} pairs but there are {n_inputs} input tensors"
            )
        return tuple(make_rule(b) for b in bounds)
    return make_rule(bounds)


class AdaptGrad(SmoothingPreset):
    r"""AdaptGrad: SmoothGrad whose sigma adapts per element to a confidence level and bounds.

    For each element, with ``d_i`` the distance to the nearer data bound,
    ``sigma_i = d_i / (sqrt(2) * erfinv(c))``: a Gaussian noise draw keeps the element in its
    valid range with probability ``c`` (0.95: sigma ~= 0.51 d). Noisy samples outside the input
    range give meaningless gradients, which are the residual noise of SmoothGrad; AdaptGrad keeps
    them in. Same cost as SmoothGrad: sigma is closed form. As the authors do, the clean
    attribution is averaged in by default (``N + 1`` terms) and samples whose attribution holds
    a NaN are dropped (counted in :attr:`last_report`).

    ``bounds=None`` uses each example's own minimum and maximum over all its elements (the
    observed range; elements at the extremes then get no noise). Pass the real data bounds
    where known: ``(0.0, 1.0)`` for images in [0, 1], per channel for normalised images (ImageNet
    after mean/std: lo ``(-2.118, -2.036, -1.804)``, hi ``(2.249, 2.429, 2.640)``).

    Reference: Zhou et al., "AdaptGrad: Adaptive Sampling to Reduce Noise" (adaptive-sigma
    gradient smoothing), 2024.

    Args:
        forward_func: The model or forward function.
        attribution_method: None (Saliency), a Captum attribution class, or an instance
            (IntegratedGradients, InputXGradient, layer methods, ...).

    Examples::

        >>> ag = AdaptGrad(model)
        >>> attr = ag.attribute(images, target=3, confidence=0.95, bounds=(0.0, 1.0),
        ...                     generator=0)
    """

    display_name = "AdaptGrad"

    @log_usage()
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: Any = None,
        nt_samples: int = 50,
        confidence: float = 0.95,
        bounds: Bounds | list[Bounds] | None = None,
        nt_type: str = "smoothgrad",
        nt_samples_batch_size: int | str | None = "auto",
        kernel: str | Kernel = "gaussian",
        include_clean: bool = True,
        generator: Any = None,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> Any:
        r"""Smooth the inner attribution with AdaptGrad's adaptive sigma.

        Args:
            inputs: A tensor or tuple of tensors, batch first, inside ``bounds``.
            target: Output index (int, tuple, list or tensor per example), as in Captum.
            nt_samples: Noisy samples per example. Default: 50.
            confidence: The level ``c`` in (0, 1). Default: 0.95.
            bounds: ``(lo, hi)`` (scalars, per channel or tensors), a list with one pair per
                input, or None (each example's own min and max). Default: None.
            nt_type: ``smoothgrad``, ``smoothgrad_sq`` or ``vargrad``. Default: ``smoothgrad``.
            nt_samples_batch_size: Copies per inner call, or ``"auto"``. Default: ``"auto"``.
            kernel: Noise kernel (the confidence guarantee holds for the Gaussian). Default:
                ``gaussian``.
            include_clean: Average the clean attribution in (the authors' choice). Default: True.
            generator: A torch.Generator or int seed for reproducible noise. Default: None.
            show_progress: Show a progress bar. Default: False.
            **kwargs: Passed to the inner method (e.g. ``abs=False`` for Saliency, baselines).

        Returns:
            Attributions shaped like the inner method's (and deltas where asked for).

        Raises:
            ValueError: confidence outside (0, 1), lo >= hi, inputs outside the bounds.
        """
        rules = per_input_rules(inputs, bounds, lambda b: AdaptiveSigma(confidence, b))
        return self.tunnel._smooth(
            inputs,
            nt_type=nt_type,
            nt_samples=nt_samples,
            nt_samples_batch_size=nt_samples_batch_size,
            stdevs=rules,
            kernel=kernel,
            include_clean=include_clean,
            generator=generator,
            show_progress=show_progress,
            target=target,
            **kwargs,
        )
