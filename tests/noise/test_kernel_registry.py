"""``register_kernel``: a kernel registered outside the package works by name in the loop."""

from __future__ import annotations

import math

import pytest
import torch
from captum.attr import Saliency

from captum_smooth import Kernel, SmoothTunnel, get_kernel, kernel_names, register_kernel
from captum_smooth.noise.kernels import KERNELS

from analytic_models import Linear, Probe


class Rademacher(Kernel):
    """+-1 with equal probability: zero mean, unit standard deviation, support 1."""

    name = "rademacher"
    support = 1.0

    def sample(self, shape, *, generator=None, device=None, dtype=None):
        bits = torch.randint(0, 2, tuple(shape), generator=generator, device=device)
        return (bits * 2 - 1).to(dtype or torch.get_default_dtype())


def test_registered_kernel_is_named_everywhere() -> None:
    register_kernel("rademacher", aliases=("coin",))(Rademacher)
    try:
        assert "rademacher" in kernel_names() and "coin" not in kernel_names()
        assert isinstance(get_kernel("Coin"), Rademacher)
        probe = Probe(Linear(3))
        x = torch.zeros(2, 3)
        SmoothTunnel(Saliency(probe)).attribute(
            x, target=0, kernel="rademacher", stdevs=0.5, nt_samples=4, generator=0
        )
        seen = torch.cat(probe.seen)
        assert set(seen.abs().unique().tolist()) == {0.5}  # every noisy element is +-sigma
        with pytest.raises(ValueError, match="registered already"):
            register_kernel("coin")(Rademacher)
    finally:
        KERNELS.unregister("rademacher")
    assert "rademacher" not in kernel_names()
    with pytest.raises(ValueError, match="known kernels"):
        get_kernel("coin")


def test_register_kernel_takes_kernel_classes_only() -> None:
    with pytest.raises(TypeError, match="Kernel subclass"):
        register_kernel("not_a_kernel")(object)  # type: ignore[arg-type]
    assert "not_a_kernel" not in kernel_names()


@pytest.mark.parametrize("name", kernel_names())
def test_every_registered_kernel_has_unit_std(name: str) -> None:
    n = 100_000
    t = get_kernel(name).sample((n,), generator=torch.Generator().manual_seed(0))
    assert abs(float(t.mean())) < 6 / math.sqrt(n)
    # Loose bound valid for every registered kernel's kurtosis (Student-t's is the largest).
    assert abs(float(t.std()) - 1.0) < 0.05
