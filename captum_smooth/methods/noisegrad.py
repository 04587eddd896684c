"""NoiseGrad and FusionGrad (NoiseGrad++): smoothing in weight space, and in both spaces."""

from __future__ import annotations

import contextlib
import math
import numbers
from typing import Any

from torch import Tensor, nn

from .._warnings import warn
from ..noise.weights import WeightNoise, WeightPerturber
from ._preset import COMMON_OPTIONS, INPUT_NOISE_OPTIONS, SmoothingPreset

__all__ = ["FusionGrad", "NoiseGrad", "NoiseGradPlusPlus"]


class _OnModel:
    """A weight noise bound to the preset's model, whatever the inner method's forward_func.

    The loop perturbs ``attribution_method.forward_func``; an inner method built on a wrapper
    (a lambda around the model) must still perturb the model given to the preset.
    """

    def __init__(self, noise: WeightNoise, model: nn.Module) -> None:
        self.noise = noise
        self.model = model

    def session(self, model: Any) -> contextlib.AbstractContextManager[WeightPerturber]:
        # The session itself, not a generator around it: a signal arriving in a generator's
        # exit path could skip the restore (see captum_smooth.noise._signals).
        return self.noise.session(self.model)


class _WeightNoisePreset(SmoothingPreset):
    """What the weight-space presets share: the weight-noise arguments and the model check."""

    parameters = {
        "weight_stdev": (0.2, "Weight noise scale ``s`` >= 0 (0 gives the inner method's result)."),
        "noise_type": ("multiplicative", '``"multiplicative"`` or ``"additive"``.'),
        "parameters": (
            None,
            "Which parameters to perturb: None (all trainable), a regex on names, module "
            "type(s), or a predicate ``(name, param) -> bool``.",
        ),
        "exclude": (None, 'Parameters to keep clean, same forms (e.g. ``"classifier"``).'),
    }

    def __init__(self, model: nn.Module, attribution_method: Any = None) -> None:
        super().__init__(model, attribution_method)
        self.model  # noqa: B018 -- raises TypeError unless forward_func is an nn.Module

    def configure(
        self, inputs: Tensor | tuple[Tensor, ...], params: dict[str, Any], given: set[str]
    ) -> dict[str, Any]:
        stdev = params["weight_stdev"]
        # Checked here so that the message names this preset's argument, `weight_stdev`.
        if isinstance(stdev, bool) or not isinstance(stdev, numbers.Real):
            raise TypeError(f"`weight_stdev` must be a float >= 0, got {stdev!r}")
        if not math.isfinite(stdev) or stdev < 0:
            raise ValueError(f"`weight_stdev` must be finite and >= 0, got {stdev!r}")
        self._check_not_frozen()
        noise = WeightNoise(stdev, params["noise_type"], params["parameters"], params["exclude"])
        self._warn_if_training()
        return {"weight_noise": _OnModel(noise, self.model)}

    def _check_not_frozen(self) -> None:
        floating = [p for p in self.model.parameters() if p.is_floating_point()]
        if floating and not any(p.requires_grad for p in floating):
            raise ValueError(
                f"{self.get_name()} perturbs the trainable parameters (requires_grad=True) and "
                f"every parameter of {type(self.model).__name__} is frozen: unfreeze the ones "
                "to perturb (e.g. `model.requires_grad_(True)`), or use "
                "SmoothTunnel(...).attribute(..., weight_noise=WeightNoise(stdev, "
                "trainable_only=False), n_weight_samples=...)"
            )

    def _warn_if_training(self) -> None:
        model = self.model
        training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
        if training:
            shown = ", ".join(training[:3]) + (", ..." if len(training) > 3 else "")
            warn(
                f"{self.get_name()}: the model has modules in training mode ({shown}): dropout "
                "and batch statistics make each explanation random and batch dependent; call "
                "model.eval() first (running statistics are restored afterwards either way)",
                UserWarning,
            )


class NoiseGrad(_WeightNoisePreset):
    r"""NoiseGrad: the inner attribution averaged over models with noisy weights.

    For ``k = 1..M``, the weights are drawn as :math:`\theta_k = \theta \odot \eta_k`,
    :math:`\eta_k \sim \mathcal{N}(1, s^2)` independently per scalar (all trainable parameters
    by default; buffers such as BatchNorm running statistics are kept), the perturbed model is
    explained, and the ``M`` explanations are averaged (or reduced by ``nt_type``). The input is
    not noised. The weights are perturbed in place, so layer and neuron methods (LayerGradCam,
    LayerIntegratedGradients, ...) see the perturbed weights through their hooks; the model is
    restored bit for bit afterwards, also when the call fails or is interrupted (see
    :mod:`captum_smooth.noise.weights`, including the thread-safety notes).

    Choose ``s`` with :func:`~captum_smooth.methods.calibration.calibrate_weight_noise` (the
    largest ``s`` whose perturbed models lose at most a few percent of accuracy).

    Reference: Bykov, Hedström, Nakajima, Höhne, "NoiseGrad: Enhancing Explanations by
    Introducing Stochasticity to Model Weights", AAAI 2022.

    Args:
        model: The model (an nn.Module: its weights are perturbed, also when the inner method
            was built on a wrapper of it).
        attribution_method: None (Saliency, whose default ``abs=True`` applies), a Captum
            attribution class, or an instance (layer and neuron methods included).

    Examples::

        >>> ng = NoiseGrad(model.eval())
        >>> attr = ng.attribute(images, target=3, n_weight_samples=10, weight_stdev=0.2,
        ...                     generator=0, exclude="classifier")
    """

    display_name = "NoiseGrad"
    summary = "Average the inner attribution over ``n_weight_samples`` noisy copies of the weights."
    loop_defaults = {"n_weight_samples": 10, **COMMON_OPTIONS}
    pointers = {
        "stdevs": "NoiseGrad draws no input noise; its noise scale is `weight_stdev` "
        "(FusionGrad adds input noise with `stdevs`)",
        "nt_samples": "NoiseGrad's sample count is `n_weight_samples` (FusionGrad adds "
        "`nt_samples` input draws per weight draw)",
    }

    def configure(
        self, inputs: Tensor | tuple[Tensor, ...], params: dict[str, Any], given: set[str]
    ) -> dict[str, Any]:
        return {**super().configure(inputs, params, given), "nt_samples": 1, "stdevs": 0.0}


class FusionGrad(_WeightNoisePreset):
    r"""FusionGrad (NoiseGrad++): noise on the weights and on the inputs.

    ``M`` weight draws as in :class:`NoiseGrad`, times ``N`` input draws
    :math:`x + \sigma t`, :math:`t` from ``kernel`` (Gaussian by default), per weight draw; the
    ``M * N`` attributions are averaged (or reduced by ``nt_type``). ``stdevs`` is the absolute
    input noise (Captum's convention), a tensor per example or per element, or a sigma rule: with
    ``AdaptiveSigma(0.95, bounds)`` this is FusionGrad with AdaptGrad's adaptive input noise.

    Reference: Bykov, Hedström, Nakajima, Höhne, "NoiseGrad: Enhancing Explanations by
    Introducing Stochasticity to Model Weights", AAAI 2022 (NoiseGrad++, here FusionGrad).

    Args:
        model: The model (an nn.Module: its weights are perturbed).
        attribution_method: None (Saliency, whose default ``abs=True`` applies), a Captum
            attribution class, or an instance (layer and neuron methods included).

    Examples::

        >>> fg = FusionGrad(model.eval())
        >>> attr = fg.attribute(images, target=3, n_weight_samples=10, weight_stdev=0.2,
        ...                     nt_samples=10, stdevs=0.4, generator=0)
        >>> from captum_smooth import AdaptiveSigma
        >>> attr = fg.attribute(images, target=3, stdevs=AdaptiveSigma(0.95, (0.0, 1.0)))
    """

    display_name = "FusionGrad"
    summary = "Average the inner attribution over ``M`` weight draws times ``N`` input draws."
    loop_defaults = {
        "n_weight_samples": 10,
        "nt_samples": 10,
        "stdevs": 0.4,
        **INPUT_NOISE_OPTIONS,
        "noise_layer": None,
        **COMMON_OPTIONS,
    }


#: The authors' name for FusionGrad.
NoiseGradPlusPlus = FusionGrad
