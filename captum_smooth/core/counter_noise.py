"""Same seed, same map: input noise indexed by (input, sample, example), not by draw order.

Drawn in order from one generator, the noise an example gets follows the chunk layout: chunks of
1, 2 or ``"auto"`` (which on CUDA follows the free memory), and which examples are still
sampling under a tolerance, all change which numbers land where. With a ``generator``, the loop
draws instead from a counter-based stream: sample ``j`` of noised tensor ``i`` is one draw of
the whole batch from a generator seeded with ``derive_seed(seed, i, j)``
(:func:`~captum_smooth.core.random_state.derive_seed`), of which each example takes its own
row. Example ``r``'s ``j``-th draw then depends on ``seed``, ``i``, ``j`` and ``r`` only. The
draw is batched (one kernel call per sample index, not per example and sample); the rows of
examples that have stopped are drawn and dropped, a small cost next to a forward and backward
pass.

Every example still sampling has had every sample so far (examples stop for good), so one
counter, the next sample index, serves them all; under antithetic sampling a sample index names
a pair. ``seed`` is read once per call from the generator (without moving it), so a seeded
generator gives the same maps on any chunk layout, and weight draws, which take their numbers
from the generator in order, no longer depend on how many input draws came before them. Without
a generator (``generator=None``) the loop keeps torch's global stream in Captum's order.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..noise.kernels import Kernel
from .random_state import derive_seed, peek_seed

__all__ = ["CounterStream"]

#: The index below the call's seed of the input-noise streams (apart from the seed of the
#: global states, which is the call's seed itself).
_INPUT_NOISE = 1


class CounterStream:
    """The counter-based input noise of one call (see the module docstring).

    Args:
        generator: The call's generator: one seed is read from it (it does not move).
        batch: The number of examples of the call.

    Attributes:
        position: The next sample index of every example still sampling.
    """

    def __init__(self, generator: torch.Generator, batch: int) -> None:
        # Read, not drawn: the generator's stream is left to the weight and baseline draws as
        # it was before input noise stopped drawing from it.
        self.seed = derive_seed(peek_seed(generator), _INPUT_NOISE)
        self.batch = batch
        self.position = 0
        self._generator = torch.Generator(device=generator.device)
        self._input_seeds: dict[int, int] = {}

    def draw(
        self,
        kernel: Kernel,
        rest: tuple[int, ...],
        n: int,
        rows: Tensor | None,
        tensor_index: int = 0,
        *,
        dtype: torch.dtype,
    ) -> Tensor:
        """Samples ``position .. position + n - 1`` of the examples ``rows``, example-major.

        Args:
            kernel: The noise kernel.
            rest: The shape of one example's noise.
            n: Draws per example.
            rows: The examples drawn for, in the full batch (None: all).
            tensor_index: Which noised tensor (its own streams).
            dtype: The dtype of the draw.

        Returns:
            ``(len(rows) * n, *rest)`` standardised noise on the generator's device.
        """
        if tensor_index not in self._input_seeds:
            self._input_seeds[tensor_index] = derive_seed(self.seed, tensor_index)
        seed = self._input_seeds[tensor_index]
        device = self._generator.device
        draws = []
        for j in range(self.position, self.position + n):
            self._generator.manual_seed(derive_seed(seed, j))
            full = kernel.sample(
                (self.batch, *rest), generator=self._generator, device=device, dtype=dtype
            )
            draws.append(full if rows is None else full[rows.to(device)])
        noise = torch.stack(draws, dim=1)
        return noise.reshape((noise.shape[0] * n, *rest))

    def advance(self, n: int) -> None:
        """Move past ``n`` samples (after a chunk)."""
        self.position += n
