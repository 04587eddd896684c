"""How many noisy copies of each example go through the inner method at once.

Captum's NoiseTunnel sends all ``B * N`` copies at once by default: memory grows with
``nt_samples``, and large batches are slower per sample on a CPU (measured on 2 idle cores with
a ResNet-18 at 224 x 224, 48 samples: 4.1 s in one batch, 2.4-2.5 s in chunks of 6 to 16, 3.0 s
in chunks of 24, 2.7 s in chunks of 4). ``"auto"`` picks a chunk from the size of the input and
of the inner method's own expansion (Integrated Gradients evaluates ``n_steps`` points per
copy), so that one inner call holds a bounded number of input elements: memory is then bounded
by the chunk, whatever ``nt_samples`` is.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from torch import Tensor

__all__ = ["auto_chunk_size", "resolve_chunk_size"]

# Rows of a 3x224x224 image per inner call: on a 2-core CPU chunks of 6 to 16 ran equally fast
# (above), so take the low end of that plateau, which holds the least memory. GPUs keep their
# throughput up to far larger batches.
_CPU_ROWS = 8
_GPU_ROWS = 64
_REFERENCE_ELEMENTS = 3 * 224 * 224


def _inner_expansion(attribution_method: Any, kwargs: dict[str, Any]) -> int:
    """How many forward rows the inner method makes per input row (n_steps for path methods)."""
    try:
        params = inspect.signature(attribution_method.attribute).parameters
    except (TypeError, ValueError):
        return 1
    if "n_steps" not in params:
        return 1
    if kwargs.get("internal_batch_size") is not None:
        # The inner method already bounds its own batches.
        return 1
    n_steps = kwargs.get("n_steps", params["n_steps"].default)
    return int(n_steps) if isinstance(n_steps, int) and n_steps > 0 else 1


def auto_chunk_size(
    inputs: tuple[Tensor, ...],
    nt_samples: int,
    attribution_method: Any = None,
    kwargs: dict[str, Any] | None = None,
) -> int:
    """Pick the number of noisy copies per example in one chunk.

    Args:
        inputs: The clean inputs, batch first.
        nt_samples: The number of noisy samples per example.
        attribution_method: The inner method (its ``n_steps`` widens each row).
        kwargs: The inner method's keyword arguments.

    Returns:
        A chunk size between 1 and ``nt_samples``.
    """
    batch = max(1, inputs[0].shape[0])
    per_example = sum(max(1, math.prod(x.shape[1:])) for x in inputs)
    on_gpu = any(x.device.type != "cpu" for x in inputs)
    max_rows = _GPU_ROWS if on_gpu else _CPU_ROWS
    # Bound the elements per call to what max_rows reference images would hold.
    budget_rows = max(1, (max_rows * _REFERENCE_ELEMENTS) // per_example)
    # Tiny inputs (tabular rows, 8x8 digits) gain from wide batches up to a point: cap there.
    rows = min(budget_rows, max_rows * 64)
    rows = max(1, rows // _inner_expansion(attribution_method, kwargs or {}))
    return max(1, min(nt_samples, rows // batch))


def resolve_chunk_size(
    nt_samples_batch_size: int | str | None,
    nt_samples: int,
    inputs: tuple[Tensor, ...],
    attribution_method: Any = None,
    kwargs: dict[str, Any] | None = None,
) -> int:
    """Validate ``nt_samples_batch_size`` (None, a positive int or "auto") into a chunk size."""
    if nt_samples_batch_size is None:
        return nt_samples
    if isinstance(nt_samples_batch_size, str):
        if nt_samples_batch_size != "auto":
            raise ValueError(
                f'`nt_samples_batch_size` must be None, a positive int or "auto", '
                f"got {nt_samples_batch_size!r}"
            )
        return auto_chunk_size(inputs, nt_samples, attribution_method, kwargs)
    if isinstance(nt_samples_batch_size, bool) or not isinstance(nt_samples_batch_size, int):
        raise TypeError(
            f'`nt_samples_batch_size` must be None, a positive int or "auto", '
            f"got {type(nt_samples_batch_size).__name__}"
        )
    if nt_samples_batch_size < 1:
        raise ValueError(f"`nt_samples_batch_size` must be >= 1, got {nt_samples_batch_size}")
    return min(nt_samples, nt_samples_batch_size)
