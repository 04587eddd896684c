"""Deletion and insertion curves (faithfulness of a ranking of pixels).

References:
    Petsiuk, V., Das, A., Saenko, K. "RISE: Randomized Input Sampling for Explanation of
    Black-box Models." BMVC 2018. https://arxiv.org/abs/1806.07421 (deletion and insertion
    metrics, area under the probability curve).

    Samek, W., Binder, A., Montavon, G., Lapuschkin, S., Müller, K.-R. "Evaluating the
    Visualization of What a Deep Neural Network Has Learned." IEEE TNNLS 28(11), 2017.
    https://arxiv.org/abs/1509.06321 (most-relevant-first perturbation).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._checks import check_positive_int
from ._perturb import _check_curve_args, _perturbation_scores, _rank_descending
from ._utils import BaselineLike, OutputKind, TargetLike, _check_model, _format_baseline

__all__ = ["deletion_auc", "insertion_auc"]


def _curve_auc(
    model: Callable[[Tensor], Tensor],
    inputs: Tensor,
    maps: Tensor,
    target: TargetLike,
    baseline: BaselineLike,
    n_steps: int,
    batch_size: int,
    output: str,
    insertion: bool,
) -> Tensor:
    model = _check_model(model)
    check_positive_int(n_steps, "n_steps")
    inputs, importance, target_t, output = _check_curve_args(
        inputs, maps, target, output, batch_size
    )
    base = _format_baseline(baseline, inputs)

    n_positions = importance.shape[1]
    steps = min(n_steps, n_positions)
    counts = (torch.arange(steps + 1, device=inputs.device) * n_positions) // steps
    rank = _rank_descending(importance)
    start, fill = (base, inputs) if insertion else (inputs, base)
    scores = _perturbation_scores(model, start, fill, rank, counts, target_t, output, batch_size)
    x = counts.to(scores.dtype) / n_positions
    auc = torch.trapezoid(scores, x, dim=1)
    return auc.to(inputs.dtype if inputs.is_floating_point() else torch.get_default_dtype())


class _AreaUnderCurve:
    """The area under the deletion or the insertion curve: one metric, two directions.

    The two directions share everything but which image the curve starts from, so the metric is
    written once, as :meth:`__call__`, and made twice: :data:`deletion_auc` and
    :data:`insertion_auc`, each with its own name and documentation.

    Args:
        name: The public name.
        insertion: Start from the baseline and insert the pixels (else delete them).
        doc: The public documentation.
    """

    def __init__(self, name: str, *, insertion: bool, doc: str) -> None:
        self.__name__ = self.__qualname__ = name
        self.__doc__ = doc
        self.insertion = insertion

    def __call__(
        self,
        model: Callable[[Tensor], Tensor],
        inputs: Tensor,
        maps: Tensor,
        target: TargetLike,
        *,
        baseline: BaselineLike = 0.0,
        n_steps: int = 100,
        batch_size: int = 64,
        output: OutputKind = "prob",
    ) -> Tensor:
        return _curve_auc(
            model, inputs, maps, target, baseline, n_steps, batch_size, output, self.insertion
        )

    def __repr__(self) -> str:
        return f"<metric {self.__name__}>"


deletion_auc = _AreaUnderCurve(
    "deletion_auc",
    insertion=False,
    doc=r"""Area under the deletion curve, one value per example (lower = more faithful).

Pixels (spatial positions, all channels at once) are replaced by the ``baseline`` in order
of decreasing importance, in ``n_steps`` equal fractions: after step ``k`` the
``floor(k * P / n_steps)`` most important of the ``P`` positions are deleted. The model's
score of ``target`` is recorded at every step ``k = 0..n_steps`` (step 0 is the intact
input) and integrated by the trapezoid rule over the deleted fraction ``x`` in [0, 1]
(Petsiuk et al. 2018; the most-relevant-first order of Samek et al. 2017).

Importance of a position: the channel sum of ``maps`` (signed: positive evidence goes
first; pass ``maps.abs()`` to rank by magnitude). Ties are broken deterministically, the
lower flat index (row-major) first. ``n_steps`` is capped to ``P`` (at most one step per
position).

The model is called in whatever mode it is in (its ``training`` flag is not changed) under
``torch.no_grad()``, on ``batch_size`` perturbed inputs at a time; ``(n_steps + 1) * B``
forward rows in all.

Args:
    model: A callable mapping a batch shaped like ``inputs`` to ``(N, n_classes)`` outputs.
    inputs: ``(B, C, *spatial)`` (positions are the spatial elements) or ``(B, D)`` (every
        feature is a position).
    maps: Attributions shaped like ``inputs``, or ``(B, 1, *spatial)`` / ``(B, *spatial)``.
    target: The explained class: an int, a sequence of ``B`` ints or a tensor ``()``/``(B,)``.
    baseline: The value of a deleted position: a float, a tensor broadcastable to
        ``inputs`` (e.g. a blurred copy) or a callable ``inputs -> tensor``. Default 0.
    n_steps: Number of deletion steps (default 100).
    batch_size: Perturbed inputs per forward call (bounds memory; default 64).
    output: ``"prob"`` (softmax probability of ``target``, default) or ``"logit"`` (the raw
        output).

Returns:
    A tensor ``(B,)``.

Examples::

    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    >>> x = torch.rand(2, 1, 4, 4)
    >>> maps = Saliency(model).attribute(x, target=0)
    >>> deletion_auc(model, x, maps * x, target=0, n_steps=16).shape
    torch.Size([2])
""",
)

insertion_auc = _AreaUnderCurve(
    "insertion_auc",
    insertion=True,
    doc=r"""Area under the insertion curve, one value per example (higher = more faithful).

The mirror of :func:`deletion_auc`: starting from the ``baseline`` (zeros by default, or
e.g. a blurred input as in Petsiuk et al. 2018), the pixels of ``inputs`` are inserted in
order of decreasing importance in ``n_steps`` equal fractions; the score of ``target`` is
integrated by the trapezoid rule over the inserted fraction ``x`` in [0, 1]. Same ranking,
tie-breaking, batching and model handling as :func:`deletion_auc`.

Args:
    model: A callable mapping a batch shaped like ``inputs`` to ``(N, n_classes)`` outputs.
    inputs: ``(B, C, *spatial)`` or ``(B, D)``.
    maps: Attributions shaped like ``inputs``, or ``(B, 1, *spatial)`` / ``(B, *spatial)``.
    target: The explained class: an int, a sequence of ``B`` ints or a tensor ``()``/``(B,)``.
    baseline: The starting image: a float, a tensor broadcastable to ``inputs`` or a callable
        ``inputs -> tensor``. Default 0.
    n_steps: Number of insertion steps (default 100).
    batch_size: Perturbed inputs per forward call (default 64).
    output: ``"prob"`` (default) or ``"logit"``.

Returns:
    A tensor ``(B,)``.

Examples::

    >>> # model, x and maps as in deletion_auc; inserting into a blurred copy of x:
    >>> blurred = torch.nn.functional.avg_pool2d(x, 3, stride=1, padding=1)
    >>> insertion_auc(model, x, maps * x, target=0, baseline=blurred, n_steps=16).shape
    torch.Size([2])
""",
)
