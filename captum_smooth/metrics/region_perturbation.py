"""Region perturbation: the area over the MoRF perturbation curve (AOPC / AUPC).

References:
    Samek, W., Binder, A., Montavon, G., Lapuschkin, S., Müller, K.-R. "Evaluating the
    Visualization of What a Deep Neural Network Has Learned." IEEE TNNLS 28(11), 2017.
    https://arxiv.org/abs/1509.06321 (region perturbation, AOPC).

    Goh, G. S. W., Lapuschkin, S., Weber, L., Samek, W., Binder, A. "Understanding Integrated
    Gradients with SmoothTaylor for Deep Neural Network Attribution." ICPR 2020.
    https://arxiv.org/abs/2004.10484 (AUPC with 15x15 regions).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_positive_int
from ._perturb import _check_curve_args, _perturbation_scores, _rank_descending
from ._utils import (
    BaselineLike,
    OutputKind,
    TargetLike,
    _check_generator,
    _check_model,
    _format_baseline,
)

__all__ = ["aupc"]


def _window(window: object, height: int, width: int) -> tuple[int, int]:
    if isinstance(window, int) and not isinstance(window, bool):
        size = (window, window)
    elif (
        isinstance(window, (tuple, list))
        and len(window) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in window)
    ):
        size = (int(window[0]), int(window[1]))
    else:
        raise TypeError(f"`window` must be an int or a pair of ints (h, w), got {window!r}")
    if size[0] < 1 or size[1] < 1:
        raise ValueError(f"`window` must be positive, got {size}")
    if size[0] > height or size[1] > width:
        raise ValueError(f"`window` {size} is larger than the image ({height}x{width})")
    return size


def _check_value_range(value_range: object) -> tuple[float, float]:
    """A pair ``(low, high)`` of finite real numbers with ``low <= high``."""
    pair = value_range if isinstance(value_range, (tuple, list)) else ()
    if len(pair) != 2 or not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in pair
    ):
        raise TypeError(f"`value_range` must be a pair (low, high) of numbers, got {value_range!r}")
    low, high = float(pair[0]), float(pair[1])
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"`value_range` must be finite with low <= high, got {value_range!r}")
    return low, high


def _uniform_noise(
    inputs: Tensor, value_range: tuple[float, float] | None, generator: torch.Generator | None
) -> Tensor:
    b = inputs.shape[0]
    if value_range is None:
        flat = inputs.reshape(b, -1)
        lo = flat.min(dim=1).values.reshape((b,) + (1,) * (inputs.dim() - 1))
        hi = flat.max(dim=1).values.reshape((b,) + (1,) * (inputs.dim() - 1))
    else:
        low, high = _check_value_range(value_range)
        lo = torch.tensor(low, dtype=inputs.dtype, device=inputs.device)
        hi = torch.tensor(high, dtype=inputs.dtype, device=inputs.device)
    device = generator.device if generator is not None else inputs.device
    u = torch.rand(inputs.shape, generator=generator, dtype=inputs.dtype, device=device)
    return lo + (hi - lo) * u.to(inputs.device)


def aupc(
    model: Callable[[Tensor], Tensor],
    inputs: Tensor,
    maps: Tensor,
    target: TargetLike,
    *,
    window: int | tuple[int, int] = 15,
    n_steps: int | None = None,
    baseline: BaselineLike | None = None,
    value_range: tuple[float, float] | None = None,
    generator: torch.Generator | int | None = None,
    batch_size: int = 64,
    output: OutputKind = "logit",
) -> Tensor:
    r"""Region-perturbation AUPC (Samek et al.'s AOPC), one value per example (higher = more
    faithful).

    The image is tiled into non-overlapping ``window`` regions from the top-left corner (the
    last row / column of tiles is cropped when the size is not a multiple of the window). Each
    region's relevance is the sum of the channel-summed (signed) ``maps`` over it. Regions are
    perturbed most relevant first, one per step (ties: lower region index, row-major, first),
    cumulatively, for ``L = n_steps`` steps, and

    .. math::
        \mathrm{AUPC} = \frac{1}{L + 1} \sum_{k=0}^{L} \big(f(x) - f(x^{(k)})\big)

    where ``x^{(k)}`` has its ``k`` most relevant regions perturbed and ``f`` is the score of
    ``target`` (Samek et al. 2017, eq. 12, for one example). This is the non-overlapping-grid
    variant; Samek et al. and the SmoothTaylor code instead perturb windows centred on the most
    relevant remaining locations and average several random draws.

    Perturbation: by default (``baseline=None``) every pixel of a perturbed region takes a
    value drawn uniformly from ``value_range`` (default: the example's own ``[min, max]``),
    one draw per example made up front with ``generator`` (seed it for reproducible scores), as
    Samek et al. A float, a tensor broadcastable to ``inputs`` or a callable ``inputs ->
    tensor`` gives a deterministic perturbation instead.

    Args:
        model: A callable mapping a batch shaped like ``inputs`` to ``(N, n_classes)`` outputs.
        inputs: Images ``(B, C, H, W)``.
        maps: Attributions ``(B, C, H, W)``, ``(B, 1, H, W)`` or ``(B, H, W)``.
        target: The explained class: an int, a sequence of ``B`` ints or a tensor ``()``/``(B,)``.
        window: Region size, an int or ``(h, w)`` (default 15, as SmoothTaylor); at most the
            image size.
        n_steps: Number of regions perturbed ``L``; ``None`` (default) perturbs them all. Capped
            to the number of regions.
        baseline: Deterministic replacement values, or ``None`` for uniform noise.
        value_range: ``(low, high)`` of the uniform noise; ``None``: per example min and max.
        generator: Random generator (or int seed) of the uniform noise.
        batch_size: Perturbed inputs per forward call (default 64).
        output: ``"logit"`` (the raw output, default, as the SmoothTaylor code) or ``"prob"``
            (softmax probability).

    Returns:
        A tensor ``(B,)``.

    Examples::

        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
        >>> x = torch.rand(2, 3, 32, 32)
        >>> maps = Saliency(model).attribute(x, target=1)
        >>> aupc(model, x, maps, target=1, window=8, generator=torch.Generator().manual_seed(0))
        tensor([..., ...])
    """
    model = _check_model(model)
    inputs, importance, target_t, output = _check_curve_args(
        inputs, maps, target, output, batch_size, images_only=True
    )
    b, _, height, width = inputs.shape
    win_h, win_w = _window(window, height, width)
    generator = _check_generator(generator, "generator", inputs.device)

    n_rows, n_cols = -(-height // win_h), -(-width // win_w)
    n_regions = n_rows * n_cols
    steps = n_regions if n_steps is None else min(check_positive_int(n_steps, "n_steps"), n_regions)

    rows = torch.arange(height, device=inputs.device) // win_h
    cols = torch.arange(width, device=inputs.device) // win_w
    region_of = (rows.reshape(-1, 1) * n_cols + cols.reshape(1, -1)).reshape(1, -1).expand(b, -1)
    relevance = torch.zeros(b, n_regions, dtype=importance.dtype, device=inputs.device)
    relevance.scatter_add_(1, region_of, importance)
    position_rank = _rank_descending(relevance).gather(1, region_of)

    if baseline is None:
        fill = _uniform_noise(inputs, value_range, generator)
    else:
        fill = _format_baseline(baseline, inputs)
    counts = torch.arange(steps + 1, device=inputs.device)
    scores = _perturbation_scores(
        model, inputs, fill, position_rank, counts, target_t, output, batch_size
    )
    drop = (scores[:, :1] - scores).mean(dim=1)
    return drop.to(inputs.dtype if inputs.is_floating_point() else torch.get_default_dtype())
