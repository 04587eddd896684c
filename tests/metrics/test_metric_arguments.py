"""The metrics' arguments named where they are wrong (issue #22, case 9)."""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from torch import nn

from captum_smooth.metrics import deletion_auc, infidelity_of, sensitivity_max_of


def _model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def test_deletion_auc_names_a_target_out_of_the_models_range() -> None:
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"`target` 99 is out of range for the model's 3 outputs"):
        deletion_auc(_model(), x, x, target=99)


@pytest.mark.parametrize("metric", [infidelity_of, sensitivity_max_of])
def test_n_perturb_samples_must_be_a_positive_int(metric) -> None:
    with pytest.raises(ValueError, match="`n_perturb_samples` must be >= 1"):
        metric(Saliency(_model()), torch.rand(2, 1, 4, 4), target=0, n_perturb_samples=0)


@pytest.mark.parametrize("metric", [infidelity_of, sensitivity_max_of])
def test_captums_refusal_names_the_method_and_argument_and_leaves_the_inputs(metric) -> None:
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match=r"IntegratedGradients.* `n_steps`=0") as err:
        metric(IntegratedGradients(_model()), x, target=0, n_steps=0)
    assert isinstance(err.value.__cause__, AssertionError)
    with pytest.raises(ValueError, match="`target`"):
        metric(Saliency(_model()), x, target=[0, 99])
    assert not x.requires_grad
