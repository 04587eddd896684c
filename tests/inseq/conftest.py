"""Fixtures: tiny random GPT-2 and T5 loaded into inseq (test modules skip without inseq)."""

from __future__ import annotations

import os
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded; make sure of it


@pytest.fixture(scope="module", params=["gpt2", "t5"])
def inseq_model(request: pytest.FixtureRequest) -> Any:
    """Each model kind in turn (decoder-only, encoder-decoder)."""
    from inseq_models import load

    return load(request.param)
