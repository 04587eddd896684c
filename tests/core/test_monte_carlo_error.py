"""Monte-Carlo error of smoothed attributions, and sampling until converged."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import pytest
import torch
from captum.attr import Saliency
from torch import nn

from captum_smooth import SmoothTunnel
from captum_smooth.core.error_model import MonteCarloError

from analytic_models import Cubic

X = torch.tensor([[0.0, 0.5, -1.0, 2.0]], dtype=torch.float64)


def _spread_vs_reported(
    nt_type: str, n: int = 40, repeats: int = 60
) -> tuple[torch.Tensor, torch.Tensor]:
    tunnel = SmoothTunnel(Saliency(Cubic()))
    estimates, reported = [], []
    for seed in range(repeats):
        attr, err = tunnel.attribute(
            X,
            nt_type=nt_type,
            nt_samples=n,
            stdevs=0.5,
            abs=False,
            generator=seed,
            return_error=True,
        )
        estimates.append(attr)
        reported.append(err.standard_error)
    return torch.cat(estimates).std(dim=0), torch.cat(reported).mean(dim=0)


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_standard_error_matches_the_spread_over_seeds(nt_type: str) -> None:
    repeats = 60
    empirical, reported = _spread_vs_reported(nt_type, repeats=repeats)
    # The std over R repeats has relative error ~ 1/sqrt(2 (R - 1)); allow 4 of those (plus
    # the bias of the plug-in SE of heavier-tailed reducers at n = 40).
    tol = 4 / math.sqrt(2 * (repeats - 1)) + (0.0 if nt_type == "smoothgrad" else 0.15)
    ratio = reported / empirical
    assert bool(((ratio - 1).abs() < tol).all()), ratio


def test_default_path_is_unchanged() -> None:
    tunnel = SmoothTunnel(Saliency(Cubic()))
    for nt_type in ("smoothgrad", "smoothgrad_sq", "vargrad"):
        plain = tunnel.attribute(
            X, nt_type=nt_type, nt_samples=9, stdevs=0.3, generator=1, nt_samples_batch_size=4
        )
        with_error, err = tunnel.attribute(
            X,
            nt_type=nt_type,
            nt_samples=9,
            stdevs=0.3,
            generator=1,
            nt_samples_batch_size=4,
            return_error=True,
        )
        assert torch.equal(plain, with_error)
        assert isinstance(err, MonteCarloError) and err.standard_error.shape == X.shape


def test_report_carries_the_error_of_smoothgrad_for_free() -> None:
    tunnel = SmoothTunnel(Saliency(Cubic()))
    tunnel.attribute(X, nt_samples=10, stdevs=0.3, generator=1)
    report = tunnel.last_report
    assert report is not None and report.error is not None
    assert report.error.relative_error.shape == (1,)


def _two_examples() -> torch.Tensor:
    # Example 0 is flat (tiny relative error), example 1 is noisy (cubic near 0, big sigma).
    return torch.tensor([[3.0, 3.0, 3.0, 3.0], [0.0, 0.1, -0.1, 0.0]], dtype=torch.float64)


def test_tolerance_is_met_and_examples_stop_one_by_one() -> None:
    tunnel = SmoothTunnel(Saliency(Cubic()))
    x = _two_examples()
    attr, err = tunnel.attribute(
        x,
        nt_samples=8,
        nt_samples_batch_size=4,
        stdevs=0.5,
        abs=False,
        generator=0,
        tolerance=0.05,
        max_samples=2000,
        return_error=True,
    )
    assert bool((err.relative_error <= 0.05).all())
    n = err.n_samples.tolist()
    assert n[0] < n[1] <= 2000, n
    assert tunnel.last_report is not None and tunnel.last_report.n_samples.tolist() == n
    # Deterministic under the seed.
    again, err2 = tunnel.attribute(
        x,
        nt_samples=8,
        nt_samples_batch_size=4,
        stdevs=0.5,
        abs=False,
        generator=0,
        tolerance=0.05,
        max_samples=2000,
        return_error=True,
    )
    assert torch.equal(attr, again) and err2.n_samples.tolist() == n


def test_looser_tolerance_never_uses_more_samples() -> None:
    tunnel = SmoothTunnel(Saliency(Cubic()))
    x = _two_examples()
    used = []
    for tol in (0.02, 0.05, 0.2):
        tunnel.attribute(
            x,
            nt_samples_batch_size=4,
            stdevs=0.5,
            abs=False,
            generator=3,
            tolerance=tol,
            max_samples=4000,
        )
        assert tunnel.last_report is not None
        used.append(tunnel.last_report.n_samples)
    assert bool((used[0] >= used[1]).all()) and bool((used[1] >= used[2]).all())


def test_max_samples_caps_and_min_samples_floors() -> None:
    tunnel = SmoothTunnel(Saliency(Cubic()))
    _, err = tunnel.attribute(
        _two_examples(),
        stdevs=0.5,
        abs=False,
        generator=0,
        tolerance=1e-9,
        min_samples=4,
        max_samples=12,
        nt_samples_batch_size=5,
        return_error=True,
    )
    assert err.n_samples.tolist() == [12, 12]
    _, err = tunnel.attribute(
        _two_examples(),
        stdevs=0.5,
        abs=False,
        generator=0,
        tolerance=10.0,
        min_samples=6,
        max_samples=50,
        nt_samples_batch_size=1,
        return_error=True,
    )
    assert err.n_samples.tolist() == [6, 6]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(tolerance=0.0), "tolerance"),
        (dict(tolerance=-1.0), "tolerance"),
        (dict(tolerance="small"), "tolerance"),
        (dict(min_samples=4), "tolerance"),
        (dict(tolerance=0.1, min_samples=1), "min_samples"),
        (dict(tolerance=0.1, min_samples=10, max_samples=5), "min_samples"),
    ],
)
def test_bad_tolerance_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        SmoothTunnel(Saliency(Cubic())).attribute(X, **kwargs)


class _ScaleNoise:
    """A minimal weight noise: multiplies one scale parameter by N(1, s^2) per draw."""

    def __init__(self, stdev: float) -> None:
        self.stdev = stdev

    @contextlib.contextmanager
    def session(self, model: nn.Module) -> Iterator[_ScaleNoise]:
        self._param = model.scale
        self._backup = model.scale.detach().clone()
        try:
            yield self
        finally:
            with torch.no_grad():
                self._param.copy_(self._backup)

    def perturb(self, generator: torch.Generator | None) -> None:
        eta = 1 + self.stdev * torch.randn(
            self._backup.shape, generator=generator, dtype=self._backup.dtype
        )
        with torch.no_grad():
            self._param.copy_(self._backup * eta)


class ScaledCubic(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones((), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x**3).sum(1, keepdim=True)


def test_nested_error_accounts_for_shared_weight_draws() -> None:
    model = ScaledCubic()
    tunnel = SmoothTunnel(Saliency(model))
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    estimates, nested = [], []
    for seed in range(60):
        attr, err = tunnel.attribute(
            x,
            nt_samples=10,
            stdevs=0.1,
            weight_noise=_ScaleNoise(0.3),
            n_weight_samples=8,
            abs=False,
            generator=seed,
            return_error=True,
        )
        assert err.nested and err.n_samples.tolist() == [8]
        estimates.append(attr)
        nested.append(err.standard_error)
    empirical = torch.cat(estimates).std(dim=0)
    reported = torch.cat(nested).mean(dim=0)
    ratio = reported / empirical
    assert bool(((ratio - 1).abs() < 4 / math.sqrt(2 * 59) + 0.1).all()), ratio
    assert model.scale.item() == 1.0
