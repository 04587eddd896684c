"""No progress object without show_progress: a disabled tqdm still takes tqdm's class-wide lock
when made and closed, and a signal inside that lock can leave every later bar waiting forever."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from captum.attr import Saliency
from torch import nn

from captum_smooth import NoiseGrad, SmoothTunnel, _progress, calibrate_weight_noise


class _MadeError(Exception):
    pass


def _refuse_tqdm(*args: Any, **kwargs: Any) -> Any:
    raise _MadeError("a tqdm object was made")


def _calls(model: nn.Module, show: bool) -> list[Any]:
    x = torch.rand(2, 4)
    y = torch.tensor([0, 1])
    return [
        lambda: SmoothTunnel(Saliency(model)).attribute(
            x, target=0, nt_samples=4, stdevs=0.1, show_progress=show
        ),
        lambda: NoiseGrad(model).attribute(
            x, target=0, n_weight_samples=2, weight_stdev=0.1, show_progress=show
        ),
        lambda: calibrate_weight_noise(model, [(x, y)], max_iter=2, show_progress=show),
    ]


def test_no_tqdm_is_made_without_show_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    model = nn.Sequential(nn.Linear(4, 2)).eval()
    monkeypatch.setattr(_progress, "tqdm", _refuse_tqdm)
    for call in _calls(model, show=False):
        call()
    # The same calls with a bar do make one (the patched constructor is the one used).
    for call in _calls(model, show=True):
        with pytest.raises(_MadeError):
            call()
