"""Fixtures: the tiny causal LM and its tokenizer (test modules skip without transformers)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def tokenizer() -> Any:
    from tiny_lm import make_tokenizer

    return make_tokenizer()


@pytest.fixture
def gpt2() -> Any:
    from tiny_lm import make_gpt2

    return make_gpt2()
