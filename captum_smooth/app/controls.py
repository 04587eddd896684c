"""The controls every quality table carries: maps that need no smoothing method at all.

evaluation.md's honesty rules: removal-based and smoothness scores can be won by blur alone, and
model-randomisation checks penalise smoothness, so every table lists three controls next to the
methods, and the text says when one ties or beats a method:

* :class:`BlurredGradient`: the plain signed gradient (one gradient evaluation) blurred by a
  Gaussian of ``sigma`` pixels per channel. Smooth, cheap, and still model-dependent.
* :class:`EdgeMap`: the Sobel gradient magnitude of the input itself, per channel. Depends on the
  input only, never on the model (model randomisation cannot change it).
* :class:`RandomMap`: one fixed uniform random map per ``seed`` and example shape, the same for
  every example and every call. Depends on neither the input nor the model: it scores zero
  max-sensitivity and full rank correlation under model randomisation, which shows what those
  two scores reward.

Each is a Captum :class:`~captum.attr.Attribution` (``attribute(inputs, target=...)``,
``forward_func``), so Captum's metrics and :mod:`captum_smooth.metrics` take them like any
method. Maps are shaped like the inputs ``(B, C, H, W)``.

One module for every table: the benchmarks (``benchmarks/bench_quality.py``) use the classes,
``captum-smooth explain``/``demo`` use :func:`control_maps` (the same definitions, reusing the
gradient it computed already, with a blur of :func:`default_blur_sigma` pixels).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from captum.attr import Attribution, Saliency
from torch import Tensor

__all__ = [
    "CONTROL_NAMES",
    "BlurredGradient",
    "EdgeMap",
    "RandomMap",
    "control_maps",
    "default_blur_sigma",
    "gaussian_blur",
    "random_map",
    "sobel_magnitude",
]

#: The command line's names of the three controls, in the order of its tables.
CONTROL_NAMES = ("control-blurred-gradient", "control-edges", "control-random")


def gaussian_blur(images: Tensor, sigma: float) -> Tensor:
    """Blur every channel of ``(B, C, H, W)`` by a separable Gaussian of ``sigma`` pixels.

    The kernel is truncated at ``ceil(3 sigma)`` pixels and normalised to sum 1; borders are
    replicated, so a constant image stays constant. ``sigma == 0`` returns a copy.
    """
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma == 0:
        return images.clone()
    radius = max(1, math.ceil(3.0 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = images.shape[1]
    x = F.pad(images, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.reshape(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    return F.conv2d(x, kernel.reshape(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)


def sobel_magnitude(images: Tensor) -> Tensor:
    """Sobel gradient magnitude ``sqrt(gx^2 + gy^2)`` of every channel (borders replicated)."""
    sobel = torch.tensor(
        [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]],
        dtype=images.dtype,
        device=images.device,
    )
    c = images.shape[1]
    x = F.pad(images, (1, 1, 1, 1), mode="replicate")
    gx = F.conv2d(x, sobel.reshape(1, 1, 3, 3).expand(c, 1, 3, 3).contiguous(), groups=c)
    gy = F.conv2d(x, sobel.t().reshape(1, 1, 3, 3).expand(c, 1, 3, 3).contiguous(), groups=c)
    return (gx**2 + gy**2).sqrt()


def random_map(inputs: Tensor, seed: int) -> Tensor:
    """One uniform map per ``seed`` and example shape, repeated over the batch of ``inputs``."""
    generator = torch.Generator().manual_seed(int(seed))
    one = torch.rand((1, *inputs.shape[1:]), generator=generator, dtype=inputs.dtype)
    return one.to(inputs.device).expand_as(inputs).clone()


def default_blur_sigma(size: int) -> float:
    """The command line's blur: 2 % of the image side, at least one pixel."""
    return max(1.0, size / 50)


def control_maps(
    inputs: Tensor, gradient: Tensor, seed: int, sigma: float | None = None
) -> dict[str, Tensor]:
    """The three controls of ``inputs`` given its plain signed ``gradient`` (already computed).

    Args:
        inputs: Images ``(B, C, H, W)``.
        gradient: Their signed gradients, shaped like ``inputs`` (what :class:`BlurredGradient`
            computes itself).
        seed: Seed of the random map.
        sigma: Blur in pixels (default: :func:`default_blur_sigma` of the image width).

    Returns:
        ``{name: map}`` for :data:`CONTROL_NAMES`, each shaped like ``inputs``; the same maps as
        :class:`BlurredGradient`, :class:`EdgeMap` and :class:`RandomMap`.
    """
    sigma = default_blur_sigma(inputs.shape[-1]) if sigma is None else sigma
    maps = (
        gaussian_blur(gradient.detach(), sigma),
        sobel_magnitude(inputs.detach()),
        random_map(inputs, seed),
    )
    return dict(zip(CONTROL_NAMES, maps))


class BlurredGradient(Attribution):
    """Control: the plain signed gradient blurred by a Gaussian of ``sigma`` pixels.

    Args:
        forward_func: The model.
        sigma: Standard deviation of the blur in pixels.
    """

    def __init__(self, forward_func: Any, sigma: float) -> None:
        super().__init__(forward_func)
        self.sigma = float(sigma)

    def attribute(self, inputs: Tensor, target: Any = None, **kwargs: Any) -> Tensor:
        """The blurred gradient of ``target``, shaped like ``inputs`` (one gradient evaluation)."""
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already")
            grad = Saliency(self.forward_func).attribute(inputs, target=target, abs=False)
        return gaussian_blur(grad.detach(), self.sigma)


class EdgeMap(Attribution):
    """Control: the Sobel magnitude of the input (independent of the model and the target)."""

    def attribute(self, inputs: Tensor, target: Any = None, **kwargs: Any) -> Tensor:
        """The edge map of ``inputs``, shaped like ``inputs`` (no model call)."""
        return sobel_magnitude(inputs.detach())


class RandomMap(Attribution):
    """Control: a fixed uniform random map (independent of the input, model and target).

    The map is drawn from ``torch.Generator().manual_seed(seed)`` with the shape of one example
    and repeated over the batch: the same seed and shape always give the same map, whatever the
    batch and the call.

    Args:
        forward_func: The model (not called; kept for Captum's interface).
        seed: Seed of the map.
    """

    def __init__(self, forward_func: Any, seed: int) -> None:
        super().__init__(forward_func)
        self.seed = int(seed)

    def attribute(self, inputs: Tensor, target: Any = None, **kwargs: Any) -> Tensor:
        """The random map repeated over the batch, shaped like ``inputs`` (no model call)."""
        return random_map(inputs, self.seed)
