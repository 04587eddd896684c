"""Every warning the library emits names the user's line, whatever the path to it.

The same warning is reached through SmoothTunnel (behind Captum's usage-logging decorator) and
through each preset, at different depths: each test calls from here and checks that the
warning's ``filename`` is this file. (The LLM wrappers: ``tests/llm/test_warning_location.py``.)
"""

from __future__ import annotations

import contextlib
import functools
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from captum.attr import Saliency
from torch import Tensor, nn

import captum_smooth
from captum_smooth import (
    AdaptGrad,
    FusionGrad,
    NoiseGrad,
    SmoothGrad,
    SmoothTaylor,
    SmoothTunnel,
    ToleranceNotReachedWarning,
)
from captum_smooth._warnings import warn

PRESETS = [SmoothGrad, AdaptGrad, NoiseGrad, FusionGrad, SmoothTaylor]


class Sqrt(nn.Module):
    """``sum sqrt(x)``: its gradient is NaN wherever the noise makes an input negative."""

    def forward(self, x: Tensor) -> Tensor:
        return x.sqrt().sum(1, keepdim=True)


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).eval()


def _x() -> Tensor:
    return torch.rand(2, 4, generator=torch.Generator().manual_seed(0))


def _only(caught: list[warnings.WarningMessage], category: type[Warning]) -> Iterator[Any]:
    found = [w for w in caught if issubclass(w.category, category)]
    assert found, f"no {category.__name__} among {[str(w.message) for w in caught]}"
    return iter(found)


def assert_warns_here(category: type[Warning], call: Callable[[], Any]) -> None:
    """``call()`` warns ``category``, and every such warning points at this file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    for w in _only(caught, category):
        assert w.filename == __file__, f"{category.__name__} points at {w.filename}:{w.lineno}"


def _never_reached() -> dict[str, Any]:
    return dict(tolerance=1e-9, min_samples=2, max_samples=3, generator=0)


# ----------------------------------------------------------------------------- the helper


def test_warn_points_at_its_caller_outside_the_library() -> None:
    with pytest.warns(UserWarning, match="direct") as record:
        warn("direct")
    assert record[0].filename == __file__


def _library_function() -> Callable[[object], None]:
    # A function whose frame counts as the library's: its module name is under captum_smooth.
    namespace: dict[str, Any] = {"__name__": "captum_smooth._pretend", "warn": warn}
    exec("def emit(_):\n    warn('deep', RuntimeWarning)\n", namespace)
    return namespace["emit"]


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def test_warn_skips_library_functools_and_contextlib_frames() -> None:
    # this file -> contextlib's decorator -> functools.singledispatch -> the library -> warn
    emit = _nothing()(functools.singledispatch(_library_function()))
    with pytest.warns(RuntimeWarning, match="deep") as record:
        emit(0)
    assert record[0].filename == __file__


def test_no_fixed_stacklevel_is_left_in_the_library() -> None:
    root = Path(captum_smooth.__file__).parent
    for path in root.rglob("*.py"):
        if "app" in path.relative_to(root).parts or path.name == "_warnings.py":
            continue  # the app warns about its own widgets; the helper is the one caller
        text = path.read_text()
        assert not re.search(r"warnings\.warn\(|stacklevel=", text), f"{path} warns on its own"


# ----------------------------------------------------------------------------- SmoothTunnel


def test_tunnel_tolerance_not_reached_points_here() -> None:
    tunnel = SmoothTunnel(Saliency(_mlp()))
    assert_warns_here(
        ToleranceNotReachedWarning,
        lambda: tunnel.attribute(_x(), target=0, stdevs=0.5, **_never_reached()),
    )


def test_tunnel_nan_dropped_points_here() -> None:
    tunnel = SmoothTunnel(Saliency(Sqrt()))
    x = torch.full((2, 4), 0.5)
    assert_warns_here(
        RuntimeWarning, lambda: tunnel.attribute(x, nt_samples=8, stdevs=1.0, generator=0)
    )


# ----------------------------------------------------------------------------- the presets


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.__name__)
def test_preset_tolerance_not_reached_points_here(preset: type) -> None:
    method = preset(_mlp())
    assert_warns_here(
        ToleranceNotReachedWarning,
        lambda: method.attribute(_x(), target=0, **_never_reached()),
    )


@pytest.mark.parametrize("preset", [SmoothGrad, SmoothTaylor], ids=lambda p: p.__name__)
def test_preset_nan_dropped_points_here(preset: type) -> None:
    method = preset(Sqrt())
    x = torch.full((2, 4), 0.5)
    assert_warns_here(
        RuntimeWarning,
        lambda: method.attribute(x, target=0, nt_samples=8, stdevs=1.0, generator=0),
    )


@pytest.mark.parametrize("preset", [NoiseGrad, FusionGrad], ids=lambda p: p.__name__)
def test_training_mode_warning_points_here(preset: type) -> None:
    method = preset(_mlp().train())
    assert_warns_here(
        UserWarning, lambda: method.attribute(_x(), target=0, n_weight_samples=2, generator=0)
    )
