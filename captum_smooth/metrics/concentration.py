"""How concentrated an attribution map is: Gini sparseness and entropy complexity.

References:
    Chalasani, P., Chen, J., Chowdhury, A. R., Wu, X., Jha, S. "Concise Explanations of Neural
    Networks using Adversarial Training." ICML 2020. https://arxiv.org/abs/1810.06583
    (the Gini index of the absolute attributions; Quantus' ``Sparseness``).

    Bhatt, U., Weller, A., Moura, J. M. F. "Evaluating and Aggregating Feature-based Model
    Explanations." IJCAI 2020. https://arxiv.org/abs/2005.00631 (the entropy of the
    fractional contributions; Quantus' ``Complexity``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._utils import _check_maps

__all__ = ["complexity", "sparseness"]


def _flat_abs(maps: Tensor) -> Tensor:
    maps = _check_maps(maps, min_dim=2)
    flat = maps.reshape(maps.shape[0], -1).abs()
    if flat.dtype in (torch.float16, torch.bfloat16):
        flat = flat.float()
    return flat


def sparseness(maps: Tensor) -> Tensor:
    r"""Gini index of the absolute attributions, one value per example (higher = sparser).

    With ``a_(1) <= ... <= a_(n)`` the sorted values of ``|maps|`` flattened over every
    dimension but the batch (channels included), ``n`` their number:

    .. math::
        G = \frac{\sum_{i=1}^{n} (2i - n - 1)\, a_{(i)}}{n \sum_{i=1}^{n} a_{(i)}}

    (Chalasani et al. 2020, as Quantus ``Sparseness``). ``G`` is in ``[0, (n-1)/n]``: 0 for a
    constant map, exactly ``(n - 1) / n`` for a one-hot map. It is invariant to the scale of the
    map. Quantus adds ``1e-7`` to every value after normalising the map by its maximum, which
    moves its score by about ``1e-7 * n``; here the value is exact.

    Defined value: an all-zero map scores 0 (the limit of constant maps).

    Args:
        maps: Attribution maps ``(B, ...)`` with at least one dimension after the batch.

    Returns:
        A tensor ``(B,)``.

    Examples::

        >>> sparseness(torch.tensor([[0.0, 0.0, 0.0, 5.0], [1.0, -1.0, 1.0, 1.0]]))
        tensor([0.7500, 0.0000])
    """
    flat = _flat_abs(maps)
    n = flat.shape[1]
    ordered = flat.sort(dim=1).values
    ranks = torch.arange(1, n + 1, dtype=flat.dtype, device=flat.device)
    numerator = ((2.0 * ranks - n - 1.0) * ordered).sum(dim=1)
    total = ordered.sum(dim=1)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, numerator / (n * safe), torch.zeros_like(total))


def complexity(maps: Tensor) -> Tensor:
    r"""Entropy of the fractional contributions ``|a_i| / sum_j |a_j|``, one value per example
    (lower = more concentrated).

    .. math::
        C = -\sum_{i=1}^{n} p_i \log p_i, \qquad p_i = \frac{|a_i|}{\sum_j |a_j|}

    over ``maps`` flattened over every dimension but the batch (Bhatt et al. 2020, as Quantus
    ``Complexity``), natural logarithm, ``0 log 0 = 0``. ``C`` is in ``[0, log n]``: ``log n``
    for a constant map, 0 for a one-hot map. Quantus computes ``p log(p + 1e-12)``, which
    differs by less than ``n * 1e-12``.

    Defined value: an all-zero map scores ``log n`` (treated as uniform, the limit of constant
    maps).

    Args:
        maps: Attribution maps ``(B, ...)`` with at least one dimension after the batch.

    Returns:
        A tensor ``(B,)``.

    Examples::

        >>> complexity(torch.tensor([[0.0, 0.0, 0.0, 5.0], [1.0, -1.0, 1.0, 1.0]]))
        tensor([0.0000, 1.3863])
    """
    flat = _flat_abs(maps)
    n = flat.shape[1]
    total = flat.sum(dim=1, keepdim=True)
    p = flat / torch.where(total > 0, total, torch.ones_like(total))
    plogp = torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), 0.0)
    entropy = 0.0 - plogp.sum(dim=1)  # not -sum: avoids printing -0.
    return torch.where(total[:, 0] > 0, entropy, torch.full_like(entropy, math.log(n)))
