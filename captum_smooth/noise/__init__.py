"""What gets sampled: input-noise kernels, sigma rules, weight noise."""

from .kernels import (
    KERNELS,
    BumpKernel,
    CosineKernel,
    EpanechnikovKernel,
    GaussianKernel,
    Kernel,
    LaplaceKernel,
    StudentTKernel,
    TabulatedKernel,
    TriangularKernel,
    UniformKernel,
    get_kernel,
    kernel_names,
)
from .sigma import AdaptiveSigma, Bounds, RangeShareSigma, SigmaRule, resolve_bounds
from .weights import (
    NOISE_TYPES,
    ParameterFilter,
    WeightNoise,
    WeightPerturber,
    model_lock,
    select_parameters,
)

__all__ = [
    "KERNELS",
    "NOISE_TYPES",
    "AdaptiveSigma",
    "Bounds",
    "BumpKernel",
    "CosineKernel",
    "EpanechnikovKernel",
    "GaussianKernel",
    "Kernel",
    "LaplaceKernel",
    "ParameterFilter",
    "RangeShareSigma",
    "SigmaRule",
    "StudentTKernel",
    "TabulatedKernel",
    "TriangularKernel",
    "UniformKernel",
    "WeightNoise",
    "WeightPerturber",
    "get_kernel",
    "kernel_names",
    "model_lock",
    "resolve_bounds",
    "select_parameters",
]
