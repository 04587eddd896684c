r"""The kernel interface and the checked sampling every built-in kernel shares.

A :class:`Kernel` draws i.i.d. values per element (a product kernel) with zero mean and unit
standard deviation, so that the smoothing loop's ``sigma`` means the same thing for all of them:
the noise actually added is ``sigma * kernel.sample(...)``. All randomness goes through the
``generator`` argument (``None``: torch's global generator).

:class:`CheckedKernel` is the base of the kernels of this package: it checks the arguments of
``sample`` once (shape, then dtype) and hands a :class:`SampleRequest` to its ``draw``.
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
import sys
from collections.abc import Sequence
from typing import NamedTuple, TypedDict, cast

import torch
from torch import Tensor

if sys.version_info >= (3, 11):
    from typing import Unpack
else:  # pragma: no cover - Python 3.10
    from typing_extensions import Unpack

__all__ = ["CheckedKernel", "Kernel", "SampleOptions", "SampleRequest"]

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
        return _as_size((int(shape),))
    try:
        # Not an int now (numpy ints included, which mypy cannot narrow away).
        size = tuple(cast("Sequence[int]", shape))
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


class SampleOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`Kernel.sample` (all optional)."""

    generator: torch.Generator | None
    device: torch.device | str | None
    dtype: torch.dtype | None


class SampleRequest(NamedTuple):
    """What :meth:`Kernel.sample` was asked to draw, with ``shape`` and ``dtype`` checked.

    Attributes:
        size: The output shape, a tuple of non-negative ints.
        generator: The source of randomness (None: torch's global generator).
        device: The output device (None: torch's default).
        dtype: The output dtype, a floating-point dtype.
    """

    size: tuple[int, ...]
    generator: torch.Generator | None
    device: torch.device | str | None
    dtype: torch.dtype

    @classmethod
    def checked(cls, shape: Sequence[int] | int, **options: Unpack[SampleOptions]) -> SampleRequest:
        """The request of ``sample(shape, **options)``, its arguments checked.

        Args:
            shape: The output shape (a sequence of ints, or one int).
            **options: ``generator``, ``device`` and ``dtype``, as for :meth:`Kernel.sample`.

        Returns:
            The request, with ``size`` a tuple and ``dtype`` resolved (the default dtype for
            None).

        Raises:
            TypeError: An unknown keyword, a shape that is not a sequence, a non-float dtype.
            ValueError: A negative or non-integer dimension.
        """
        unknown = sorted(set(options) - set(SampleOptions.__annotations__))
        if unknown:
            raise TypeError(f"sample() got an unexpected keyword argument {unknown[0]!r}")
        return cls(
            _as_size(shape),
            options.get("generator"),
            options.get("device"),
            _resolve_dtype(options.get("dtype")),
        )


class CheckedKernel(Kernel):
    """A kernel whose :meth:`sample` checks its arguments, then draws with :meth:`draw`.

    The one implementation of the checks of ``sample`` (unknown keywords, ``shape``, then
    ``dtype``) for the kernels of this package and for kernels built on others, such as
    :class:`~captum_smooth.noise.crn.CommonRandomNumbers`. Subclasses implement :meth:`draw`.

    Examples::

        >>> class Zero(CheckedKernel):
        ...     name, support = "zero", 1.0
        ...     def draw(self, request: SampleRequest) -> Tensor:
        ...         return torch.zeros(request.size, device=request.device, dtype=request.dtype)
        >>> Zero().sample((2, 3), dtype=torch.float64).dtype
        torch.float64
    """

    def sample(self, shape: Sequence[int], **options: Unpack[SampleOptions]) -> Tensor:
        # The signature and its documentation are Kernel.sample's.
        return self.draw(SampleRequest.checked(shape, **options))

    @abc.abstractmethod
    def draw(self, request: SampleRequest) -> Tensor:
        """The samples of ``request.size`` in ``request.dtype`` on ``request.device``.

        Args:
            request: The checked arguments of :meth:`sample`.

        Returns:
            The samples, zero mean and unit standard deviation per element.
        """


class _SymmetricKernel(CheckedKernel):
    """A symmetric kernel sampled as a random sign times the inverse CDF of ``|t|``.

    One uniform ``u`` per element: the sign is ``u >= 1/2`` and ``w = 2u mod 1`` is uniform on
    ``[0, 1)`` with the same values for both signs, so the sampled law is exactly symmetric.
    Subclasses implement :meth:`_magnitude`, the unit-std inverse CDF of ``|t|``.
    """

    @abc.abstractmethod
    def _magnitude(self, w: Tensor) -> Tensor:
        """Map ``w`` in ``[0, 1)`` to ``|t|`` (may work in place on ``w``)."""

    def draw(self, request: SampleRequest) -> Tensor:
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
