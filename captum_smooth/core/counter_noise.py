"""Same seed, same map: input noise indexed by (input, sample, example), not by draw order.

Drawn in order from one generator, the noise an example gets follows the chunk layout: chunks of
1, 2 or ``"auto"`` (which on CUDA follows the free memory), and which examples are still
sampling under a tolerance, all change which numbers land where. With a ``generator``, the loop
draws instead from a counter-based stream: sample ``j`` of noised tensor ``i`` is one draw of
each block of :data:`_BLOCK` examples (examples ``8 b .. 8 b + 7``) from a generator seeded
with ``derive_seed(seed, i, j, b)`` (:func:`~captum_smooth.core.random_state.derive_seed`), of
which each example takes its own row. Example ``r``'s ``j``-th draw then depends on ``seed``,
``i``, ``j`` and ``r`` only (and the batch size). The draw is batched (one kernel call per
sample index and block, not per example and sample); only blocks with an example still sampling
are drawn, and the rows of their stopped examples are dropped, a small cost next to a forward
and backward pass.

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
#: Examples per draw: each sample index draws the blocks of examples still sampling, so a
#: stopped example costs at most its block's share of a draw (never a forward pass).
_BLOCK = 8


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
        wanted = list(range(self.batch)) if rows is None else [int(r) for r in rows.tolist()]
        blocks = sorted({r // _BLOCK for r in wanted})
        offsets, start = {}, 0
        for block in blocks:
            offsets[block] = start
            start += self._block_rows(block)
        # Where each wanted example's row lies in the concatenated blocks (None: every row).
        take = (
            None
            if rows is None
            else torch.tensor([offsets[r // _BLOCK] + r % _BLOCK for r in wanted]).to(
                self._generator.device
            )
        )
        # Each sample's draw is written once into its column of the example-major result.
        noise = torch.empty((len(wanted), n, *rest), dtype=dtype, device=self._generator.device)
        for i, j in enumerate(range(self.position, self.position + n)):
            drawn = self._blocks(kernel, rest, derive_seed(seed, j), blocks, dtype)
            noise[:, i] = drawn if take is None else drawn.index_select(0, take)
        return noise.view((noise.shape[0] * n, *rest))

    def _block_rows(self, block: int) -> int:
        return min(self.batch, (block + 1) * _BLOCK) - block * _BLOCK

    def _blocks(
        self,
        kernel: Kernel,
        rest: tuple[int, ...],
        sample_seed: int,
        blocks: list[int],
        dtype: torch.dtype,
    ) -> Tensor:
        """One sample's draws of the given blocks of examples, concatenated."""
        parts = []
        for block in blocks:
            self._generator.manual_seed(derive_seed(sample_seed, block))
            parts.append(
                kernel.sample(
                    (self._block_rows(block), *rest),
                    generator=self._generator,
                    device=self._generator.device,
                    dtype=dtype,
                )
            )
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def advance(self, n: int) -> None:
        """Move past ``n`` samples (after a chunk)."""
        self.position += n
