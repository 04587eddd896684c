"""``CheckedKernel``: the public base that checks ``sample``'s arguments once."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from captum_smooth.noise import CheckedKernel, SampleRequest, get_kernel


class Ones(CheckedKernel):
    name = "ones"
    support = 1.0

    def __init__(self) -> None:
        self.requests: list[SampleRequest] = []

    def draw(self, request: SampleRequest) -> Tensor:
        self.requests.append(request)
        return torch.ones(request.size, device=request.device, dtype=request.dtype)


def test_a_subclass_gets_checked_requests() -> None:
    kernel = Ones()
    g = torch.Generator().manual_seed(0)
    out = kernel.sample([2, 3], generator=g, dtype=torch.float64)
    assert out.shape == (2, 3) and out.dtype == torch.float64
    assert kernel.requests == [SampleRequest((2, 3), g, None, torch.float64)]
    kernel.sample(4)
    assert kernel.requests[-1].size == (4,)
    assert kernel.requests[-1].dtype == torch.get_default_dtype()
    assert get_kernel(kernel) is kernel


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((None,), {}, TypeError),
        (((2, -1),), {}, ValueError),
        (((2, 1.5),), {}, ValueError),
        (((2,),), {"dtype": torch.int64}, TypeError),
        (((2,),), {"seed": 0}, TypeError),
    ],
)
def test_bad_arguments(args: tuple, kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        Ones().sample(*args, **kwargs)


def test_the_base_is_abstract() -> None:
    with pytest.raises(TypeError):
        CheckedKernel()  # type: ignore[abstract]
    assert math.isinf(CheckedKernel.support)
