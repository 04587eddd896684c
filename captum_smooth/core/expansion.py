"""Expanding the inner method's keyword arguments to the noisy copies of one chunk.

The noisy copies are example-major (the ``k`` copies of one example are adjacent, as
``repeat_interleave`` gives), as in Captum's NoiseTunnel. Target, additional forward arguments
and feature masks are expanded by Captum's own helpers. Baselines drawn from a distribution
(``draw_baseline_from_distrib``) are drawn here through the loop's ``torch.Generator``, fresh for
every chunk, instead of numpy's global random state as Captum does, so that results reproduce.
"""

from __future__ import annotations

from typing import Any

import torch
from captum._utils.common import (
    _expand_and_update_additional_forward_args,
    _expand_and_update_baselines,
    _expand_and_update_feature_mask,
    _expand_and_update_target,
)
from captum.attr._utils.common import _format_input_baseline
from torch import Tensor

__all__ = ["PER_EXAMPLE_KWARGS", "expand_kwargs", "select_examples", "select_kwargs"]

#: Keyword arguments of Captum methods that may hold one entry per example.
PER_EXAMPLE_KWARGS = ("target", "additional_forward_args", "baselines", "feature_mask")


def _draw_baselines(
    inputs: tuple[Tensor, ...],
    baselines: Any,
    samples_per_example: int,
    generator: torch.Generator | None,
) -> tuple[Any, ...]:
    _, formatted = _format_input_baseline(inputs, baselines)
    n_rows = inputs[0].shape[0] * samples_per_example
    drawn = []
    for baseline in formatted:
        if isinstance(baseline, Tensor):
            gen_device = generator.device if generator is not None else torch.device("cpu")
            index = torch.randint(
                baseline.shape[0], (n_rows,), generator=generator, device=gen_device
            )
            drawn.append(baseline[index.to(baseline.device)])
        else:
            drawn.append(baseline)
    return tuple(drawn)


def expand_kwargs(
    kwargs: dict[str, Any],
    inputs: tuple[Tensor, ...],
    samples_per_example: int,
    draw_baseline_from_distrib: bool,
    generator: torch.Generator | None,
) -> dict[str, Any]:
    """Return a copy of ``kwargs`` expanded for ``samples_per_example`` copies of each example.

    Args:
        kwargs: The inner method's keyword arguments (not modified).
        inputs: The clean inputs, batch first.
        samples_per_example: ``k``, the noisy copies of each example in the chunk.
        draw_baseline_from_distrib: Draw one baseline per copy from ``kwargs["baselines"]``.
        generator: The generator used for those draws.

    Returns:
        The expanded keyword arguments.
    """
    expanded = dict(kwargs)
    _expand_and_update_additional_forward_args(samples_per_example, expanded)
    _expand_and_update_target(samples_per_example, expanded)
    if draw_baseline_from_distrib and expanded.get("baselines") is not None:
        expanded["baselines"] = _draw_baselines(
            inputs, expanded["baselines"], samples_per_example, generator
        )
    else:
        _expand_and_update_baselines(inputs, samples_per_example, expanded)
    _expand_and_update_feature_mask(samples_per_example, expanded)
    return expanded


def select_examples(value: Any, rows: Tensor, batch: int) -> Any:
    """The rows of a per-example argument (a tensor or list of ``batch`` entries, or a tuple of
    these); anything else (shared, broadcast, scalars) as it is.

    Args:
        value: A per-example argument such as ``target`` or a tensor of additional forward args.
        rows: Indices of the examples to keep.
        batch: The batch size ``B`` of the full inputs.

    Returns:
        ``value`` restricted to ``rows``.
    """
    if batch <= 1:
        return value
    if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == batch:
        return value[rows.to(value.device)]
    if isinstance(value, list) and len(value) == batch:
        return [value[i] for i in rows.tolist()]
    if isinstance(value, tuple):
        return tuple(select_examples(v, rows, batch) for v in value)
    return value


def select_kwargs(
    kwargs: dict[str, Any], rows: Tensor, batch: int, shared: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The inner method's keyword arguments of the examples ``rows``: each of
    :data:`PER_EXAMPLE_KWARGS` restricted by :func:`select_examples`, the others as they are.

    Args:
        kwargs: The inner method's keyword arguments for the full batch.
        rows: Indices of the examples to keep.
        batch: The batch size ``B`` of the full inputs.
        shared: Per-example names that are shared in this call (baselines drawn from a
            distribution).

    Returns:
        A new dict; ``kwargs`` is not modified.
    """
    return {
        key: select_examples(value, rows, batch)
        if key in PER_EXAMPLE_KWARGS and key not in shared
        else value
        for key, value in kwargs.items()
    }
