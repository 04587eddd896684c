"""Every draw under the generator: the global random states an inner method draws from.

The loop draws its own noise from the call's ``generator``, but many Captum methods draw from
global state: numpy's (GradientShap, LayerGradientShap and NeuronGradientShap pick baselines and
interpolation points with ``np.random``), torch's global generator (FeaturePermutation,
ShapleyValueSampling, Lime, KernelShap) or Python's ``random``. With an explicit ``generator``,
:func:`seeded_global_states` seeds all three (and the generator's CUDA device) from one seed
drawn from the generator, for the inner calls, and puts the caller's states back afterwards:
a call with the same generator reproduces whatever the inner method is, and the caller's global
random states are left exactly as they were. Without a generator nothing is touched (the caller
chose the global states).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .._checks import seed_from

__all__ = ["seeded_global_states"]


def _save(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _seed(seed: int, device: torch.device) -> None:
    random.seed(seed)
    # numpy's legacy seed takes 32-bit words: spread the 62-bit seed over four of them.
    np.random.seed(np.random.SeedSequence(seed).generate_state(4))
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device):
            torch.cuda.manual_seed(seed)


def _restore(state: dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def seeded_global_states(generator: torch.Generator | None) -> Iterator[None]:
    """Seed Python's, numpy's and torch's global random states from ``generator`` for a block.

    The seed is the number :func:`~captum_smooth._checks.seed_from` draws from ``generator``,
    read from a copy of it, so the generator's stream stays the source of every draw and the
    block's own draws from the generator are the ones it would make without this (a block
    that draws nothing from it takes the seed from it on exit). On exit, normal or not, the
    states the caller had are put back.

    Args:
        generator: The call's generator; None leaves every global state alone.

    Yields:
        Nothing; inside the block the global states are seeded.

    Examples::

        >>> g = torch.Generator().manual_seed(0)
        >>> with seeded_global_states(g):
        ...     a = np.random.rand()
        >>> with seeded_global_states(torch.Generator().manual_seed(0)):
        ...     assert np.random.rand() == a
    """
    if generator is None:
        yield
        return
    device = generator.device
    start = generator.get_state()
    saved = _save(device)
    try:
        _seed(_peek_seed(generator), device)
        yield
    finally:
        _restore(saved, device)
        if torch.equal(generator.get_state(), start):
            # The block drew nothing from the generator itself: the seed is taken from it
            # now, so that the next block with the same generator draws other numbers.
            seed_from(generator)


def _peek_seed(generator: torch.Generator) -> int:
    """The seed :func:`seed_from` would draw, read from a copy: the generator does not move.

    The loop's own noise is then the generator's stream from where the caller left it (draws
    can be replayed from a generator in the same state), whatever the inner method draws.
    """
    twin = torch.Generator(device=generator.device)
    twin.set_state(generator.get_state())
    return seed_from(twin)
