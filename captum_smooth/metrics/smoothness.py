"""Multi-scale total variation of attribution maps (visual noise; lower is smoother).

Reference:
    Goh, G. S. W., Lapuschkin, S., Weber, L., Samek, W., Binder, A. "Understanding Integrated
    Gradients with SmoothTaylor for Deep Neural Network Attribution." ICPR 2020.
    https://arxiv.org/abs/2004.10484 (the "average total variation" curve over a Gaussian
    pyramid and the area under it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_bool, check_positive_int
from ._utils import _channel_reduce_abs, _check_maps

__all__ = ["total_variation"]


def _percentile(flat: Tensor, q: float) -> Tensor:
    """Per-row percentile of ``flat`` ``(B, N)`` with linear interpolation (numpy's default)."""
    n = flat.shape[1]
    ordered = flat.sort(dim=1).values
    pos = (q / 100.0) * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return ordered[:, lo] + (ordered[:, hi] - ordered[:, lo]) * frac


def _normalise(level: Tensor, percentile: float, subtract_min: bool) -> Tensor:
    """``|map| / percentile`` clipped to [0, 1]; falls back to the max when the percentile is 0,
    and maps an all-zero map to zeros. With ``subtract_min``: ``(m - min) / (percentile - min)``.
    """
    b = level.shape[0]
    if subtract_min:
        level = level - level.reshape(b, -1).min(dim=1).values.reshape(b, 1, 1)
    flat = level.reshape(b, -1)
    scale = _percentile(flat, percentile)
    scale = torch.where(scale > 0, scale, flat.max(dim=1).values)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale)).reshape(b, 1, 1)
    normed = (level / safe).clamp(0.0, 1.0)
    return torch.where(scale.reshape(b, 1, 1) > 0, normed, torch.zeros_like(normed))


def _mean_neighbour_difference(level: Tensor) -> Tensor:
    """``(mean |horizontal diff| + mean |vertical diff|) / 2`` per example: in [0, 1] for maps in
    [0, 1], 1 exactly for a 0/1 checkerboard."""
    dx = (level[:, :, 1:] - level[:, :, :-1]).abs().mean(dim=(1, 2))
    dy = (level[:, 1:, :] - level[:, :-1, :]).abs().mean(dim=(1, 2))
    return 0.5 * (dx + dy)


def _gaussian_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    radius = max(1, math.ceil(4.0 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return kernel / kernel.sum()


def _pyramid_down(level: Tensor, kernel: Tensor) -> Tensor:
    """Separable Gaussian blur (edge-replicating padding), then every second row and column."""
    radius = (kernel.numel() - 1) // 2
    x = level.unsqueeze(1)
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.reshape(1, 1, 1, -1))
    x = F.conv2d(x, kernel.reshape(1, 1, -1, 1))
    return x[:, 0, ::2, ::2]


def _n_levels(height: int, width: int, min_size: int) -> int:
    """How many pyramid levels (level 0 included) have both sides >= ``min_size``."""
    count = 0
    h, w = height, width
    while min(h, w) >= min_size:
        count += 1
        h, w = (h + 1) // 2, (w + 1) // 2
    return count


def _check_options(
    percentile: object, min_size: object, sigma: object, subtract_min: object
) -> None:
    """The scalar options of :func:`total_variation`, each named when wrong."""
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)):
        raise TypeError(f"`percentile` must be a float, got {type(percentile).__name__}")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"`percentile` must be in (0, 100], got {percentile}")
    check_positive_int(min_size, "min_size", minimum=2)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)):
        raise TypeError(f"`sigma` must be a positive float, got {sigma!r}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"`sigma` must be a finite positive float, got {sigma!r}")
    check_bool(subtract_min, "subtract_min")


def total_variation(
    maps: Tensor,
    *,
    n_scales: int | None = None,
    percentile: float = 99.0,
    min_size: int = 8,
    sigma: float = 2.0 / 3.0,
    subtract_min: bool = False,
) -> Tensor:
    r"""Multi-scale total variation of attribution maps, one value per example (lower = smoother).

    The SmoothTaylor measure of visual noise (Goh et al., ICPR 2020), in this exact form:

    1. Channels are reduced by the sum of absolute values: ``(B, C, H, W) -> (B, H, W)``;
       ``(B, H, W)`` maps are used as ``|maps|``.
    2. A Gaussian pyramid is built from the reduced map: level ``s + 1`` is level ``s`` blurred
       by a separable Gaussian of standard deviation ``sigma`` (truncated at 4 sigma, edge
       pixels replicated) and subsampled by 2 (every second row and column; a side of odd
       length ``n`` becomes ``(n + 1) // 2``). The default ``sigma = 2/3`` is the one of
       ``skimage.transform.pyramid_gaussian`` for a factor 2.
    3. Every level is normalised on its own: divided by its per-example ``percentile``-th
       percentile (linear interpolation) and clipped to [0, 1]. If that percentile is 0 (a map
       with fewer than 1 % non-zero values) the maximum is used instead; an all-zero level
       stays all zero. With ``subtract_min=True`` the level's minimum is subtracted first
       (``(m - min) / (percentile - min)``, as the reference code).
    4. The total variation of a level is the mean absolute neighbour difference, averaged over
       the two directions: ``TV_s = (mean |m[i, j+1] - m[i, j]| + mean |m[i+1, j] - m[i, j]|)
       / 2``, in [0, 1] (1 for a 0/1 checkerboard, 0 for a constant map).
    5. The score is the area under the curve ``TV_s`` over scales placed at ``x_s = s / (S - 1)``
       on [0, 1] (trapezoid rule), i.e. a weighted mean of the ``TV_s``, also in [0, 1]. With a
       single scale it is ``TV_0``.

    Differences from the reference code: it sums the signed channels before ``|.|``, divides
    ``|map| - min`` by ``percentile - min``, uses a pyramid with factor 1.5 down to 30 pixels
    and integrates with Simpson's rule over unit steps; here the zero of the map is kept by
    default (so noise with a positive mean fades at coarse scales instead of being stretched
    back to full contrast; ``subtract_min=True`` restores the reference normalisation), the
    factor is 2 and the abscissa is normalised so that scores are in [0, 1] whatever the number
    of scales. Compare scores only between maps of the same size and ``n_scales``.

    Defined values: a constant map (all-zero included) scores 0.

    Args:
        maps: Attribution maps ``(B, C, H, W)`` or ``(B, H, W)``, with ``H, W >= 2``.
        n_scales: Number of pyramid levels ``S``; every level must keep both sides >= 2.
            ``None`` (default): every level whose both sides are >= ``min_size`` (at least
            level 0).
        percentile: Percentile in (0, 100] used to normalise each level (default 99).
        min_size: Smallest side of a level counted when ``n_scales`` is ``None`` (default 8).
        sigma: Standard deviation, in pixels, of the Gaussian blur between levels.
        subtract_min: Subtract each level's minimum before normalising (default ``False``).

    Returns:
        A tensor ``(B,)`` of scores in [0, 1].

    Examples::

        >>> checker = (torch.arange(8).reshape(8, 1) + torch.arange(8)) % 2
        >>> total_variation(checker.float().reshape(1, 8, 8))
        tensor([1.])
        >>> total_variation(torch.ones(2, 3, 16, 16))
        tensor([0., 0.])
    """
    maps = _check_maps(maps, min_dim=3)
    if maps.dim() not in (3, 4):
        raise ValueError(
            f"`maps` must have shape (B, C, H, W) or (B, H, W), got shape {tuple(maps.shape)}"
        )
    _check_options(percentile, min_size, sigma, subtract_min)

    level = _channel_reduce_abs(maps)
    if level.dtype in (torch.float16, torch.bfloat16):
        level = level.float()
    height, width = level.shape[1], level.shape[2]
    if height < 2 or width < 2:
        raise ValueError(f"`maps` must be at least 2x2 spatially, got {height}x{width}")

    if n_scales is None:
        scales = max(1, _n_levels(height, width, min_size))
    else:
        scales = check_positive_int(n_scales, "n_scales")
        available = _n_levels(height, width, 2)
        if scales > available:
            raise ValueError(
                f"`n_scales`={scales} does not fit maps of size {height}x{width}: at most "
                f"{available} levels keep both sides >= 2"
            )

    kernel = _gaussian_kernel(float(sigma), level.dtype, level.device)
    curve = []
    for s in range(scales):
        if s > 0:
            level = _pyramid_down(level, kernel)
        curve.append(_mean_neighbour_difference(_normalise(level, float(percentile), subtract_min)))
    tv = torch.stack(curve, dim=1)
    if scales == 1:
        return tv[:, 0]
    x = torch.linspace(0.0, 1.0, scales, dtype=tv.dtype, device=tv.device)
    return torch.trapezoid(tv, x, dim=1)
