"""The named methods: presets of the one loop in :mod:`captum_smooth.core.tunnel`."""

from ._preset import SmoothingPreset
from .adaptgrad import AdaptGrad
from .smoothgrad import SmoothGrad

__all__ = ["AdaptGrad", "SmoothGrad", "SmoothingPreset"]
