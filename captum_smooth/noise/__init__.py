"""What gets sampled: input-noise kernels, sigma rules, weight noise."""

from . import kernels
from .crn import CommonRandomNumbers

# The kernel names are listed once, in the kernels module's ``__all__``.
from .kernels import *  # noqa: F403
from .sigma import (
    AdaptiveSigma,
    Bounds,
    OutsideBoundsWarning,
    PerExampleSigma,
    RangeShareSigma,
    SigmaRule,
    resolve_bounds,
)
from .weights import (
    NOISE_TYPES,
    BoundWeightNoise,
    ParameterFilter,
    WeightNoise,
    WeightPerturber,
    model_lock,
    select_parameters,
)

__all__ = [
    *kernels.__all__,
    "NOISE_TYPES",
    "AdaptiveSigma",
    "BoundWeightNoise",
    "Bounds",
    "CommonRandomNumbers",
    "OutsideBoundsWarning",
    "ParameterFilter",
    "PerExampleSigma",
    "RangeShareSigma",
    "SigmaRule",
    "WeightNoise",
    "WeightPerturber",
    "model_lock",
    "resolve_bounds",
    "select_parameters",
]
