"""When the loop stops: after fixed sample counts, or once the Monte-Carlo error is small.

With ``tolerance``, each example samples until its relative error (``||SE||`` over the signal's
norm, :func:`~captum_smooth.core.error_model.relative_error`; ``inf`` while the map cannot be
told from noise) is at most the tolerance, between ``min_samples`` and ``max_samples``; examples
stop one by one. The count is of input samples, or of weight draws under weight noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_positive_int
from .._warnings import warn

__all__ = ["StoppingRule", "ToleranceNotReachedWarning"]


class ToleranceNotReachedWarning(UserWarning):
    """Some examples used ``max_samples`` without reaching ``tolerance`` (see ``last_report``)."""


def _check_tolerance(tolerance: object) -> float:
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)):
        raise TypeError(f"`tolerance` must be a positive float, got {tolerance!r}")
    if not math.isfinite(tolerance) or tolerance <= 0:
        raise ValueError(f"`tolerance` must be finite and > 0, got {tolerance!r}")
    return float(tolerance)


@dataclass
class StoppingRule:
    """Fixed sample counts, or sampling until the relative error is below a tolerance.

    Attributes:
        tolerance: The relative error to reach, or None for fixed counts.
        min_samples: The fewest samples (or draws) before an example may stop.
        max_input_samples: Input samples per weight draw at most.
        max_weight_draws: Weight draws at most.
        per_input_sample: Whether the tolerance is checked after input chunks.
        per_weight_draw: Whether the tolerance is checked after weight draws.
    """

    tolerance: float | None
    min_samples: int
    max_input_samples: int
    max_weight_draws: int
    per_input_sample: bool
    per_weight_draw: bool

    @classmethod
    def create(
        cls,
        tolerance: float | None,
        min_samples: int | None,
        max_samples: int | None,
        nt_samples: int,
        n_weight_samples: int,
        *,
        over_weight_draws: bool,
    ) -> StoppingRule:
        """Check the stopping options and make the rule.

        Raises:
            TypeError, ValueError: A bad ``tolerance``, ``min_samples`` or ``max_samples``, or
                ``min_samples`` / ``max_samples`` without ``tolerance`` (no effect).
        """
        if tolerance is None:
            if min_samples is not None or max_samples is not None:
                raise ValueError("`min_samples` and `max_samples` go with `tolerance`")
            return cls(None, 0, nt_samples, n_weight_samples, False, False)
        tol = _check_tolerance(tolerance)
        default_max = n_weight_samples if over_weight_draws else nt_samples
        hi = default_max if max_samples is None else check_positive_int(max_samples, "max_samples")
        lo = min(8, hi) if min_samples is None else check_positive_int(min_samples, "min_samples")
        if lo < 2 or lo > hi:
            raise ValueError(
                f"`min_samples` must be >= 2 (an error needs two samples) and <= `max_samples`, "
                f"got min_samples={lo}, max_samples={hi}"
            )
        if over_weight_draws:
            return cls(tol, lo, nt_samples, hi, False, True)
        return cls(tol, lo, hi, 1, True, False)

    def still_active(self, active: Tensor | None, rel_error: Tensor, batch: int) -> Tensor | None:
        """The examples whose error is still above the tolerance (None: all of them)."""
        rows = torch.arange(batch, device=rel_error.device) if active is None else active
        keep = rows[rel_error[rows] > float(self.tolerance or 0.0)]
        return None if keep.numel() == batch else keep

    def not_reached(self, rel_error: Tensor) -> Tensor | None:
        """The examples whose final relative error is above the tolerance; warn once if any.

        Args:
            rel_error: The final relative error per example, ``(B,)``.

        Returns:
            Their indices (a long tensor, possibly empty), or None without a tolerance.
        """
        if self.tolerance is None:
            return None
        rows = torch.nonzero(rel_error.cpu() > self.tolerance).flatten()
        if rows.numel():
            shown = rows.tolist()[:8]
            warn(
                f"{rows.numel()} of {rel_error.numel()} example(s) did not reach `tolerance`="
                f"{self.tolerance:g} within `max_samples`={self._max_count()} (examples "
                f"{shown}{'...' if rows.numel() > 8 else ''}, largest relative error "
                f"{float(rel_error.max()):.3g}); see `last_report.tolerance_not_reached` and "
                "raise `max_samples`",
                ToleranceNotReachedWarning,
            )
        return rows

    def _max_count(self) -> int:
        return self.max_weight_draws if self.per_weight_draw else self.max_input_samples
