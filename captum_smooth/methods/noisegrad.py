"""NoiseGrad and FusionGrad (NoiseGrad++): smoothing in weight space, and in both spaces."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .._warnings import warn
from ._preset import COMMON_OPTIONS, INPUT_NOISE_OPTIONS, SmoothingPreset
from ._weight_noise import WEIGHT_NOISE_PARAMETERS, weight_noise_option

__all__ = ["FusionGrad", "NoiseGrad", "NoiseGradPlusPlus"]


class _WeightNoisePreset(SmoothingPreset):
    """What the weight-space presets share: the weight-noise arguments and the model check."""

    parameters = WEIGHT_NOISE_PARAMETERS

    def __init__(self, model: nn.Module, attribution_method: Any = None) -> None:
        super().__init__(model, attribution_method)
        self.model  # noqa: B018 -- raises TypeError unless forward_func is an nn.Module

    def configure(
        self, inputs: Tensor | tuple[Tensor, ...], params: dict[str, Any], given: set[str]
    ) -> dict[str, Any]:
        weight_noise = weight_noise_option(self.get_name(), self.model, params)
        self._warn_if_training()
        return {"weight_noise": weight_noise}

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
