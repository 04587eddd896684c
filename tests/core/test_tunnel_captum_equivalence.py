"""SmoothTunnel with a Gaussian and a float sigma reproduces Captum's NoiseTunnel.

Exactly as docs/guarantees.rst says ("Captum's numbers"): bit for bit for ``smoothgrad`` in one
chunk, float32 and float64 inputs alike; to rounding (8 eps x the scale, see captum_parity.py)
for ``smoothgrad`` in several chunks and for ``smoothgrad_sq`` and ``vargrad``.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import (
    DeepLift,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
)
from captum.testing.helpers.basic_models import BasicModel_MultiLayer_MultiInput
from captum_parity import assert_captum_parity, bit_for_bit
from torch import nn

from captum_smooth import SmoothTunnel


def _net(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype).eval()


def _both(method_cls, seed: int, dtype: torch.dtype = torch.float32, **kw):
    model = _net(dtype)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1)).to(dtype)
    torch.manual_seed(seed)
    ours = SmoothTunnel(method_cls(model)).attribute(x, **kw)
    torch.manual_seed(seed)
    theirs = NoiseTunnel(method_cls(model)).attribute(x, **kw)
    return ours, theirs


def test_isinstance_noise_tunnel() -> None:
    tunnel = SmoothTunnel(Saliency(_net()))
    assert isinstance(tunnel, NoiseTunnel)
    assert hasattr(SmoothTunnel.attribute, "__wrapped__")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
@pytest.mark.parametrize("batch_size", [None, 1, 3, 7, 16])
@pytest.mark.parametrize("method_cls", [Saliency, InputXGradient, DeepLift])
def test_equals_captum(dtype, nt_type: str, batch_size: int | None, method_cls) -> None:
    kw = dict(nt_samples=7, nt_samples_batch_size=batch_size, stdevs=0.3, target=1)
    ours, theirs = _both(method_cls, 11, dtype, nt_type=nt_type, **kw)
    assert ours.dtype == dtype
    if nt_type == "smoothgrad":
        scale = float(theirs.abs().max())
    else:  # a mean of squares or a variance rounds relative to the squares it sums
        scale = float(_both(method_cls, 11, dtype, nt_type="smoothgrad_sq", **kw)[1].max())
    exact = bit_for_bit(nt_type, 7, batch_size)
    assert_captum_parity(ours, theirs, exact=exact, scale=scale)


def test_equals_captum_integrated_gradients_with_delta() -> None:
    baselines = torch.zeros(4, 6)
    (ours, d_ours), (theirs, d_theirs) = _both(
        IntegratedGradients,
        5,
        nt_samples=4,
        nt_samples_batch_size=3,
        stdevs=0.2,
        target=torch.tensor([0, 1, 2, 0]),
        baselines=baselines,
        n_steps=20,
        return_convergence_delta=True,
    )
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(d_ours, d_theirs)
    assert d_ours.shape == (4 * 4,)


def test_equals_captum_tuple_inputs_and_forward_args() -> None:
    model = BasicModel_MultiLayer_MultiInput()
    g = torch.Generator().manual_seed(0)
    x = (10 * torch.randn(6, 3, generator=g), 5 * torch.randn(6, 3, generator=g))
    extra = (2 * torch.randn(6, 3, generator=g), 5)
    kw = dict(
        nt_samples=5,
        nt_samples_batch_size=2,
        stdevs=(0.5, 0.1),
        additional_forward_args=extra,
        target=[0, 1, 1, 0, 0, 1],
    )
    torch.manual_seed(2)
    ours = SmoothTunnel(Saliency(model)).attribute(x, **kw)
    torch.manual_seed(2)
    theirs = NoiseTunnel(Saliency(model)).attribute(x, **kw)
    assert isinstance(ours, tuple) and len(ours) == 2
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
