"""A tiny causal LM (random weights, nothing downloaded) and a word-level tokenizer."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
import torch

if importlib.util.find_spec("torchvision") is not None:
    # transformers imports torchvision when it is installed; its PyPI build needs our shim.
    from captum_smooth.app.models._torchvision import import_torchvision

    import_torchvision()

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = ["<unk>", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "park", "."]


def make_tokenizer() -> Any:
    """A word-level fast tokenizer over :data:`WORDS` (ids in list order)."""
    model = tokenizers.models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>")
    tok = tokenizers.Tokenizer(model)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")


def make_gpt2(seed: int = 0) -> Any:
    """GPT2Config(n_layer=2, n_head=2, n_embd=32): ~30k parameters, random weights, eval mode."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=32,
        n_positions=32,
        vocab_size=len(WORDS),
        bos_token_id=0,
        eos_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config).eval()
