"""Same seed, same map: with a generator, the chunk layout does not change the draws.

Each example's ``j``-th input-noise draw depends on the seed, the example and ``j`` only
(:mod:`captum_smooth.core.counter_noise`): not on the chunk size, on ``"auto"``, nor on which
examples are still sampling. Without a generator the draws keep Captum's order (the Captum
parity tests check that).
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import LayerGradientXActivation, Saliency
from torch import nn

from captum_smooth import SmoothTunnel, WeightNoise

from analytic_models import Cubic

X = torch.tensor([[0.3, -1.0, 2.0, 0.0], [1.0, 0.5, -0.5, 4.0], [0.1, 0.2, 0.3, 0.4]])
CHUNKS = (1, 2, 8, "auto", None)


def _maps(**kwargs: object) -> list[torch.Tensor]:
    tunnel = SmoothTunnel(Saliency(Cubic()))
    return [
        tunnel.attribute(X, abs=False, generator=7, nt_samples_batch_size=c, **kwargs)
        for c in CHUNKS
    ]


def _all_close(maps: list[torch.Tensor]) -> None:
    for other in maps[1:]:
        assert torch.allclose(maps[0], other, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("sampling", ["iid", "antithetic"])
def test_every_chunk_layout_gives_the_same_map(sampling: str) -> None:
    _all_close(_maps(nt_samples=8, stdevs=0.5, sampling=sampling))


def test_the_draws_are_the_same_whichever_examples_still_sample() -> None:
    # Example 1 has no noise: its error is 0 and it stops at `min_samples`; example 0 never
    # reaches the tolerance. Example 0's map is the one it gets alone, on other chunks.
    tunnel = SmoothTunnel(Saliency(Cubic()))
    sigmas = torch.tensor([[0.5], [0.0]])
    kwargs = {"abs": False, "generator": 7, "tolerance": 1e-9, "max_samples": 24}
    with pytest.warns(UserWarning, match="tolerance"):
        together = tunnel.attribute(X[:2], stdevs=sigmas, nt_samples_batch_size=4, **kwargs)
    assert tunnel.last_report is not None and tunnel.last_report.n_samples.tolist() == [24, 8]
    for chunk in (1, 6, "auto"):
        alone = tunnel.attribute(
            X[:1], nt_samples=24, stdevs=0.5, abs=False, generator=7, nt_samples_batch_size=chunk
        )
        assert torch.allclose(alone[0], together[0], rtol=1e-6, atol=1e-6)


def test_weight_draws_and_layer_noise_follow_no_chunk_layout() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2)).eval()
    maps = [
        SmoothTunnel(Saliency(model)).attribute(
            X,
            target=1,
            abs=False,
            generator=3,
            nt_samples=4,
            stdevs=0.3,
            n_weight_samples=3,
            weight_noise=WeightNoise(0.2),
            nt_samples_batch_size=c,
        )
        for c in CHUNKS
    ]
    _all_close(maps)
    layer = model[0]
    maps = [
        SmoothTunnel(LayerGradientXActivation(model, layer)).attribute(
            X,
            target=1,
            generator=3,
            nt_samples=6,
            stdevs=0.3,
            noise_layer=layer,
            nt_samples_batch_size=c,
        )
        for c in CHUNKS
    ]
    _all_close(maps)


def test_without_a_generator_the_global_stream_is_used_in_order() -> None:
    tunnel = SmoothTunnel(Saliency(Cubic()))
    torch.manual_seed(0)
    first = tunnel.attribute(X, nt_samples=4, stdevs=0.5, abs=False)
    torch.manual_seed(0)
    noise = torch.normal(0.0, 0.5, (12, 4))  # Captum's draw: all copies at once
    expected = (3 * (X.repeat_interleave(4, 0) + noise) ** 2).view(3, 4, 4).mean(1)
    assert torch.allclose(first, expected, rtol=1e-5, atol=1e-5)


def test_examples_in_other_blocks_keep_their_draws_when_the_rest_stop() -> None:
    # Ten examples (two blocks of draws); only examples 0 and 9 are noised, the others stop at
    # `min_samples`. Examples 0 and 9 get the maps of a call in which nobody stops.
    tunnel = SmoothTunnel(Saliency(Cubic()))
    x = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    sigmas = torch.zeros(10, 1)
    sigmas[[0, 9]] = 0.5
    kwargs = {"stdevs": sigmas, "abs": False, "generator": 11}
    full = tunnel.attribute(x, nt_samples=24, nt_samples_batch_size=5, **kwargs)
    with pytest.warns(UserWarning, match="tolerance"):
        stopped = tunnel.attribute(
            x, tolerance=1e-9, max_samples=24, nt_samples_batch_size=4, **kwargs
        )
    assert tunnel.last_report is not None
    assert tunnel.last_report.n_samples.tolist() == [24] + [8] * 8 + [24]
    assert torch.allclose(full[[0, 9]], stopped[[0, 9]], rtol=1e-6, atol=1e-6)
