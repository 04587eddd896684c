"""NoiseGrad and FusionGrad (NoiseGrad++): smoothing in weight space, and in both spaces."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from captum.log import log_usage
from torch import Tensor, nn

from ..core.tunnel import StdevsType
from ..noise.kernels import Kernel
from ..noise.weights import ParameterFilter, WeightNoise, WeightPerturber
from ._preset import SmoothingPreset

__all__ = ["FusionGrad", "NoiseGrad", "NoiseGradPlusPlus"]


class _OnModel:
    """A weight noise bound to the preset's model, whatever the inner method's forward_func.

    The loop perturbs ``attribution_method.forward_func``; an inner method built on a wrapper
    (a lambda around the model) must still perturb the model given to the preset.
    """

    def __init__(self, noise: WeightNoise, model: nn.Module) -> None:
        self.noise = noise
        self.model = model

    @contextlib.contextmanager
    def session(self, model: Any) -> Iterator[WeightPerturber]:
        with self.noise.session(self.model) as perturber:
            yield perturber


class _WeightNoisePreset(SmoothingPreset):
    """Shared checks of the weight-space presets."""

    def __init__(self, model: nn.Module, attribution_method: Any = None) -> None:
        super().__init__(model, attribution_method)
        self.model  # noqa: B018 -- raises TypeError unless forward_func is an nn.Module

    def _weight_noise(
        self,
        weight_stdev: float,
        noise_type: str,
        parameters: ParameterFilter | None,
        exclude: ParameterFilter | None,
    ) -> _OnModel:
        model = self.model
        noise = WeightNoise(weight_stdev, noise_type, parameters, exclude)
        training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
        if training:
            shown = ", ".join(training[:3]) + (", ..." if len(training) > 3 else "")
            warnings.warn(
                f"{self.get_name()}: the model has modules in training mode ({shown}): dropout "
                "and batch statistics make each explanation random and batch dependent; call "
                "model.eval() first (running statistics are restored afterwards either way)",
                UserWarning,
                stacklevel=4,
            )
        return _OnModel(noise, model)


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

    @log_usage()
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: Any = None,
        n_weight_samples: int = 10,
        weight_stdev: float = 0.2,
        generator: Any = None,
        *,
        noise_type: str = "multiplicative",
        parameters: ParameterFilter | None = None,
        exclude: ParameterFilter | None = None,
        nt_type: str = "smoothgrad",
        show_progress: bool = False,
        **kwargs: Any,
    ) -> Any:
        r"""Average the inner attribution over ``n_weight_samples`` noisy copies of the weights.

        Args:
            inputs: A tensor or tuple of tensors, batch first, as for the inner method.
            target: Output index (int, tuple, list or tensor per example), as in Captum.
            n_weight_samples: Weight draws ``M`` >= 1. Default: 10.
            weight_stdev: Noise scale ``s`` >= 0 (0 gives the inner method's result).
                Default: 0.2.
            generator: A torch.Generator or int seed (None: torch's global random state).
                Default: None.
            noise_type: ``"multiplicative"`` or ``"additive"``. Default: ``"multiplicative"``.
            parameters: Which parameters to perturb: None (all trainable), a regex on names,
                module type(s), or a predicate ``(name, param) -> bool``. Default: None.
            exclude: Parameters to keep clean, same forms (e.g. ``"classifier"``). Default: None.
            nt_type: ``smoothgrad`` (mean), ``smoothgrad_sq`` or ``vargrad``. Default:
                ``smoothgrad``.
            show_progress: Show a progress bar over the draws. Default: False.
            **kwargs: Passed to the inner method (``abs=False`` for Saliency, ``baselines``,
                ``additional_forward_args``, ...).

        Returns:
            Attributions shaped like the inner method's (and deltas where asked for, one per
            draw and example).

        Raises:
            ValueError: ``n_weight_samples`` < 1, ``weight_stdev`` < 0 or not finite, a filter
                selecting nothing, an unknown ``noise_type``.
        """
        weight_noise = self._weight_noise(weight_stdev, noise_type, parameters, exclude)
        return self.tunnel._smooth(
            inputs,
            nt_type=nt_type,
            nt_samples=1,
            stdevs=0.0,
            generator=generator,
            weight_noise=weight_noise,
            n_weight_samples=n_weight_samples,
            show_progress=show_progress,
            target=target,
            **kwargs,
        )


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

    @log_usage()
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: Any = None,
        n_weight_samples: int = 10,
        weight_stdev: float = 0.2,
        nt_samples: int = 10,
        stdevs: StdevsType = 0.4,
        generator: Any = None,
        *,
        kernel: str | Kernel = "gaussian",
        nt_samples_batch_size: int | str | None = "auto",
        noise_type: str = "multiplicative",
        parameters: ParameterFilter | None = None,
        exclude: ParameterFilter | None = None,
        nt_type: str = "smoothgrad",
        include_clean: bool = False,
        noise_layer: nn.Module | None = None,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> Any:
        r"""Average the inner attribution over ``M`` weight draws times ``N`` input draws.

        Args:
            inputs: A tensor or tuple of tensors, batch first, as for the inner method.
            target: Output index (int, tuple, list or tensor per example), as in Captum.
            n_weight_samples: Weight draws ``M`` >= 1. Default: 10.
            weight_stdev: Weight noise scale ``s`` >= 0. Default: 0.2.
            nt_samples: Input draws ``N`` per weight draw. Default: 10.
            stdevs: Input noise: a float (absolute), a tensor per example or per element, a
                sigma rule (e.g. :class:`~captum_smooth.noise.sigma.AdaptiveSigma`), or a tuple
                with one per input. Default: 0.4 (normalised image units).
            generator: A torch.Generator or int seed (None: torch's global random state).
                Default: None.
            kernel: Input-noise kernel name or object. Default: ``gaussian``.
            nt_samples_batch_size: Input copies per inner call, or ``"auto"``. Default: ``"auto"``.
            noise_type: ``"multiplicative"`` or ``"additive"``. Default: ``"multiplicative"``.
            parameters: Which parameters to perturb (see :class:`NoiseGrad`). Default: None.
            exclude: Parameters to keep clean. Default: None.
            nt_type: ``smoothgrad``, ``smoothgrad_sq`` or ``vargrad``. Default: ``smoothgrad``.
            include_clean: Also average in the clean input once per weight draw. Default: False.
            noise_layer: Noise this layer's output instead of the inputs (token ids).
                Default: None.
            show_progress: Show a progress bar. Default: False.
            **kwargs: Passed to the inner method.

        Returns:
            Attributions shaped like the inner method's (and deltas where asked for).

        Raises:
            ValueError: ``n_weight_samples`` or ``nt_samples`` < 1, a negative or non-finite
                noise scale, a filter selecting nothing, an unknown ``noise_type``.
        """
        weight_noise = self._weight_noise(weight_stdev, noise_type, parameters, exclude)
        return self.tunnel._smooth(
            inputs,
            nt_type=nt_type,
            nt_samples=nt_samples,
            nt_samples_batch_size=nt_samples_batch_size,
            stdevs=stdevs,
            kernel=kernel,
            include_clean=include_clean,
            generator=generator,
            noise_layer=noise_layer,
            weight_noise=weight_noise,
            n_weight_samples=n_weight_samples,
            show_progress=show_progress,
            target=target,
            **kwargs,
        )


#: The authors' name for FusionGrad.
NoiseGradPlusPlus = FusionGrad
