"""NoiseGrad and FusionGrad presets, and weight-noise calibration."""

from __future__ import annotations

import copy
import math
import warnings

import pytest
import torch
from captum.attr import IntegratedGradients, LayerGradCam, Saliency
from torch import Tensor, nn

from captum_smooth import AdaptiveSigma, SmoothTunnel
from captum_smooth.methods.calibration import calibrate_weight_noise
from captum_smooth.methods.noisegrad import FusionGrad, NoiseGrad, NoiseGradPlusPlus
from captum_smooth.noise.sigma import adaptive_sigma_factor
from captum_smooth.noise.weights import WeightNoise

from analytic_models import Probe
from model_state import assert_identical, awkward_net, snapshot


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).eval()


class CountingModel(nn.Module):
    """Raises at a chosen forward call (counting from 1)."""

    def __init__(self, net: nn.Module, raise_at: int, exc: type[BaseException]) -> None:
        super().__init__()
        self.net = net
        self.calls = 0
        self.raise_at = raise_at
        self.exc = exc

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls == self.raise_at:
            raise self.exc("third draw")
        return self.net(x)


# --------------------------------------------------------------------------------------------
# Exact cases
# --------------------------------------------------------------------------------------------


def test_zero_weight_noise_is_the_inner_method_exactly() -> None:
    model = mlp()
    x = torch.rand(4, 5)
    for kwargs in ({}, {"abs": False}):
        expected = Saliency(model).attribute(x.clone().requires_grad_(), target=1, **kwargs)
        got = NoiseGrad(model).attribute(
            x, target=1, n_weight_samples=3, weight_stdev=0.0, generator=0, **kwargs
        )
        assert torch.equal(got, expected)


def test_fusiongrad_without_weight_noise_is_smoothgrad_under_the_same_seed() -> None:
    model = mlp()
    x = torch.rand(3, 5)
    got = FusionGrad(model).attribute(
        x, target=2, n_weight_samples=1, weight_stdev=0.0, nt_samples=6, stdevs=0.3,
        generator=5, nt_samples_batch_size=2,
    )  # fmt: skip
    expected = SmoothTunnel(Saliency(model)).attribute(
        x, target=2, nt_samples=6, stdevs=0.3, generator=5, nt_samples_batch_size=2
    )
    assert torch.equal(got, expected)


def test_tunnel_accepts_weight_noise_and_matches_the_preset() -> None:
    model = mlp()
    x = torch.rand(3, 5)
    via_tunnel = SmoothTunnel(Saliency(model)).attribute(
        x, target=0, nt_samples=1, stdevs=0.0, weight_noise=WeightNoise(0.2),
        n_weight_samples=10, generator=3, abs=False,
    )  # fmt: skip
    via_preset = NoiseGrad(model).attribute(x, target=0, generator=3, abs=False)
    assert torch.equal(via_tunnel, via_preset)
    clean = Saliency(model).attribute(x.clone().requires_grad_(), target=0, abs=False)
    assert not torch.allclose(via_preset, clean, atol=1e-3)


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def test_multiplicative_noise_is_unbiased_on_a_deep_linear_model() -> None:
    # f(x) = W2 W1 x, no bias: grad_x f_t = sum_j W2[t, j] W1[j, :] and with independent
    # eta ~ N(1, s^2) per scalar, E[(W2 * E2)(W1 * E1)] = W2 W1. Per element i the draws'
    # variance is sum_j (W2[t,j] W1[j,i])^2 ((1 + s^2)^2 - 1), so the mean of M draws is within
    # a few standard errors of the clean gradient.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5, bias=False), nn.Linear(5, 3, bias=False)).eval()
    w1, w2 = model[0].weight.detach(), model[1].weight.detach()
    target, s, m = 2, 0.3, 1000
    x = torch.rand(1, 6)
    clean = (w2 @ w1)[target]
    attr = NoiseGrad(model).attribute(
        x, target=target, n_weight_samples=m, weight_stdev=s, generator=0, abs=False
    )[0]
    var = ((w2[target].unsqueeze(1) * w1) ** 2).sum(0) * ((1 + s**2) ** 2 - 1)
    z = (attr - clean) / (var / m).sqrt()
    assert z.abs().max().item() < 4.5, z
    # The estimator really is noisy: the draws' variance (vargrad of the same draws) matches.
    # Relative standard error of a variance estimate: sqrt((kurtosis - 1) / m), kurtosis ~ 3.4
    # here (measured on 2e5 draws), so 0.05; the tolerance is 5 of them.
    vg = NoiseGrad(model).attribute(
        x, target=target, n_weight_samples=m, weight_stdev=s, generator=0, abs=False,
        nt_type="vargrad",
    )[0]  # fmt: skip
    assert torch.allclose(vg, var, rtol=0.25)


def test_same_generator_same_result_different_seeds_differ() -> None:
    model = mlp()
    x = torch.rand(2, 5)
    for method, kw in ((NoiseGrad, {}), (FusionGrad, {"nt_samples": 3})):
        a = method(model).attribute(x, target=1, n_weight_samples=4, generator=7, **kw)
        b = method(model).attribute(x, target=1, n_weight_samples=4, generator=7, **kw)
        c = method(model).attribute(x, target=1, n_weight_samples=4, generator=8, **kw)
        g1 = torch.Generator().manual_seed(7)
        d = method(model).attribute(x, target=1, n_weight_samples=4, generator=g1, **kw)
        assert torch.equal(a, b) and torch.equal(a, d)
        assert not torch.allclose(a, c)


# --------------------------------------------------------------------------------------------
# Cost and what the inner method sees
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("include_clean", [False, True])
def test_fusiongrad_runs_m_times_n_inner_evaluations(include_clean: bool) -> None:
    probe = Probe(mlp()).eval()
    x = torch.rand(2, 5)
    m, n, chunk = 3, 4, 2
    fg = FusionGrad(probe)
    fg.attribute(
        x, target=0, n_weight_samples=m, nt_samples=n, nt_samples_batch_size=chunk,
        include_clean=include_clean, generator=0,
    )  # fmt: skip
    per_draw = [2 * chunk] * (n // chunk)
    if include_clean:
        per_draw = [2] + per_draw
    assert [s.shape[0] for s in probe.seen] == per_draw * m  # each forward = one evaluation
    assert sum(s.shape[0] for s in probe.seen) == 2 * m * (n + include_clean)
    report = fg.last_report
    assert report is not None
    assert report.n_inner_calls == m * len(per_draw) and report.n_weight_samples == m
    assert report.n_samples.tolist() == [m * (n + include_clean)] * 2


def test_noisegrad_feeds_the_clean_input_once_per_draw() -> None:
    probe = Probe(mlp()).eval()
    x = torch.rand(3, 5)
    NoiseGrad(probe).attribute(x, target=0, n_weight_samples=5, generator=0)
    assert len(probe.seen) == 5
    assert all(torch.equal(s, x) for s in probe.seen)


def test_fusiongrad_with_adaptive_sigma() -> None:
    torch.manual_seed(0)
    probe = Probe(nn.Sequential(nn.Linear(200, 4), nn.Tanh(), nn.Linear(4, 2))).eval()
    x = torch.rand(1, 200)
    x[0, :5] = 0.0  # on the lower bound: no noise there
    m, n = 4, 25
    attr = FusionGrad(probe).attribute(
        x, target=1, n_weight_samples=m, nt_samples=n, stdevs=AdaptiveSigma(0.95, (0.0, 1.0)),
        generator=0,
    )  # fmt: skip
    assert attr.shape == x.shape and bool(torch.isfinite(attr).all())
    noise = torch.cat(probe.seen) - x
    assert noise.shape[0] == m * n
    assert torch.equal(noise[:, :5], torch.zeros(m * n, 5))
    sigma = torch.minimum(x, 1 - x)[0, 5:] * adaptive_sigma_factor(0.95)
    z = noise[:, 5:] / sigma
    assert abs(z.std().item() - 1) < 5 * math.sqrt(0.5 / z.numel())


def test_layer_method_hooks_see_the_perturbed_weights() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 2),
    ).eval()  # fmt: skip
    x = torch.rand(2, 1, 6, 6)
    seen: list[dict[str, Tensor]] = []
    handle = model.register_forward_pre_hook(
        lambda mod, args: seen.append({k: v.clone() for k, v in mod.state_dict().items()})
    )
    layer = model[2]
    attr = NoiseGrad(model, LayerGradCam(model, layer)).attribute(
        x, target=1, n_weight_samples=4, weight_stdev=0.3, generator=0
    )
    handle.remove()
    assert len(seen) == 4
    assert not torch.equal(seen[0]["2.weight"], seen[1]["2.weight"])
    # The same attribution, recomputed on copies of the models each draw really used.
    per_draw = []
    for state in seen:
        replica = copy.deepcopy(model)
        replica.load_state_dict(state)
        per_draw.append(LayerGradCam(replica, replica[2]).attribute(x, target=1))
    torch.testing.assert_close(attr, torch.stack(per_draw).mean(0), rtol=1e-5, atol=1e-6)
    clean = LayerGradCam(model, layer).attribute(x, target=1)
    assert not torch.allclose(attr, clean, atol=1e-4)


def test_inner_kwargs_pass_through_ig_with_deltas() -> None:
    model = nn.Sequential(nn.Linear(3, 2)).eval()
    x = torch.rand(2, 3)
    attr, delta = NoiseGrad(model, IntegratedGradients).attribute(
        x, target=0, n_weight_samples=3, generator=0, baselines=torch.zeros(2, 3),
        return_convergence_delta=True,
    )  # fmt: skip
    assert attr.shape == x.shape and delta.shape == (2 * 3,)
    assert bool((delta.abs() < 1e-4).all())  # linear model: IG is exact for each draw


# --------------------------------------------------------------------------------------------
# The model is never lost (through the presets)
# --------------------------------------------------------------------------------------------


def test_model_bit_identical_after_noisegrad_and_fusiongrad() -> None:
    net = awkward_net()
    before = snapshot(net)
    x = torch.rand(3, 1, 5, 5)
    with pytest.warns(UserWarning, match="training mode"):
        NoiseGrad(net).attribute(x, target=0, n_weight_samples=4, generator=0)
    assert_identical(before, net)
    with pytest.warns(UserWarning, match="training mode"):
        FusionGrad(net).attribute(x, target=0, n_weight_samples=2, nt_samples=3, generator=0)
    assert_identical(before, net)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_model_bit_identical_when_the_third_draw_raises(exc: type[BaseException]) -> None:
    model = CountingModel(awkward_net(), raise_at=3, exc=exc)
    before = snapshot(model)
    with pytest.raises(exc, match="third draw"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        NoiseGrad(model).attribute(torch.rand(2, 1, 5, 5), target=0, generator=0)
    assert model.calls == 3
    assert_identical(before, model)


def test_train_mode_warns_eval_mode_does_not() -> None:
    model = mlp()
    x = torch.rand(2, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        NoiseGrad(model).attribute(x, target=0, n_weight_samples=2)
    model[0].train()
    with pytest.warns(UserWarning, match=r"training mode \(0\)"):
        NoiseGrad(model).attribute(x, target=0, n_weight_samples=2)


# --------------------------------------------------------------------------------------------
# Names and bad input
# --------------------------------------------------------------------------------------------


def test_names_alias_and_captum_nesting() -> None:
    assert NoiseGrad.get_name() == "NoiseGrad"
    assert FusionGrad.get_name() == "FusionGrad"
    assert NoiseGradPlusPlus is FusionGrad
    model = mlp()
    ng = NoiseGrad(model)
    assert isinstance(ng.attribution_method, Saliency)
    # Insights / NoiseTunnel call the undecorated function.
    out = NoiseGrad.attribute.__wrapped__(ng, torch.rand(2, 5), target=0, n_weight_samples=2)
    assert out.shape == (2, 5)


def test_bad_input_errors_name_the_argument() -> None:
    with pytest.raises(TypeError, match=r"nn\.Module"):
        NoiseGrad(lambda x: x.sum(1, keepdim=True))
    with pytest.raises(TypeError, match=r"nn\.Module"):
        FusionGrad(lambda x: x.sum(1, keepdim=True))
    ng, fg = NoiseGrad(mlp()), FusionGrad(mlp())
    x = torch.rand(2, 5)
    with pytest.raises(ValueError, match="n_weight_samples"):
        ng.attribute(x, target=0, n_weight_samples=0)
    with pytest.raises(ValueError, match="n_weight_samples"):
        fg.attribute(x, target=0, n_weight_samples=-1)
    with pytest.raises(TypeError, match="n_weight_samples"):
        ng.attribute(x, target=0, n_weight_samples=2.0)
    with pytest.raises(ValueError, match="stdev"):
        ng.attribute(x, target=0, weight_stdev=-0.1)
    with pytest.raises(ValueError, match="stdev"):
        fg.attribute(x, target=0, weight_stdev=math.nan)
    with pytest.raises(ValueError, match="noise_type"):
        ng.attribute(x, target=0, noise_type="uniform")
    with pytest.raises(ValueError, match="selects no parameter"):
        ng.attribute(x, target=0, parameters="nothing")
    with pytest.raises(ValueError, match="nt_samples"):
        fg.attribute(x, target=0, nt_samples=0)
    with pytest.raises(ValueError, match="stdevs"):
        fg.attribute(x, target=0, stdevs=-1.0)


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def toy_classifier() -> tuple[nn.Module, Tensor, Tensor]:
    """A linear classifier on 3 Gaussian blobs: clean accuracy ~ 1, noise degrades it."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    y = torch.arange(300) % 3
    x = centres[y] + 0.5 * torch.randn(300, 2, generator=g)
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(centres)
        model.bias.zero_()
    return model.eval(), x, y


def test_calibration_finds_the_largest_accepted_scale() -> None:
    model, x, y = toy_classifier()
    before = snapshot(model)
    res = calibrate_weight_noise(model, (x, y), 0.05, generator=0, show_progress=False)
    assert_identical(before, model)
    assert res.accuracy_clean > 0.95
    assert res.threshold == pytest.approx(0.95 * res.accuracy_clean)
    assert 0 < res.stdev < 2.0 and res.accuracy_noisy >= res.threshold
    assert any(h.stdev == res.stdev and h.accepted for h in res.history)
    # Bracketed: the search stops once hi - lo <= tol * hi, so a scale <= lo / (1 - tol) failed.
    rejected = [h.stdev for h in res.history if not h.accepted]
    assert rejected and min(rejected) <= res.stdev / (1 - 0.05) + 1e-12
    assert len(res.history) <= 12
    again = calibrate_weight_noise(model, (x, y), 0.05, generator=0, show_progress=False)
    assert again == res
    other = calibrate_weight_noise(model, (x, y), 0.05, generator=1, show_progress=False)
    assert other.history != res.history


def test_calibration_accepts_loaders_and_iterators() -> None:
    model, x, y = toy_classifier()
    ref = calibrate_weight_noise(model, (x, y), generator=0, show_progress=False, max_iter=4)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)
    from_loader = calibrate_weight_noise(
        model, loader, generator=0, show_progress=False, max_iter=4
    )
    batches = ((x[i : i + 50], y[i : i + 50]) for i in range(0, 300, 50))
    from_iter = calibrate_weight_noise(model, batches, generator=0, show_progress=False, max_iter=4)
    assert [h.stdev for h in from_loader.history] == [h.stdev for h in ref.history]
    for a, b in zip(from_iter.history, ref.history):
        assert a.stdev == b.stdev and a.accuracy == pytest.approx(b.accuracy)


def test_calibration_edge_cases_warn() -> None:
    model, x, y = toy_classifier()
    with pytest.warns(UserWarning, match="max_stdev"):
        res = calibrate_weight_noise(
            model, (x, y), 0.5, max_stdev=0.01, initial_stdev=0.01, show_progress=False
        )
    assert res.stdev == 0.01
    with pytest.warns(UserWarning, match="returning 0.0"):
        res = calibrate_weight_noise(
            model, (x, y), 0.01, initial_stdev=1.9, max_iter=1, show_progress=False
        )
    assert res.stdev == 0.0 and res.accuracy_noisy == res.accuracy_clean


def test_calibration_bad_input() -> None:
    model, x, y = toy_classifier()
    ok = {"show_progress": False}
    with pytest.raises(ValueError, match="target_drop"):
        calibrate_weight_noise(model, (x, y), 1.5, **ok)
    with pytest.raises(ValueError, match="n_draws"):
        calibrate_weight_noise(model, (x, y), n_draws=0, **ok)
    with pytest.raises(ValueError, match="max_iter"):
        calibrate_weight_noise(model, (x, y), max_iter=0, **ok)
    with pytest.raises(ValueError, match="max_stdev"):
        calibrate_weight_noise(model, (x, y), max_stdev=-1.0, **ok)
    with pytest.raises(ValueError, match="initial_stdev"):
        calibrate_weight_noise(model, (x, y), initial_stdev=3.0, **ok)
    with pytest.raises(ValueError, match="tol"):
        calibrate_weight_noise(model, (x, y), tol=0.0, **ok)
    with pytest.raises(TypeError, match="`data`"):
        calibrate_weight_noise(model, x, **ok)
    with pytest.raises(ValueError, match="labels"):
        calibrate_weight_noise(model, (x, y.float()), **ok)
    with pytest.raises(TypeError, match="`model`"):
        calibrate_weight_noise(lambda t: t, (x, y), **ok)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no example"):
        calibrate_weight_noise(model, (x, (y + 1) % 3), **ok)
    with pytest.raises(ValueError, match="selects no parameter"):
        calibrate_weight_noise(model, (x, y), parameters="nothing", **ok)


@pytest.mark.slow
def test_calibration_on_the_trained_digits_cnn() -> None:
    digits = pytest.importorskip("captum_smooth.app.models.digits")
    pytest.importorskip("sklearn")
    model = digits.trained_digits_cnn(0)
    data = digits.load_digits_data()
    before = snapshot(model)
    # Calibrate on half the test set, check on the other half with fresh weight draws.
    half = len(data.y_test) // 2
    calib = (data.x_test[:half], data.y_test[:half])
    check = (data.x_test[half:], data.y_test[half:])
    res = calibrate_weight_noise(model, calib, 0.05, generator=0, show_progress=False)
    assert_identical(before, model)
    assert res.accuracy_clean > 0.95 and 0.0 < res.stdev < 2.0
    assert res.accuracy_noisy >= 0.95 * res.accuracy_clean
    again = calibrate_weight_noise(model, calib, 0.05, generator=0, show_progress=False)
    assert again == res
    # Held out: the mean accuracy of 20 fresh draws at the found scale keeps the requested share
    # within sampling error. Standard error of an accuracy on n examples: sqrt(p (1 - p) / n).
    x, y = check
    n = len(y)
    clean = (model(x).argmax(1) == y).float().mean().item()
    gen = torch.Generator().manual_seed(123)
    accs = []
    with torch.no_grad(), WeightNoise(res.stdev).session(model) as perturber:
        for _ in range(20):
            perturber.perturb(gen)
            accs.append((model(x).argmax(1) == y).float().mean().item())
    noisy = sum(accs) / len(accs)
    p = 0.95 * clean
    tolerance = 3 * math.sqrt(p * (1 - p) / n) + 3 * math.sqrt(clean * (1 - clean) / n)
    assert noisy >= 0.95 * clean - tolerance, (noisy, clean, tolerance)
    # ... and the scale is not far too small: 1.5 times it loses more than the allowed share.
    with torch.no_grad(), WeightNoise(1.5 * res.stdev).session(model) as perturber:
        accs = []
        for _ in range(20):
            perturber.perturb(gen)
            accs.append((model(x).argmax(1) == y).float().mean().item())
    assert sum(accs) / len(accs) < 0.95 * clean + tolerance
    assert_identical(before, model)
