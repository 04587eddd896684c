"""What an interrupted call must leave as it was: the model's hooks, the global random states.

Shared by the interrupt tests of the core (``test_interrupt_*.py``): a token model whose
embedding Captum's LayerIntegratedGradients hooks, the call that smooths it, and snapshots of
the hooks (every hook dictionary of every module, torch's global ones) and of the global random
states (Python's, numpy's, torch's).
"""

from __future__ import annotations

import random
import signal
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import LayerIntegratedGradients
from torch import Tensor, nn

from captum_smooth import SmoothTunnel
from captum_smooth.core.hook_guard import GLOBAL_HOOK_DICTS, MODULE_HOOK_DICTS


class TokenModel(nn.Module):
    """Embedding, a non-linearity and a head: LayerIntegratedGradients hooks the embedding."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.embedding = nn.Embedding(12, 6)
            self.hidden = nn.Linear(6, 6)
            self.head = nn.Linear(6, 3)

    def forward(self, ids: Tensor) -> Tensor:
        return self.head(torch.tanh(self.hidden(self.embedding(ids))).sum(dim=1))


IDS = torch.tensor([[1, 4, 7, 2], [3, 3, 9, 0]])


def smooth_layer_ig(model: TokenModel, seed: int = 0) -> Tensor:
    """SmoothGrad over LayerIntegratedGradients on the embedding, noise at the embedding."""
    return SmoothTunnel(LayerIntegratedGradients(model, model.embedding)).attribute(
        IDS,
        nt_samples=4,
        nt_samples_batch_size=2,
        stdevs=0.1,
        noise_layer=model.embedding,
        baselines=torch.zeros_like(IDS),
        target=0,
        n_steps=4,
        generator=seed,
    )


def hooks(model: nn.Module) -> dict[str, list[int]]:
    """The handle ids of every hook on ``model``'s modules and in torch's global dictionaries."""
    seen = {f"global{i}": list(d) for i, d in enumerate(GLOBAL_HOOK_DICTS)}
    for name, module in model.named_modules():
        for slot in MODULE_HOOK_DICTS:
            seen[f"{name}.{slot}"] = list(getattr(module, slot, {}))
    return seen


def random_states() -> tuple[Any, ...]:
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def same_random_states(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return (
        a[0] == b[0]
        and all(np.array_equal(x, y) for x, y in zip(a[1], b[1]))
        and torch.equal(a[2], b[2])
    )


def armed_alarm() -> Iterator[dict[str, Any]]:
    """A SIGALRM handler that raises KeyboardInterrupt("alarm") once armed, then does nothing.

    A fixture body: a test module makes it one with ``pytest.fixture(armed_alarm, name=...)``.
    """
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals go to the main thread")
    armed: dict[str, Any] = {"on": False, "fired": 0}

    def handler(signum: int, frame: Any) -> None:
        if armed["on"]:
            armed["on"] = False
            armed["fired"] += 1
            raise KeyboardInterrupt("alarm")

    previous = signal.signal(signal.SIGALRM, handler)
    armed["handler"] = handler
    try:
        yield armed
    finally:
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        torch.set_grad_enabled(True)  # a signal may hit torch.no_grad()'s own exit


def from_the_signal(err: BaseException) -> bool:
    """Whether ``err`` is (or was raised from) the KeyboardInterrupt the alarm raised."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt) and seen.args == ("alarm",):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
