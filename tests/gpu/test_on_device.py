"""The library on each device (``device`` fixture: CPU, then CUDA when there is one).

What must hold on a GPU as it does on the CPU: Captum's numbers under the same seed, draws made
on the generator's device and reproducible, every kernel's law, the model bit-identical after
weight noise (also after an exception), the streaming reducers, the Monte-Carlo error and
sampling to a tolerance, "auto" chunks, and the data-set store. Models are tiny: the CPU cases
add little time to the suite.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
from captum_parity import assert_captum_parity, bit_for_bit
from torch import Tensor, nn

from captum_smooth import (
    AttributionStore,
    FusionGrad,
    NoiseGrad,
    SmoothTunnel,
    WeightNoise,
    explain_dataset,
    get_kernel,
    kernel_names,
    reducer_names,
)
from captum_smooth.core import chunking
from captum_smooth.core.counter_noise import CounterStream
from captum_smooth.core.reducers import NT_TYPES
from captum_smooth.dataset import batch_seed

from model_state import assert_identical, awkward_net, make_net, snapshot


def _mlp(device: torch.device) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))
    return model.eval().to(device)


class HalfSquare(nn.Module):
    """``f(x) = |x|^2 / 2`` per example: its gradient is the (noisy) input itself, exactly."""

    def forward(self, x: Tensor) -> Tensor:
        return 0.5 * x.pow(2).flatten(1).sum(1, keepdim=True)


def _x(device: torch.device, *shape: int, seed: int = 1) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(device)


def _gen(device: torch.device | str, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


# ------------------------------------------------------------------------ Captum parity


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
@pytest.mark.parametrize("batch_size", [None, 3])
def test_device_parity_with_captum_noise_tunnel(device, nt_type: str, batch_size) -> None:
    model, x = _mlp(device), _x(device, 4, 6)
    kw = dict(nt_type=nt_type, nt_samples=7, nt_samples_batch_size=batch_size, stdevs=0.3)
    torch.manual_seed(11)  # seeds the CPU and every CUDA device
    ours = SmoothTunnel(Saliency(model)).attribute(x, target=1, **kw)
    torch.manual_seed(11)
    theirs = NoiseTunnel(Saliency(model)).attribute(x, target=1, **kw)
    assert ours.device == x.device
    if device.type == "cpu":  # exactly what docs/guarantees.rst promises (measured on the CPU)
        scale = float(theirs.abs().max())
        if nt_type != "smoothgrad":  # rounding relative to the squares summed
            torch.manual_seed(11)
            squares = {**kw, "nt_type": "smoothgrad_sq"}
            scale = float(NoiseTunnel(Saliency(model)).attribute(x, target=1, **squares).max())
        exact = bit_for_bit(nt_type, 7, batch_size)
        assert_captum_parity(ours, theirs, exact=exact, scale=scale)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_device_parity_with_captum_integrated_gradients_and_deltas(device) -> None:
    model, x = _mlp(device), _x(device, 4, 6)
    kw = dict(
        nt_samples=4, nt_samples_batch_size=3, stdevs=0.2, baselines=torch.zeros_like(x),
        target=torch.tensor([0, 1, 2, 0], device=device), n_steps=20,
        return_convergence_delta=True,
    )  # fmt: skip
    torch.manual_seed(5)
    ours, d_ours = SmoothTunnel(IntegratedGradients(model)).attribute(x, **kw)
    torch.manual_seed(5)
    theirs, d_theirs = NoiseTunnel(IntegratedGradients(model)).attribute(x, **kw)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(d_ours, d_theirs)
    assert d_ours.shape == (16,) and d_ours.device == x.device


# ---------------------------------------------------------------------------- generators


def test_device_generator_and_int_seed_are_reproducible(device) -> None:
    tunnel, x = SmoothTunnel(Saliency(_mlp(device))), _x(device, 3, 6)
    kw = dict(nt_samples=6, nt_samples_batch_size=4, stdevs=0.3, target=0)
    state = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()
    a = tunnel.attribute(x, generator=_gen(device, 0), **kw)
    b = tunnel.attribute(x, generator=_gen(device, 0), **kw)
    c = tunnel.attribute(x, generator=0, **kw)  # an int seeds a generator on the input's device
    d = tunnel.attribute(x, generator=1, **kw)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.allclose(a, d)
    after = torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()
    assert torch.equal(state, after), "a generator must leave the global random state alone"


@pytest.mark.parametrize("kernel", ["gaussian", "laplace"])
@pytest.mark.parametrize("on", ["cpu", "input"])
def test_device_draw_happens_on_the_generators_device(device, kernel: str, on: str) -> None:
    gen_device = torch.device("cpu") if on == "cpu" else device
    x = _x(device, 2, 5)
    # One sample, the signed gradient of |x|^2 / 2: the attribution is the noisy input itself.
    got = SmoothTunnel(Saliency(HalfSquare())).attribute(
        x, nt_samples=1, stdevs=0.5, kernel=kernel, generator=_gen(gen_device, 3), target=0,
        abs=False,
    )  # fmt: skip
    # With a generator the noise is counter-based (same seed, same map on any chunk layout):
    # sample 0 of input 0 of the call, replayed from the same seed, on the generator's device.
    stream = CounterStream(_gen(gen_device, 3), batch=x.shape[0])
    t = stream.draw(get_kernel(kernel), tuple(x.shape[1:]), 1, None, dtype=torch.float32)
    assert t.device.type == gen_device.type
    torch.testing.assert_close(got, t.to(device).mul_(0.5).add_(x), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------- kernels

# Interquartile range of Student's t with 3 degrees of freedom scaled to unit std (the sample
# std of t_3 has no finite variance, so its law is checked through quantiles instead).
_T3_IQR = 2 * 0.764892328 / math.sqrt(3)


@pytest.mark.parametrize("name", kernel_names())
def test_device_kernel_statistics(device, name: str) -> None:
    n = 200_000
    t = get_kernel(name).sample((n,), generator=_gen(device, 1), device=device)
    assert t.device.type == device.type and t.dtype == torch.float32 and t.shape == (n,)
    assert bool(torch.isfinite(t).all())
    t = t.double()
    assert abs(t.mean().item()) < 5 / math.sqrt(n)
    if name == "student_t":
        iqr = (torch.quantile(t, 0.75) - torch.quantile(t, 0.25)).item()
        assert abs(iqr - _T3_IQR) < 0.02  # 6 standard errors
    else:
        assert abs(t.std().item() - 1.0) < 0.015  # 5 standard errors for a kurtosis up to 6
    again = get_kernel(name).sample((n,), generator=_gen(device, 1), device=device)
    assert torch.equal(again.double(), t)


# ---------------------------------------------------------------------------- weight noise


class Raising(nn.Module):
    """A model whose forward raises at a chosen call (mid-call of the loop)."""

    def __init__(self, net: nn.Module, raise_at: int) -> None:
        super().__init__()
        self.net = net
        self.calls = 0
        self.raise_at = raise_at

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.calls == self.raise_at:
            raise RuntimeError("boom")
        return self.net(x)


@pytest.mark.filterwarnings("ignore:.*modules in training mode:UserWarning")
@pytest.mark.parametrize("preset", [NoiseGrad, FusionGrad])
@pytest.mark.parametrize("awkward", [False, True])
def test_device_weight_noise_leaves_the_model_bit_identical(device, preset, awkward) -> None:
    net = (awkward_net() if awkward else make_net()).to(device)
    before = snapshot(net)
    x = torch.rand(3, 1, 5, 5).to(device)
    extra = {"nt_samples": 2, "stdevs": 0.1} if preset is FusionGrad else {}
    a = preset(net).attribute(x, target=0, n_weight_samples=3, generator=_gen(device, 0), **extra)
    assert_identical(before, net)
    b = preset(net).attribute(x, target=0, n_weight_samples=3, generator=_gen(device, 0), **extra)
    assert_identical(before, net)
    assert a.device == x.device
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_device_weight_noise_restores_after_an_exception_mid_call(device) -> None:
    model = Raising(awkward_net(), raise_at=3).to(device)
    before = snapshot(model)
    x = torch.rand(2, 1, 5, 5).to(device)
    with pytest.raises(RuntimeError, match="boom"):
        SmoothTunnel(Saliency(model)).attribute(
            x, target=0, nt_samples=1, stdevs=0.0, weight_noise=WeightNoise(0.3),
            n_weight_samples=5, generator=0,
        )  # fmt: skip
    assert model.calls == 3
    assert_identical(before, model)


# ------------------------------------------------------------------ reducers and errors


def _replayed_samples(x: Tensor, n: int, sigma: float, seed: int) -> Tensor:
    """The per-sample attributions of HalfSquare: the noisy copies, replayed from the call's
    counter-based stream (the chunk layout does not enter)."""
    stream = CounterStream(_gen(x.device, seed), batch=x.shape[0])
    t = stream.draw(get_kernel("gaussian"), tuple(x.shape[1:]), n, None, dtype=x.dtype)
    return t.mul_(sigma).view(x.shape[0], n, *x.shape[1:]).add_(x.unsqueeze(1))


_EXPECTED = {
    "smoothgrad": lambda s: s.mean(1),
    "smoothgrad_sq": lambda s: s.pow(2).mean(1),
    "vargrad": lambda s: s.var(1, unbiased=False),
}


@pytest.mark.parametrize("nt_type", NT_TYPES)
def test_device_streaming_reducers_match_the_replayed_draws(device, nt_type: str) -> None:
    assert nt_type in reducer_names()
    x = _x(device, 2, 5)
    got, error = SmoothTunnel(Saliency(HalfSquare())).attribute(
        x, nt_type=nt_type, nt_samples=5, nt_samples_batch_size=2, stdevs=0.3,
        generator=_gen(device, 4), target=0, abs=False, return_error=True,
    )  # fmt: skip
    samples = _replayed_samples(x, 5, 0.3, seed=4)
    torch.testing.assert_close(got, _EXPECTED[nt_type](samples), rtol=1e-5, atol=1e-6)
    assert error.relative_error.shape == (2,) and error.n_samples.tolist() == [5, 5]
    if nt_type == "smoothgrad":
        se = samples.std(1, unbiased=True) / math.sqrt(5)
        torch.testing.assert_close(error.standard_error.to(device), se, rtol=1e-4, atol=1e-6)


def test_device_sampling_to_a_tolerance(device) -> None:
    x = _x(device, 3, 5)
    x[0] *= 10  # a large map: its relative error is small, it stops first
    tunnel = SmoothTunnel(Saliency(HalfSquare()))
    got, error = tunnel.attribute(
        x, stdevs=0.5, tolerance=0.05, min_samples=8, max_samples=400, nt_samples_batch_size=8,
        generator=_gen(device, 2), target=0, abs=False, return_error=True,
    )  # fmt: skip
    n = tunnel.last_report.n_samples
    assert got.device == x.device
    assert bool(((error.relative_error.cpu() <= 0.05) | (n == 400)).all())
    assert n[0] < n[1] and n[0] < n[2]
    assert int(n.min()) >= 8 and int(n.max()) <= 400


# ------------------------------------------------------------------------------ chunking


def test_device_auto_chunk_equals_the_same_int_chunk(device, monkeypatch) -> None:
    asked = []
    real = chunking.free_cuda_bytes
    monkeypatch.setattr(chunking, "free_cuda_bytes", lambda d: asked.append(d) or real(d))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten())
        model.append(nn.Linear(4 * 16 * 16, 3))
    model = model.to(device)
    x = torch.rand(2, 3, 16, 16).to(device)
    tunnel = SmoothTunnel(Saliency(model.eval()))
    kw = dict(nt_samples=40, stdevs=0.1, target=1)
    auto = tunnel.attribute(x, nt_samples_batch_size="auto", generator=_gen(device, 0), **kw)
    chunk = tunnel.last_report.chunk_size
    assert 1 <= chunk <= 40
    assert len(asked) == (1 if device.type == "cuda" else 0)
    fixed = tunnel.attribute(x, nt_samples_batch_size=chunk, generator=_gen(device, 0), **kw)
    assert torch.equal(auto, fixed)
    other = tunnel.attribute(x, nt_samples_batch_size=3, generator=_gen(device, 0), **kw)
    torch.testing.assert_close(other, auto, rtol=0.5, atol=0.05)  # same law, other draws


# ----------------------------------------------------------------------------- data sets


def test_device_explain_dataset_round_trip(device, tmp_path: Path) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten())
        model.append(nn.Linear(4 * 6 * 6, 5))
    model = model.eval().to(device)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(6, 3, 6, 6, generator=gen), torch.randint(0, 5, (6,), generator=gen)
    tunnel = SmoothTunnel(Saliency(model))
    kw = dict(batch_size=4, shard_size=4, show_progress=False, nt_samples=3, stdevs=0.1)
    store = explain_dataset(tunnel, (x, y), tmp_path / "s", device=device, **kw)
    assert len(store) == 6 and store.shape == (3, 6, 6)
    reopened = AttributionStore(tmp_path / "s", verify=True)
    assert torch.equal(reopened[:], store[:]) and torch.equal(reopened.targets, y)
    # Each batch's generator: seeded from the first example's index, on the input's device.
    gen_device = device if device.type == "cuda" else torch.device("cpu")
    for start in (0, 4):
        rows = slice(start, start + 4)
        expected = tunnel.attribute(
            x[rows].to(device), target=y[rows].to(device), nt_samples=3, stdevs=0.1,
            generator=_gen(gen_device, batch_seed(0, start)),
        )  # fmt: skip
        torch.testing.assert_close(store[rows], expected.cpu())
    again = explain_dataset(tunnel, (x, y), tmp_path / "t", device=device, **kw)
    assert torch.equal(again[:], store[:])
