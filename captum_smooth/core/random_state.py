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

Seeds below a run's seed are derived in one way, :func:`derive_seed`: numpy's ``SeedSequence``
hash of a parent seed and an index, applied once per level of a path (an example, then a
sample), so that every part of a computation gets its own stream whatever else runs.
"""

from __future__ import annotations

import contextlib
import numbers
import random
from typing import Any

import numpy as np
import torch

from .._checks import seed_from
from ..noise._signals import GuardedContext

__all__ = ["derive_seed", "peek_seed", "seeded_global_states"]


#: Seeds are reduced modulo 2**64, as ``torch.Generator.manual_seed`` reads them.
_SEED_MODULUS = 1 << 64


def _check_index(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"`{name}` must be a non-negative int, got {value!r}")
    return int(value)


def derive_seed(seed: int, *path: int) -> int:
    """The seed of the part of a computation named by ``path``, below the run's ``seed``.

    Each level hashes the parent seed with one index through numpy's ``SeedSequence``
    (``SeedSequence([parent, index])``, the first 64-bit word, shifted to 63 bits so that it is
    a valid non-negative seed for torch and numpy): ``derive_seed(seed, a, b)`` is
    ``derive_seed(derive_seed(seed, a), b)``, so a part can hand its own seed down. One level
    is exactly what :func:`captum_smooth.dataset.explain.batch_seed` computes for a batch.
    Levels are chained rather than hashed as one list because ``SeedSequence`` pads short
    entropy with zeros (``[s]`` and ``[s, 0]`` give the same stream): chaining keeps paths of
    different lengths apart.

    Args:
        seed: The run's seed, an int (a negative one is read modulo 2**64, as torch does).
        *path: Non-negative indices, outermost first (e.g. a stream, an example, a sample).

    Returns:
        An int in ``[0, 2**63)``; ``seed`` itself (reduced modulo 2**64) for an empty path.

    Raises:
        ValueError: A seed or an index that is not an int, or a negative index.

    Examples::

        >>> derive_seed(0, 3, 1) == derive_seed(derive_seed(0, 3), 1)
        True
        >>> len({derive_seed(0, r, j) for r in range(4) for j in range(4)})
        16
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"`seed` must be an int, got {seed!r}")
    value = int(seed) % _SEED_MODULUS
    for level, index in enumerate(path):
        words = [value, _check_index(index, f"path[{level}]")]
        state = np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)
        value = int(state[0]) >> 1
    return value


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


def _restore(state: dict[str, Any], device: torch.device, errors: list[BaseException]) -> None:
    """Put every saved state back; a step that fails does not stop the others."""
    steps: list[tuple[Any, tuple[Any, ...]]] = [
        (random.setstate, (state["python"],)),
        (np.random.set_state, (state["numpy"],)),
        (torch.set_rng_state, (state["torch"],)),
    ]
    if "cuda" in state:
        steps.append((torch.cuda.set_rng_state, (state["cuda"], device)))
    for step, args in steps:
        try:
            step(*args)
        except Exception as err:
            errors.append(err)


class _SeededGlobalStates(GuardedContext):
    """:func:`seeded_global_states` with a generator: entry and exit under the signal guard.

    A signal's exception (Ctrl-C, a SIGALRM timeout) that arrives while the states are seeded
    or put back is raised once they are complete (:class:`~captum_smooth.noise._signals.
    GuardedContext`): the caller's states come back on every exit, also from an interrupt.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self._generator = generator
        self._start: torch.Tensor | None = None
        self._saved: dict[str, Any] | None = None

    def _enter(self) -> None:
        generator = self._generator
        self._start = generator.get_state()
        self._saved = _save(generator.device)
        _seed(peek_seed(generator), generator.device)

    def _exit(self, errors: list[BaseException], failed: bool) -> None:
        saved, start, generator = self._saved, self._start, self._generator
        self._saved = self._start = None
        if saved is None:  # the entry failed before anything was seeded
            return
        _restore(saved, generator.device, errors)
        if start is not None and torch.equal(generator.get_state(), start):
            # The block drew nothing from the generator itself: the seed is taken from it
            # now, so that the next block with the same generator draws other numbers.
            seed_from(generator)


def seeded_global_states(generator: torch.Generator | None) -> contextlib.AbstractContextManager:
    """Seed Python's, numpy's and torch's global random states from ``generator`` for a block.

    The seed is the number :func:`~captum_smooth._checks.seed_from` draws from ``generator``,
    read from a copy of it, so the generator's stream stays the source of every draw and the
    block's own draws from the generator are the ones it would make without this (a block
    that draws nothing from it takes the seed from it on exit). On exit, normal or not, the
    states the caller had are put back, also when a signal's exception (Ctrl-C) arrives while
    they are being put back: it is raised once they are (see
    :class:`~captum_smooth.noise._signals.GuardedContext`).

    Args:
        generator: The call's generator; None leaves every global state alone.

    Returns:
        A context manager; inside its block the global states are seeded.

    Examples::

        >>> g = torch.Generator().manual_seed(0)
        >>> with seeded_global_states(g):
        ...     a = np.random.rand()
        >>> with seeded_global_states(torch.Generator().manual_seed(0)):
        ...     assert np.random.rand() == a
    """
    if generator is None:
        return contextlib.nullcontext()
    return _SeededGlobalStates(generator)


def peek_seed(generator: torch.Generator) -> int:
    """The seed :func:`seed_from` would draw, read from a copy: the generator does not move.

    The loop's own noise is then the generator's stream from where the caller left it (draws
    can be replayed from a generator in the same state), whatever the inner method draws.
    """
    twin = torch.Generator(device=generator.device)
    twin.set_state(generator.get_state())
    return seed_from(twin)
