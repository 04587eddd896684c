"""The Monte-Carlo error of a smoothed attribution, asked of the reducer.

With i.i.d. samples the reducer's own ``standard_error()`` is the error. Under weight noise with
input noise inside each draw, the samples of one draw share the weights and are not
independent; the draws are. For a reducer whose result is the average of the per-draw results
(``draw_average``), the error is then the spread between the draws' results (a nested estimate).
Under antithetic sampling the
independent units are the pairs (:mod:`~captum_smooth.core.antithetic`): the error is the spread
of the pairs' results, or of the weight-draw pairs' results. No extra forward or backward pass is
needed either way. What the reducer offers (an
:class:`~captum_smooth.core.reducers.ErrorReducer` or not, its flags) is read once, as
:class:`~captum_smooth.core.reducers.ReducerTraits`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from captum._utils.common import _format_output
from torch import Tensor

from .antithetic import GroupResults, Pairing
from .reducers import (
    ErrorReducer,
    MeanReducer,
    Reducer,
    ReducerFactory,
    ReducerTraits,
    make_reducer,
)

__all__ = ["ErrorTracking", "MonteCarloError", "relative_error"]


@dataclass
class MonteCarloError:
    """The Monte-Carlo error of a smoothed attribution (no extra forward or backward pass).

    Attributes:
        standard_error: Per-element standard error, shaped like the attributions (a tensor, or a
            tuple as the attributions).
        relative_error: Per example, the standard error relative to the signal,
            ``||SE|| / sqrt(||attribution||^2 - ||SE||^2)`` over all its elements (see
            :func:`relative_error`): ``inf`` where the map cannot be told from its Monte-Carlo
            noise, ``(B,)``.
        n_samples: Valid samples per example, ``(B,)`` (weight draws for the nested estimate).
        nested: True when the error comes from the spread between weight draws (weight noise
            with input noise inside each draw): samples of one draw share the weights, so they
            are not independent, and the draw means are.
    """

    standard_error: Any
    relative_error: Tensor
    n_samples: Tensor
    nested: bool

    def __repr__(self) -> str:
        rel = ", ".join(f"{v:.3g}" for v in self.relative_error.tolist()[:8])
        more = ", ..." if self.relative_error.numel() > 8 else ""
        return (
            f"MonteCarloError(relative_error=[{rel}{more}], "
            f"n_samples={self.n_samples.tolist()[:8]}{more}, nested={self.nested})"
        )


def _squared_norms(tensors: tuple[Tensor, ...]) -> Tensor:
    """Per example, the squared L2 norm over all elements of all ``tensors``, ``(B,)``."""
    norms = [t.reshape(t.shape[0], -1).float().pow(2).sum(1) for t in tensors]
    total = norms[0]
    for norm in norms[1:]:
        total = total + norm
    return total


def relative_error(se: tuple[Tensor, ...], estimate: tuple[Tensor, ...]) -> Tensor:
    """Per example, the error relative to the signal: ``||se|| / sqrt(||estimate||^2 - ||se||^2)``.

    Why not ``||se|| / ||estimate||``: the estimate's own noise inflates its norm,
    ``E ||estimate||^2 = ||signal||^2 + ||se||^2``, so on a map dominated by noise the plain ratio
    tends to 1 however little signal there is. Subtracting ``||se||^2`` estimates the signal's
    squared norm without that bias; the figure then keeps growing as the signal vanishes, and to
    first order equals the plain ratio on a strong signal (``r / sqrt(1 - r^2)``, ``r`` the plain
    ratio: 0.2 reads 0.204).

    ``inf`` means the map cannot be told from its Monte-Carlo noise: the estimate is no larger
    than its standard error predicts for a map of pure noise (more samples, or another method,
    are needed before the map says anything).

    Args:
        se: The standard errors, shaped like ``estimate``.
        estimate: The reduced attributions (at least one tensor).

    Returns:
        A float tensor ``(B,)``: ``inf`` where ``||estimate||^2 <= ||se||^2`` with a non-zero
        error, 0 where the error is zero.
    """
    err = _squared_norms(se)
    signal = _squared_norms(estimate) - err
    rel = (err / signal.clamp_min(torch.finfo(signal.dtype).tiny)).sqrt()
    rel = torch.where(signal > 0, rel, torch.full_like(rel, torch.inf))
    return torch.where(err > 0, rel, torch.zeros_like(rel))


class ErrorTracking:
    """Which error the loop tracks for one call, and the reducers that track it.

    Args:
        factory: The reducer factory of the call.
        batch: The number of examples.
        weight_draws: Whether several weight draws are made (weight noise, ``M > 1``).
        wanted: Whether the user asked for the error (``return_error`` or ``tolerance``).
        pairing: Which draws come in antithetic pairs (default: none).
        include_clean: Whether the clean copy is averaged in (a fixed term of the mean, not a
            sample of its error).
    """

    def __init__(
        self,
        factory: ReducerFactory,
        batch: int,
        *,
        weight_draws: bool,
        wanted: bool,
        pairing: Pairing | None = None,
        include_clean: bool = False,
    ) -> None:
        self.factory = factory
        self.batch = batch
        self.pairing = pairing or Pairing()
        reducer = make_reducer(factory, batch, track_error=wanted)
        traits = ReducerTraits.of(reducer)
        self.nested = wanted and weight_draws and traits.draw_average
        self._check(reducer, traits, wanted)
        if self.nested:
            # The error comes from the spread between draws: the reducer need not track it.
            reducer = make_reducer(factory, batch, track_error=False)
        # The mean's error costs nothing extra: it is kept for the report even unasked (under
        # antithetic sampling, only where the pairs' results average to the result).
        free = traits.error_is_free and not weight_draws
        paired = self.pairing.inputs or self.pairing.weights
        self.wanted = wanted or (free and (traits.draw_average or not paired))
        self.between: MeanReducer | None = MeanReducer(batch) if self.nested else None
        # The error from the spread of independent groups of copies (pairs, or single copies)
        # whenever a group is not the reducer's own sample: antithetic pairs, or a clean copy
        # that is part of the mean without being a sample of its error.
        grouped = self.pairing.inputs or (include_clean and traits.draw_average)
        self.groups: GroupResults | None = (
            GroupResults(factory, batch, group=2 if self.pairing.inputs else 1)
            if self.wanted and grouped and not weight_draws
            else None
        )
        if self.groups is not None and wanted:
            # The groups give the error: the reducer need not keep its own moments.
            reducer = make_reducer(factory, batch, track_error=False)
        #: The reducer of all samples.
        self.reducer: Reducer = reducer
        self._first_of_pair: tuple[Tensor, ...] | None = None

    def _check(self, reducer: Reducer, traits: ReducerTraits, wanted: bool) -> None:
        name = type(reducer).__name__
        if wanted and not self.nested and not traits.has_error:
            raise ValueError(
                f"the reducer {name} has no `standard_error()` (it is not an "
                "ErrorReducer): `return_error` and `tolerance` need one"
            )
        paired = self.pairing.inputs or self.pairing.weights
        if wanted and paired and not traits.draw_average:
            raise ValueError(
                f'`return_error` and `tolerance` with `sampling="antithetic"` need a reducer '
                f"whose result averages its parts' results (the error comes from the pairs), "
                f'such as "smoothgrad" or "smoothgrad_sq"; {name} is not one (use '
                '`sampling="iid"`)'
            )

    def new_draw(self) -> Reducer | None:
        """A reducer for one weight draw's samples (nested error only)."""
        return make_reducer(self.factory, self.batch, track_error=False) if self.nested else None

    def update(
        self, attributions: tuple[Tensor, ...], k: int, rows: Tensor | None, *, noised: bool
    ) -> None:
        """Feed one chunk to the groups' error (pairs, or copies beside a clean copy).

        Args:
            attributions: The chunk's attributions, ``k`` adjacent copies per example.
            k: Copies per example.
            rows: The examples of the chunk (None: all).
            noised: Whether the copies are noisy (else the clean copy).
        """
        if self.groups is None:
            return
        if noised:
            self.groups.update(attributions, k, rows)
        else:
            self.groups.add_clean()

    def end_draw(self, draw: Reducer | None, rows: Tensor | None) -> None:
        """Feed the finished draw's result (of the examples still sampling) as one sample.

        Under antithetic weight noise a draw and its mirror image are one sample: their mean.
        """
        if draw is None or self.between is None:
            return
        quantity = tuple(draw.result())
        if rows is not None:
            quantity = tuple(q[rows] for q in quantity)
        if self.pairing.weights:
            if self._first_of_pair is None:
                self._first_of_pair = quantity
                return
            first, self._first_of_pair = self._first_of_pair, None
            quantity = tuple((a + b) / 2 for a, b in zip(first, quantity))
        self.between.update(quantity, 1, rows=rows)

    def _is_nested_now(self) -> bool:
        return self.between is not None and self.between.count is not None

    def standard_error(self, reducer: Reducer) -> tuple[Tensor, ...]:
        """Per-element standard error of ``reducer.result()``."""
        if self._is_nested_now():
            assert self.between is not None
            return self.between.standard_error()
        if self.groups is not None:
            return self.groups.standard_error()
        if not isinstance(reducer, ErrorReducer):  # refused in __init__: a broken invariant
            raise RuntimeError(f"the reducer {type(reducer).__name__} has no `standard_error()`")
        return reducer.standard_error()

    def relative_error(self, reducer: Reducer) -> Tensor:
        """Per-example relative error of the current estimate, ``(B,)``."""
        return relative_error(self.standard_error(reducer), reducer.result())

    def error(self, reducer: Reducer, counts: Tensor, is_tuple: bool) -> MonteCarloError:
        """The error of the finished call, formatted as the attributions."""
        se = self.standard_error(reducer)
        nested = self._is_nested_now()
        if nested:
            assert self.between is not None and self.between.count is not None
            # Draws, not pairs of draws, are counted.
            counts = self.between.count * (2 if self.pairing.weights else 1)
        return MonteCarloError(
            standard_error=_format_output(is_tuple, se),
            relative_error=relative_error(se, reducer.result()),
            n_samples=counts.clone(),
            nested=nested,
        )
