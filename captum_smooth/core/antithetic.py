"""Antithetic sampling: the noise in mirrored pairs, and the error from the pairs' results.

Under ``sampling="antithetic"`` each input-noise draw ``t`` is followed by ``-t`` (every kernel
is symmetric, so ``-t`` has the law of ``t``), and each weight draw by its mirror image about
the clean weights: ``2 - eta`` after ``eta`` for multiplicative noise (the same ``N(1, s^2)``
marginal), ``-e`` after ``e`` for additive noise. Every sample keeps its marginal law, so the
estimate stays unbiased; where the attribution is linear in the noise the two errors of a pair
cancel exactly, and where it is smooth they cancel to first order.

The two halves of a pair are not independent, the pairs are: the standard error is computed
from the pairs' results (for the mean, the pair means), so the reported error is honest. This
needs a reducer whose result is the average of its parts' results (``draw_average``: the mean,
the mean of squares). A pair never spans two chunks: chunks hold an even number of copies.

Input noise is paired when the inputs are sampled (without weight noise, or with more than one
input sample per weight draw); weight noise is always paired. With weight noise and one input
sample per draw, that sample is drawn i.i.d.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .reducers import MeanReducer, ReducerFactory, make_reducer
from .stopping import StoppingRule

__all__ = ["SAMPLING_MODES", "GroupResults", "Pairing", "mirrored"]

#: The values of the ``sampling`` option.
SAMPLING_MODES = ("iid", "antithetic")


def _check_even(count: int, name: str) -> None:
    if count % 2:
        raise ValueError(
            f'`sampling="antithetic"` draws in mirrored pairs: `{name}` must be even, got '
            f'{count} (use {count - 1 or 2} or {count + 1}, or `sampling="iid"`)'
        )


@dataclass(frozen=True)
class Pairing:
    """Which draws of a call come in antithetic pairs.

    Attributes:
        inputs: Input (or layer) noise is drawn as ``t, -t`` in adjacent copies.
        weights: Weight draws alternate a draw and its mirror image.
    """

    inputs: bool = False
    weights: bool = False

    @classmethod
    def create(
        cls, sampling: object, stop: StoppingRule, *, weight_noise: bool, max_given: bool
    ) -> Pairing:
        """Check ``sampling`` and the sample counts it pairs.

        Args:
            sampling: ``"iid"`` or ``"antithetic"``.
            stop: The stopping rule (its counts must be even where they are paired).
            weight_noise: Whether weight noise is drawn.
            max_given: Whether the user gave ``max_samples`` (named in the message).

        Returns:
            The pairing of the call (nothing paired for ``"iid"``).

        Raises:
            ValueError: An unknown ``sampling``, or an odd count of paired draws.
        """
        if not isinstance(sampling, str) or sampling not in SAMPLING_MODES:
            raise ValueError(f"`sampling` must be one of {list(SAMPLING_MODES)}, got {sampling!r}")
        if sampling == "iid":
            return cls()
        inputs = not weight_noise or stop.max_input_samples > 1
        if inputs:
            by_tolerance = stop.per_input_sample and max_given
            _check_even(stop.max_input_samples, "max_samples" if by_tolerance else "nt_samples")
        if weight_noise:
            by_tolerance = stop.per_weight_draw and max_given
            _check_even(
                stop.max_weight_draws, "max_samples" if by_tolerance else "n_weight_samples"
            )
        return cls(inputs=inputs, weights=weight_noise)

    def chunk(self, chunk: int) -> int:
        """The chunk size that keeps pairs whole: even (1 becomes 2, an odd one one less)."""
        if not self.inputs:
            return chunk
        return max(2, chunk - chunk % 2)

    def is_mirror_draw(self, draw: int) -> bool:
        """Whether weight draw ``draw`` (from 0) is the mirror image of the one before."""
        return self.weights and draw % 2 == 1

    def pair_complete(self, draw: int) -> bool:
        """Whether the weight draws up to ``draw`` (from 0) end on a whole pair."""
        return not self.weights or draw % 2 == 1


def mirrored(noise: Tensor) -> Tensor:
    """Each row followed by its negation: ``(n, ...)`` draws give ``(2 n, ...)`` rows.

    The rows of an example stay adjacent (example-major in, example-major out), and each pair
    is adjacent within it.
    """
    pairs = torch.stack([noise, noise.neg()], dim=1)
    return pairs.reshape((2 * noise.shape[0], *noise.shape[1:]))


class GroupResults:
    """Per example, the results of whole groups of copies as i.i.d. samples, for the error.

    Each chunk is reduced per group of ``group`` adjacent copies (an antithetic pair, or one
    i.i.d. copy) with the call's own reducer; those group results are the independent samples
    whose spread gives the error. The clean copy (``include_clean``) is no sample: it is a fixed
    term of the call's mean, which is ``(clean + n * mean of the groups) / (n + 1)`` over ``n``
    noisy copies for a ``draw_average`` reducer, so the error of the groups' mean is scaled by
    ``n / (n + 1)``.

    Args:
        factory: The call's reducer factory.
        batch: The number of examples.
        group: Copies per independent sample (2: antithetic pairs).
    """

    def __init__(self, factory: ReducerFactory, batch: int, group: int = 2) -> None:
        self.factory = factory
        self.group = group
        self.means = MeanReducer(batch, track_error=True)
        #: Clean copies per example averaged into the call's result (0 or 1).
        self.clean = 0

    def add_clean(self) -> None:
        """Note the clean copy: a fixed term of the mean, not a sample of its error."""
        self.clean = 1

    def update(self, attributions: tuple[Tensor, ...], k: int, rows: Tensor | None) -> None:
        """Feed one chunk of ``k`` copies per example, in groups of adjacent copies."""
        group = self.group
        n_groups = attributions[0].shape[0] // group
        per_group = make_reducer(self.factory, n_groups, track_error=False)
        per_group.update(attributions, group)
        self.means.update(tuple(per_group.result()), k // group, rows=rows)

    def standard_error(self) -> tuple[Tensor, ...]:
        """The per-element standard error of the call's result, from the groups' spread."""
        se = self.means.standard_error()
        if not self.clean or self.means.count is None:
            return se
        copies = self.group * self.means.count.to(torch.float64)
        share = copies / (copies + self.clean)
        return tuple(s * share.view(-1, *[1] * (s.dim() - 1)).to(s) for s in se)
