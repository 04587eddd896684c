"""Making the noisy copies of one chunk: sigma from its spec, ``sigma * t`` from the kernel.

``stdevs`` is a float (absolute, Captum's convention), a tensor, a sigma rule evaluated on the
clean inputs, or a tuple with one of these per input. A tensor has one element, or as many
dimensions as the input, each of size 1 or the input's: ``(B, 1, ..., 1)`` is one sigma per
example, ``(1, C, H, W)`` one per element of every example. A 1-D tensor of several values on
a multi-dimensional input is refused (it read per example or per feature depending on the batch
size): reshape it, or give one sigma per example as ``PerExampleSigma(values)``.

The copies are example-major (the ``k`` copies of one example adjacent), as Captum's. With a
float sigma the noise of a float64 input is drawn in float32 and then widened, as Captum's
NoiseTunnel draws it, so the numbers are Captum's under the same seed.
"""

from __future__ import annotations

import math
from typing import Any, Union

import torch
from torch import Tensor

from ..noise.kernels import Kernel
from ..noise.sigma import SigmaRule
from .antithetic import mirrored
from .counter_noise import CounterStream

__all__ = ["SigmaSpec", "StdevsType", "draw_noise", "evaluate_sigma", "noisy_copies"]

SigmaSpec = Union[float, Tensor, SigmaRule]
StdevsType = Union[float, Tensor, SigmaRule, tuple[SigmaSpec, ...]]


def _check_sigma_value(sigma: Any, name: str) -> float | Tensor:
    if isinstance(sigma, bool):
        raise TypeError(f"`{name}` must be a number, a tensor or a sigma rule, got {sigma!r}")
    if isinstance(sigma, (int, float)):
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"`{name}` must be finite and >= 0, got {sigma!r}")
        return float(sigma)
    if isinstance(sigma, Tensor):
        if sigma.is_complex():
            raise TypeError(f"`{name}` must be real, got a tensor of dtype {sigma.dtype}")
        if not sigma.is_floating_point():
            sigma = sigma.float()
        if not bool(torch.isfinite(sigma).all()) or bool((sigma < 0).any()):
            raise ValueError(f"`{name}` must be finite and >= 0 everywhere")
        return sigma
    raise TypeError(
        f"`{name}` must be a float, a tensor, a SigmaRule or a tuple of these, "
        f"got {type(sigma).__name__}"
    )


def _ambiguous_message(sigma: Tensor, clean: Tensor, name: str) -> str:
    dims = ", ".join(["B"] + ["1"] * (clean.dim() - 1))
    return (
        f"`{name}` of shape {tuple(sigma.shape)} for an input of shape {tuple(clean.shape)} is "
        f"ambiguous: give it the input's {clean.dim()} dimensions (each of size 1 or the "
        f"input's). One sigma per example: shape ({dims}), e.g. `{name}=values.reshape(-1"
        f"{', 1' * (clean.dim() - 1)})` or `{name}=PerExampleSigma(values)`; one sigma per "
        f"element of every example: shape (1, {', '.join(map(str, clean.shape[1:]))})"
    )


def _broadcast_sigma(sigma: Tensor, clean: Tensor, name: str) -> Tensor:
    """A sigma tensor with ``clean``'s dimensions, checked to broadcast without enlarging it."""
    if sigma.dim() != clean.dim():
        raise ValueError(_ambiguous_message(sigma, clean, name))
    fits = all(s in (1, c) for s, c in zip(sigma.shape, clean.shape))
    if not fits:
        raise ValueError(
            f"`{name}` of shape {tuple(sigma.shape)} does not broadcast to the input of shape "
            f"{tuple(clean.shape)}: each dimension must be 1 or the input's"
        )
    return sigma


def evaluate_sigma(spec: SigmaSpec, clean: Tensor, name: str = "stdevs") -> float | Tensor:
    """Evaluate one sigma spec on a clean ``(B, ...)`` tensor: a float or a broadcastable tensor.

    Args:
        spec: A float, a tensor (one element, or the input's dimensions with sizes 1 or the
            input's) or a sigma rule.
        clean: The clean input (or layer output), batch first.
        name: The argument's name, for messages.

    Returns:
        A float, or a tensor on ``clean``'s device and dtype that broadcasts to it.

    Raises:
        ValueError: A tensor that is negative, not finite, or of an ambiguous shape.

    Examples::

        >>> evaluate_sigma(torch.tensor([[0.1], [0.2]]), torch.zeros(2, 3)).shape
        torch.Size([2, 1])
    """
    if isinstance(spec, SigmaRule) or (callable(spec) and not isinstance(spec, Tensor)):
        sigma = _check_sigma_value(spec(clean.detach()), name)
    else:
        sigma = _check_sigma_value(spec, name)
    if isinstance(sigma, float):
        return sigma
    sigma = sigma.to(device=clean.device, dtype=clean.dtype)
    if sigma.numel() == 1 and sigma.dim() <= max(clean.dim(), 1):
        return sigma.reshape(())
    return _broadcast_sigma(sigma, clean, name)


def is_zero(spec: Any) -> bool:
    """Whether a sigma spec is exactly zero (no noise: integer inputs are then fine)."""
    return isinstance(spec, (int, float)) and not isinstance(spec, bool) and spec == 0


def split_stdevs(stdevs: Any, n_inputs: int) -> tuple[Any, ...]:
    """One sigma spec per input tensor: a tuple or list of them, or one for all."""
    if isinstance(stdevs, (tuple, list)):
        if len(stdevs) != n_inputs:
            raise ValueError(
                f"`stdevs` has {len(stdevs)} entries but there are {n_inputs} input tensors; "
                "give one per input or a single value"
            )
        return tuple(stdevs)
    return (stdevs,) * n_inputs


def draw_noise(
    kernel: Kernel,
    clean: Tensor,
    sigma: float | Tensor,
    samples_per_example: int,
    generator: torch.Generator | None,
    *,
    antithetic: bool = False,
    stream: CounterStream | None = None,
    rows: Tensor | None = None,
    tensor_index: int = 0,
) -> Tensor:
    """Draw ``sigma * t`` for ``k`` copies of each example, example-major ``(B * k, ...)``.

    The draw goes through ``generator`` on its own device, then moves to the input's device.
    With ``antithetic`` (``k`` even), ``k / 2`` draws per example are made, each followed by
    its negation. With a counter-based ``stream`` the draws are those of the examples ``rows``
    (None: all) at the stream's position, for noised tensor ``tensor_index``, whatever the
    chunk layout (:mod:`~captum_smooth.core.counter_noise`).
    """
    b, k = clean.shape[0], samples_per_example
    rest = tuple(clean.shape[1:])
    device = clean.device
    if generator is not None and generator.device != device:
        device = generator.device
    # Captum draws a float sigma's noise in the default dtype (float32) whatever the input's:
    # a float64 input then gets Captum's numbers. Other sigmas draw in the input's dtype.
    captum_draw = isinstance(sigma, float) and clean.dtype == torch.float64
    dtype = torch.get_default_dtype() if captum_draw else clean.dtype
    n = k // 2 if antithetic else k
    if stream is not None:
        noise = stream.draw(kernel, rest, n, rows, tensor_index, dtype=dtype)
    else:
        noise = kernel.sample((b * n, *rest), generator=generator, device=device, dtype=dtype)
    if antithetic:
        noise = mirrored(noise)
    if isinstance(sigma, float) or sigma.dim() == 0:
        # The same operation order as Captum (normal(0, std) == randn * std), bit for bit.
        return noise.mul_(sigma).to(device=clean.device, dtype=clean.dtype)
    noise = noise.to(clean.device)
    return noise.view((b, k, *rest)).mul_(sigma.unsqueeze(1)).view((b * k, *rest))


def noisy_copies(
    inputs: tuple[Tensor, ...],
    k: int,
    sigmas: tuple[float | Tensor, ...] | None,
    kernel: Kernel,
    generator: torch.Generator | None,
    *,
    requires_grad: bool,
    antithetic: bool = False,
    stream: CounterStream | None = None,
    rows: Tensor | None = None,
) -> tuple[Tensor, ...]:
    """The ``B * k`` copies of one chunk, noised unless ``sigmas`` is None.

    Args:
        inputs: The clean inputs of the examples in the chunk, batch first.
        k: Copies per example.
        sigmas: One evaluated sigma per input, or None for clean copies.
        kernel: The noise kernel.
        generator: The generator of the draws.
        requires_grad: Mark floating-point copies as requiring gradients (gradient methods).
        antithetic: Draw the noise in mirrored pairs ``t, -t`` of adjacent copies (``k`` even).
        stream: A counter-based stream to draw from instead of ``generator``.
        rows: With ``stream``, the examples of the chunk in the full batch (None: all).

    Returns:
        One ``(B * k, ...)`` tensor per input; the inputs are never modified.
    """
    out = []
    for i, x in enumerate(inputs):
        if sigmas is None or not x.is_floating_point():
            noisy = x.repeat_interleave(k, dim=0) if k > 1 else x.detach().clone()
        else:
            noise = draw_noise(
                kernel,
                x,
                sigmas[i],
                k,
                generator,
                antithetic=antithetic,
                stream=stream,
                rows=rows,
                tensor_index=i,
            )
            rest = tuple(x.shape[1:])
            noisy = (
                noise.view((x.shape[0], k, *rest))
                .add_(x.detach().unsqueeze(1))
                .view((x.shape[0] * k, *rest))
            )
        if requires_grad and noisy.is_floating_point():
            noisy.requires_grad_()
        out.append(noisy)
    return tuple(out)
