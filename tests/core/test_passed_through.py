"""Arguments passed through to the inner Captum method (issue #22, cases 6, 8 and 9).

The cheap, common ones (``n_steps``, ``internal_batch_size``, ``baselines``) are checked before
any work; what Captum or torch refuses at the first inner call comes back as an error of this
package naming the inner method and the arguments passed through, the original chained; an
error of the user's own code is left as it was.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from captum.attr._utils.attribution import GradientAttribution
from torch import Tensor, nn

from captum_smooth import NoiseGrad, SmoothGrad, SmoothTunnel
from captum_smooth._progress import progress_bar


class _Counting(nn.Module):
    """``x @ W.T`` with two outputs, counting its forward calls."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return self.linear(x)


def _ig_door(door: str, model: nn.Module) -> Any:
    """The three doors of the issue, IntegratedGradients as the inner method."""
    if door == "SmoothTunnel":
        return SmoothTunnel(IntegratedGradients(model))
    return {"SmoothGrad": SmoothGrad, "NoiseGrad": NoiseGrad}[door](model, IntegratedGradients)


DOORS = ["SmoothTunnel", "SmoothGrad", "NoiseGrad"]


def _attribute(door: str, model: nn.Module, **kwargs: Any) -> Any:
    count = {"n_weight_samples": 2} if door == "NoiseGrad" else {"nt_samples": 2}
    return _ig_door(door, model).attribute(
        torch.rand(2, 4), target=0, generator=0, **count, **kwargs
    )


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("n_steps", 0, ValueError),
        ("n_steps", "a", TypeError),
        ("internal_batch_size", 0, ValueError),
        ("baselines", torch.zeros(3, 5), ValueError),
        ("baselines", torch.zeros(2, 5), ValueError),
        ("baselines", (torch.zeros(2, 4), torch.zeros(2, 4)), ValueError),
    ],
)
def test_cheap_arguments_are_checked_before_any_work(
    door: str, name: str, value: Any, error: type
) -> None:
    model = _Counting()
    with pytest.raises(error, match=f"`{name}`") as caught:
        _attribute(door, model, **{name: value})
    assert "captum_smooth" in caught.traceback[-1].path.as_posix()
    assert model.calls == 0


@pytest.mark.parametrize("door", DOORS)
def test_an_argument_captum_refuses_is_named_with_the_inner_method_and_chained(door: str) -> None:
    model = _Counting()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"IntegratedGradients .*`method`='nope'") as caught:
        _attribute(door, model, method="nope")
    assert isinstance(caught.value.__cause__, AssertionError)
    assert "riemann" in str(caught.value)  # Captum's own words are kept
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "baselines",
    [0.0, torch.zeros(1, 4), torch.zeros(2, 4), torch.zeros(1, 1), (torch.zeros(1, 4),)],
)
def test_baselines_that_fit_give_the_result_of_a_zero_baseline(baselines: Any) -> None:
    model = _Counting()
    x = torch.rand(2, 4)
    tunnel = SmoothTunnel(IntegratedGradients(model))
    kwargs: dict[str, Any] = dict(target=1, nt_samples=2, stdevs=0.0, n_steps=4)
    got = tunnel.attribute(x, baselines=baselines, **kwargs)
    # A linear model: IG from a zero baseline is x * w exactly.
    torch.testing.assert_close(got, x * model.linear.weight[1].detach())


def test_baselines_drawn_from_a_distribution_may_hold_any_number() -> None:
    tunnel = SmoothTunnel(IntegratedGradients(_Counting()))
    out = tunnel.attribute(
        torch.rand(2, 4),
        target=0,
        nt_samples=2,
        baselines=torch.zeros(5, 4),
        draw_baseline_from_distrib=True,
        generator=0,
    )
    assert out.shape == (2, 4)
    with pytest.raises(ValueError, match=r"`baselines` of shape \(5, 3\).*\(N, 4\)"):
        tunnel.attribute(
            torch.rand(2, 4), target=0, baselines=torch.zeros(5, 3), draw_baseline_from_distrib=True
        )


class _RaisesOnCopies(nn.Module):
    """The user's own model code fails on the noisy copies (more rows than examples) only."""

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] > 2:
            raise RuntimeError("the user's model refuses batches above 2")
        return x.sum(1, keepdim=True) * torch.ones(1, 2)


class _OwnMethod(GradientAttribution):
    """A user's own attribution method whose code raises."""

    def attribute(self, inputs: Tensor, **kwargs: Any) -> Tensor:
        raise ValueError("the user's method's own error")


def test_errors_of_the_users_own_code_are_left_as_they_are() -> None:
    with pytest.raises(RuntimeError, match="refuses batches above 2") as caught:
        SmoothTunnel(Saliency(_RaisesOnCopies())).attribute(torch.rand(2, 4), target=0)
    assert caught.value.__cause__ is None
    with pytest.raises(ValueError, match="own error") as caught_own:
        SmoothTunnel(_OwnMethod(_Counting())).attribute(torch.rand(2, 4), target=0)
    assert caught_own.value.__cause__ is None


def test_show_progress_must_be_a_bool_wherever_a_bar_is_made() -> None:
    with pytest.raises(TypeError, match="`show_progress` must be True or False"):
        progress_bar("no", total=1)
    from captum_smooth import calibrate_weight_noise

    model = nn.Sequential(nn.Linear(4, 3))
    data = (torch.rand(8, 4), torch.zeros(8, dtype=torch.long))
    with pytest.raises(TypeError, match="`show_progress`"):
        calibrate_weight_noise(model, data, show_progress="no", max_iter=1, n_draws=1)
