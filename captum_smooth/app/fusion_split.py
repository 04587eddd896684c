"""FusionGrad's budget split: a gradient budget as weight draws x input draws.

FusionGrad (NoiseGrad++) averages ``input draws`` noisy inputs under each of ``weight draws``
noisy models, so a budget of ``samples`` gradient evaluations per example is spent as a product.
Every front end that runs FusionGrad at a budget (``explain``, ``explain-dataset``,
``explain-text`` and the benchmarks) splits it with :func:`fusion_split`, the one rule; its
parameters name where they differ:

* the method table at a fixed budget: about sqrt(N) x sqrt(N), the weight draws rounded;
* ``explain-text``: about sqrt(N) x sqrt(N), the *input* draws rounded (``rounded="input"``,
  kept from its first version so that its outputs stay the same);
* sampling to a tolerance: :data:`FUSION_INPUT_DRAWS` input draws per weight draw and at least
  two weight draws (the Monte-Carlo error is the spread between weight draws);
* the quality benchmark: 5 input draws per weight draw (``input_draws=5``).
"""

from __future__ import annotations

import math
from typing import Literal

from .._checks import check_positive_int

__all__ = ["FUSION_INPUT_DRAWS", "fusion_split"]

#: Input draws per weight draw of FusionGrad sampling to a tolerance (the weight draws vary).
FUSION_INPUT_DRAWS = 4


def fusion_split(
    samples: int,
    input_draws: int | None = None,
    *,
    min_weight_draws: int = 1,
    rounded: Literal["weight", "input"] = "weight",
) -> tuple[int, int]:
    """``(weight draws, input draws)`` for a budget of ``samples`` gradient evaluations.

    Args:
        samples: Gradient evaluations per example (>= 1).
        input_draws: A fixed number of input draws per weight draw; the weight draws are then
            ``samples // input_draws``. None: a balanced split, about sqrt(samples) each.
        min_weight_draws: The fewest weight draws (2 when the error is estimated from the
            spread between weight draws), even if the product then exceeds ``samples``.
        rounded: For the balanced split, which count is ``round(sqrt(samples))``; the other is
            ``samples //`` it, so the product is at most ``samples``.

    Returns:
        ``(weight draws, input draws)``, each >= 1.

    Raises:
        TypeError, ValueError: If ``samples`` or ``input_draws`` is not an int >= 1.

    Examples::

        >>> fusion_split(16)
        (4, 4)
        >>> fusion_split(8), fusion_split(8, rounded="input")
        ((3, 2), (2, 3))
        >>> fusion_split(20, input_draws=5)
        (4, 5)
    """
    check_positive_int(samples, "samples")
    if input_draws is None:
        root = max(1, round(math.sqrt(samples)))
        rest = max(1, samples // root)
        weight_draws, input_draws = (root, rest) if rounded == "weight" else (rest, root)
    else:
        check_positive_int(input_draws, "input_draws")
        weight_draws = samples // input_draws
    return max(min_weight_draws, weight_draws, 1), input_draws
