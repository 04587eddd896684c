r"""Common random numbers: the same standardised noise for an example at every evaluation.

Comparing a smoothed attribution at two noise levels (or two settings of anything else) is far
less noisy when both evaluations use the same draws ``t_k``: the roots are ``x + sigma * t_k``
with the same ``t_k`` at every sigma, so a difference between two evaluations comes from the
setting and not from a fresh draw. This is the variance-reduction technique of common random
numbers (Glasserman, "Monte Carlo Methods in Financial Engineering", 2003, section 4.2), used by
adaptive noising (:class:`~captum_smooth.methods.adaptive_noising.AdaptiveNoising`) to compare
noise levels per example.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..core.random_state import derive_seed
from ._kernel_base import CheckedKernel, Kernel, SampleRequest
from .kernels import get_kernel

__all__ = ["CommonRandomNumbers"]


def _generator_device(device: torch.device | str | None) -> torch.device:
    """The device of a draw's generator: the output's where torch has generators, else the CPU."""
    resolved = torch.device("cpu") if device is None else torch.device(device)
    return resolved if resolved.type in ("cpu", "cuda") else torch.device("cpu")


class CommonRandomNumbers(CheckedKernel):
    r"""A kernel whose draw ``k`` of example ``r`` is the same in every evaluation.

    Every (example, sample) pair has its own seed, ``derive_seed(seed, r, k)``
    (:func:`~captum_smooth.core.random_state.derive_seed`), so the standardised noise ``t_k`` of
    example ``r`` depends only on ``seed``, ``r`` and ``k``: not on the chunk sizes, nor on which
    other examples are evaluated with it. Before each evaluation, :meth:`restart` names the
    examples evaluated (rows of the full batch, in the order of the inputs given) and how many
    input tensors get noise; the smoothing loop then calls :meth:`sample` once per noised input
    per chunk, for ``(b * k, ...)`` values, example-major. The inputs of one sample draw in turn
    from that sample's generator. The ``generator`` given to :meth:`sample` is not used: the
    seed is the source of every draw.

    Reference: Glasserman, "Monte Carlo Methods in Financial Engineering", Springer 2003,
    section 4.2 (common random numbers).

    Args:
        base: The kernel whose draws are reused: a name, a Kernel class or object (as for
            :func:`~captum_smooth.noise.kernels.get_kernel`). Default: ``"gaussian"``.
        seed: The seed every draw derives from, an int. Default: 0.

    Examples::

        >>> crn = CommonRandomNumbers("gaussian", seed=0)
        >>> crn.restart([0, 1, 2])
        >>> t = crn.sample((3 * 4, 5))  # 4 draws of each of the examples 0, 1, 2
        >>> crn.restart([1])
        >>> bool((crn.sample((4, 5)) == t[4:8]).all())  # example 1 alone: the same draws
        True
    """

    def __init__(self, base: str | Kernel | type[Kernel] = "gaussian", seed: int = 0) -> None:
        self.base = get_kernel(base)
        self.seed = seed
        self.name = getattr(self.base, "name", "kernel")
        self.support = self.base.support
        self._rows: list[int] = []
        self._n_inputs = 1
        self._position = 0  # the index of the first sample of the current chunk
        self._call = 0  # the draws made in the current chunk (one per noised input)
        self._generators: list[torch.Generator] = []

    def restart(self, rows: Sequence[int] | Tensor, n_inputs: int = 1) -> None:
        """Start an evaluation of the examples ``rows`` with ``n_inputs`` noised tensors.

        Args:
            rows: The indices, in the full batch, of the examples evaluated, in order.
            n_inputs: How many input tensors get noise (one :meth:`sample` call each per
                chunk). Default: 1.
        """
        self._rows = [int(r) for r in (rows.tolist() if isinstance(rows, Tensor) else rows)]
        self._n_inputs = n_inputs
        self._position = 0
        self._call = 0
        self._generators = []

    def draw(self, request: SampleRequest) -> Tensor:
        size, _, device, dtype = request
        b = len(self._rows)
        if b == 0 or size[0] % b:
            raise RuntimeError(
                f"common random numbers: a draw of {size[0]} rows for {b} examples; call "
                "restart() with the rows evaluated first"
            )
        k = size[0] // b
        if self._call == 0:  # a new chunk: one generator per (example, sample)
            gen_device = _generator_device(device)
            self._generators = [
                torch.Generator(device=gen_device).manual_seed(
                    derive_seed(self.seed, r, self._position + j)
                )
                for r in self._rows
                for j in range(k)
            ]
        parts = [
            self.base.sample((1, *size[1:]), generator=g, device=g.device, dtype=dtype)
            for g in self._generators
        ]
        self._call += 1
        if self._call == self._n_inputs:
            self._call = 0
            self._position += k
        if not parts:
            return torch.empty(size, device=device, dtype=dtype)
        return torch.cat(parts).to(device=device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base!r}, seed={self.seed!r})"
