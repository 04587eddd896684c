"""Sigma rules: how large the input noise is, per example and per element.

A sigma rule looks at the clean input (batch first) and returns the standard deviation of the
noise for every element, as a tensor that broadcasts against the input. The smoothing loop
multiplies a unit-variance kernel draw by it, so every rule works with every kernel.

Besides the rules below, the loop accepts plain numbers (Captum's absolute ``stdevs``), a
tensor with the input's dimensions (``(B, 1, ..., 1)`` per example, ``(1, ...)`` per element),
and a tuple with one of these per input tensor. :class:`PerExampleSigma` gives one sigma per
example whatever the inputs' dimensions.

Rules that keep noisy samples inside bounds (:class:`AdaptiveSigma`) give sigma 0 to elements
that already lie outside them, with one :class:`OutsideBoundsWarning` saying how many
(``strict=True``: an error instead). Perturbation metrics (``captum.metrics.sensitivity_max``,
Quantus' ``MaxSensitivity``) step a little outside the data range and need this.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Union

import torch
from torch import Tensor

from .._warnings import warn

BoundValue = Union[float, Sequence[float], Tensor]
Bounds = tuple[BoundValue, BoundValue]

__all__ = [
    "AdaptiveSigma",
    "Bounds",
    "OutsideBoundsWarning",
    "PerExampleSigma",
    "RangeShareSigma",
    "SigmaRule",
    "adaptive_sigma_factor",
    "check_bounds",
    "resolve_bounds",
]


class OutsideBoundsWarning(UserWarning):
    """Input elements lie outside the ``bounds`` of a sigma rule: they get sigma 0."""


class SigmaRule(abc.ABC):
    """A rule that maps a clean input batch to the noise standard deviation per element."""

    @abc.abstractmethod
    def __call__(self, inputs: Tensor) -> Tensor:
        """Return sigma for ``inputs`` (``(B, ...)``), broadcastable to ``inputs.shape``."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


def _as_bound_tensor(value: BoundValue, like: Tensor, name: str) -> Tensor:
    """Turn a scalar, a per-channel sequence or a tensor into a tensor broadcastable to ``like``.

    A 1-D sequence or tensor whose length equals the channel count (dim 1) is read per channel,
    as for images normalised channel by channel.
    """
    tensor = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if not torch.isfinite(tensor).all():
        raise ValueError(f"`bounds` {name} must be finite, got {value!r}")
    if tensor.dim() == 0:
        return tensor
    if tensor.dim() == 1 and like.dim() >= 2 and tensor.numel() == like.shape[1]:
        return tensor.reshape((1, -1) + (1,) * (like.dim() - 2))
    # Anything else must broadcast against one example or the whole batch.
    padded = tensor.reshape((1,) * max(0, like.dim() - tensor.dim()) + tuple(tensor.shape))
    try:
        torch.broadcast_shapes(padded.shape, like.shape)
    except RuntimeError as err:
        raise ValueError(
            f"`bounds` {name} of shape {tuple(tensor.shape)} does not broadcast to the input "
            f"shape {tuple(like.shape)}; give a scalar, one value per channel, or a tensor"
        ) from err
    return padded


def _is_bound_value(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, Tensor)):
        return True
    return isinstance(value, Sequence) and not isinstance(value, str)


def check_bounds(bounds: object) -> Bounds | None:
    """Check the form of ``bounds``: None or a pair ``(lo, hi)`` of numbers, sequences or tensors.

    Args:
        bounds: The argument.

    Returns:
        ``bounds``.

    Raises:
        TypeError: Anything else (e.g. a single float).

    Examples::

        >>> check_bounds((0.0, 1.0))
        (0.0, 1.0)
    """
    if bounds is None:
        return None
    if (
        not isinstance(bounds, (tuple, list))
        or len(bounds) != 2
        or not all(_is_bound_value(b) for b in bounds)
    ):
        raise TypeError(
            "`bounds` must be None or a pair (lo, hi), each a number, one value per channel or "
            f"a tensor, got {bounds!r}"
        )
    return bounds  # type: ignore[return-value]


def _outside_message(below: Tensor, above: Tensor, inputs: Tensor) -> str:
    return (
        f"{int(below.sum())} element(s) below lo (min found {float(inputs.min()):.6g}), "
        f"{int(above.sum())} element(s) above hi (max found {float(inputs.max()):.6g})"
    )


def outside_bounds(inputs: Tensor, lo: Tensor, hi: Tensor, *, strict: bool) -> Tensor | None:
    """The mask of elements outside ``[lo, hi]`` (None if none); warn once, or raise if strict.

    Args:
        inputs: The clean batch.
        lo: Lower bounds, broadcastable to ``inputs``.
        hi: Upper bounds, broadcastable to ``inputs``.
        strict: Raise instead of warning.

    Returns:
        A boolean mask shaped like ``inputs``, or None when every element is inside.

    Raises:
        ValueError: With ``strict`` when an element lies outside.
    """
    below, above = inputs < lo, inputs > hi
    outside = below | above
    if not bool(outside.any()):
        return None
    where = _outside_message(below, above, inputs)
    if strict:
        raise ValueError(
            f"inputs lie outside `bounds`: {where}; pass the bounds of the data the model was "
            "trained on, or strict=False to give those elements sigma 0"
        )
    warn(
        f"{int(outside.sum())} of {inputs.numel()} input element(s) lie outside `bounds` "
        f"({where}): they get sigma 0 (no noise); strict=True makes this an error",
        OutsideBoundsWarning,
    )
    return outside


def resolve_bounds(
    bounds: Bounds | None, inputs: Tensor, *, strict: bool = True
) -> tuple[Tensor, Tensor]:
    """Return ``(lo, hi)`` tensors broadcastable to ``inputs`` and check the input is inside.

    Args:
        bounds: ``(lo, hi)``, each a float, one value per channel, or a tensor broadcastable to
            the input. ``None`` takes each example's own minimum and maximum over all of its
            elements (the observed range: elements at the extremes then get no noise).
        inputs: The clean batch ``(B, ...)``.
        strict: Raise when the input lies outside the bounds; False leaves that check to the
            caller (:func:`outside_bounds`). Default: True.

    Returns:
        ``(lo, hi)``.

    Raises:
        TypeError: ``bounds`` is not None or a pair.
        ValueError: when ``lo >= hi`` anywhere, or (``strict``) the input lies outside.
    """
    if bounds is None:
        flat = inputs.detach().reshape(inputs.shape[0], -1)
        shape = (inputs.shape[0],) + (1,) * (inputs.dim() - 1)
        return flat.amin(dim=1).reshape(shape), flat.amax(dim=1).reshape(shape)
    check_bounds(bounds)
    lo = _as_bound_tensor(bounds[0], inputs, "lo")
    hi = _as_bound_tensor(bounds[1], inputs, "hi")
    if not bool((lo < hi).all()):
        raise ValueError(
            f"`bounds` need lo < hi everywhere, got lo={bounds[0]!r}, hi={bounds[1]!r}"
        )
    if strict:
        outside_bounds(inputs, lo, hi, strict=True)
    return lo, hi


def adaptive_sigma_factor(confidence: float) -> float:
    """The factor ``1 / (sqrt(2) * erfinv(c))`` that turns a distance into AdaptGrad's sigma.

    With ``sigma = factor * d``, a Gaussian draw stays within ``d`` with probability ``c``.

    Args:
        confidence: The confidence level ``c`` in (0, 1).

    Returns:
        The factor (0.510 for c=0.95, 0.388 for 0.99, 0.304 for 0.999).
    """
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise TypeError(f"`confidence` must be a float in (0, 1), got {confidence!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"`confidence` must lie strictly between 0 and 1, got {confidence!r}")
    erfinv = torch.special.erfinv(torch.tensor(float(confidence), dtype=torch.float64))
    return float(1.0 / (math.sqrt(2.0) * erfinv))


class AdaptiveSigma(SigmaRule):
    r"""AdaptGrad's rule: sigma from a confidence level and the distance to the data bounds.

    For each element, ``d_i = min(x_i - lo_i, hi_i - x_i)`` and
    ``sigma_i = d_i / (sqrt(2) * erfinv(c))``, so a Gaussian noise draw keeps the element inside
    its valid range with probability ``c`` (a per-coordinate, not a joint, guarantee). Elements on
    a bound get no noise, and so do elements outside the bounds (they cannot be noised inside),
    with one :class:`OutsideBoundsWarning` per evaluation saying how many; ``strict=True``
    raises instead. Reference: Zhou et al., "AdaptGrad: Adaptive Sampling to Reduce Noise"
    (the adaptive-sigma smoothing of gradient explanations), 2024.

    Args:
        confidence: The confidence level ``c`` in (0, 1). Default: 0.95 (sigma ~= 0.51 d).
        bounds: ``(lo, hi)`` of the valid input range (scalars, per channel or tensors). ``None``
            uses each example's own minimum and maximum.
        strict: Raise ValueError when an input element lies outside ``bounds`` instead of
            giving it sigma 0 with a warning. Default: False.

    Examples::

        >>> rule = AdaptiveSigma(confidence=0.95, bounds=(0.0, 1.0))
        >>> rule(torch.tensor([[0.0, 0.5, 0.9]]))
        tensor([[0.0000, 0.2551, 0.0510]])
    """

    def __init__(
        self, confidence: float = 0.95, bounds: Bounds | None = None, strict: bool = False
    ) -> None:
        if not isinstance(strict, bool):
            raise TypeError(f"`strict` must be a bool, got {strict!r}")
        self.confidence = confidence
        self.bounds = check_bounds(bounds)
        self.strict = strict
        self._factor = adaptive_sigma_factor(confidence)

    def __call__(self, inputs: Tensor) -> Tensor:
        lo, hi = resolve_bounds(self.bounds, inputs, strict=False)
        # Outside the bounds the distance is negative: clamped to 0, so sigma is 0 there.
        outside_bounds(inputs, lo, hi, strict=self.strict)
        distance = torch.minimum(inputs - lo, hi - inputs).clamp_min(0.0)
        return distance * self._factor

    def __repr__(self) -> str:
        return (
            f"AdaptiveSigma(confidence={self.confidence!r}, bounds={self.bounds!r}, "
            f"strict={self.strict!r})"
        )


class RangeShareSigma(SigmaRule):
    r"""SmoothGrad's convention: sigma as a share of the input range, ``noise_level * (hi - lo)``.

    Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017, report a noise level of
    10-20 % of ``x_max - x_min`` as a good default.

    Args:
        noise_level: The share ``alpha`` of the range, >= 0. Default: 0.15.
        bounds: ``(lo, hi)`` giving the range (scalars, per channel or tensors). ``None`` uses each
            example's own ``max - min`` over all its elements, as the paper does per image.

    Examples::

        >>> RangeShareSigma(0.1, bounds=(0.0, 1.0))(torch.zeros(2, 3)).flatten()
        tensor([0.1000])
    """

    def __init__(self, noise_level: float = 0.15, bounds: Bounds | None = None) -> None:
        if isinstance(noise_level, bool) or not isinstance(noise_level, (int, float)):
            raise TypeError(f"`noise_level` must be a float, got {noise_level!r}")
        if not math.isfinite(noise_level) or noise_level < 0:
            raise ValueError(f"`noise_level` must be finite and >= 0, got {noise_level!r}")
        self.noise_level = float(noise_level)
        self.bounds = check_bounds(bounds)

    def __call__(self, inputs: Tensor) -> Tensor:
        if self.bounds is None:
            lo, hi = resolve_bounds(None, inputs)
        else:
            # The range alone matters here; inputs outside it are not an error for this rule.
            lo = _as_bound_tensor(self.bounds[0], inputs, "lo")
            hi = _as_bound_tensor(self.bounds[1], inputs, "hi")
            if not bool((lo < hi).all()):
                raise ValueError(f"`bounds` need lo < hi everywhere, got {self.bounds!r}")
        return (hi - lo) * self.noise_level


class PerExampleSigma(SigmaRule):
    """One sigma per example, whatever the dimensions of each input: the unambiguous spelling.

    Equivalent to a tensor of shape ``(B, 1, ..., 1)`` for each input tensor; one rule serves
    a tuple of inputs of different dimensions.

    Args:
        values: ``B`` non-negative values, a 1-D tensor or a sequence of floats.

    Examples::

        >>> PerExampleSigma([0.1, 0.2])(torch.zeros(2, 3, 4)).shape
        torch.Size([2, 1, 1])
    """

    def __init__(self, values: Tensor | Sequence[float]) -> None:
        kind = "a 1-D real tensor or sequence (one sigma per example)"
        try:
            tensor = torch.as_tensor(values)
        except (TypeError, ValueError, RuntimeError) as err:  # torch: "invalid data type 'str'"
            raise TypeError(f"`values` must be {kind}, got {values!r}") from err
        if tensor.dim() != 1 or tensor.is_complex() or tensor.dtype == torch.bool:
            raise TypeError(f"`values` must be {kind}, got {values!r}")
        if tensor.numel() == 0:
            raise ValueError("`values` is empty: give one sigma per example")
        if not bool((torch.isfinite(tensor) & (tensor >= 0)).all()):
            raise ValueError(f"`values` must be finite and >= 0, got {values!r}")
        self.values = tensor

    def __call__(self, inputs: Tensor) -> Tensor:
        if self.values.numel() != inputs.shape[0]:
            raise ValueError(
                f"PerExampleSigma holds {self.values.numel()} value(s) but the batch has "
                f"{inputs.shape[0]} example(s)"
            )
        values = self.values.to(device=inputs.device, dtype=inputs.dtype)
        return values.reshape((-1,) + (1,) * (inputs.dim() - 1))

    def __repr__(self) -> str:
        values = self.values.tolist()
        shown = ", ".join(f"{v:.3g}" for v in values[:8])
        return f"PerExampleSigma([{shown}{', ...' if len(values) > 8 else ''}])"
