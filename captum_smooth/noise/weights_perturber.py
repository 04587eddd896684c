"""The in-place draws of a weight-noise session: :class:`WeightPerturber` and the noise checks.

Part of :mod:`captum_smooth.noise.weights` (import the public names from there). A perturber
backs up the selected parameters once and writes each draw, ``backup * eta`` or
``backup + eps``, straight into their storage: no model copy per draw, and draws never compound.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import torch
from torch import Tensor, nn

from ._signals import GUARD, critical
from .weights_backup import attempt

__all__ = ["NOISE_TYPES", "WeightPerturber"]

#: The weight-noise types: ``theta * N(1, s^2)`` or ``theta + N(0, s^2)``.
NOISE_TYPES = ("multiplicative", "additive")


def check_stdev(stdev: Any, name: str = "stdev") -> float:
    """``stdev`` as a float, checked: a real number, finite and >= 0 (bools refused)."""
    if isinstance(stdev, bool) or not isinstance(stdev, numbers.Real):
        raise TypeError(f"`{name}` must be a float >= 0, got {stdev!r}")
    value = float(stdev)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be finite and >= 0, got {stdev!r}")
    return value


def _check_noise_type(noise_type: Any) -> str:
    """``noise_type``, checked against :data:`NOISE_TYPES`."""
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"`noise_type` must be one of {list(NOISE_TYPES)}, got {noise_type!r}")
    return noise_type


#: Large CPU models draw their noise in this many sub-streams, filled in parallel.
_N_STREAMS = 4
#: Below this many scalars (or off the CPU) one stream is drawn in the calling thread.
_PARALLEL_MIN_NUMEL = 1 << 20


def _stream_groups(params: Sequence[Tensor], n_streams: int) -> list[list[int]]:
    """Split parameter indices into ``n_streams`` groups of similar size (largest first).

    Depends on the shapes only, so the split (and the draws) are the same on every machine.
    """
    groups: list[list[int]] = [[] for _ in range(n_streams)]
    sizes = [0] * n_streams
    for i in sorted(range(len(params)), key=lambda i: (-params[i].numel(), i)):
        j = min(range(n_streams), key=lambda j: (sizes[j], j))
        groups[j].append(i)
        sizes[j] += params[i].numel()
    return [sorted(g) for g in groups if g]


class WeightPerturber:
    """Draws noisy weights in place; handed out by a weight-noise session, valid inside it.

    Made by :meth:`~captum_smooth.noise.weights.WeightNoise.session` (not directly): the
    session restores what the perturber does not (buffers, flags, ``.grad``) and closes it.

    Each :meth:`perturb` writes ``backup * eta`` (multiplicative) or ``backup + eps``
    (additive) into the live parameters, from the backup taken at session entry: draws never
    compound. The noise is drawn straight into the parameter's storage, so a draw allocates
    nothing.

    Drawing the normals is the cost of a draw (torch's CPU generator is serial: for a ResNet-18
    on 2 cores about 45 ms, close to one forward and backward pass on one image). For models on
    the CPU with at least 2**20 selected scalars, each draw therefore takes 4 seeds from
    ``generator`` and fills 4 fixed groups of parameters from 4 sub-generators, in parallel on
    up to ``torch.get_num_threads()`` threads (about 25 ms on 2 cores), then multiplies in the
    calling thread; the groups depend on the parameter shapes only, so results do not depend on
    the thread count. Smaller models (and other devices) draw every parameter from
    ``generator`` itself, in order.

    Args:
        selected: The ``(name, parameter)`` pairs to perturb (backed up here, once).
        stdev: The noise scale ``s`` >= 0.
        noise_type: ``"multiplicative"`` or ``"additive"``.

    Attributes:
        names: The perturbed parameters' names.
        stdev: The noise scale of the next draw (may be changed within the session).
        noise_type: ``"multiplicative"`` or ``"additive"``.

    Examples::

        >>> with WeightNoise(0.1).session(model) as perturber:
        ...     for seed in range(3):
        ...         perturber.perturb(torch.Generator().manual_seed(seed))
        ...         noisy_logits = model(images)
    """

    def __init__(
        self,
        selected: list[tuple[str, nn.Parameter]],
        stdev: float,
        noise_type: str,
    ) -> None:
        self.names = [n for n, _ in selected]
        self._params = [p for _, p in selected]
        with torch.no_grad():
            self._backups = [p.detach().clone() for p in self._params]
        self.stdev = stdev
        self.noise_type = noise_type
        self._active = True
        self._groups: list[list[int]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        on_cpu = all(p.device.type == "cpu" for p in self._params)
        if on_cpu and self.numel >= _PARALLEL_MIN_NUMEL:
            self._groups = _stream_groups(self._params, _N_STREAMS)
            self._stream_gens = [torch.Generator() for _ in self._groups]
            workers = min(len(self._groups), torch.get_num_threads())
            if workers > 1:
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix="weight-noise")

    @property
    def numel(self) -> int:
        """Number of perturbed scalars."""
        return sum(p.numel() for p in self._params)

    def _check_active(self) -> None:
        if not self._active:
            raise RuntimeError("this WeightPerturber's session has ended; open a new session")

    def _fill_noise(self, i: int, mean: float, s: float, generator: torch.Generator | None) -> None:
        """Write this draw's noise (eta or eps) into parameter ``i``'s storage."""
        p = self._params[i]
        if generator is None or generator.device.type == p.device.type:
            p.normal_(mean, s, generator=generator)
        else:  # a generator on another device: draw there, then move
            noise = torch.empty(p.shape, dtype=p.dtype, device=generator.device)
            p.copy_(noise.normal_(mean, s, generator=generator))

    def _apply_noise(self, i: int) -> None:
        """Turn the noise in parameter ``i`` into its noisy weight (``backup * eta``, ``+ eps``)."""
        if self.noise_type == "multiplicative":
            self._params[i].mul_(self._backups[i])
        else:
            self._params[i].add_(self._backups[i])

    @critical
    def perturb(self, generator: torch.Generator | None = None, stdev: float | None = None) -> None:
        """Replace the weights by a fresh noisy draw of the backed-up ones.

        All or nothing for signals: one that arrives during the draw is handled when the draw
        is complete (see :mod:`captum_smooth.noise._signals`).

        Args:
            generator: The random generator (None: torch's global one).
            stdev: Noise scale for this draw; None uses :attr:`stdev`. Default: None.
        """
        self._check_active()
        s = self.stdev if stdev is None else check_stdev(stdev)
        if s == 0.0:
            self._copy_backups()
        else:
            self._draw(generator, s)
        GUARD.deliver()

    def _draw(self, generator: torch.Generator | None, s: float) -> None:
        """Write one draw into every perturbed parameter (from one stream or several)."""
        mean = 1.0 if self.noise_type == "multiplicative" else 0.0
        with torch.no_grad():
            if self._groups is None:
                for i in range(len(self._params)):
                    self._fill_noise(i, mean, s, generator)
                    self._apply_noise(i)
                return
            groups = self._groups
            device = generator.device if generator is not None else "cpu"
            seeds = torch.randint(
                0, 2**62, (len(groups),), generator=generator, device=device
            ).tolist()

            def fill(j: int) -> None:
                # Only the draw runs in the workers: CPU normal_ is serial per generator, so it
                # never enters an OpenMP region there. Element-wise ops would, and give each
                # worker thread its own OpenMP team, which slowed every later forward and
                # backward pass of the process up to 2x (EfficientNet-Lite0: 45 -> 103 ms).
                gen = self._stream_gens[j].manual_seed(seeds[j])
                with torch.no_grad():
                    for i in groups[j]:
                        self._fill_noise(i, mean, s, gen)

            if self._pool is None:
                for j in range(len(groups)):
                    fill(j)
            else:
                # The workers are done before anything else touches the weights: perturb is a
                # critical section, so no signal's exception can let a restore race them.
                futures = [self._pool.submit(fill, j) for j in range(len(groups))]
                wait(futures)
                for future in futures:
                    future.result()
            # The multiply (or add) runs here, with the process's own intra-op threads.
            for i in range(len(self._params)):
                self._apply_noise(i)

    @critical
    def mirror(self) -> None:
        """Replace the current draw by its mirror image about the backed-up weights.

        ``backup * eta`` becomes ``backup * (2 - eta)`` (multiplicative: the same ``N(1, s^2)``
        law), ``backup + eps`` becomes ``backup - eps`` (additive): the second half of an
        antithetic pair, written as ``2 * backup - current`` so that no noise is stored. A pair
        averages to the backed-up weights up to rounding. All or nothing for signals, as
        :meth:`perturb`.
        """
        self._check_active()
        with torch.no_grad():
            for p, backup in zip(self._params, self._backups):
                p.neg_().add_(backup, alpha=2.0)
        GUARD.deliver()

    @critical
    def restore(self) -> None:
        """Write the clean (backed-up) weights back, staying in the session."""
        self._check_active()
        self._copy_backups()
        GUARD.deliver()

    def _copy_backups(self, errors: list[BaseException] | None = None) -> None:
        """Write the backups into the parameters; with ``errors``, every copy runs (the exit)."""
        with torch.no_grad():
            for p, backup in zip(self._params, self._backups):
                if errors is None:
                    p.copy_(backup)
                else:
                    attempt(errors, p.copy_, backup)

    def _close(self, errors: list[BaseException]) -> None:
        """End the session's perturber: stop the workers, write the clean weights back."""
        if self._pool is not None:
            attempt(errors, self._pool.shutdown, True)
            self._pool = None
        if self._active:
            self._active = False
            self._copy_backups(errors)
            self._backups = []
