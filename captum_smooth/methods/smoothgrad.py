"""SmoothGrad with the paper's convention: sigma as a share of the input range."""

from __future__ import annotations

from typing import Any

from captum.log import log_usage
from torch import Tensor

from ..noise.kernels import Kernel
from ..noise.sigma import Bounds, RangeShareSigma, SigmaRule
from ._preset import SmoothingPreset
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
    """

    display_name = "SmoothGrad"

    @log_usage()
    def attribute(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: Any = None,
        nt_samples: int = 50,
        noise_level: float = 0.15,
        bounds: Bounds | list[Bounds] | None = None,
        nt_type: str = "smoothgrad",
        nt_samples_batch_size: int | str | None = "auto",
        kernel: str | Kernel = "gaussian",
        include_clean: bool = False,
        generator: Any = None,
        show_progress: bool = False,
        **kwargs: Any,
    ) -> Any:
        r"""Smooth the inner attribution with noise of ``noise_level`` times the input range.

        Args:
            inputs: A tensor or tuple of tensors, batch first.
            target: Output index (int, tuple, list or tensor per example), as in Captum.
            nt_samples: Noisy samples per example. Default: 50.
            noise_level: Share of the range ``hi - lo`` used as sigma. Default: 0.15.
            bounds: ``(lo, hi)`` (scalars, per channel or tensors), a list with one pair per
                input, or None for each example's own ``max - min``. Default: None.
            nt_type: ``smoothgrad``, ``smoothgrad_sq`` or ``vargrad``. Default: ``smoothgrad``.
            nt_samples_batch_size: Copies per inner call, or ``"auto"``. Default: ``"auto"``.
            kernel: Noise kernel name or object. Default: ``gaussian``.
            include_clean: Average the un-noised attribution in too. Default: False.
            generator: A torch.Generator or int seed for reproducible noise. Default: None.
            show_progress: Show a progress bar. Default: False.
            **kwargs: Passed to the inner method (e.g. ``abs=False`` for Saliency, baselines).

        Returns:
            Attributions shaped like the inner method's (and deltas where asked for).
        """
        rules: SigmaRule | tuple[SigmaRule, ...] = per_input_rules(
            inputs, bounds, lambda b: RangeShareSigma(noise_level, b)
        )
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
