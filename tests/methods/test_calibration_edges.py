"""calibrate_weight_noise at its edges (issue #22, case 3): an answer it did not bracket, and
data or models without finite numbers.

The models are chosen so that the accuracy under weight noise is known exactly:

* a linear classifier whose noise reaches only its zero bias (multiplicative noise keeps a zero
  at zero): every scale keeps the clean accuracy, so the search can only end at a bound;
* a model whose logit is ``sqrt(-(w - 1)^2)``: finite (zero) at its clean weight ``w = 1``, NaN
  for any other ``w``, so every perturbed model returns NaN logits.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from captum_smooth.methods.calibration import calibrate_weight_noise

from analytic_models import NaNOffItsWeight
from model_state import assert_identical, snapshot

QUIET = {"show_progress": False, "generator": 0}


def robust_linear() -> tuple[nn.Module, Tensor, Tensor]:
    """Identity weights, zero bias; labels are the argmax of the inputs (clean accuracy 1)."""
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    model = nn.Linear(3, 3)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))
        model.bias.zero_()
    return model.eval(), x, x.argmax(dim=1)


@pytest.mark.parametrize("max_iter", [1, 4, 6])
def test_a_search_ended_by_max_iter_while_doubling_says_it_is_a_lower_bound(max_iter: int) -> None:
    # Every scale keeps accuracy 1.0 exactly: the doubling 0.01, 0.02, ... never fails, so the
    # result is the last scale tried, 0.01 * 2 ** (max_iter - 1), not a largest accepted one.
    model, x, y = robust_linear()
    with pytest.warns(UserWarning, match=r"lower bound, not bracketed"):
        res = calibrate_weight_noise(
            model, (x, y), initial_stdev=0.01, max_iter=max_iter, parameters="bias", **QUIET
        )
    assert res.stdev == pytest.approx(0.01 * 2 ** (max_iter - 1), rel=1e-12)
    assert res.bracketed is False and res.upper == math.inf
    assert [h.accuracy for h in res.history] == [1.0] * max_iter
    assert all(h.accepted for h in res.history)


def test_a_search_ended_by_max_stdev_is_not_bracketed_either() -> None:
    model, x, y = robust_linear()
    with pytest.warns(UserWarning, match=r"max_stdev=2.0 keeps the accuracy.*not bracketed"):
        res = calibrate_weight_noise(
            model, (x, y), initial_stdev=0.01, max_iter=12, parameters="bias", **QUIET
        )
    # 0.01, 0.02, ..., 1.28, then the bound 2.0: nine scales, all accepted.
    assert [h.stdev for h in res.history] == pytest.approx([0.01 * 2**k for k in range(8)] + [2])
    assert res.stdev == 2.0 and res.bracketed is False


def test_a_bracketed_answer_names_the_failed_scale_above_it() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    y = torch.arange(300) % 3
    x = centres[y] + 0.5 * torch.randn(300, 2, generator=g)
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(centres)
        model.bias.zero_()
    res = calibrate_weight_noise(model, (x, y), 0.05, tol=0.05, max_iter=20, **QUIET)
    assert res.bracketed is True and res.stdev < res.upper
    steps = {h.stdev: h for h in res.history}
    assert steps[res.upper].accuracy < res.threshold <= steps[res.stdev].accuracy
    # No accepted scale lies between the answer and the failed scale above it, and the bracket
    # is within tol (the search stopped on its own, well before max_iter).
    assert not [h for h in res.history if h.accepted and res.stdev < h.stdev < res.upper]
    assert len(res.history) < 20 and res.upper - res.stdev <= 0.05 * res.upper


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs_are_refused(bad: float) -> None:
    model, x, y = robust_linear()
    with pytest.raises(ValueError, match=r"`data` inputs hold 120 NaN or infinite"):
        calibrate_weight_noise(model, (torch.full_like(x, bad), y), **QUIET)
    one = x.clone()
    one[7, 1] = bad
    batches = [(x, y), (one, y)]
    with pytest.raises(ValueError, match=r"`data` inputs hold 1 NaN or infinite.*batch 1"):
        calibrate_weight_noise(model, batches, **QUIET)


def test_all_nan_data_no_longer_calibrates_to_the_bound() -> None:
    # On main: s = 2.0 with clean accuracy 1.0 (argmax of a NaN row is class 0, the label).
    model, _, _ = robust_linear()
    x, y = torch.full((10, 3), float("nan")), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="NaN"):
        calibrate_weight_noise(model, (x, y), **QUIET)


def test_a_model_with_non_finite_clean_logits_is_refused() -> None:
    model, x, y = robust_linear()
    with torch.no_grad():
        model.bias.fill_(float("inf"))
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"`model` returns NaN or infinite logits"):
        calibrate_weight_noise(model, (x, y), **QUIET)
    assert_identical(before, model)


def test_perturbed_models_returning_nan_classified_nothing() -> None:
    # Clean: logits (0, -1), class 0 right. Perturbed: (NaN, -1), whose argmax is class 0 in
    # torch; main counted it right and returned the bound 2.0. Every scale fails instead: the
    # search halves 0.1 down to 0.1 / 2 ** 5 (max_iter=6) and returns 0.0.
    model = NaNOffItsWeight()
    x, y = torch.randn(8, 2), torch.zeros(8, dtype=torch.long)
    before = snapshot(model)
    with pytest.warns(UserWarning, match="returning 0.0"):
        res = calibrate_weight_noise(model, (x, y), n_draws=2, max_iter=6, **QUIET)
    assert res.accuracy_clean == 1.0
    assert [h.stdev for h in res.history] == pytest.approx([0.1 / 2**k for k in range(6)])
    assert [h.accuracy for h in res.history] == [0.0] * 6
    assert res.stdev == 0.0 and res.bracketed is True and res.upper == res.history[-1].stdev
    assert_identical(before, model)


def test_labels_outside_the_classes_are_named() -> None:
    model, x, y = robust_linear()
    with pytest.raises(ValueError, match=r"`data` labels must lie in \[0, 3\)"):
        calibrate_weight_noise(model, (x, y + 3), **QUIET)
    with pytest.raises(ValueError, match=r"`data` labels must be an integer"):
        calibrate_weight_noise(model, (x, y.bool()), **QUIET)
