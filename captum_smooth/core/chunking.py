"""How many noisy copies of each example go through the inner method at once.

Captum's NoiseTunnel sends all ``B * N`` copies at once by default: memory grows with
``nt_samples``, and large batches are slower per sample on a CPU (measured on 2 idle cores with
a ResNet-18 at 224 x 224, 48 samples: 4.1 s in one batch, 2.4-2.5 s in chunks of 6 to 16, 3.0 s
in chunks of 24, 2.7 s in chunks of 4). ``"auto"`` picks a chunk from the size of the input and
of the inner method's own expansion (Integrated Gradients evaluates ``n_steps`` points per
copy), so that one inner call holds a bounded number of input elements: memory is then bounded
by the chunk, whatever ``nt_samples`` is.

On a CUDA device the same element budget (wider: :data:`_GPU_ROWS` reference images) is the
cap, and the free device memory bounds it further: one copy is estimated to cost its input bytes
times the inner method's expansion times :data:`_GPU_ACTIVATION_FACTOR`, and a call may take
:data:`_GPU_MEMORY_SHARE` of the memory free at the start of the call (the driver's free memory
plus what torch's caching allocator holds unused). The memory-bound number of copies is rounded
down to a power of two, so that small changes in free memory do not change the chunk (and with
it the draws). Without memory pressure the chunk is the cap, and depends on the input shape
only; under pressure it depends on the free memory: give an int ``nt_samples_batch_size`` for
draws that are the same on every device (``last_report.chunk_size`` tells the chunk used).

The per-copy cost is an estimate, not a measurement: measuring it (``max_memory_allocated``
around a first chunk) would need a first chunk of a provisional size, which draws differently
from the chunks that follow, or a throw-away forward and backward pass as costly as a chunk.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
from torch import Tensor

__all__ = ["auto_chunk_size", "free_cuda_bytes", "resolve_chunk_size"]

# Rows of a 3x224x224 image per inner call: on a 2-core CPU chunks of 6 to 16 ran equally fast
# (above), so take the low end of that plateau, which holds the least memory. GPUs keep their
# throughput up to far larger batches.
_CPU_ROWS = 8
_GPU_ROWS = 64
_REFERENCE_ELEMENTS = 3 * 224 * 224

# Bytes one copy costs a gradient method, as a multiple of the copy's input bytes. Backward
# needs what the forward pass saved: measured with torch.autograd.graph.saved_tensors_hooks
# (one image, parameters excluded), the ResNet-18-sized CNN of the benchmarks saves 37x its
# input (21 MiB at 224 x 224, 111 MiB at 512 x 512) and EfficientNet-Lite0 137x (78 and 400
# MiB: its inverted residual blocks widen the channels 6x before the depthwise convolutions).
# The backward pass then holds gradients of one or two activations at a time on top. 256, the
# next power of two above 137x plus those gradients, covers both; wider networks are covered
# by the memory share below.
_GPU_ACTIVATION_FACTOR = 256
# Share of the free memory one call may take: the rest is left for cuDNN workspaces, the
# reducer's accumulators, the allocator's rounding and fragmentation, and other users.
_GPU_MEMORY_SHARE = 0.5


def _inner_expansion(attribution_method: Any, kwargs: dict[str, Any]) -> int:
    """How many forward rows the inner method makes per input row (n_steps for path methods)."""
    try:
        params = inspect.signature(attribution_method.attribute).parameters
    except (AttributeError, TypeError, ValueError):
        return 1
    if "n_steps" not in params:
        return 1
    if kwargs.get("internal_batch_size") is not None:
        # The inner method already bounds its own batches.
        return 1
    n_steps = kwargs.get("n_steps", params["n_steps"].default)
    return int(n_steps) if isinstance(n_steps, int) and n_steps > 0 else 1


def _cuda_device(inputs: tuple[Tensor, ...]) -> torch.device | None:
    """The CUDA device of the inputs, or None (tests replace this to try the CUDA rule)."""
    for x in inputs:
        if x.device.type == "cuda":
            return x.device
    return None


def free_cuda_bytes(device: torch.device) -> int:
    """Bytes a new allocation on ``device`` can use: free to the driver plus cached unused."""
    free, _total = torch.cuda.mem_get_info(device)
    try:
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    except (RuntimeError, AssertionError):  # no CUDA allocator (a CPU build of torch)
        cached = 0
    return int(free) + max(0, int(cached))


def _cuda_copies(inputs: tuple[Tensor, ...], device: torch.device, expansion: int) -> int:
    """Copies per call that fit the memory share, rounded down to a power of two (>= 1)."""
    row_bytes = sum(max(1, math.prod(x.shape[1:])) * x.element_size() for x in inputs)
    per_copy = max(1, row_bytes * expansion * _GPU_ACTIVATION_FACTOR)
    copies = int(free_cuda_bytes(device) * _GPU_MEMORY_SHARE) // per_copy
    return 1 << (copies.bit_length() - 1) if copies >= 1 else 1


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
        A chunk size between 1 and ``nt_samples``: on the CPU from the input size alone, on a
        CUDA device also bounded by the free device memory (see the module docstring).
    """
    batch = max(1, inputs[0].shape[0])
    per_example = sum(max(1, math.prod(x.shape[1:])) for x in inputs)
    on_gpu = any(x.device.type != "cpu" for x in inputs)
    cuda = _cuda_device(inputs)
    max_rows = _GPU_ROWS if on_gpu or cuda is not None else _CPU_ROWS
    # Bound the elements per call to what max_rows reference images would hold.
    budget_rows = max(1, (max_rows * _REFERENCE_ELEMENTS) // per_example)
    # Tiny inputs (tabular rows, 8x8 digits) gain from wide batches up to a point: cap there.
    rows = min(budget_rows, max_rows * 64)
    expansion = _inner_expansion(attribution_method, kwargs or {})
    rows = max(1, rows // expansion)
    if cuda is not None:
        rows = min(rows, _cuda_copies(inputs, cuda, expansion))
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
