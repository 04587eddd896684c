"""Fixtures: tiny random GPT-2 and T5 loaded into inseq (test modules skip without inseq)."""

from __future__ import annotations

import os
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded; make sure of it


def load(kind: str) -> Any:
    """The inseq model of ``kind`` ("gpt2" or "t5"), default method ``saliency``."""
    import inseq
    import inseq_models

    if kind == "gpt2":
        return inseq.load_model(
            inseq_models.make_gpt2(), "saliency", tokenizer=inseq_models.make_tokenizer()
        )
    return inseq.load_model(
        inseq_models.make_t5(), "saliency", tokenizer=inseq_models.make_tokenizer(append_eos=True)
    )


@pytest.fixture(scope="module", params=["gpt2", "t5"])
def inseq_model(request: pytest.FixtureRequest) -> Any:
    """Each model kind in turn (decoder-only, encoder-decoder)."""
    return load(request.param)
