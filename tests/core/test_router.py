"""The router: every door states its options once and refuses the others with ValueError.

Each door (every preset; the LLM wrappers in tests/llm/test_llm_doors.py) is checked against
every loop option it does not take: the refusal names the door and the option, before any work.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from torch import nn

from captum_smooth import AdaptGrad, FusionGrad, NoiseGrad, SmoothGrad, SmoothTaylor
from captum_smooth.core.plan import LOOP_OPTION_DOCS, LoopOptions
from captum_smooth.core.router import Router
from captum_smooth.methods._preset import SmoothingPreset

PRESETS = [SmoothGrad, AdaptGrad, NoiseGrad, FusionGrad, SmoothTaylor]


def _not_taken(router: Router) -> list[str]:
    return [
        name
        for name in LoopOptions.names()
        if name not in router.loop_defaults and name not in router.parameters
    ]


def test_route_splits_the_keywords_and_fills_the_defaults() -> None:
    router = Router(
        "Door",
        {"nt_samples": 10, "generator": None},
        {"noise_level": (0.1, "A share.")},
        {"stdevs": "give `noise_level`"},
    )
    routed = router.route({"noise_level": 0.2, "nt_samples": 4, "abs": False})
    assert routed.params == {"noise_level": 0.2}
    assert routed.loop == {"nt_samples": 4, "generator": None}
    assert routed.inner == {"abs": False}
    assert routed.given == {"noise_level", "nt_samples"}
    assert routed.options({"generator": 3}) == LoopOptions(nt_samples=4, generator=3)


def test_route_refuses_pointers_and_options_not_taken_with_value_error() -> None:
    router = Router("Door", {"nt_samples": 10}, {}, {"stdevs": "give `noise_level`"})
    with pytest.raises(ValueError, match=r"Door does not take `stdevs`: give `noise_level`"):
        router.route({"stdevs": 0.1})
    with pytest.raises(ValueError, match=r"Door does not take the option `kernel`"):
        router.route({"kernel": "laplace"})


def test_a_parameter_may_share_a_loop_options_name() -> None:
    # SmoothGrad's own `stdevs` (Captum's spelling) is the preset's, not the loop's.
    router = Router("Door", {"nt_samples": 10}, {"stdevs": (None, "Captum's.")})
    assert router.route({"stdevs": 0.3}).params == {"stdevs": 0.3}


def test_a_door_is_checked_when_declared() -> None:
    with pytest.raises(ValueError, match="not loop options"):
        Router("Door", {"n_sample": 10})
    with pytest.raises(ValueError, match="both loop options and parameters"):
        Router("Door", {"nt_samples": 10}, {"nt_samples": (1, "")})


def test_the_signature_and_docs_come_from_the_tables() -> None:
    router = Router("Door", {"nt_samples": 10}, {"noise_level": (0.1, "A share of the range.")})

    def attribute(self: Any, inputs: Any, target: Any = None, **kwargs: Any) -> Any:
        """Smooth.

                Args:
        {options}
        """

    router.document(attribute)
    params = inspect.signature(attribute).parameters
    assert list(params) == ["self", "inputs", "target", "noise_level", "nt_samples", "kwargs"]
    assert params["nt_samples"].default == 10
    assert params["noise_level"].kind is inspect.Parameter.KEYWORD_ONLY
    doc = attribute.__doc__ or ""
    assert "noise_level: A share of the range. Default: 0.1." in doc
    assert LOOP_OPTION_DOCS["nt_samples"][:30] in doc


@pytest.mark.parametrize("cls", PRESETS, ids=lambda c: c.__name__)
def test_each_preset_is_a_configuration_of_the_router(cls: type[SmoothingPreset]) -> None:
    router = cls.router
    assert router.name == cls.get_name()
    assert dict(router.loop_defaults) == cls.loop_defaults
    assert dict(router.parameters) == cls.parameters
    signature = inspect.signature(cls.attribute)
    for name in [*cls.parameters, *cls.loop_defaults]:
        assert name in signature.parameters, name


@pytest.mark.parametrize("cls", PRESETS, ids=lambda c: c.__name__)
def test_each_preset_refuses_every_option_it_does_not_take(cls: type[SmoothingPreset]) -> None:
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    preset = cls(model)
    x = torch.rand(2, 4)
    refused = _not_taken(cls.router)
    assert refused, "every preset fixes some loop option"
    for name in refused:
        with pytest.raises(ValueError, match=rf"{cls.get_name()} does not take .*`{name}`"):
            preset.attribute(x, target=0, **{name: None})
