"""AdaptGrad's sigma rule, measured from outside with a probe model."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, NoiseTunnel, Saliency
from captum.metrics import sensitivity_max

from captum_smooth import AdaptGrad, AdaptiveSigma, OutsideBoundsWarning, SmoothGrad
from captum_smooth.noise.sigma import adaptive_sigma_factor

from analytic_models import Linear, Probe


@pytest.mark.parametrize(
    ("confidence", "factor"), [(0.95, 0.5102), (0.99, 0.3882), (0.999, 0.3040)]
)
def test_sigma_factor_matches_the_paper(confidence: float, factor: float) -> None:
    assert adaptive_sigma_factor(confidence) == pytest.approx(factor, abs=1e-4)


def test_rule_gives_zero_on_bounds_and_distance_times_factor_inside() -> None:
    x = torch.tensor([[0.0, 0.25, 0.5, 1.0]])
    sigma = AdaptiveSigma(0.95, bounds=(0.0, 1.0))(x)
    f = adaptive_sigma_factor(0.95)
    torch.testing.assert_close(sigma, torch.tensor([[0.0, 0.25 * f, 0.5 * f, 0.0]]))


def test_per_channel_bounds() -> None:
    lo, hi = (-2.118, -2.036, -1.804), (2.249, 2.429, 2.640)
    x = torch.zeros(1, 3, 2, 2)
    sigma = AdaptiveSigma(0.95, bounds=(lo, hi))(x)
    d = torch.minimum(-torch.tensor(lo), torch.tensor(hi)).reshape(1, 3, 1, 1)
    torch.testing.assert_close(sigma, (d * adaptive_sigma_factor(0.95)).expand(1, 3, 2, 2))


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_coverage_and_std_measured_by_a_probe(confidence: float) -> None:
    n_feat, n_samples = 400, 50
    x = torch.rand(2, n_feat, generator=torch.Generator().manual_seed(0))
    x[0, :10] = 0.0  # elements on the lower bound
    x[1, -10:] = 1.0  # and on the upper one
    probe = Probe(Linear(n_feat))
    AdaptGrad(probe).attribute(
        x,
        target=0,
        nt_samples=n_samples,
        confidence=confidence,
        bounds=(0.0, 1.0),
        include_clean=False,
        generator=1,
    )
    copies = torch.cat([s.reshape(2, -1, n_feat) for s in probe.seen], dim=1)
    noise = copies - x.unsqueeze(1)
    d = torch.minimum(x, 1 - x)
    # Elements on a bound get exactly no noise.
    assert torch.equal(noise[0, :, :10], torch.zeros(n_samples, 10))
    assert torch.equal(noise[1, :, -10:], torch.zeros(n_samples, 10))
    inside = d > 0
    covered = (noise.abs() <= d.unsqueeze(1)).transpose(0, 1)[:, inside]
    n = covered.numel()
    share = covered.float().mean().item()
    assert abs(share - confidence) < 5 * math.sqrt(confidence * (1 - confidence) / n)
    # Empirical std of the noise divided by sigma: pooled over elements, ~ 1.
    sigma = AdaptiveSigma(confidence, (0.0, 1.0))(x)
    z = (noise / sigma.unsqueeze(1)).transpose(0, 1)[:, inside]
    assert abs(z.std().item() - 1) < 5 * math.sqrt(0.5 / z.numel())


def test_bounds_none_uses_each_examples_range() -> None:
    x = torch.tensor([[2.0, 3.0, 4.0], [-1.0, 0.0, 5.0]])
    sigma = AdaptiveSigma(0.95)(x)
    f = adaptive_sigma_factor(0.95)
    torch.testing.assert_close(sigma, torch.tensor([[0.0, 1.0 * f, 0.0], [0.0, 1.0 * f, 0.0]]))


def test_include_clean_is_default_and_costs_one_call() -> None:
    probe = Probe(Linear(4))
    ag = AdaptGrad(probe)
    ag.attribute(torch.rand(3, 4), target=0, nt_samples=8, nt_samples_batch_size=8)
    assert [s.shape[0] for s in probe.seen] == [3, 24]
    assert ag.last_report is not None and ag.last_report.n_samples.tolist() == [9, 9, 9]


def test_adaptgrad_over_other_methods_and_tuple_inputs() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    x = torch.rand(4, 6)
    for inner in (InputXGradient, IntegratedGradients):
        attr = AdaptGrad(model, inner).attribute(x, target=2, bounds=(0.0, 1.0), nt_samples=4)
        assert attr.shape == x.shape and bool(torch.isfinite(attr).all())

    class TwoInputs(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return model(torch.cat([a, b], dim=1))

    a, b = x[:, :3], x[:, 3:] * 4 - 2
    attr = AdaptGrad(TwoInputs()).attribute(
        (a, b), target=1, bounds=[(0.0, 1.0), (-2.0, 2.0)], nt_samples=4, generator=0
    )
    assert isinstance(attr, tuple) and attr[0].shape == a.shape and attr[1].shape == b.shape


def test_ig_with_convergence_delta_through_the_preset() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    x = torch.rand(2, 3)
    attr, delta = AdaptGrad(model, IntegratedGradients).attribute(
        x,
        target=0,
        nt_samples=3,
        bounds=(0.0, 1.0),
        return_convergence_delta=True,
        baselines=torch.zeros(2, 3),
    )
    assert attr.shape == x.shape
    assert delta.shape == (2 * (3 + 1),)  # one per inner sample, the clean term included
    assert bool((delta.abs() < 1e-4).all())  # linear model: IG is exact


def test_nested_inside_captum() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    x = torch.rand(2, 4)
    ag = AdaptGrad(model)
    # NoiseTunnel and sensitivity_max run the inner method under no_grad via __wrapped__.
    nested = NoiseTunnel(ag).attribute(x, nt_samples=2, stdevs=0.01, target=0)
    assert nested.shape == x.shape
    sens = sensitivity_max(
        ag.attribute, x, target=0, nt_samples=3, bounds=(-1.0, 2.0), n_perturb_samples=2
    )
    assert sens.shape == (2,) and bool(torch.isfinite(sens).all())


def test_smoothgrad_preset_range_share() -> None:
    probe = Probe(Linear(300))
    x = torch.rand(1, 300)
    SmoothGrad(probe).attribute(
        x, target=0, nt_samples=30, noise_level=0.2, bounds=(0.0, 2.0), generator=0
    )
    noise = torch.cat(probe.seen) - x
    assert abs(noise.std().item() / 0.4 - 1) < 5 * math.sqrt(0.5 / noise.numel())


def test_names_for_insights() -> None:
    assert AdaptGrad.get_name() == "AdaptGrad"
    assert SmoothGrad.get_name() == "SmoothGrad"
    ag = AdaptGrad(torch.nn.Linear(2, 2))
    assert isinstance(ag.attribution_method, Saliency)
    assert hasattr(AdaptGrad.attribute, "__wrapped__")


# ------------------------------------------------------------------ elements outside the bounds


def test_elements_outside_the_bounds_get_sigma_zero_with_one_warning() -> None:
    x = torch.tensor([[-0.1, 0.25, 1.2, 1.0], [0.5, 1.5, 0.75, 0.0]])
    with pytest.warns(OutsideBoundsWarning, match=r"3 of 8 input element\(s\)") as record:
        sigma = AdaptiveSigma(0.95, bounds=(0.0, 1.0))(x)
    assert len(record) == 1
    f = adaptive_sigma_factor(0.95)
    expected = torch.tensor([[0.0, 0.25 * f, 0.0, 0.0], [0.5 * f, 0.0, 0.25 * f, 0.0]])
    torch.testing.assert_close(sigma, expected)


def test_strict_keeps_the_error() -> None:
    x = torch.tensor([[-0.1, 0.5]])
    with pytest.raises(ValueError, match=r"outside `bounds`.*strict=False"):
        AdaptiveSigma(0.95, bounds=(0.0, 1.0), strict=True)(x)
    with pytest.raises(ValueError, match="outside `bounds`"):
        AdaptGrad(Linear(2)).attribute(x, target=0, bounds=(0.0, 1.0), strict=True)
    with pytest.raises(TypeError, match="strict"):
        AdaptiveSigma(0.95, bounds=(0.0, 1.0), strict="yes")  # type: ignore[arg-type]


def test_adaptgrad_warns_once_per_call_and_leaves_outside_elements_clean() -> None:
    probe = Probe(Linear(4))
    x = torch.tensor([[-0.2, 0.5, 1.3, 0.4]])
    with pytest.warns(OutsideBoundsWarning) as record:
        AdaptGrad(probe).attribute(x, target=0, nt_samples=6, bounds=(0.0, 1.0), generator=0)
    assert len([w for w in record if w.category is OutsideBoundsWarning]) == 1
    noisy = torch.cat(probe.seen)
    assert bool((noisy[:, 0] == -0.2).all()) and bool((noisy[:, 2] == 1.3).all())
    assert bool((noisy[1:, 1] != 0.5).any())


def test_inside_captum_sensitivity_max_whose_perturbations_leave_the_range() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    x = torch.tensor([[0.0, 0.3, 1.0, 0.99], [1.0, 0.0, 0.5, 0.01]])
    ag = AdaptGrad(model)
    kw = dict(target=0, nt_samples=3, bounds=(0.0, 1.0), n_perturb_samples=4, generator=0)
    with pytest.warns(OutsideBoundsWarning):
        sens = sensitivity_max(ag.attribute, x, perturb_radius=0.05, **kw)
    assert sens.shape == (2,) and bool(torch.isfinite(sens).all())
    with pytest.raises(ValueError, match="outside `bounds`"):
        sensitivity_max(ag.attribute, x, perturb_radius=0.05, strict=True, **kw)
