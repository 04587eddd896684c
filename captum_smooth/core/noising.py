"""Making the noisy copies of one chunk: sigma from its spec, ``sigma * t`` from the kernel.

``stdevs`` is a float (absolute, Captum's convention), a tensor per example ``(B,)`` or per
element, a sigma rule evaluated on the clean inputs, or a tuple with one of these per input.
The copies are example-major (the ``k`` copies of one example adjacent), as Captum's.
"""

from __future__ import annotations

import math
from typing import Any, Union

import torch
from torch import Tensor

from ..noise.kernels import Kernel
from ..noise.sigma import SigmaRule

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
        if not sigma.is_floating_point():
            sigma = sigma.float()
        if not bool(torch.isfinite(sigma).all()) or bool((sigma < 0).any()):
            raise ValueError(f"`{name}` must be finite and >= 0 everywhere")
        return sigma
    raise TypeError(
        f"`{name}` must be a float, a tensor, a SigmaRule or a tuple of these, "
        f"got {type(sigma).__name__}"
    )


def _broadcast_sigma(sigma: Tensor, clean: Tensor, name: str) -> Tensor:
    """A per-element sigma reshaped to broadcast to ``clean`` without enlarging it."""
    sigma = sigma.reshape((1,) * max(0, clean.dim() - sigma.dim()) + tuple(sigma.shape))
    try:
        shape = torch.broadcast_shapes(sigma.shape, clean.shape)
    except RuntimeError as err:
        raise ValueError(
            f"`{name}` of shape {tuple(sigma.shape)} does not broadcast to the input of shape "
            f"{tuple(clean.shape)}; give one value per example (B,) or per element"
        ) from err
    if shape != clean.shape:
        raise ValueError(
            f"`{name}` of shape {tuple(sigma.shape)} would enlarge the input of shape "
            f"{tuple(clean.shape)}"
        )
    return sigma


def evaluate_sigma(spec: SigmaSpec, clean: Tensor, name: str = "stdevs") -> float | Tensor:
    """Evaluate one sigma spec on a clean ``(B, ...)`` tensor: a float or a broadcastable tensor.

    Args:
        spec: A float, a tensor (per example ``(B,)`` or per element) or a sigma rule.
        clean: The clean input (or layer output), batch first.
        name: The argument's name, for messages.

    Returns:
        A float, or a tensor on ``clean``'s device and dtype that broadcasts to it.
    """
    if isinstance(spec, SigmaRule) or (callable(spec) and not isinstance(spec, Tensor)):
        sigma = _check_sigma_value(spec(clean.detach()), name)
    else:
        sigma = _check_sigma_value(spec, name)
    if isinstance(sigma, float):
        return sigma
    sigma = sigma.to(device=clean.device, dtype=clean.dtype)
    if sigma.dim() == 0:
        return sigma
    if sigma.dim() == 1 and sigma.shape[0] == clean.shape[0] and clean.dim() > 1:
        # One sigma per example.
        return sigma.reshape((-1,) + (1,) * (clean.dim() - 1))
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
) -> Tensor:
    """Draw ``sigma * t`` for ``k`` copies of each example, example-major ``(B * k, ...)``.

    The draw goes through ``generator`` on its own device, then moves to the input's device.
    """
    b, k = clean.shape[0], samples_per_example
    rest = tuple(clean.shape[1:])
    device = clean.device
    if generator is not None and generator.device != device:
        device = generator.device
    noise = kernel.sample((b * k, *rest), generator=generator, device=device, dtype=clean.dtype)
    noise = noise.to(clean.device)
    if isinstance(sigma, float) or sigma.dim() == 0:
        # The same operation order as Captum (normal(0, std) == randn * std), bit for bit.
        return noise.mul_(sigma)
    return noise.view((b, k, *rest)).mul_(sigma.unsqueeze(1)).view((b * k, *rest))


def noisy_copies(
    inputs: tuple[Tensor, ...],
    k: int,
    sigmas: tuple[float | Tensor, ...] | None,
    kernel: Kernel,
    generator: torch.Generator | None,
    *,
    requires_grad: bool,
) -> tuple[Tensor, ...]:
    """The ``B * k`` copies of one chunk, noised unless ``sigmas`` is None.

    Args:
        inputs: The clean inputs of the examples in the chunk, batch first.
        k: Copies per example.
        sigmas: One evaluated sigma per input, or None for clean copies.
        kernel: The noise kernel.
        generator: The generator of the draws.
        requires_grad: Mark floating-point copies as requiring gradients (gradient methods).

    Returns:
        One ``(B * k, ...)`` tensor per input; the inputs are never modified.
    """
    out = []
    for i, x in enumerate(inputs):
        if sigmas is None or not x.is_floating_point():
            noisy = x.repeat_interleave(k, dim=0) if k > 1 else x.detach().clone()
        else:
            noise = draw_noise(kernel, x, sigmas[i], k, generator)
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
