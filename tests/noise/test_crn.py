"""``CommonRandomNumbers``: draw k of example r depends on (seed, r, k) only."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency

from captum_smooth import CommonRandomNumbers, PerExampleSigma, SmoothTunnel
from captum_smooth.noise import CommonRandomNumbers as FromNoise
from captum_smooth.noise.kernels import UniformKernel

from analytic_models import Linear, Probe


def _draws(crn: CommonRandomNumbers, rows: list[int], chunks: list[int], rest=(3,)):
    """Per example, its draws over the chunks (k draws each), as ``(len(rows), sum, *rest)``."""
    crn.restart(rows)
    parts = [crn.sample((len(rows) * k, *rest)).view(len(rows), k, *rest) for k in chunks]
    return torch.cat(parts, dim=1)


def test_exported_from_the_package_and_noise() -> None:
    assert CommonRandomNumbers is FromNoise


def test_draws_do_not_depend_on_the_chunk_sizes() -> None:
    crn = CommonRandomNumbers("gaussian", seed=3)
    whole = _draws(crn, [0, 1, 2], [8])
    for chunks in ([3, 5], [1] * 8, [4, 1, 3]):
        assert torch.equal(_draws(crn, [0, 1, 2], chunks), whole)


def test_draws_do_not_depend_on_the_other_rows() -> None:
    crn = CommonRandomNumbers("laplace", seed=3)
    full = _draws(crn, [0, 1, 2, 3], [6])
    assert torch.equal(_draws(crn, [2], [6])[0], full[2])
    sub = _draws(crn, [3, 1], [2, 4])  # any order, any subset
    assert torch.equal(sub[0], full[3]) and torch.equal(sub[1], full[1])
    # Distinct examples and distinct samples draw distinct numbers.
    assert not torch.equal(full[0], full[1])
    assert not torch.equal(full[0, 0], full[0, 1])


def test_seed_decides_and_the_call_generator_does_not() -> None:
    a = CommonRandomNumbers("gaussian", seed=1)
    a.restart([0, 1])
    x = a.sample((4, 5), generator=torch.Generator().manual_seed(0))
    a.restart([0, 1])
    y = a.sample((4, 5), generator=torch.Generator().manual_seed(99))
    assert torch.equal(x, y)
    b = CommonRandomNumbers("gaussian", seed=2)
    b.restart([0, 1])
    assert not torch.equal(b.sample((4, 5)), x)


def test_several_inputs_draw_in_turn_per_sample() -> None:
    crn = CommonRandomNumbers("gaussian", seed=0)

    def run(chunks: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        crn.restart([0, 1], n_inputs=2)
        xs, ys = [], []
        for k in chunks:  # the loop's order: input 0, then input 1, per chunk
            xs.append(crn.sample((2 * k, 3)).view(2, k, 3))
            ys.append(crn.sample((2 * k, 4)).view(2, k, 4))
        return torch.cat(xs, 1), torch.cat(ys, 1)

    x1, y1 = run([5])
    x2, y2 = run([2, 3])
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1[..., :3], y1[..., :3])


def test_base_kernel_dtype_and_support() -> None:
    crn = CommonRandomNumbers(UniformKernel, seed=0)
    assert crn.support == UniformKernel.support and crn.name == "uniform"
    crn.restart(torch.tensor([4, 0]))
    t = crn.sample((2 * 500,), dtype=torch.float64)
    assert t.dtype == torch.float64 and float(t.abs().max()) <= UniformKernel.support
    assert repr(crn) == "CommonRandomNumbers(UniformKernel(), seed=0)"


def test_a_draw_without_restart_is_an_error() -> None:
    crn = CommonRandomNumbers()
    with pytest.raises(RuntimeError, match="restart"):
        crn.sample((4, 2))
    crn.restart([0, 1, 2])
    with pytest.raises(RuntimeError, match="restart"):
        crn.sample((4, 2))  # 4 rows are not k copies of 3 examples


def test_in_the_loop_chunks_and_subsets_give_the_same_roots() -> None:
    # Through the sampling loop: the chunk size does not change the roots of an example,
    # nor does evaluating it alone.
    x = torch.rand(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    crn = CommonRandomNumbers("gaussian", seed=7)

    def roots(rows: list[int], chunk: int) -> torch.Tensor:
        probe = Probe(Linear(4).double())
        crn.restart(rows)
        SmoothTunnel(Saliency(probe)).attribute(
            x[rows], target=0, nt_samples=6, nt_samples_batch_size=chunk,
            stdevs=PerExampleSigma(sigma[rows]), kernel=crn,
        )  # fmt: skip
        seen = [s.view(len(rows), -1, 4) for s in probe.seen]
        return torch.cat(seen, dim=1)

    whole = roots([0, 1, 2], 6)
    assert torch.equal(roots([0, 1, 2], 2), whole)
    assert torch.equal(roots([1], 4)[0], whole[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_draws_are_made_there_and_do_not_depend_on_chunks() -> None:
    crn = CommonRandomNumbers("gaussian", seed=3)

    def draws(chunks: list[int]) -> torch.Tensor:
        crn.restart([0, 1])
        parts = [crn.sample((2 * k, 3), device="cuda").view(2, k, 3) for k in chunks]
        return torch.cat(parts, dim=1)

    whole = draws([6])
    assert whole.device.type == "cuda"
    assert torch.equal(draws([2, 4]), whole)
