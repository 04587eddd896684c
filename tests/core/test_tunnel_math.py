"""Facts from the mathematics of smoothing (methods.md), checked through SmoothTunnel."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import IntegratedGradients, Saliency

from captum_smooth import SmoothTunnel, kernel_names
from captum_smooth.noise.sigma import RangeShareSigma

from analytic_models import Cubic, Linear, Probe


@pytest.mark.parametrize("kernel", kernel_names())
def test_linear_model_gives_weights_for_every_kernel(kernel: str) -> None:
    model = Linear(5)
    x = torch.randn(3, 5)
    attr = SmoothTunnel(Saliency(model)).attribute(
        x, nt_samples=9, stdevs=0.7, kernel=kernel, target=1, abs=False, generator=0
    )
    expected = model.weight[1].detach().expand(3, 5)
    torch.testing.assert_close(attr, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kernel", ["gaussian", "laplace", "uniform", "student_t"])
def test_cubic_expectation_checks_the_sigma_convention(kernel: str) -> None:
    # E[3 (x + t)^2] = 3 x^2 + 3 sigma^2 for any zero-mean kernel of std sigma.
    sigma, n = 0.5, 4000
    x = torch.linspace(-1.0, 1.0, 6).reshape(1, 6)
    tunnel = SmoothTunnel(Saliency(Cubic()))
    kw = dict(nt_samples=n, nt_samples_batch_size=500, stdevs=sigma, kernel=kernel, abs=False)
    mean = tunnel.attribute(x, generator=1, **kw)
    var = tunnel.attribute(x, nt_type="vargrad", generator=1, **kw)
    expected = 3 * x**2 + 3 * sigma**2
    # Standard error from the sample variance of the very same draws; 5 SE bound.
    stderr = (var / n).sqrt()
    assert bool(((mean - expected).abs() <= 5 * stderr + 1e-6).all()), (mean, expected, stderr)


def test_cubic_gaussian_standard_error_matches_theory() -> None:
    # Var[3 (x+t)^2] = 9 (4 x^2 sigma^2 + 2 sigma^4) for Gaussian t.
    sigma, n = 0.3, 2000
    x = torch.tensor([[0.0, 0.5, -1.0]])
    var = SmoothTunnel(Saliency(Cubic())).attribute(
        x, nt_type="vargrad", nt_samples=n, stdevs=sigma, abs=False, generator=2
    )
    expected = 9 * (4 * x**2 * sigma**2 + 2 * sigma**4)
    # Relative error of a sample variance ~ sqrt((kurtosis - 1) / n); generous factor.
    torch.testing.assert_close(var, expected, rtol=8 * math.sqrt(8 / n), atol=1e-4)


def test_vargrad_is_never_negative_and_matches_two_pass() -> None:
    # Large mean, tiny variance: E[a^2] - E[a]^2 would cancel; the streaming M2 must not.
    x = torch.full((2, 4), 1000.0, dtype=torch.float64)
    probe = Probe(Cubic())
    var = SmoothTunnel(Saliency(probe)).attribute(
        x,
        nt_type="vargrad",
        nt_samples=10,
        nt_samples_batch_size=3,
        stdevs=1e-4,
        abs=False,
        generator=0,
    )
    assert bool((var >= 0).all())
    # The chunks are example-major: regroup every example's noisy copies.
    copies = torch.cat([chunk.reshape(2, -1, 4) for chunk in probe.seen], dim=1)
    assert copies.shape == (2, 10, 4)
    two_pass = (3 * copies**2).var(dim=1, unbiased=False)
    torch.testing.assert_close(var, two_pass, rtol=1e-6, atol=1e-12)


def test_chunked_equals_unchunked_for_one_example() -> None:
    # One example, one input: the draw order is the same for every chunking. (torch draws
    # normals in blocks of 16 values, so each chunk draws a multiple of 16 here.)
    model = torch.nn.Sequential(torch.nn.Linear(16, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    x = torch.randn(1, 16)
    tunnel = SmoothTunnel(Saliency(model))
    full = tunnel.attribute(x, nt_samples=12, stdevs=0.4, target=0, generator=5)
    for size in (1, 5, "auto"):
        chunked = tunnel.attribute(
            x, nt_samples=12, nt_samples_batch_size=size, stdevs=0.4, target=0, generator=5
        )
        torch.testing.assert_close(chunked, full, rtol=1e-6, atol=1e-7)


def test_memory_is_bounded_by_the_chunk() -> None:
    probe = Probe(Linear(4))
    SmoothTunnel(Saliency(probe)).attribute(
        torch.randn(3, 4), nt_samples=50, nt_samples_batch_size=4, stdevs=0.1, target=0
    )
    assert max(s.shape[0] for s in probe.seen) == 3 * 4
    assert sum(s.shape[0] for s in probe.seen) == 3 * 50


def test_noise_is_example_major_with_the_right_std() -> None:
    probe = Probe(Linear(200))
    x = torch.stack([torch.zeros(200), torch.full((200,), 5.0)])
    stdevs = torch.tensor([0.1, 2.0])
    SmoothTunnel(Saliency(probe)).attribute(
        x,
        nt_samples=40,
        nt_samples_batch_size=40,
        stdevs=stdevs.reshape(2, 1),
        target=0,
        generator=0,
    )
    seen = probe.seen[0].reshape(2, 40, 200)
    n = 40 * 200
    for i, s in enumerate(stdevs.tolist()):
        noise = seen[i] - x[i]
        assert abs(noise.mean().item()) < 5 * s / math.sqrt(n)
        assert abs(noise.std().item() / s - 1) < 5 * math.sqrt(0.5 / n)


def test_range_share_rule_is_a_share_of_each_examples_range() -> None:
    probe = Probe(Linear(500))
    x = torch.stack([torch.linspace(0, 1, 500), torch.linspace(-10, 10, 500)])
    SmoothTunnel(Saliency(probe)).attribute(
        x, nt_samples=20, stdevs=RangeShareSigma(0.1), target=0, generator=0
    )
    noise = probe.seen[0].reshape(2, 20, 500) - x.unsqueeze(1)
    n = 20 * 500
    for i, rng in enumerate([1.0, 20.0]):
        assert abs(noise[i].std().item() / (0.1 * rng) - 1) < 5 * math.sqrt(0.5 / n)


def test_include_clean_adds_exactly_the_clean_term() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x = torch.randn(2, 3)
    sal = Saliency(model)
    noisy = SmoothTunnel(sal).attribute(x, nt_samples=3, stdevs=0.5, target=1, generator=9)
    both = SmoothTunnel(sal).attribute(
        x, nt_samples=3, stdevs=0.5, target=1, generator=9, include_clean=True
    )
    clean = sal.attribute(x, target=1)
    torch.testing.assert_close(both, (clean + 3 * noisy) / 4)


def test_same_seed_same_result_and_generators_equal_seeds() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x = torch.randn(2, 3)
    tunnel = SmoothTunnel(Saliency(model))
    a = tunnel.attribute(x, nt_samples=5, stdevs=0.5, target=1, generator=3)
    b = tunnel.attribute(x, nt_samples=5, stdevs=0.5, target=1, generator=3)
    c = tunnel.attribute(
        x, nt_samples=5, stdevs=0.5, target=1, generator=torch.Generator().manual_seed(3)
    )
    d = tunnel.attribute(x, nt_samples=5, stdevs=0.5, target=1, generator=4)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, d)


def test_baselines_drawn_from_a_distribution_reproduce_under_a_seed() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x = torch.randn(2, 3)
    distribution = torch.randn(10, 3)
    tunnel = SmoothTunnel(IntegratedGradients(model))
    kw = dict(
        nt_samples=6,
        nt_samples_batch_size=2,
        stdevs=0.1,
        target=0,
        baselines=distribution,
        draw_baseline_from_distrib=True,
        n_steps=5,
    )
    a = tunnel.attribute(x, generator=1, **kw)
    b = tunnel.attribute(x, generator=1, **kw)
    c = tunnel.attribute(x, generator=2, **kw)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_nan_samples_are_dropped_and_counted() -> None:
    class NanAbove(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = (x * 2.0).sum(1, keepdim=True)
            # The gradient is NaN where the first feature is positive.
            return torch.where(x[:, :1] > 0, out * torch.sqrt(-x[:, :1]), out)

    x = torch.tensor([[-5.0, 1.0], [0.0, 1.0]])
    tunnel = SmoothTunnel(Saliency(NanAbove()))
    with pytest.warns(RuntimeWarning, match="NaN"):
        attr = tunnel.attribute(x, nt_samples=40, stdevs=1.0, abs=False, generator=0)
    report = tunnel.last_report
    assert report is not None
    assert int(report.n_dropped_nan[0]) == 0  # far below 0: never positive
    assert 5 < int(report.n_dropped_nan[1]) < 35  # about half of the draws
    assert int(report.n_samples[1]) == 40 - int(report.n_dropped_nan[1])
    assert bool(torch.isfinite(attr).all())
    torch.testing.assert_close(attr[:, 1], torch.full((2,), 2.0))


def test_inputs_are_never_modified() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    x = torch.randn(4, 3)
    before = x.clone()
    SmoothTunnel(Saliency(model)).attribute(x, nt_samples=3, stdevs=0.3, target=0)
    SmoothTunnel(Saliency(model)).attribute(
        x, nt_samples=3, stdevs=0.3, target=0, include_clean=True, nt_samples_batch_size=1
    )
    assert torch.equal(x, before)
    assert not x.requires_grad
