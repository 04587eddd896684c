"""Chunk sizes: "auto" on the CPU (pinned, bit for bit) and on CUDA (tested here with a fake GPU).

The CPU sizes below are what ``"auto"`` has picked since the Foundation issue: tests and
benchmarks depend on them (the draws follow the chunk), so they must not move. The CUDA rule is
tested on the CPU by replacing the device check and ``torch.cuda.mem_get_info``.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from torch import nn

from captum_smooth.core import chunking
from captum_smooth.core.chunking import auto_chunk_size, resolve_chunk_size

GiB = 1 << 30


def _lin(n_in: int = 6) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(n_in, 3))


def _x(*shape: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(shape, dtype=dtype),)


# (input shape, nt_samples, n_steps of IG or None for Saliency, expected chunk)
CPU_CASES = [
    ((1, 3, 224, 224), 50, None, 8),
    ((1, 3, 224, 224), 200, None, 8),
    ((8, 3, 224, 224), 50, None, 1),
    ((1, 3, 112, 112), 50, None, 32),
    ((2, 3, 112, 112), 50, None, 16),
    ((1, 3, 512, 512), 50, None, 1),
    ((4, 6), 1000, None, 128),
    ((4, 6), 50, None, 50),
    ((32, 1, 8, 8), 100, None, 16),
    ((1, 3, 224, 224), 50, 50, 1),
    ((1, 1, 8, 8), 100, 50, 10),
    ((3, 6), 40, 20, 8),
]


@pytest.mark.parametrize(("shape", "n", "n_steps", "expected"), CPU_CASES)
def test_cpu_auto_chunks_are_pinned(shape, n, n_steps, expected) -> None:
    x = _x(*shape)
    n_in = 1
    for s in shape[1:]:
        n_in *= s
    model = _lin(n_in)
    method = Saliency(model) if n_steps is None else IntegratedGradients(model)
    kwargs = {} if n_steps is None else {"n_steps": n_steps}
    assert auto_chunk_size(x, n, method, kwargs) == expected
    assert resolve_chunk_size("auto", n, x, method, kwargs) == expected


def test_cpu_auto_ignores_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError("the CPU rule must not ask for device memory")

    monkeypatch.setattr(torch.cuda, "mem_get_info", boom)
    assert auto_chunk_size(_x(1, 3, 224, 224), 50) == 8
    assert auto_chunk_size(_x(1, 3, 224, 224), 50, Saliency(_lin(3 * 224 * 224))) == 8


def test_internal_batch_size_means_no_expansion() -> None:
    x = _x(1, 3, 224, 224)
    ig = IntegratedGradients(_lin(3 * 224 * 224))
    assert auto_chunk_size(x, 50, ig, {"n_steps": 50, "internal_batch_size": 4}) == 8


def test_resolve_none_ints_and_errors() -> None:
    x = _x(2, 6)
    assert resolve_chunk_size(None, 7, x) == 7
    assert resolve_chunk_size(3, 7, x) == 3
    assert resolve_chunk_size(30, 7, x) == 7
    with pytest.raises(ValueError, match="auto"):
        resolve_chunk_size("fast", 7, x)
    with pytest.raises(TypeError):
        resolve_chunk_size(True, 7, x)
    with pytest.raises(ValueError, match=">= 1"):
        resolve_chunk_size(0, 7, x)


# ------------------------------------------------------------------------- the CUDA rule, faked


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch):
    """Make "auto" take its CUDA branch on CPU tensors, with a chosen amount of free memory."""
    state = {"free": 100 * GiB, "reserved": 0, "allocated": 0, "asked": []}

    def mem_get_info(device=None):
        state["asked"].append(device)
        return state["free"], 141 * GiB

    monkeypatch.setattr(chunking, "_cuda_device", lambda inputs: torch.device("cuda", 0))
    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: state["reserved"])
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: state["allocated"])
    return state


def _image_cost(dtype: torch.dtype = torch.float32, expansion: int = 1) -> int:
    """The rule's estimate for one copy of a 3x224x224 image (bytes)."""
    return 3 * 224 * 224 * torch.finfo(dtype).bits // 8 * expansion * 256


def test_cuda_rule_constants_are_stated() -> None:
    assert chunking._GPU_ACTIVATION_FACTOR == 256
    assert chunking._GPU_MEMORY_SHARE == 0.5
    assert chunking._GPU_ROWS == 64


def test_cuda_ample_memory_gives_the_cap(fake_cuda) -> None:
    x = _x(1, 3, 224, 224)
    assert auto_chunk_size(x, 200) == 64  # 64 reference images per call
    assert auto_chunk_size(x, 10) == 10  # never more than nt_samples
    assert auto_chunk_size(_x(4, 3, 224, 224), 200) == 16
    fake_cuda["free"] = 1 << 40  # a terabyte changes nothing: the cap is fixed
    assert auto_chunk_size(x, 200) == 64
    assert auto_chunk_size(_x(4, 6), 5000) == 64 * 64 // 4  # tiny inputs: 4096 rows at most
    assert fake_cuda["asked"] == [torch.device("cuda", 0)] * 5


def test_cuda_memory_bounds_the_chunk_to_a_power_of_two(fake_cuda) -> None:
    x = _x(1, 3, 224, 224)
    fake_cuda["free"] = 2 * GiB  # 1 GiB / 154 MB per copy = 6.97 copies -> 4
    assert GiB // _image_cost() == 6
    assert auto_chunk_size(x, 200) == 4
    fake_cuda["free"] = int(2.4 * GiB)  # 8.4 copies -> 8
    assert auto_chunk_size(x, 200) == 8
    fake_cuda["free"] = int(2.2 * GiB)  # 7.7 copies -> 4: small changes keep the chunk
    assert auto_chunk_size(x, 200) == 4
    # Half precision halves the estimate.
    fake_cuda["free"] = 2 * GiB
    assert auto_chunk_size(_x(1, 3, 224, 224, dtype=torch.float16), 200) == 8


def test_cuda_at_least_one_copy_per_example(fake_cuda) -> None:
    fake_cuda["free"] = 10 << 20  # 10 MiB: not even one copy fits the share
    assert auto_chunk_size(_x(1, 3, 224, 224), 50) == 1
    fake_cuda["free"] = 0
    assert auto_chunk_size(_x(1, 3, 224, 224), 50) == 1
    fake_cuda["free"] = 2 * GiB  # 4 copies fit, but the batch has 8 examples
    assert auto_chunk_size(_x(8, 3, 224, 224), 50) == 1


def test_cuda_counts_the_allocators_unused_cache(fake_cuda) -> None:
    x = _x(1, 3, 224, 224)
    fake_cuda.update(free=GiB, reserved=2 * GiB, allocated=GiB)
    assert chunking.free_cuda_bytes(torch.device("cuda", 0)) == 2 * GiB
    assert auto_chunk_size(x, 200) == 4  # as with 2 GiB free


def test_cuda_rule_counts_the_inner_expansion(fake_cuda) -> None:
    x = _x(1, 3, 32, 32)
    ig = IntegratedGradients(_lin(3 * 32 * 32))
    # Cap: 64 reference images = 3136 rows of 3x32x32, / 50 steps = 62 copies.
    assert auto_chunk_size(x, 100, ig, {"n_steps": 50}) == 62
    fake_cuda["free"] = 2 * GiB  # 1 GiB / (12 KiB * 50 * 256) = 6.8 copies -> 4
    assert auto_chunk_size(x, 100, ig, {"n_steps": 50}) == 4
    # The inner method bounds its own batches: no expansion, 1 GiB / 3 MiB -> 256 copies.
    assert auto_chunk_size(x, 1000, ig, {"n_steps": 50, "internal_batch_size": 8}) == 256


def test_cuda_rule_through_the_tunnel_matches_the_int_chunk(fake_cuda) -> None:
    from captum_smooth import SmoothTunnel

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 224 * 224, 3))
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    tunnel = SmoothTunnel(Saliency(model))
    fake_cuda["free"] = 2 * GiB
    auto = tunnel.attribute(
        x, nt_samples=10, nt_samples_batch_size="auto", stdevs=0.1, generator=0, target=0
    )
    assert tunnel.last_report.chunk_size == 4 and tunnel.last_report.n_inner_calls == 3
    fixed = tunnel.attribute(
        x, nt_samples=10, nt_samples_batch_size=4, stdevs=0.1, generator=0, target=0
    )
    assert torch.equal(auto, fixed)
