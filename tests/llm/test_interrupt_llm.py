"""A Ctrl-C inside an LLM wrapper's call leaves no hook on the language model.

Two windows, each hit by a real signal (``signal.raise_signal``) at a chosen point: Captum's
LayerIntegratedGradients on the token embedding, between registering its hook and its ``try``
(the gradient wrapper); the removal of FusionGrad's embedding-noise hook, registered outside
the loop (the perturbation wrapper). After the KeyboardInterrupt the model has the hooks it had,
gives the logits it gave, and the wrapper has its own inner method back.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("transformers")

import torch
from captum.attr import FeatureAblation, LayerIntegratedGradients, TextTokenInput
from torch import nn
from torch.utils.hooks import RemovableHandle

from captum_smooth import SmoothLLMAttribution, SmoothLLMGradientAttribution

PROMPT = "the cat sat on the"
TARGET = "mat ."


@pytest.fixture
def alarm() -> Iterator[dict[str, Any]]:
    """A SIGALRM handler that raises KeyboardInterrupt("alarm") once armed."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals go to the main thread")
    armed: dict[str, Any] = {"on": False, "fired": 0}

    def handler(signum: int, frame: Any) -> None:
        if armed["on"]:
            armed["on"] = False
            armed["fired"] += 1
            raise KeyboardInterrupt("alarm")

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        yield armed
    finally:
        signal.signal(signal.SIGALRM, previous)


def all_hooks(model: nn.Module) -> list[tuple[str, list[int]]]:
    return [
        (name, list(module._forward_hooks) + list(module._forward_pre_hooks))
        for name, module in model.named_modules()
    ]


def logits(model: Any, tokenizer: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(TextTokenInput(PROMPT, tokenizer).to_model_input()).logits


def test_ctrl_c_after_captums_hook_on_the_embedding(
    gpt2: Any, tokenizer: Any, alarm: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    smooth = SmoothLLMGradientAttribution(
        LayerIntegratedGradients(gpt2, gpt2.transformer.wte), tokenizer
    )
    inner = smooth.attr_method
    before, clean = all_hooks(gpt2), logits(gpt2, tokenizer)
    real = nn.Module.register_forward_hook

    def register_then_signal(self: nn.Module, hook: Any, *args: Any, **kwargs: Any) -> Any:
        handle = real(self, hook, *args, **kwargs)
        if isinstance(hook, functools.partial) and alarm["on"]:  # Captum's LIG hook
            signal.raise_signal(signal.SIGALRM)
        return handle

    monkeypatch.setattr(nn.Module, "register_forward_hook", register_then_signal)
    alarm["on"] = True
    with pytest.raises(KeyboardInterrupt):
        smooth.attribute(
            TextTokenInput(PROMPT, tokenizer),
            target=TARGET,
            nt_samples=2,
            stdevs=0.05,
            generator=0,
            n_steps=3,
        )
    monkeypatch.undo()
    assert alarm["fired"] == 1
    assert all_hooks(gpt2) == before
    assert torch.equal(logits(gpt2, tokenizer), clean)
    assert smooth.attr_method is inner


def test_ctrl_c_while_fusiongrads_embedding_hook_is_removed(
    gpt2: Any, tokenizer: Any, alarm: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    smooth = SmoothLLMAttribution(FeatureAblation(gpt2), tokenizer)
    inner = smooth.attr_method
    embedding = gpt2.get_input_embeddings()
    before, clean = all_hooks(gpt2), logits(gpt2, tokenizer)
    real = RemovableHandle.remove

    def signal_then_remove(self: RemovableHandle) -> None:
        if alarm["on"] and self.hooks_dict_ref() is embedding._forward_hooks:
            signal.raise_signal(signal.SIGALRM)
        real(self)

    monkeypatch.setattr(RemovableHandle, "remove", signal_then_remove)
    alarm["on"] = True
    with pytest.raises(KeyboardInterrupt):
        smooth.attribute(
            TextTokenInput(PROMPT, tokenizer),
            target=TARGET,
            n_weight_samples=2,
            weight_stdev=0.05,
            stdevs=0.3,
            nt_samples=2,
            generator=0,
        )
    monkeypatch.undo()
    assert alarm["fired"] == 1
    assert all_hooks(gpt2) == before
    assert torch.equal(logits(gpt2, tokenizer), clean)
    assert smooth.attr_method is inner
