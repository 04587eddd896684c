"""Tiny random inseq models (nothing downloaded): a GPT-2, a T5, word-level tokenizers."""

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

SPECIAL = ["<pad>", "</s>", "<unk>"]
WORDS = [*SPECIAL, "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "to", "park", "."]
WORDS += ["le", "chat", "chien", "est", "assis", "sur", "tapis", "un"]


def make_tokenizer(append_eos: bool = False) -> Any:
    """A word-level fast tokenizer over :data:`WORDS` (``</s>`` appended for the encoder)."""
    model = tokenizers.models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>")
    tok = tokenizers.Tokenizer(model)
    tok.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    if append_eos:
        tok.post_processor = tokenizers.processors.TemplateProcessing(
            single="$A </s>", special_tokens=[("</s>", WORDS.index("</s>"))]
        )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="</s>"
    )


def make_gpt2(seed: int = 0) -> Any:
    """GPT2Config(n_layer=2, n_head=2, n_embd=32), random weights, eval mode."""
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=2,
        n_head=2,
        n_embd=32,
        n_positions=32,
        vocab_size=len(WORDS),
        bos_token_id=1,
        eos_token_id=1,
        pad_token_id=0,
    )
    return transformers.GPT2LMHeadModel(config).eval()


def make_t5(seed: int = 0) -> Any:
    """T5Config(d_model=32, 2 + 2 layers, 2 heads), random weights, eval mode."""
    torch.manual_seed(seed)
    config = transformers.T5Config(
        vocab_size=len(WORDS),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=2,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return transformers.T5ForConditionalGeneration(config).eval()


def load(kind: str) -> Any:
    """The inseq model of ``kind`` ("gpt2" or "t5"), default method ``saliency``."""
    import inseq

    if kind == "gpt2":
        return inseq.load_model(make_gpt2(), "saliency", tokenizer=make_tokenizer())
    return inseq.load_model(make_t5(), "saliency", tokenizer=make_tokenizer(append_eos=True))
