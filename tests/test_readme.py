"""The README's promises that code can check: its "Extending" blocks run as they are, and its
lists of kernels and reducers are the registries' (so a registered part cannot go unlisted)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from captum.attr import Saliency

from captum_smooth import SmoothTunnel, kernel_names, reducer_names
from captum_smooth.core.reducers import REDUCERS
from captum_smooth.noise.kernels import KERNELS

README = Path(__file__).resolve().parents[1] / "README.md"


def _section(title: str) -> str:
    text = README.read_text()
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def _python_blocks(section: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.mark.parametrize(
    ("marker", "names"), [("kernels", kernel_names), ("reducers", reducer_names)]
)
def test_readme_lists_every_registered_part(marker: str, names) -> None:
    listed = re.search(rf"<!-- registry:{marker} -->(.*?)<!-- /registry -->", README.read_text())
    assert listed is not None, f"the README has no {marker} list"
    assert [n.strip() for n in listed.group(1).split(",")] == names()


@pytest.fixture
def extending() -> dict:
    """The three "Extending" blocks executed as three files; the registries restored after."""
    blocks = _python_blocks(_section("Extending"))
    assert len(blocks) == 3
    namespace: dict = {}
    try:
        for i, block in enumerate(blocks):
            exec(compile(block, f"README-extending-{i}.py", "exec"), namespace)
        yield namespace
    finally:
        KERNELS.unregister("logistic")
        REDUCERS.unregister("median")


class _Recorder:
    """A reducer keeping every sample, to check the README's median from outside."""

    made: list[_Recorder] = []

    def __init__(self, batch_size: int) -> None:
        self.rows: list[list[torch.Tensor]] = [[] for _ in range(batch_size)]
        _Recorder.made.append(self)

    def update(self, attributions, k, rows=None):
        rows = range(len(self.rows)) if rows is None else rows.tolist()
        for i, row in enumerate(rows):
            self.rows[row].append(attributions[0][i * k : (i + 1) * k])

    def result(self):
        return (torch.stack([torch.cat(r).mean(0) for r in self.rows]),)


def test_extending_blocks_run_and_plug_in(extending: dict) -> None:
    assert "logistic" in kernel_names() and "median" in reducer_names()
    model = torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2))
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    tunnel = SmoothTunnel(Saliency(model))
    options = dict(kernel="logistic", stdevs=extending["StdShareSigma"](0.2), nt_samples=20)
    median = tunnel.attribute(x, target=0, abs=False, nt_type="median", generator=3, **options)
    _Recorder.made.clear()
    tunnel.attribute(x, target=0, abs=False, reducer=_Recorder, generator=3, **options)
    samples = torch.stack([torch.cat(r) for r in _Recorder.made[0].rows])  # (B, N, 6)
    assert median.shape == x.shape
    torch.testing.assert_close(median, samples.median(dim=1).values)


def test_extending_kernel_has_unit_std(extending: dict) -> None:
    n = 200_000
    t = extending["LogisticKernel"]().sample((n,), generator=torch.Generator().manual_seed(0))
    # The sample std of a logistic (kurtosis 4.2) has standard error ~ sqrt((4.2 - 1) / (4 n)).
    assert abs(float(t.std()) - 1.0) < 5 * math.sqrt(3.2 / (4 * n))
    assert abs(float(t.mean())) < 5 / math.sqrt(n)
