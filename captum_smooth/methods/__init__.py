"""The named methods: presets of the one loop in :mod:`captum_smooth.core.tunnel`."""

from ._preset import SmoothingPreset
from .adaptgrad import AdaptGrad
from .adaptive_noising import AdaptiveNoising, AdaptiveResult
from .calibration import CalibrationResult, CalibrationStep, calibrate_weight_noise
from .noisegrad import FusionGrad, NoiseGrad, NoiseGradPlusPlus
from .smoothgrad import SmoothGrad
from .smoothtaylor import SmoothTaylor, TaylorTransform, adaptive_smooth_taylor

__all__ = [
    "AdaptGrad",
    "AdaptiveNoising",
    "AdaptiveResult",
    "CalibrationResult",
    "CalibrationStep",
    "FusionGrad",
    "NoiseGrad",
    "NoiseGradPlusPlus",
    "SmoothGrad",
    "SmoothTaylor",
    "SmoothingPreset",
    "TaylorTransform",
    "adaptive_smooth_taylor",
    "calibrate_weight_noise",
]
