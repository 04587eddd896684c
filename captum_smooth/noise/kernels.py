r"""Input-noise kernels: the densities that gradient smoothing convolves the gradient with.

Gradient smoothing estimates :math:`(\nabla f * \rho_\sigma)(x)` by Monte Carlo, with
:math:`x_k = x + \sigma t_k` and :math:`t_k \sim \rho`. The estimate is unbiased and consistent
for any probability density :math:`\rho` that is non-negative, integrates to one, is symmetric
(zero mean) and concentrates to a point as :math:`\sigma \to 0` (the mollification view of
gradient smoothing; Zhou et al., "Rethinking the principle of gradient smoothing in model
explanations"). SmoothGrad is the Gaussian case.

Every kernel here draws i.i.d. values per element (a product kernel) with zero mean and unit
standard deviation, so that the smoothing loop's ``sigma`` means the same thing for all of them:
the noise actually added is ``sigma * kernel.sample(...)``. All randomness goes through the
``generator`` argument (``None``: torch's global generator), and every draw is closed form and
vectorised: one or two uniforms per element, never a rejection loop.

The symmetric kernels share one sampler: a single uniform per element gives both a random sign
and a folded uniform ``w`` in ``[0, 1)`` (the same set of values for both signs, so the draw is
exactly symmetric), and ``|t|`` is the inverse CDF of ``|t|`` at ``w``. On CPU, drawing a shape
``(n1 + n2, ...)`` then gives the same numbers as two draws of ``(n1, ...)`` and ``(n2, ...)``
from the same generator (torch's uniform stream is sequential there).
"""

from __future__ import annotations

import abc
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..registry import Registry

__all__ = [
    "KERNELS",
    "BumpKernel",
    "CosineKernel",
    "EpanechnikovKernel",
    "GaussianKernel",
    "Kernel",
    "LaplaceKernel",
    "StudentTKernel",
    "TabulatedKernel",
    "TriangularKernel",
    "UniformKernel",
    "get_kernel",
    "kernel_names",
    "register_kernel",
]

_HALF_TYPES = (torch.float16, torch.bfloat16)


class Kernel(abc.ABC):
    r"""A zero-mean, unit-standard-deviation noise density, sampled i.i.d. per element.

    Subclasses set :attr:`name` and :attr:`support` and implement :meth:`sample`. Any object
    with a ``sample`` method of the same signature and a ``support`` attribute is accepted by
    :func:`get_kernel` as well.

    Attributes:
        name: Short lower-case name, e.g. ``"gaussian"``.
        support: Half-width of the support of the unit-std kernel (every sample lies in
            ``[-support, support]``); ``math.inf`` when unbounded.
    """

    name: str = "kernel"
    support: float = math.inf

    @abc.abstractmethod
    def sample(
        self,
        shape: Sequence[int],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Draw a tensor of ``shape`` with i.i.d. zero-mean, unit-std entries.

        Args:
            shape: Output shape (zero-size dimensions allowed).
            generator: Source of all randomness; ``None`` uses torch's global generator.
            device: Output device. Default: torch's default device.
            dtype: Floating output dtype. Default: ``torch.get_default_dtype()``.

        Returns:
            The samples, of ``shape``, ``dtype`` and ``device``.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ----------------------------------------------------------------------------- helpers


def _as_size(shape: Sequence[int] | int) -> tuple[int, ...]:
    """Validate ``shape`` and return it as a tuple of non-negative ints."""
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (int(shape),)
    try:
        size = tuple(shape)
    except TypeError as err:
        raise TypeError(f"`shape` must be a sequence of ints, got {shape!r}") from err
    for dim in size:
        if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or dim < 0:
            raise ValueError(f"`shape` must hold non-negative ints, got {shape!r}")
    return tuple(int(dim) for dim in size)


def _resolve_dtype(dtype: torch.dtype | None) -> torch.dtype:
    """The output dtype: torch's default when ``None``; it must be a real floating type."""
    if dtype is None:
        return torch.get_default_dtype()
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"`dtype` must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


def _working_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half types lack the resolution for inverse-CDF tails (and some ops on CPU): draw in
    # float32 and cast once at the end.
    return torch.float32 if dtype in _HALF_TYPES else dtype


def _uniform(
    size: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> Tensor:
    """Uniforms in ``[0, 1)``: the single source of randomness of every non-Gaussian kernel."""
    return torch.rand(size, generator=generator, device=device, dtype=dtype)


def _bound(support: float, dtype: torch.dtype) -> float:
    """The largest value representable in ``dtype`` that does not exceed ``support``.

    Clamping to ``support`` itself could round *up* (e.g. ``sqrt(3)`` in bfloat16 is 1.734).
    """
    value = torch.tensor(support, dtype=dtype)
    if value.item() > support:
        value = torch.nextafter(value, torch.zeros_like(value))
    return value.item()


def _finish(samples: Tensor, support: float, dtype: torch.dtype) -> Tensor:
    """Cast the working-precision ``samples`` to ``dtype``, keeping them inside the support."""
    if samples.dtype != dtype:
        samples = samples.to(dtype)
        if math.isfinite(support):
            # Casting to a half type rounds to nearest, which may step past the bound.
            bound = _bound(support, dtype)
            samples.clamp_(-bound, bound)
    return samples


class _SampleRequest(NamedTuple):
    """What :meth:`Kernel.sample` was asked to draw, with ``shape`` and ``dtype`` checked."""

    size: tuple[int, ...]
    generator: torch.Generator | None
    device: torch.device | str | None
    dtype: torch.dtype


class _CheckedKernel(Kernel):
    """A kernel whose :meth:`sample` checks its arguments, then draws with :meth:`_draw`.

    The one implementation of the checks of ``sample`` (``shape``, then ``dtype``) for the
    kernels here and for :class:`~captum_smooth.methods.adaptive_noising.CommonRandomNumbers`.
    """

    def sample(
        self,
        shape: Sequence[int],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        return self._draw(_SampleRequest(_as_size(shape), generator, device, _resolve_dtype(dtype)))

    @abc.abstractmethod
    def _draw(self, request: _SampleRequest) -> Tensor:
        """The samples of ``request.size`` in ``request.dtype`` on ``request.device``."""


# ----------------------------------------------------------------------------- kernels


class GaussianKernel(_CheckedKernel):
    r"""The standard normal kernel, as in SmoothGrad.

    Density :math:`\rho(t) = e^{-t^2/2} / \sqrt{2\pi}` on :math:`\mathbb{R}` (unbounded support,
    unit std as it stands). Sampling is exactly ``torch.randn(shape, generator=generator,
    device=device, dtype=dtype)``, so that draws are bit-identical to Captum's NoiseTunnel
    under the same generator state.

    Reference: Smilkov et al., "SmoothGrad: removing noise by adding noise", 2017.

    Examples::

        >>> kernel = GaussianKernel()
        >>> t = kernel.sample((2, 3), generator=torch.Generator().manual_seed(0))
    """

    name = "gaussian"
    support = math.inf

    def _draw(self, request: _SampleRequest) -> Tensor:
        size, generator, device, dtype = request
        return torch.randn(size, generator=generator, device=device, dtype=dtype)


class _SymmetricKernel(_CheckedKernel):
    """A symmetric kernel sampled as a random sign times the inverse CDF of ``|t|``.

    One uniform ``u`` per element: the sign is ``u >= 1/2`` and ``w = 2u mod 1`` is uniform on
    ``[0, 1)`` with the same values for both signs, so the sampled law is exactly symmetric.
    Subclasses implement :meth:`_magnitude`, the unit-std inverse CDF of ``|t|``.
    """

    @abc.abstractmethod
    def _magnitude(self, w: Tensor) -> Tensor:
        """Map ``w`` in ``[0, 1)`` to ``|t|`` (may work in place on ``w``)."""

    def _draw(self, request: _SampleRequest) -> Tensor:
        size, generator, device, out_dtype = request
        work = _working_dtype(out_dtype)
        u = _uniform(size, generator, device, work)
        positive = (u >= 0.5).to(work)
        # 2u - 1 is exact for u >= 1/2 (Sterbenz), so both halves fold onto the same grid.
        magnitude = self._magnitude(u.mul_(2).sub_(positive))
        if math.isfinite(self.support):
            magnitude.clamp_(max=_bound(self.support, work))
        samples = magnitude.mul_(positive.mul_(2).sub_(1))
        return _finish(samples, self.support, out_dtype)


class LaplaceKernel(_SymmetricKernel):
    r"""The Laplace (double-exponential) kernel: heavier tails than the Gaussian.

    Density :math:`\rho(t) = \frac{1}{2b} e^{-|t|/b}` on :math:`\mathbb{R}` with
    :math:`b = 1/\sqrt{2}` (variance :math:`2b^2 = 1`). ``|t| = -b \log(1 - w)``, finite because
    ``w < 1``.

    Reference: the mollification view of gradient smoothing (Zhou et al., "Rethinking the
    principle of gradient smoothing in model explanations"); any symmetric density is valid.

    Examples::

        >>> t = LaplaceKernel().sample((4, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    """

    name = "laplace"
    support = math.inf
    scale = 1.0 / math.sqrt(2.0)

    def _magnitude(self, w: Tensor) -> Tensor:
        return w.neg_().log1p_().mul_(-self.scale)


class UniformKernel(_SymmetricKernel):
    r"""The uniform (box) kernel.

    Density :math:`\rho(t) = \frac{1}{2a}` on :math:`[-a, a]` with :math:`a = \sqrt{3}`
    (variance :math:`a^2/3 = 1`).

    Reference: the mollification view of gradient smoothing (Zhou et al., "Rethinking the
    principle of gradient smoothing in model explanations").

    Examples::

        >>> t = UniformKernel().sample((1000,))
        >>> bool(t.abs().max() <= UniformKernel.support)
        True
    """

    name = "uniform"
    support = math.sqrt(3.0)

    def _magnitude(self, w: Tensor) -> Tensor:
        return w.mul_(self.support)


class TriangularKernel(_SymmetricKernel):
    r"""The triangular kernel.

    Density :math:`\rho(t) = \frac{1}{a}(1 - |t|/a)` on :math:`[-a, a]` with
    :math:`a = \sqrt{6}` (variance :math:`a^2/6 = 1`). ``|t|/a = 1 - \sqrt{1 - w}``, computed as
    ``w / (1 + sqrt(1 - w))`` to avoid cancellation near zero.

    Reference: the mollification view of gradient smoothing (Zhou et al., "Rethinking the
    principle of gradient smoothing in model explanations").

    Examples::

        >>> t = TriangularKernel().sample((1000,), generator=torch.Generator().manual_seed(0))
    """

    name = "triangular"
    support = math.sqrt(6.0)

    def _magnitude(self, w: Tensor) -> Tensor:
        root = torch.sqrt(1.0 - w).add_(1.0)
        return w.div_(root).mul_(self.support)


class EpanechnikovKernel(_SymmetricKernel):
    r"""The Epanechnikov (parabolic) kernel.

    Density :math:`\rho(t) = \frac{3}{4a}(1 - t^2/a^2)` on :math:`[-a, a]` with
    :math:`a = \sqrt{5}` (variance :math:`a^2/5 = 1`). The CDF of ``|t|/a`` is
    :math:`(3x - x^3)/2`, inverted in closed form as :math:`x = 2 \sin(\arcsin(w)/3)`
    (the trigonometric root of the cubic).

    Reference: the mollification view of gradient smoothing (Zhou et al., "Rethinking the
    principle of gradient smoothing in model explanations"); Epanechnikov, "Non-parametric
    estimation of a multivariate probability density", 1969.

    Examples::

        >>> t = EpanechnikovKernel().sample((1000,), generator=torch.Generator().manual_seed(0))
    """

    name = "epanechnikov"
    support = math.sqrt(5.0)

    def _magnitude(self, w: Tensor) -> Tensor:
        return w.asin_().div_(3.0).sin_().mul_(2.0 * self.support)


class CosineKernel(_SymmetricKernel):
    r"""The cosine kernel.

    Density :math:`\rho(t) = \frac{\pi}{4a}\cos\!\big(\frac{\pi t}{2a}\big)` on :math:`[-a, a]`
    with :math:`a = 1/\sqrt{1 - 8/\pi^2} \approx 2.2976` (variance :math:`a^2 (1 - 8/\pi^2) = 1`).
    ``|t|/a = \frac{2}{\pi}\arcsin(w)``.

    Reference: the mollification view of gradient smoothing (Zhou et al., "Rethinking the
    principle of gradient smoothing in model explanations").

    Examples::

        >>> t = CosineKernel().sample((1000,), generator=torch.Generator().manual_seed(0))
    """

    name = "cosine"
    support = 1.0 / math.sqrt(1.0 - 8.0 / math.pi**2)

    def _magnitude(self, w: Tensor) -> Tensor:
        return w.asin_().mul_(2.0 / math.pi * self.support)


class StudentTKernel(_CheckedKernel):
    r"""Student's t kernel with ``df`` degrees of freedom, rescaled to unit std: heavy tails.

    Density :math:`\rho(t) \propto (1 + t^2 / (\nu s^2))^{-(\nu + 1)/2}` on :math:`\mathbb{R}`
    with :math:`s = \sqrt{(\nu - 2)/\nu}` (the t law has variance :math:`\nu/(\nu - 2)`, so
    ``df`` must exceed 2; the Cauchy, ``df = 1``, has none). Drawn without rejection by the
    polar method of Bailey: with :math:`W \sim U(0, 1]` and :math:`\theta \sim U[0, 2\pi)`,
    :math:`T = \cos\theta \sqrt{\nu (W^{-2/\nu} - 1)}` is t-distributed (two uniforms per
    element; as :math:`\nu \to \infty` it becomes the Box-Muller transform).

    Reference: Bailey, "Polar generation of random variates with the t-distribution",
    Mathematics of Computation, 1994; the mollification view of gradient smoothing (Zhou et al.,
    "Rethinking the principle of gradient smoothing in model explanations").

    Args:
        df: Degrees of freedom, a real number greater than 2. Default: 3.

    Examples::

        >>> kernel = StudentTKernel(df=5)
        >>> t = kernel.sample((1000,), generator=torch.Generator().manual_seed(0))
    """

    name = "student_t"
    support = math.inf

    def __init__(self, df: float = 3) -> None:
        if isinstance(df, bool) or not isinstance(df, numbers.Real):
            raise TypeError(f"`df` must be a real number, got {df!r}")
        if not (math.isfinite(df) and df > 2):
            raise ValueError(f"`df` must be finite and greater than 2 (for a finite std), got {df}")
        self.df = df

    def _draw(self, request: _SampleRequest) -> Tensor:
        size, generator, device, out_dtype = request
        work = _working_dtype(out_dtype)
        # Both uniforms of an element are adjacent in the stream (see the module docstring).
        u = _uniform((*size, 2), generator, device, work)
        w, angle = u.unbind(-1)
        nu = float(self.df)
        # W = 1 - u lies in (0, 1], so the log is finite; expm1 keeps accuracy for large df.
        # In place on the strided views of ``u``; the product is the one contiguous output.
        radius = w.neg_().log1p_().mul_(-2.0 / nu).expm1_().mul_(nu - 2.0).sqrt_()
        samples = torch.mul(radius, angle.mul_(2.0 * math.pi).cos_())
        return _finish(samples, self.support, out_dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(df={self.df!r})"


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


# ----------------------------------------------------------------------------- registry

#: The kernels by name: :func:`register_kernel` adds to it; the loop, the command line, the
#: README's list and the tests read it.
KERNELS: Registry[type[Kernel]] = Registry("kernel", "kernel")


def register_kernel(
    name: str, *, aliases: tuple[str, ...] = ()
) -> Callable[[type[Kernel]], type[Kernel]]:
    """Register a :class:`Kernel` subclass under ``name``: a class decorator.

    The class must be constructible without arguments (its defaults). Once registered, the
    name works wherever a kernel is named (``kernel="name"`` in every method, ``--kernel`` on
    the command line) and is listed by :func:`kernel_names`.

    Args:
        name: The kernel's name (case-insensitive; ``-`` and spaces read as ``_``).
        aliases: Other names for it.

    Returns:
        The decorator (it returns the class unchanged).

    Raises:
        ValueError: The name is taken.
        TypeError: The decorated object is not a Kernel subclass.

    Examples::

        >>> @register_kernel("half_normal_mix")
        ... class Mix(GaussianKernel): ...
    """
    add = KERNELS.register(name, aliases=aliases)

    def _check_and_add(cls: type[Kernel]) -> type[Kernel]:
        if not (isinstance(cls, type) and issubclass(cls, Kernel)):
            raise TypeError(f"register_kernel takes a Kernel subclass, got {cls!r}")
        return add(cls)

    return _check_and_add


for _name, _cls, _aliases in (
    ("gaussian", GaussianKernel, ("normal",)),
    ("laplace", LaplaceKernel, ()),
    ("uniform", UniformKernel, ("box",)),
    ("triangular", TriangularKernel, ()),
    ("epanechnikov", EpanechnikovKernel, ()),
    ("cosine", CosineKernel, ()),
    ("student_t", StudentTKernel, ("t",)),
    ("bump", BumpKernel, ()),
):
    register_kernel(_name, aliases=_aliases)(_cls)


def kernel_names() -> list[str]:
    """The registered kernel names accepted by :func:`get_kernel` (aliases excluded).

    Returns:
        The names in registration order.

    Examples::

        >>> kernel_names()[:3]
        ['gaussian', 'laplace', 'uniform']
    """
    return KERNELS.names()


def _user_kernel(kernel: Any) -> Any:
    """An object with ``sample`` and a positive numeric ``support``, returned as it is."""
    support = kernel.support
    if isinstance(support, bool) or not isinstance(support, numbers.Real):
        raise TypeError(f"`kernel.support` must be a real number, got {support!r}")
    if not support > 0:
        raise ValueError(
            f"`kernel.support` must be positive (math.inf if unbounded), got {support}"
        )
    return kernel


def get_kernel(kernel: str | Kernel | type[Kernel]) -> Kernel:
    """Resolve a kernel name, class or object to a kernel object.

    Args:
        kernel: A name from :func:`kernel_names` or an alias (``normal``, ``box``, ``t``),
            case-insensitive, with ``-`` or spaces read as ``_``; a :class:`Kernel` subclass
            (instantiated with its defaults); or any object with a ``sample`` method and a
            numeric ``support`` attribute (returned as it is).

    Returns:
        The kernel object.

    Raises:
        ValueError: Unknown name, or a user object's ``support`` is not positive.
        TypeError: Anything else.

    Examples::

        >>> get_kernel("Normal")
        GaussianKernel()
        >>> get_kernel(StudentTKernel(df=5))
        StudentTKernel(df=5)
    """
    if isinstance(kernel, str):
        return KERNELS.get(kernel)()
    if isinstance(kernel, type):
        if issubclass(kernel, Kernel) and not getattr(kernel, "__abstractmethods__", None):
            return kernel()
        raise TypeError(
            f"`kernel` must be a name, a Kernel object or a concrete Kernel class, got {kernel!r}"
        )
    if isinstance(kernel, Kernel):
        return kernel
    if callable(getattr(kernel, "sample", None)) and hasattr(kernel, "support"):
        return _user_kernel(kernel)
    raise TypeError(
        f"`kernel` must be a kernel name, a Kernel or an object with `sample` and `support`, "
        f"got {type(kernel).__name__}; known kernels: {KERNELS}"
    )
