"""The relative error does not saturate: it keeps growing as the map's signal vanishes.

On ``f(x) = 1/2 ||x||^2`` SmoothGrad's samples are ``grad f(x + t) = x + t``: the smoothed map's
expectation is ``x`` and each element's standard error is ``sigma / sqrt(n)``, so the true
relative error, ``sigma / (sqrt(n) * |c|)`` for ``x = c`` everywhere, is known exactly.
"""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import Saliency
from torch import Tensor, nn

from captum_smooth import SmoothTunnel
from captum_smooth.core.error_model import relative_error
from captum_smooth.core.stopping import ToleranceNotReachedWarning

D, N, SIGMA = 4000, 16, 1.0


class HalfSquare(nn.Module):
    """``f(x) = 1/2 ||x||^2``: its gradient at the noisy input is the noisy input."""

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * x.pow(2).flatten(1).sum(1, keepdim=True)


def _reported(c: float, seed: int, n: int = N) -> tuple[Tensor, Tensor]:
    """``(map, reported relative error)`` of SmoothGrad at ``x = c`` everywhere."""
    x = torch.full((1, D), c, dtype=torch.float64)
    attr, err = SmoothTunnel(Saliency(HalfSquare())).attribute(
        x, nt_samples=n, stdevs=SIGMA, abs=False, generator=seed, return_error=True
    )
    return attr, err.relative_error


def _old_figure(se: Tensor, mean: Tensor) -> float:
    return float(se.norm() / mean.norm())


def test_pure_noise_map_reports_a_large_error_not_about_one() -> None:
    # x = 0: the map is pure noise around zero. The plain ratio ||SE|| / ||mean|| is ~1 here.
    reported = torch.cat([_reported(0.0, seed)[1] for seed in range(20)])
    assert float(reported.median()) > 5, reported  # ~ (D / 2) ** 0.25 or inf, never ~1
    assert int(torch.isinf(reported).sum()) >= 4, reported


def test_weak_signal_error_matches_the_truth_where_the_old_figure_said_about_one() -> None:
    c = 0.08  # true relative error sigma / (sqrt(N) c) = 3.125
    truth = SIGMA / (math.sqrt(N) * c)
    maps, reported = zip(*(_reported(c, seed) for seed in range(30)))
    measured = float(torch.cat(maps).std(0).norm() / (c * math.sqrt(D)))
    assert abs(measured / truth - 1) < 0.05  # the spread over repetitions is the truth
    median = float(torch.cat(reported).median())
    assert 0.75 * truth < median < 1.35 * truth, (median, truth)
    # The plain ratio would have said about 0.95 ("almost within 100 %").
    old = SIGMA / math.sqrt(N) / math.sqrt(c**2 + SIGMA**2 / N)
    assert old < 1


def test_strong_signal_matches_the_old_figure_to_first_order() -> None:
    se = (torch.full((3, 50), 0.01),)
    mean = (torch.full((3, 50), 0.1),)
    new = relative_error(se, mean)
    old = _old_figure(se[0][0], mean[0][0])
    assert torch.allclose(new, torch.full((3,), old / math.sqrt(1 - old**2)))
    assert bool(((new - old).abs() / old < old**2).all())  # second order: 0.5 r^2


def test_edge_values() -> None:
    zero = (torch.zeros(2, 3),)
    assert relative_error(zero, zero).tolist() == [0.0, 0.0]  # an exact map (no noise)
    assert relative_error(zero, (torch.ones(2, 3),)).tolist() == [0.0, 0.0]
    se = (torch.ones(2, 3),)
    assert relative_error(se, zero).isinf().all()
    assert relative_error(se, se).isinf().all()  # the map is no larger than its noise


def test_tolerance_still_stops_on_a_signal_and_not_on_noise() -> None:
    # Example 0 (x = 0.5): true error 2 / sqrt(n), within 0.3 from n = 45. Example 1 (x = 0):
    # pure noise, never within any tolerance.
    x = torch.stack([torch.full((D,), 0.5), torch.zeros(D)]).double()
    with pytest.warns(ToleranceNotReachedWarning):
        _, err = SmoothTunnel(Saliency(HalfSquare())).attribute(
            x, stdevs=SIGMA, abs=False, generator=0, tolerance=0.3, max_samples=256,
            nt_samples_batch_size=8, return_error=True,
        )  # fmt: skip
    n = err.n_samples.tolist()
    assert 40 <= n[0] <= 64 and n[1] == 256, n
    assert float(err.relative_error[0]) <= 0.3
    assert float(err.relative_error[1]) > 1
