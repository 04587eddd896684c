"""PerExampleSigma checks its values where it is built, naming `values` (issue #22, case 8)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from captum_smooth import PerExampleSigma


@pytest.mark.parametrize("values", ["ab", None, [0.1, "a"], {0.1, 0.2}, 3.0, [[0.1, 0.2]]])
def test_values_that_are_not_a_1d_real_sequence_are_a_type_error_naming_values(
    values: Any,
) -> None:
    with pytest.raises(TypeError, match="`values` must be a 1-D real tensor or sequence"):
        PerExampleSigma(values)


@pytest.mark.parametrize("values", [[-1.0, 0.1], [math.nan, 0.1], [0.1, math.inf], []])
def test_negative_non_finite_or_no_values_are_a_value_error_naming_values(values: Any) -> None:
    with pytest.raises(ValueError, match="`values`"):
        PerExampleSigma(values)


def test_integer_values_are_sigmas_per_example() -> None:
    sigma = PerExampleSigma(torch.tensor([1, 2]))(torch.zeros(2, 3))
    assert torch.equal(sigma, torch.tensor([[1.0], [2.0]]))
