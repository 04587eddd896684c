"""Captum's LLM attribution, smoothed through the one sampling loop.

* :class:`SmoothLLMGradientAttribution`: Captum's ``LLMGradientAttribution`` (layer gradient
  methods on the embedding) with noise on the attributed layer's output (the input's path only),
  weight noise, any kernel, reducer, the Monte-Carlo error and a tolerance;
* :class:`SmoothLLMAttribution`: Captum's ``LLMAttribution`` (perturbation methods) with weight
  noise (NoiseGrad), the model bit-identical afterwards.

Neither needs ``transformers``: Captum's LLM attribution works with any model and tokenizer that
follow the Hugging Face conventions.
"""

from .gradient import EMBEDDING_NOISE_LEVEL, SmoothLLMGradientAttribution
from .perturbation import SmoothLLMAttribution

__all__ = ["EMBEDDING_NOISE_LEVEL", "SmoothLLMAttribution", "SmoothLLMGradientAttribution"]
