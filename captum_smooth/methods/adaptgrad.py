"""AdaptGrad: smoothing with a per-element sigma that keeps noisy samples in the valid range."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from ..noise.sigma import AdaptiveSigma, Bounds, SigmaRule
from ._preset import COMMON_OPTIONS, INPUT_NOISE_OPTIONS, SmoothingPreset

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
                f"`bounds` lists {len(bounds)} entries (a list holds one pair per input tensor) "
                f"but there are {n_inputs} input tensor(s); one pair for all is a tuple (lo, hi)"
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
    observed range; elements at the extremes then get no noise). Elements outside ``bounds``
    (perturbation metrics such as ``captum.metrics.sensitivity_max`` step a little outside
    [0, 1]) get no noise either, with one warning saying how many; ``strict=True`` raises
    instead. Pass the real data bounds where known: ``(0.0, 1.0)`` for images in [0, 1], per
    channel for normalised images (ImageNet after mean/std: lo ``(-2.118, -2.036, -1.804)``,
    hi ``(2.249, 2.429, 2.640)``).

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
    summary = "Smooth the inner attribution with AdaptGrad's adaptive sigma."
    loop_defaults = {
        "nt_samples": 50,
        **INPUT_NOISE_OPTIONS,
        "include_clean": True,  # the authors average the clean attribution in
        **COMMON_OPTIONS,
    }
    parameters = {
        "confidence": (0.95, "The level ``c`` in (0, 1)."),
        "bounds": (
            None,
            "``(lo, hi)`` (scalars, per channel or tensors), a list with one pair per input, "
            "or None (each example's own min and max).",
        ),
        "strict": (
            False,
            "Raise when an input element lies outside ``bounds``, instead of giving it sigma 0 "
            "with one warning.",
        ),
    }
    pointers = {
        "stdevs": "AdaptGrad sets sigma per element from `confidence` and `bounds`; for a fixed "
        "sigma use SmoothGrad(...).attribute(..., stdevs=...)",
    }

    def configure(
        self, inputs: Tensor | tuple[Tensor, ...], params: dict[str, Any], given: set[str]
    ) -> dict[str, Any]:
        confidence, strict = params["confidence"], params["strict"]
        rules = per_input_rules(
            inputs, params["bounds"], lambda b: AdaptiveSigma(confidence, b, strict)
        )
        return {"stdevs": rules}
