"""The ``device`` fixture: every test here runs on the CPU and on CUDA.

The CUDA case carries the ``cuda`` marker (``pytest -m cuda``, ``make test-gpu``) and is skipped,
with the reason, where ``torch.cuda.is_available()`` is false: a CPU build of torch or no GPU.
It is collected either way, so ``pytest -m cuda`` on a CPU machine reports skips, not "no tests".
"""

from __future__ import annotations

import pytest
import torch

NO_CUDA = (
    "needs CUDA: torch.cuda.is_available() is False "
    f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})"
)

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA),
        ],
    ),
]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """``torch.device("cpu")``, then ``torch.device("cuda")`` (skipped without CUDA)."""
    return torch.device(request.param)
