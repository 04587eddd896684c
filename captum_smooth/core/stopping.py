"""When the loop stops: after fixed sample counts, or once the Monte-Carlo error is small.

With ``tolerance``, each example samples until its relative error (``||SE|| / ||map||``) is at
most the tolerance, between ``min_samples`` and ``max_samples``; examples stop one by one. The
count is of input samples, or of weight draws under weight noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .._checks import check_positive_int

__all__ = ["StoppingRule"]


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
