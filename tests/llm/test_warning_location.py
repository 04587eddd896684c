"""The LLM wrappers' warnings name the user's line (this file), not Captum's or ours."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("transformers")

from captum.attr import FeatureAblation, LayerIntegratedGradients, TextTokenInput

from captum_smooth import (
    SmoothLLMAttribution,
    SmoothLLMGradientAttribution,
    ToleranceNotReachedWarning,
)

PROMPT = "the cat sat on the"
#: A tolerance no sample count reaches: the warning is certain.
NEVER_REACHED = {"tolerance": 1e-9, "min_samples": 2, "max_samples": 2, "generator": 0}


def assert_warns_here(category: type[Warning], call: Callable[[], Any]) -> None:
    """``call()`` warns ``category``, and every such warning points at this file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    found = [w for w in caught if issubclass(w.category, category)]
    assert found, f"no {category.__name__} among {[str(w.message) for w in caught]}"
    for w in found:
        assert w.filename == __file__, f"{category.__name__} points at {w.filename}:{w.lineno}"


def test_gradient_wrapper_tolerance_not_reached_points_here(gpt2: Any, tokenizer: Any) -> None:
    smooth = SmoothLLMGradientAttribution(
        LayerIntegratedGradients(gpt2, gpt2.transformer.wte), tokenizer
    )
    inp = TextTokenInput(PROMPT, tokenizer)
    assert_warns_here(
        ToleranceNotReachedWarning,
        lambda: smooth.attribute(inp, target="mat", n_steps=2, **NEVER_REACHED),
    )


@pytest.mark.parametrize("stdevs", [None, 0.01], ids=["noisegrad", "fusiongrad"])
def test_perturbation_wrapper_tolerance_not_reached_points_here(
    gpt2: Any, tokenizer: Any, stdevs: float | None
) -> None:
    smooth = SmoothLLMAttribution(FeatureAblation(gpt2), tokenizer)
    inp = TextTokenInput(PROMPT, tokenizer)
    assert_warns_here(
        ToleranceNotReachedWarning,
        lambda: smooth.attribute(inp, target="mat", stdevs=stdevs, **NEVER_REACHED),
    )
