"""SmoothTunnel with a Gaussian and a float sigma reproduces Captum's NoiseTunnel."""

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
from torch import nn

from captum_smooth import SmoothTunnel


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).eval()


def _both(method_cls, seed: int, **kw):
    model = _net()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(seed)
    ours = SmoothTunnel(method_cls(model)).attribute(x, **kw)
    torch.manual_seed(seed)
    theirs = NoiseTunnel(method_cls(model)).attribute(x, **kw)
    return ours, theirs


def test_isinstance_noise_tunnel() -> None:
    tunnel = SmoothTunnel(Saliency(_net()))
    assert isinstance(tunnel, NoiseTunnel)
    assert hasattr(SmoothTunnel.attribute, "__wrapped__")


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
@pytest.mark.parametrize("batch_size", [None, 1, 3, 7])
@pytest.mark.parametrize("method_cls", [Saliency, InputXGradient, DeepLift])
def test_equals_captum(nt_type: str, batch_size: int | None, method_cls) -> None:
    ours, theirs = _both(
        method_cls,
        11,
        nt_type=nt_type,
        nt_samples=7,
        nt_samples_batch_size=batch_size,
        stdevs=0.3,
        target=1,
    )
    if nt_type == "smoothgrad" and batch_size in (None, 7):
        # One chunk: the same sums in the same order, bit for bit.
        assert torch.equal(ours, theirs)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


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
