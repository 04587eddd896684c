r"""Kernels sampled by a tabulated inverse CDF: any symmetric density, and the bump.

A density without a closed-form inverse CDF is tabulated once, at construction, into a quantile
table; sampling then interpolates that table at one folded uniform per element (the shared
symmetric sampler of :mod:`captum_smooth.noise._kernel_base`), so it stays closed form and
vectorised. :class:`BumpKernel`, the C-infinity mollifier, is the built-in one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
from torch import Tensor

from ._kernel_base import _SymmetricKernel

__all__ = ["BumpKernel", "TabulatedKernel"]


class TabulatedKernel(_SymmetricKernel):
    r"""Any symmetric density on ``[-support, support]``, sampled by a tabulated inverse CDF.

    At construction the density is evaluated (in float64) on ``grid_size + 1`` equally spaced
    points of ``[0, support]`` and integrated by the trapezoid rule into the CDF of ``|t|``
    (normalised, linear between grid points). That CDF is inverted once with
    :func:`torch.searchsorted` and linear interpolation at ``grid_size + 1`` equally spaced
    probabilities, giving a quantile table. Sampling interpolates the table linearly at the
    folded uniform ``w`` (a constant number of operations per element, no search): the sampled
    law puts mass ``1 / grid_size`` uniformly between consecutive quantiles, within
    ``1 / grid_size`` of the tabulated CDF everywhere. Its variance is computed exactly and the
    table is rescaled by :attr:`scale` to unit std, so the density need not be normalised nor
    have any given width.

    Args:
        density: Callable mapping a float64 tensor of positions to a tensor of the same shape
            holding the (unnormalised) density: finite, non-negative, even
            (``density(-t) == density(t)``) and not identically zero.
        support: Half-width of the density's support, in the density's own units (finite,
            positive). After construction :attr:`support` is the half-width of the rescaled,
            unit-std kernel, ``support * scale``.
        name: Name of the kernel. Default: ``"tabulated"``.
        grid_size: Number of grid cells on ``[0, support]`` and of probability cells of the
            quantile table. A power of two keeps ``w * grid_size`` exact. Default: 8192.

    Attributes:
        scale: Factor from the density's units to unit std.
        density_support: The ``support`` given, in the density's own units.

    Examples::

        >>> # A symmetric two-step density: twice as likely near zero as near the edges.
        >>> step = TabulatedKernel(lambda t: torch.where(t.abs() < 0.5, 2.0, 1.0), 1.0,
        ...                        name="two_step")
        >>> round(step.support, 3)  # its std is 0.5, so [-1, 1] becomes [-2, 2]
        2.0
        >>> t = step.sample((1000,), generator=torch.Generator().manual_seed(0))
    """

    name = "tabulated"
    density: Callable[[Tensor], Tensor]
    density_support: float
    grid_size: int
    scale: float
    _quantiles: Tensor

    def __init__(
        self,
        density: Callable[[Tensor], Tensor],
        support: float,
        name: str = "tabulated",
        *,
        grid_size: int = 8192,
    ) -> None:
        if not callable(density):
            raise TypeError(f"`density` must be callable, got {density!r}")
        if isinstance(support, bool) or not isinstance(support, numbers.Real):
            raise TypeError(f"`support` must be a real number, got {support!r}")
        if not (math.isfinite(support) and support > 0):
            raise ValueError(f"`support` must be finite and positive, got {support}")
        if not isinstance(name, str) or not name:
            raise TypeError(f"`name` must be a non-empty string, got {name!r}")
        if isinstance(grid_size, bool) or not isinstance(grid_size, numbers.Integral):
            raise TypeError(f"`grid_size` must be an int, got {grid_size!r}")
        if grid_size < 2:
            raise ValueError(f"`grid_size` must be at least 2, got {grid_size}")

        self.density = density
        self.density_support = float(support)
        self.name = name
        self.grid_size = int(grid_size)

        grid = torch.linspace(0.0, self.density_support, self.grid_size + 1, dtype=torch.float64)
        values = self._evaluate(grid)
        mirrored = self._evaluate(-grid)
        peak = float(values.max())
        if peak <= 0:
            raise ValueError("`density` is zero everywhere on [-support, support]")
        if float((values - mirrored).abs().max()) > 1e-6 * peak:
            raise ValueError("`density` must be symmetric: density(-t) == density(t)")
        values = (values + mirrored) / 2

        cdf = torch.cat([values.new_zeros(1), ((values[:-1] + values[1:]) / 2).cumsum(0)])
        cdf = cdf / cdf[-1]
        levels = torch.linspace(0.0, 1.0, self.grid_size + 1, dtype=torch.float64)
        # right=True skips zero-mass cells at the start; the last quantile is where the mass
        # ends (right=False), so that neither end spreads samples over an empty region.
        quantiles = _invert_cdf(cdf, levels, self.density_support, right=True)
        quantiles[-1] = _invert_cdf(cdf, levels[-1:], self.density_support, right=False)[0]
        lower, upper = quantiles[:-1], quantiles[1:]
        # Second moment of the law that sampling realises: uniform between quantiles.
        variance = float((lower**2 + lower * upper + upper**2).mean() / 3)
        self.scale = 1.0 / math.sqrt(variance)
        self.support = self.density_support * self.scale
        self._quantiles = quantiles * self.scale
        self._tables: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    def _evaluate(self, positions: Tensor) -> Tensor:
        values = torch.as_tensor(self.density(positions.clone()), dtype=torch.float64)
        if values.shape != positions.shape:
            raise ValueError(
                f"`density` must return a tensor of its input's shape {tuple(positions.shape)}, "
                f"got shape {tuple(values.shape)}"
            )
        if not torch.isfinite(values).all():
            raise ValueError("`density` must be finite on [-support, support]")
        if (values < 0).any():
            raise ValueError("`density` must be non-negative")
        return values

    def _table(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Per cell, the first quantile and the step to the next, on ``device`` in ``dtype``."""
        key = (device, dtype)
        if key not in self._tables:
            quantiles = self._quantiles.to(device=device, dtype=dtype)
            self._tables[key] = (quantiles[:-1], quantiles[1:] - quantiles[:-1])
        return self._tables[key]

    def _magnitude(self, w: Tensor) -> Tensor:
        start, slope = self._table(w.device, w.dtype)
        position = w.mul_(self.grid_size)
        # w < 1, so the cell is below grid_size; the clamp only guards rounding. int32 indices
        # keep the peak memory near five times the output.
        cell = position.floor().clamp_(0, self.grid_size - 1)
        fraction = position.sub_(cell).clamp_(0.0, 1.0)
        index = cell.to(torch.int32)
        del cell
        # index_select takes int32 indices as they are (advanced indexing would copy to int64).
        flat = index.view(-1)
        return (
            start.index_select(0, flat)
            .view_as(fraction)
            .addcmul_(slope.index_select(0, flat).view_as(fraction), fraction)
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, support={self.density_support!r}, "
            f"grid_size={self.grid_size})"
        )


def _invert_cdf(cdf: Tensor, levels: Tensor, support: float, *, right: bool) -> Tensor:
    """Quantiles of the law whose CDF is ``cdf`` on a uniform grid of ``[0, support]``.

    The CDF is linear between grid points, so each quantile is found by a search for its cell
    and linear interpolation inside it.
    """
    cells = cdf.numel() - 1
    index = torch.searchsorted(cdf, levels, right=right).sub_(1).clamp_(0, cells - 1)
    lower = cdf[index]
    width = (cdf[index + 1] - lower).clamp_min_(torch.finfo(cdf.dtype).tiny)
    fraction = ((levels - lower) / width).clamp_(0.0, 1.0)
    return (index + fraction) * (support / cells)


def _bump_density(t: Tensor) -> Tensor:
    inside = t.abs() < 1
    # Keep the division finite outside (-1, 1); those points get density 0 anyway.
    gap = torch.where(inside, 1.0 - t * t, torch.ones_like(t))
    return torch.where(inside, torch.exp(-1.0 / gap), torch.zeros_like(t))


class BumpKernel(TabulatedKernel):
    r"""The C-infinity bump kernel: smooth and compactly supported.

    Density :math:`\rho(t) \propto \exp\!\big(-1/(1 - t^2/a^2)\big)` on :math:`(-a, a)` with
    :math:`a = 1/s_1 \approx 2.515`, where :math:`s_1 \approx 0.3976` is the std of
    :math:`\exp(-1/(1 - t^2))` on :math:`(-1, 1)` (computed numerically; the normalising
    constant has no closed form). Sampled by a tabulated inverse CDF
    (:class:`TabulatedKernel`). This is the standard mollifier of analysis, the canonical kernel
    of the mollification view of gradient smoothing.

    Reference: Zhou et al., "Rethinking the principle of gradient smoothing in model
    explanations" (mollification framework); Friedrichs' mollifiers.

    Args:
        grid_size: Number of grid cells of the inverse-CDF table. Default: 8192.

    Examples::

        >>> t = BumpKernel().sample((1000,), generator=torch.Generator().manual_seed(0))
        >>> bool(t.abs().max() < 2.52)
        True
    """

    name = "bump"

    def __init__(self, *, grid_size: int = 8192) -> None:
        super().__init__(_bump_density, 1.0, name="bump", grid_size=grid_size)

    def __repr__(self) -> str:
        if self.grid_size == 8192:
            return f"{type(self).__name__}()"
        return f"{type(self).__name__}(grid_size={self.grid_size})"


# The class-level support, for reading without an instance (an instance recomputes the same).
BumpKernel.support = BumpKernel().support
