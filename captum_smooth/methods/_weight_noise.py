"""The weight-noise arguments of every door, stated once, and the loop option they make.

NoiseGrad, FusionGrad and both LLM wrappers take the same four arguments (``weight_stdev``,
``noise_type``, ``parameters``, ``exclude``); :func:`weight_noise_option` checks them and binds
the :class:`~captum_smooth.noise.weights.WeightNoise` to the model, so that the loop perturbs
the model's weights whatever forward function the inner method was built on.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..noise.weights import BoundWeightNoise, WeightNoise
from ..noise.weights_perturber import check_stdev

__all__ = ["WEIGHT_NOISE_PARAMETERS", "weight_noise_option", "with_weight_stdev"]

#: The weight-noise arguments: ``name -> (default, documentation)``.
WEIGHT_NOISE_PARAMETERS: dict[str, tuple[Any, str]] = {
    "weight_stdev": (0.2, "Weight noise scale ``s`` >= 0 (0 gives the inner method's result)."),
    "noise_type": ("multiplicative", '``"multiplicative"`` or ``"additive"``.'),
    "parameters": (
        None,
        "Which parameters to perturb: None (all trainable), a regex on names, module "
        "type(s), or a predicate ``(name, param) -> bool``.",
    ),
    "exclude": (None, 'Parameters to keep clean, same forms (e.g. ``"classifier"``).'),
}


def with_weight_stdev(default: float | None, doc: str) -> dict[str, tuple[Any, str]]:
    """:data:`WEIGHT_NOISE_PARAMETERS` with another default (and documentation) of the scale."""
    return {**WEIGHT_NOISE_PARAMETERS, "weight_stdev": (default, doc)}


def _check_not_frozen(door: str, model: nn.Module) -> None:
    floating = [p for p in model.parameters() if p.is_floating_point()]
    if floating and not any(p.requires_grad for p in floating):
        raise ValueError(
            f"{door} perturbs the trainable parameters (requires_grad=True) and every "
            f"parameter of {type(model).__name__} is frozen: unfreeze the ones to perturb "
            "(e.g. `model.requires_grad_(True)`), or use SmoothTunnel(...).attribute(..., "
            "weight_noise=WeightNoise(stdev, trainable_only=False), n_weight_samples=...)"
        )


def weight_noise_option(
    door: str,
    model: nn.Module,
    params: dict[str, Any],
    *,
    optional: bool = False,
    n_weight_samples: int = 1,
) -> BoundWeightNoise | None:
    """The loop's ``weight_noise`` from a door's weight-noise arguments.

    Args:
        door: The door's name, for the messages.
        model: The model whose weights are perturbed.
        params: The door's arguments (the keys of :data:`WEIGHT_NOISE_PARAMETERS`).
        optional: Whether ``weight_stdev=None`` (no weight noise) is allowed.
        n_weight_samples: The weight draws asked for (with ``optional``: more than one needs
            a scale).

    Returns:
        The noise bound to ``model``; None when ``weight_stdev`` is None (no weight noise).

    Raises:
        ValueError: ``n_weight_samples`` > 1 without ``weight_stdev`` (the draws would be
            equal), a bad scale, or a model whose parameters are all frozen.
    """
    stdev = params["weight_stdev"]
    if stdev is None and optional:
        if n_weight_samples != 1:
            raise ValueError(
                f"{door}: `n_weight_samples` > 1 needs `weight_stdev` (the weight noise "
                "scale, e.g. 0.05); without it the draws are equal"
            )
        return None
    noise = WeightNoise(
        check_stdev(stdev, "weight_stdev"),
        params["noise_type"],
        params["parameters"],
        params["exclude"],
    )
    _check_not_frozen(door, model)
    return noise.bound_to(model)
