"""SmoothGrad with the paper's convention: sigma as a share of the input range."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..noise.sigma import RangeShareSigma
from ._preset import COMMON_OPTIONS, INPUT_NOISE_OPTIONS, SmoothingPreset
from .adaptgrad import per_input_rules

__all__ = ["SmoothGrad"]


class SmoothGrad(SmoothingPreset):
    r"""SmoothGrad: the inner attribution averaged over Gaussian noise of a share of the range.

    ``sigma = noise_level * (hi - lo)``, the SmoothGrad paper's noise level (10-20 % of
    ``x_max - x_min``), instead of Captum's absolute ``stdevs``. Any kernel of the loop applies.

    Reference: Smilkov, Thorat, Kim, Viegas, Wattenberg, "SmoothGrad: removing noise by adding
    noise", ICML workshop 2017.

    Args:
        forward_func: The model or forward function.
        attribution_method: None (Saliency), a Captum attribution class, or an instance.

    Examples::

        >>> sg = SmoothGrad(model)
        >>> attr = sg.attribute(images, target=3, nt_samples=50, noise_level=0.15,
        ...                     bounds=(0.0, 1.0), generator=0)
        >>> attr = sg.attribute(images, target=3, stdevs=0.1)  # Captum's absolute sigma
    """

    display_name = "SmoothGrad"
    summary = "Smooth the inner attribution with noise of ``noise_level`` times the input range."
    loop_defaults = {"nt_samples": 50, **INPUT_NOISE_OPTIONS, **COMMON_OPTIONS}
    parameters = {
        "noise_level": (0.15, "Share of the range ``hi - lo`` used as sigma."),
        "bounds": (
            None,
            "``(lo, hi)`` (scalars, per channel or tensors), a list with one pair per input, "
            "or None for each example's own ``max - min``.",
        ),
        "stdevs": (
            None,
            "An absolute sigma instead (Captum's convention: a float, a tensor per example or "
            "per element, a sigma rule, or a tuple per input); not with ``noise_level`` or "
            "``bounds``.",
        ),
    }

    def configure(
        self, inputs: Tensor | tuple[Tensor, ...], params: dict[str, Any], given: set[str]
    ) -> dict[str, Any]:
        if params["stdevs"] is not None:
            both = sorted(given & {"noise_level", "bounds"})
            if both:
                raise ValueError(
                    f"SmoothGrad takes sigma once: `stdevs` (absolute) or `noise_level` with "
                    f"`bounds` (a share of the range), not `stdevs` with `{'` and `'.join(both)}`"
                )
            return {"stdevs": params["stdevs"]}
        noise_level = params["noise_level"]
        rules = per_input_rules(inputs, params["bounds"], lambda b: RangeShareSigma(noise_level, b))
        return {"stdevs": rules}
