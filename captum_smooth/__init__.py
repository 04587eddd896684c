"""captum-smooth: gradient smoothing for Captum, as drop-in Captum attributions.

The parts:

* :mod:`captum_smooth.core`: the one sampling loop (:class:`SmoothTunnel`, a Captum
  ``NoiseTunnel``), chunking and streaming reducers;
* :mod:`captum_smooth.noise`: what is sampled (kernels, sigma rules, weight noise);
* :mod:`captum_smooth.methods`: the named methods, presets of the loop;
* :mod:`captum_smooth.metrics`: scores for smoothness and faithfulness;
* :mod:`captum_smooth.dataset`: data-set-scale attribution into a resumable store;
* :mod:`captum_smooth.llm`: Captum's LLM attribution, smoothed (no ``transformers`` needed).

The application (the ``captum-smooth`` command line, its method table, models, images and
Captum Insights) lives in :mod:`captum_smooth.app`, which the library never imports.
"""

from .core import (
    LoopOptions,
    MonteCarloError,
    Reducer,
    SamplingReport,
    SmoothTunnel,
    StreamingMoments,
    ToleranceNotReachedWarning,
    reducer_names,
    register_reducer,
)
from .dataset import AttributionStore, StoreError, explain_dataset
from .llm import SmoothLLMAttribution, SmoothLLMGradientAttribution
from .methods import (
    AdaptGrad,
    AdaptiveNoising,
    AdaptiveResult,
    CalibrationResult,
    FusionGrad,
    NoiseGrad,
    NoiseGradPlusPlus,
    SmoothGrad,
    SmoothTaylor,
    TaylorTransform,
    adaptive_smooth_taylor,
    calibrate_weight_noise,
)
from .noise import (
    AdaptiveSigma,
    CommonRandomNumbers,
    Kernel,
    OutsideBoundsWarning,
    PerExampleSigma,
    RangeShareSigma,
    SigmaRule,
    WeightNoise,
    get_kernel,
    kernel_names,
    register_kernel,
)

__version__ = "0.1.0"

__all__ = [
    "AdaptGrad",
    "AdaptiveNoising",
    "AdaptiveResult",
    "AdaptiveSigma",
    "AttributionStore",
    "CalibrationResult",
    "CommonRandomNumbers",
    "FusionGrad",
    "Kernel",
    "LoopOptions",
    "MonteCarloError",
    "NoiseGrad",
    "NoiseGradPlusPlus",
    "OutsideBoundsWarning",
    "PerExampleSigma",
    "RangeShareSigma",
    "Reducer",
    "SamplingReport",
    "SigmaRule",
    "SmoothGrad",
    "SmoothLLMAttribution",
    "SmoothLLMGradientAttribution",
    "SmoothTaylor",
    "SmoothTunnel",
    "StoreError",
    "StreamingMoments",
    "TaylorTransform",
    "ToleranceNotReachedWarning",
    "WeightNoise",
    "__version__",
    "adaptive_smooth_taylor",
    "calibrate_weight_noise",
    "explain_dataset",
    "get_kernel",
    "kernel_names",
    "reducer_names",
    "register_kernel",
    "register_reducer",
]
