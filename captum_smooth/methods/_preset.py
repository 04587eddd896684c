"""The common base of the named methods: a preset is a configuration of the one loop."""

from __future__ import annotations

from typing import Any

from captum.attr import Saliency
from captum.attr._utils.attribution import Attribution
from torch import nn

from ..core.tunnel import SamplingReport, SmoothTunnel

__all__ = ["SmoothingPreset"]


class SmoothingPreset(Attribution):
    """Base of the presets: builds the inner method and a :class:`SmoothTunnel` around it.

    A preset is constructible from the model alone (Captum Insights builds methods as
    ``cls(model)``); the inner method defaults to :class:`captum.attr.Saliency` (whose own
    default ``abs=True`` applies: pass ``abs=False`` for signed gradients).

    Args:
        forward_func: The model or forward function.
        attribution_method: ``None`` (Saliency), a Captum attribution class (built as
            ``cls(forward_func)``), or an instance (layer and neuron methods included).
    """

    #: The name Captum (and Insights) shows for the method.
    display_name: str = "Smoothing preset"

    def __init__(self, forward_func: Any, attribution_method: Any = None) -> None:
        if attribution_method is None:
            attribution_method = Saliency(forward_func)
        elif isinstance(attribution_method, type):
            if not issubclass(attribution_method, Attribution):
                raise TypeError(
                    "`attribution_method` must be a Captum Attribution class or instance, "
                    f"got {attribution_method.__name__}"
                )
            attribution_method = attribution_method(forward_func)
        elif not isinstance(attribution_method, Attribution):
            raise TypeError(
                "`attribution_method` must be a Captum Attribution class or instance, "
                f"got {type(attribution_method).__name__}"
            )
        super().__init__(forward_func)
        self.attribution_method = attribution_method
        self.tunnel = SmoothTunnel(attribution_method)

    @classmethod
    def get_name(cls) -> str:
        return cls.display_name

    @property
    def multiplies_by_inputs(self) -> bool:
        return self.attribution_method.multiplies_by_inputs

    def has_convergence_delta(self) -> bool:
        return self.attribution_method.has_convergence_delta()

    @property
    def last_report(self) -> SamplingReport | None:
        """What the last call sampled (see :class:`SamplingReport`)."""
        return self.tunnel.last_report

    @property
    def model(self) -> nn.Module:
        """The model, for presets that need its weights."""
        if not isinstance(self.forward_func, nn.Module):
            raise TypeError(
                f"{self.get_name()} needs the model's weights: `forward_func` must be an "
                f"nn.Module, got {type(self.forward_func).__name__}"
            )
        return self.forward_func
