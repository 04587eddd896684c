"""SmoothTaylor and adaptive noising, checked against the mathematics.

Facts used (Goh et al., ICPR 2020; design doc "SmoothTaylor"):

* linear f: for the sampled roots, sum(R) == f(x) - mean_k f(z_k) exactly;
* f = 1/2 sum a_i x_i^2: R_i = (x_i - z_i) a_i z_i = -a_i (s x_i t + s^2 t^2) per root, so
  E[R_i] = -s^2 a_i for any zero-mean unit-variance kernel t, with per-root variance
  a_i^2 (s^2 x_i^2 + s^4 (E t^4 - 1)) for a symmetric kernel (E t^3 = 0).
"""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import LayerGradientXActivation, Saliency
from torch import Tensor, nn

from captum_smooth import (
    AdaptiveNoising,
    PerExampleSigma,
    RangeShareSigma,
    SmoothTaylor,
    SmoothTunnel,
    TaylorTransform,
    adaptive_smooth_taylor,
    get_kernel,
    kernel_names,
)
from captum_smooth.metrics import total_variation

from analytic_models import Linear, Probe


class Quadratic(nn.Module):
    """f(x) = 1/2 sum a_i x_i^2: E[R_i] = -sigma^2 a_i."""

    def __init__(self, a: Tensor) -> None:
        super().__init__()
        self.a = a

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * (self.a * x.flatten(1) ** 2).sum(1, keepdim=True)


class TwoInputLinear(nn.Module):
    """f(x, y) = x . u + y . v, recording the roots of both inputs."""

    def __init__(self, dx: int, dy: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.u = torch.randn(dx, generator=g, dtype=torch.float64)
        self.v = torch.randn(dy, generator=g, dtype=torch.float64)
        self.seen: list[tuple[Tensor, Tensor]] = []

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        self.seen.append((x.detach().clone(), y.detach().clone()))
        return (x.flatten(1) @ self.u + y.flatten(1) @ self.v).unsqueeze(1)


def _small_cnn(seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 3),
    )
    return net.to(dtype).eval()


def _images(n: int = 4, seed: int = 1, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _roots_per_example(seen: list[Tensor], batch: int) -> Tensor:
    """The probe's chunks ``(B * k, ...)`` example-major -> ``(B, N, ...)``."""
    return torch.cat([s.reshape(batch, -1, *s.shape[1:]) for s in seen], dim=1)


# ----------------------------------------------------------------------------- exact facts


@pytest.mark.parametrize("kernel", ["gaussian", "laplace", "uniform"])
@pytest.mark.parametrize("chunk", [None, 7])
def test_linear_sum_is_f_minus_mean_f_of_the_sampled_roots(kernel: str, chunk: int | None) -> None:
    model = Linear(12, n_out=2).double()
    probe = Probe(model)
    x = torch.randn(3, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    attr = SmoothTaylor(probe).attribute(
        x, target=1, nt_samples=30, stdevs=0.7, generator=0, kernel=kernel,
        nt_samples_batch_size=chunk,
    )  # fmt: skip
    roots = _roots_per_example(probe.seen, 3)  # (B, N, D)
    assert roots.shape == (3, 30, 12)
    with torch.no_grad():
        f_x = model(x)[:, 1]
        f_z = model(roots.reshape(-1, 12))[:, 1].reshape(3, 30)
    torch.testing.assert_close(attr.sum(1), f_x - f_z.mean(1), rtol=0, atol=1e-12)
    # And the terms themselves: mean_k (x - z_k) * w.
    expected = ((x.unsqueeze(1) - roots) * model.weight[1]).mean(1)
    torch.testing.assert_close(attr, expected, rtol=0, atol=1e-12)


def test_tuple_inputs_keep_shapes_and_sum_over_both_inputs() -> None:
    model = TwoInputLinear(6, 4)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 2, 3, dtype=torch.float64, generator=g)
    y = torch.randn(2, 4, dtype=torch.float64, generator=g)
    ax, ay = SmoothTaylor(model).attribute((x, y), nt_samples=25, stdevs=0.4, generator=1)
    assert ax.shape == x.shape and ay.shape == y.shape
    zx = _roots_per_example([s[0] for s in model.seen], 2)
    zy = _roots_per_example([s[1] for s in model.seen], 2)
    f_x = x.flatten(1) @ model.u + y @ model.v
    f_z = zx.flatten(2) @ model.u + zy @ model.v
    total = ax.flatten(1).sum(1) + ay.sum(1)
    torch.testing.assert_close(total, f_x - f_z.mean(1), rtol=0, atol=1e-12)


def test_one_root_is_the_gradient_times_the_difference() -> None:
    net = _small_cnn(dtype=torch.float64)
    probe = Probe(net)
    x = _images(2, dtype=torch.float64)
    attr = SmoothTaylor(probe).attribute(x, target=2, nt_samples=1, stdevs=0.2, generator=4)
    z = probe.seen[0].clone().requires_grad_()
    (grad,) = torch.autograd.grad(net(z)[:, 2].sum(), z)
    torch.testing.assert_close(attr, (x - z.detach()) * grad, rtol=1e-12, atol=1e-14)


def test_transform_in_the_tunnel_is_the_preset() -> None:
    net = _small_cnn()
    x = _images(3)
    preset = SmoothTaylor(net).attribute(x, target=0, nt_samples=20, stdevs=0.3, generator=7)
    direct = SmoothTunnel(Saliency(net)).attribute(
        x, nt_samples=20, stdevs=0.3, generator=7, nt_samples_batch_size="auto",
        sample_transform=TaylorTransform(), target=0, abs=False,
    )  # fmt: skip
    assert torch.equal(preset, direct)
    # abs=True is honoured when asked for, and differs from the signed default.
    absolute = SmoothTaylor(net).attribute(
        x, target=0, nt_samples=20, stdevs=0.3, generator=7, abs=True
    )
    direct_abs = SmoothTunnel(Saliency(net)).attribute(
        x, nt_samples=20, stdevs=0.3, generator=7, nt_samples_batch_size="auto",
        sample_transform=TaylorTransform(), target=0, abs=True,
    )  # fmt: skip
    assert torch.equal(absolute, direct_abs)
    assert not torch.allclose(absolute, preset)


def test_same_seed_same_result_and_captum_contract() -> None:
    net = _small_cnn()
    x = _images(2)
    st = SmoothTaylor(net)
    a = st.attribute(x, target=1, nt_samples=10, generator=3)
    b = st.attribute(x, target=1, nt_samples=10, generator=3)
    assert isinstance(a, Tensor) and torch.equal(a, b)
    assert st.get_name() == "SmoothTaylor"
    assert st.last_report is not None and st.last_report.n_samples.tolist() == [10, 10]
    assert st.last_sigma is None


# ----------------------------------------------------------------------------- expectation


def _quadratic_setup(d: int = 1000, batch: int = 2) -> tuple[Quadratic, Tensor, Tensor]:
    g = torch.Generator().manual_seed(11)
    a = torch.randn(d, dtype=torch.float64, generator=g)  # both signs: catches abs=True
    x = torch.randn(batch, d, dtype=torch.float64, generator=g)
    return Quadratic(a), a, x


def _assert_standard_normal(z: Tensor) -> None:
    """``z`` holds ``D`` independent, approximately standard normal scores."""
    d = z.numel()
    assert abs(z.sum().item() / math.sqrt(d)) < 5.0, "biased: mean of scores too far from 0"
    assert abs(z.pow(2).mean().item() - 1.0) < 5.0 * math.sqrt(2.0 / d), "wrong spread"


@pytest.mark.parametrize("sigma_kind", ["float", "per_example", "range_share"])
def test_quadratic_expectation_gaussian_with_analytic_variance(sigma_kind: str) -> None:
    model, a, x = _quadratic_setup()
    n = 400
    if sigma_kind == "float":
        stdevs: object = 0.5
        sigma = torch.full((2, 1), 0.5, dtype=torch.float64)
    elif sigma_kind == "per_example":
        sigma = torch.tensor([[0.3], [0.8]], dtype=torch.float64)
        stdevs = PerExampleSigma(sigma.flatten())
    else:
        # A share of the range hi - lo = 8: sigma = 0.05 * 8 = 0.4.
        stdevs = RangeShareSigma(0.05, bounds=(-4.0, 4.0))
        sigma = torch.full((2, 1), 0.4, dtype=torch.float64)
        x = x.clamp(-4.0, 4.0)
    attr = SmoothTaylor(model).attribute(x, target=0, nt_samples=n, stdevs=stdevs, generator=2)
    expected = -(sigma**2) * a
    var = a**2 * (sigma**2 * x**2 + 2.0 * sigma**4)  # Gaussian: E t^4 = 3
    _assert_standard_normal((attr - expected) / (var / n).sqrt())
    # The test has power: the wrong scale (sigma instead of sigma^2) is rejected.
    with pytest.raises(AssertionError):
        _assert_standard_normal((attr + sigma * a) / (var / n).sqrt())


#: Fourth moments E t^4 of the unit-variance kernels known in closed form.
_FOURTH_MOMENT = {"gaussian": 3.0, "uniform": 9.0 / 5.0, "laplace": 6.0, "triangular": 2.4}


def _fourth_moment(kernel: str) -> float:
    if kernel in _FOURTH_MOMENT:
        return _FOURTH_MOMENT[kernel]
    # Others: from 4 million draws (relative error well below 1 % for these light tails).
    t = get_kernel(kernel).sample(
        (4_000_000,), generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    return float(t.pow(4).mean())


@pytest.mark.parametrize("kernel", [k for k in kernel_names() if k != "student_t"])
def test_quadratic_expectation_any_kernel(kernel: str) -> None:
    # Only the kernel's variance enters E[R]; its 4th moment enters the tolerance. (student_t
    # at df=3 has no finite 4th moment: the mean still holds but no tolerance from N does.)
    model, a, x = _quadratic_setup()
    n, sigma = 400, 0.6
    attr = SmoothTaylor(model).attribute(
        x, target=0, nt_samples=n, stdevs=sigma, generator=5, kernel=kernel
    )
    var = a**2 * (sigma**2 * x**2 + sigma**4 * (_fourth_moment(kernel) - 1.0))
    _assert_standard_normal((attr + sigma**2 * a) / (var / n).sqrt())


def test_vargrad_gives_the_variance_of_the_taylor_terms() -> None:
    # Same roots, nt_type="vargrad": the per-root variance, a^2 (s^2 x^2 + 2 s^4) (Gaussian).
    model, a, x = _quadratic_setup()
    n, sigma = 400, 0.6
    var_hat = SmoothTaylor(model).attribute(
        x, target=0, nt_samples=n, stdevs=sigma, generator=5, nt_type="vargrad"
    )
    var = a**2 * (sigma**2 * x**2 + 2.0 * sigma**4)
    ratio = (var_hat / var).mean().item()
    # Each ratio has mean (n-1)/n and a relative sd below sqrt(kurtosis / n) ~ 0.25.
    assert abs(ratio - (n - 1) / n) < 5 * 0.25 / math.sqrt(var.numel())


# ----------------------------------------------------------------------------- bad input


def test_layer_methods_get_a_clear_error() -> None:
    net = _small_cnn()
    method = LayerGradientXActivation(net, net[1])
    with pytest.raises(ValueError, match="layer"):
        SmoothTaylor(net, method).attribute(_images(2), target=0, nt_samples=2, generator=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(nt_samples=0), ValueError, "nt_samples"),
        (dict(nt_samples=-2), ValueError, "nt_samples"),
        (dict(stdevs=-0.5), ValueError, "stdevs"),
        (dict(kernel="nope"), ValueError, "kernel"),
        (dict(adaptive="total_variation"), TypeError, "adaptive"),
        (dict(nt_samples=0, adaptive=AdaptiveNoising()), ValueError, "nt_samples"),
        (
            dict(adaptive=AdaptiveNoising(), return_convergence_delta=True),
            ValueError,
            "return_convergence_delta",
        ),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        SmoothTaylor(_small_cnn()).attribute(_images(2), target=0, generator=0, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(objective="smoothness"), ValueError, "objective"),
        (dict(objective=3), TypeError, "objective"),
        (dict(step=0.0), ValueError, "step"),
        (dict(step=-0.1), ValueError, "step"),
        (dict(decay=1.0), ValueError, "decay"),
        (dict(decay=0.0), ValueError, "decay"),
        (dict(patience=0), ValueError, "patience"),
        (dict(patience=1.5), TypeError, "patience"),
        (dict(max_iter=-1), ValueError, "max_iter"),
        (dict(max_evaluations=0), ValueError, "max_evaluations"),
        (dict(sigma0=-0.2), ValueError, "sigma0"),
        (dict(sigma0=torch.tensor([0.1, -1.0])), ValueError, "sigma0"),
        (dict(objective_kwargs={"generator": 0}), ValueError, "generator"),
    ],
)
def test_bad_adaptive_configuration(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        AdaptiveNoising(**kwargs)


def test_builtin_objective_needs_one_image_and_callables_one_value_per_example() -> None:
    model = TwoInputLinear(6, 4)
    x, y = torch.rand(2, 6, dtype=torch.float64), torch.rand(2, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="objective"):
        SmoothTaylor(model).attribute(
            (x, y), nt_samples=4, generator=0, adaptive=AdaptiveNoising("total_variation")
        )
    bad = AdaptiveNoising(lambda maps, inputs, target: maps[0].sum())
    with pytest.raises(ValueError, match="objective"):
        SmoothTaylor(model).attribute((x, y), nt_samples=4, generator=0, adaptive=bad)


# ----------------------------------------------------------------------------- adaptive


def _tv(maps: Tensor) -> Tensor:
    return total_variation(maps, n_scales=3)


TV = AdaptiveNoising("total_variation", objective_kwargs={"n_scales": 3})


def test_adaptive_never_worse_than_its_start_and_consistent() -> None:
    net, x = _small_cnn(), _images(4)
    st = SmoothTaylor(net)
    attr = st.attribute(x, target=1, nt_samples=16, generator=0, adaptive=TV)
    res = st.last_adaptive
    assert res is not None and isinstance(attr, Tensor) and attr.shape == x.shape
    assert torch.equal(st.last_sigma, res.sigma)
    # Start: the authors' sigma_0 = mean |x| per example.
    torch.testing.assert_close(res.sigma0, x.abs().flatten(1).mean(1))
    # The objective reported is the one of the maps returned ...
    torch.testing.assert_close(res.objective, _tv(attr).double())
    # ... never worse than at sigma_0, whose value an independent start-only run reproduces.
    start_only = adaptive_smooth_taylor(
        net, x, target=1, nt_samples=16, generator=0,
        noising=AdaptiveNoising("total_variation", objective_kwargs={"n_scales": 3}, max_iter=0),
    )  # fmt: skip
    assert torch.equal(start_only.sigma, res.sigma0)
    torch.testing.assert_close(res.start_objective, start_only.objective)
    torch.testing.assert_close(start_only.objective, _tv(start_only.attributions).double())
    assert bool((res.objective <= res.start_objective).all())
    # The search did something: at least one example moved and improved.
    assert bool((res.objective < res.start_objective).any())
    assert bool((res.sigma != res.sigma0).any())
    # History: the start evaluates everyone; later evaluations only the searching examples.
    assert torch.equal(res.history[0].rows, torch.arange(4))
    assert res.n_calls == len(res.history)
    counts = torch.zeros(4, dtype=torch.long)
    for ev in res.history:
        counts[ev.rows] += 1
    assert torch.equal(counts, res.n_evaluations)
    # With adaptive off again, Captum's contract and no stale adaptive state.
    st.attribute(x, target=1, nt_samples=4, generator=0)
    assert st.last_adaptive is None and st.last_sigma is None


def test_adaptive_reproduces_exactly_under_a_seed() -> None:
    net, x = _small_cnn(), _images(3)
    runs = [
        adaptive_smooth_taylor(net, x, target=0, nt_samples=12, generator=seed, noising=TV)
        for seed in (5, 5, 6)
    ]
    assert torch.equal(runs[0].attributions, runs[1].attributions)
    assert torch.equal(runs[0].sigma, runs[1].sigma)
    assert len(runs[0].history) == len(runs[1].history)
    assert not torch.equal(runs[0].attributions, runs[2].attributions)
    # A torch.Generator seeded alike also reproduces.
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    a = adaptive_smooth_taylor(net, x, target=0, nt_samples=12, generator=g1, noising=TV)
    b = adaptive_smooth_taylor(net, x, target=0, nt_samples=12, generator=g2, noising=TV)
    assert torch.equal(a.attributions, b.attributions)


def test_common_random_numbers_do_not_depend_on_the_other_examples() -> None:
    # Example 0's roots depend on (seed, row) only: changing example 1, which changes which
    # examples are still searching at each evaluation, leaves example 0's search unchanged.
    net = _small_cnn(dtype=torch.float64)
    x = _images(3, dtype=torch.float64)
    x_other = x.clone()
    x_other[1] = _images(1, seed=99, dtype=torch.float64)[0]
    a = adaptive_smooth_taylor(net, x, target=0, nt_samples=12, generator=1, noising=TV)
    b = adaptive_smooth_taylor(net, x_other, target=0, nt_samples=12, generator=1, noising=TV)
    for row in (0, 2):
        assert a.sigma[row] == b.sigma[row]
        torch.testing.assert_close(a.attributions[row], b.attributions[row])
    # Nor on the chunk sizes.
    c = adaptive_smooth_taylor(
        net, x, target=0, nt_samples=12, generator=1, noising=TV, nt_samples_batch_size=5
    )
    torch.testing.assert_close(a.sigma, c.sigma, rtol=0, atol=0)
    torch.testing.assert_close(a.attributions, c.attributions)
    # And at one sigma, the roots are x + sigma * t with the same t at every sigma.
    probe = Probe(net)
    sigmas = torch.tensor([0.2, 0.2, 0.2], dtype=torch.float64)
    for s0 in (sigmas, 2 * sigmas):
        adaptive_smooth_taylor(
            probe, x, target=0, nt_samples=5, generator=1,
            noising=AdaptiveNoising(lambda m, i, t: m.flatten(1).sum(1), sigma0=s0, max_iter=0),
        )  # fmt: skip
    t = [(_roots_per_example(probe.seen[i : i + 1], 3) - x.unsqueeze(1)) for i in (0, 1)]
    torch.testing.assert_close(2 * t[0], t[1])


def test_adaptive_respects_the_evaluation_budget() -> None:
    net, x = _small_cnn(), _images(4)
    probe = Probe(net)
    n = 8
    for budget in (1, 2, 5):
        probe.seen.clear()
        noising = AdaptiveNoising(
            "total_variation", objective_kwargs={"n_scales": 3}, max_evaluations=budget
        )
        res = adaptive_smooth_taylor(probe, x, target=2, nt_samples=n, generator=0, noising=noising)
        assert int(res.n_evaluations.max()) <= budget
        # Every forward row is one gradient evaluation: n roots per example evaluation.
        rows = sum(s.shape[0] for s in probe.seen)
        assert rows == n * int(res.n_evaluations.sum())
    assert int(res.n_evaluations.max()) == 5  # the budget, not the schedule, stopped it


def test_schedule_stops_after_patience_and_max_iter() -> None:
    model = Linear(5).double()
    x = torch.rand(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # An objective that never improves: every iteration fails, so each example stops after
    # `patience` iterations of two evaluations each.
    flat = AdaptiveNoising(lambda m, i, t: torch.zeros(m.shape[0]), patience=2)
    res = adaptive_smooth_taylor(model, x, target=0, nt_samples=4, generator=0, noising=flat)
    assert res.n_iterations == 2 and res.n_evaluations.tolist() == [5, 5]
    assert torch.equal(res.sigma, res.sigma0)
    # Linear f: R = -sigma * mean_k(t_k) * w, so |R| is exactly proportional to sigma under
    # common random numbers. Maximising it accepts every up-step until max_iter.
    grow = AdaptiveNoising(lambda m, i, t: -m.abs().sum(1), max_iter=4)
    res = adaptive_smooth_taylor(model, x, target=0, nt_samples=4, generator=0, noising=grow)
    assert res.n_iterations == 4 and res.n_evaluations.tolist() == [5, 5]
    torch.testing.assert_close(res.sigma, res.sigma0 + 0.4)


def test_adaptive_finds_the_sigma_a_known_objective_asks_for() -> None:
    # f = 1/2 sum x_i^2: the element-mean of R is ~ -sigma^2. Asking for a mean of -1 makes
    # sigma = 1 the optimum; the search starts at mean |x| ~ 0.4 and walks there in steps of 0.1.
    d = 500
    model = Quadratic(torch.ones(d, dtype=torch.float64))
    x = torch.rand(3, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) - 0.5
    x = x * 1.6
    noising = AdaptiveNoising(lambda maps, inputs, target: (maps.mean(1) + 1.0) ** 2)
    res = adaptive_smooth_taylor(model, x, target=0, nt_samples=64, generator=3, noising=noising)
    assert bool((res.sigma0 < 0.5).all())
    assert bool(((res.sigma - 1.0).abs() < 0.1).all()), res.sigma


def test_aupc_objective_is_maximised_and_reproducible() -> None:
    net, x = _small_cnn(), _images(3)
    noising = AdaptiveNoising("aupc", objective_kwargs={"window": 2}, max_iter=5)
    a = adaptive_smooth_taylor(net, x, target=1, nt_samples=8, generator=2, noising=noising)
    b = adaptive_smooth_taylor(net, x, target=1, nt_samples=8, generator=2, noising=noising)
    assert torch.equal(a.attributions, b.attributions) and torch.equal(a.objective, b.objective)
    assert bool((a.objective >= a.start_objective).all())
    assert bool((a.objective > a.start_objective).any())
    for ev in a.history[1:]:
        # Accepted candidates improved on the best so far, in AUPC's direction (higher).
        assert bool((ev.objective[ev.accepted] > a.start_objective[ev.rows][ev.accepted]).all())


@pytest.mark.parametrize(("name", "sign"), [("deletion_auc", 1.0), ("insertion_auc", -1.0)])
def test_deletion_and_insertion_objectives_go_the_right_way(name: str, sign: float) -> None:
    net, x = _small_cnn(), _images(3)
    noising = AdaptiveNoising(name, objective_kwargs={"n_steps": 16}, max_iter=3)
    res = adaptive_smooth_taylor(net, x, target=1, nt_samples=8, generator=2, noising=noising)
    assert bool((sign * res.objective <= sign * res.start_objective).all())
    assert AdaptiveNoising(name).direction == sign


def test_tuple_inputs_with_a_callable_objective() -> None:
    model = TwoInputLinear(6, 4)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 6, dtype=torch.float64, generator=g), torch.rand(2, 4, generator=g)
    y = y.double()
    seen: list[int] = []

    def objective(maps: tuple[Tensor, Tensor], inputs: tuple[Tensor, Tensor], target: object):
        assert isinstance(maps, tuple) and len(maps) == 2
        assert maps[0].shape[0] == inputs[0].shape[0]
        seen.append(maps[0].shape[0])
        return maps[0].abs().sum(1) + maps[1].abs().sum(1)

    st = SmoothTaylor(model)
    out = st.attribute(
        (x, y), nt_samples=6, generator=0, adaptive=AdaptiveNoising(objective, max_iter=3)
    )
    assert isinstance(out, tuple) and out[0].shape == x.shape and out[1].shape == y.shape
    assert seen[0] == 2 and st.last_sigma is not None and st.last_sigma.shape == (2,)


def test_progress_bar_runs(capsys: pytest.CaptureFixture[str]) -> None:
    res = adaptive_smooth_taylor(
        _small_cnn(), _images(2), target=0, nt_samples=4, generator=0,
        noising=AdaptiveNoising("total_variation", objective_kwargs={"n_scales": 3}, max_iter=2),
        show_progress=True,
    )  # fmt: skip
    assert res.n_iterations <= 2
    assert "Adaptive noising" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("return_error", True),
        ("tolerance", 0.1),
        ("min_samples", 4),
        ("max_samples", 8),
        ("stdevs", 0.5),
    ],
)
def test_adaptive_refuses_the_options_it_cannot_honour(option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        SmoothTaylor(_small_cnn()).attribute(
            _images(2), target=0, nt_samples=4, generator=0, adaptive=TV, **{option: value}
        )


def test_adaptive_evaluations_go_through_the_preset_path() -> None:
    # Every evaluation is an ordinary SmoothTaylor call (configure, the loop), on the rows still
    # searching, with one sigma per example and the search's common random numbers.
    seen: list[int] = []

    class Recording(SmoothTaylor):
        def configure(self, inputs: Tensor, params: dict, given: set[str]) -> dict:
            seen.append(inputs.shape[0])
            return super().configure(inputs, params, given)

    net, x = _small_cnn(), _images(4)
    st = Recording(net)
    st.attribute(x, target=[0, 1, 2, 1], nt_samples=6, generator=0, adaptive=TV)
    res = st.last_adaptive
    assert res is not None
    assert seen == [ev.rows.numel() for ev in res.history]
    # The last report is the last evaluation's: its rows, nt_samples roots each.
    assert st.last_report is not None
    assert st.last_report.n_samples.tolist() == [6] * res.history[-1].rows.numel()
    # A per-example target follows the rows: example 0 (target 0 in both runs) searches and
    # ends alike whatever the other examples' targets; the others do not.
    same = adaptive_smooth_taylor(net, x, target=0, nt_samples=6, generator=0, noising=TV)
    assert same.sigma[0] == res.sigma[0]
    torch.testing.assert_close(same.attributions[0], res.attributions[0])
    assert not torch.equal(same.attributions[1:], res.attributions[1:])
