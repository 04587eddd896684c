r"""Input-noise kernels: the densities that gradient smoothing convolves the gradient with.

Gradient smoothing estimates :math:`(\nabla f * \rho_\sigma)(x)` by Monte Carlo, with
:math:`x_k = x + \sigma t_k` and :math:`t_k \sim \rho`. The estimate is unbiased and consistent
for any probability density :math:`\rho` that is non-negative, integrates to one, is symmetric
(zero mean) and concentrates to a point as :math:`\sigma \to 0` (the mollification view of
gradient smoothing; Zhou et al., "Rethinking the principle of gradient smoothing in model
explanations"). SmoothGrad is the Gaussian case.

Every kernel is a :class:`Kernel` of zero mean and unit standard deviation, sampled i.i.d. per
element (the interface and the checked sampling are in :mod:`captum_smooth.noise._kernel_base`),
and every draw is closed form and vectorised: one or two uniforms per element, never a rejection
loop. This module holds the closed-form kernels and the registry of kernel names; the tabulated
kernels are in :mod:`captum_smooth.noise.tabulated`, common random numbers in
:mod:`captum_smooth.noise.crn`. Every kernel name is importable from here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..registry import Registry
from ._kernel_base import (
    CheckedKernel,
    Kernel,
    SampleOptions,
    SampleRequest,
    _finish,
    _SymmetricKernel,
    _uniform,
    _working_dtype,
)
from .tabulated import BumpKernel, TabulatedKernel

__all__ = [
    "KERNELS",
    "BumpKernel",
    "CheckedKernel",
    "CosineKernel",
    "EpanechnikovKernel",
    "GaussianKernel",
    "Kernel",
    "LaplaceKernel",
    "SampleOptions",
    "SampleRequest",
    "StudentTKernel",
    "TabulatedKernel",
    "TriangularKernel",
    "UniformKernel",
    "get_kernel",
    "kernel_names",
    "register_kernel",
]


# ----------------------------------------------------------------------------- kernels


class GaussianKernel(CheckedKernel):
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

    def draw(self, request: SampleRequest) -> Tensor:
        size, generator, device, dtype = request
        return torch.randn(size, generator=generator, device=device, dtype=dtype)


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


class StudentTKernel(CheckedKernel):
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
    df: float

    def __init__(self, df: float = 3) -> None:
        if isinstance(df, bool) or not isinstance(df, numbers.Real):
            raise TypeError(f"`df` must be a real number, got {df!r}")
        if not (math.isfinite(df) and df > 2):
            raise ValueError(f"`df` must be finite and greater than 2 (for a finite std), got {df}")
        self.df = df

    def draw(self, request: SampleRequest) -> Tensor:
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
    if not float(support) > 0:
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
