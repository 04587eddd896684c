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

__all__ = [
    "KERNELS",
    "AdaptiveSigma",
    "Bounds",
    "BumpKernel",
    "CosineKernel",
    "EpanechnikovKernel",
    "GaussianKernel",
    "Kernel",
    "LaplaceKernel",
    "RangeShareSigma",
    "SigmaRule",
    "StudentTKernel",
    "TabulatedKernel",
    "TriangularKernel",
    "UniformKernel",
    "get_kernel",
    "kernel_names",
    "resolve_bounds",
]
