"""A Ctrl-C inside Captum leaves no hook on the model (captum_smooth.core.hook_guard).

Captum's LayerIntegratedGradients registers a forward hook on its layer and removes it in a
``finally`` entered only after the registration returned: a signal in between leaves the hook
on the model for good. Here the signal (a real one, ``signal.raise_signal``) is put exactly in
that window, by a ``register_forward_hook`` that raises it once Captum's hook is registered.
"""

from __future__ import annotations

import functools
import signal
import warnings
from typing import Any

import pytest
import torch
from interrupt_cases import IDS, TokenModel, armed_alarm, from_the_signal, hooks, smooth_layer_ig
from torch import nn
from torch.utils.hooks import RemovableHandle

from captum_smooth.core.hook_guard import HookGuard, modules_of

alarm_fixture = pytest.fixture(armed_alarm, name="alarm")


def signal_after_captums_registration(
    monkeypatch: pytest.MonkeyPatch, alarm: dict[str, Any], method: str = "register_forward_hook"
) -> None:
    """``nn.Module.<method>`` registers, then a signal arrives (before Captum's ``try``).

    Only Captum's LayerIntegratedGradients hook (a ``functools.partial``) is followed by the
    signal; the loop's own layer-noise hooks register as usual.
    """
    real = getattr(nn.Module, method)

    def register_then_signal(self: nn.Module, hook: Any, *args: Any, **kwargs: Any) -> Any:
        handle = real(self, hook, *args, **kwargs)
        if isinstance(hook, functools.partial) and alarm["on"]:
            signal.raise_signal(signal.SIGALRM)
        return handle

    monkeypatch.setattr(nn.Module, method, register_then_signal)


def test_a_ctrl_c_after_captums_hook_registration_leaves_no_hook(
    alarm: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = TokenModel()
    with torch.no_grad():
        logits = model(IDS)
    before = hooks(model)
    signal_after_captums_registration(monkeypatch, alarm)
    alarm["on"] = True
    with pytest.raises(KeyboardInterrupt) as info:
        smooth_layer_ig(model)
    assert from_the_signal(info.value) and alarm["fired"] == 1
    assert hooks(model) == before
    with torch.no_grad():
        assert torch.equal(model(IDS), logits)


def test_the_users_own_hooks_stay(alarm: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # Hooks the user had before the call, on a module and in torch's global dictionaries.
    model = TokenModel()
    seen: list[str] = []
    own = [
        model.embedding.register_forward_hook(lambda *_: seen.append("module")),
        nn.modules.module.register_module_forward_pre_hook(lambda *_: None),
        model.head.register_full_backward_hook(lambda *_: None),
    ]
    try:
        before = hooks(model)
        signal_after_captums_registration(monkeypatch, alarm)
        alarm["on"] = True
        with pytest.raises(KeyboardInterrupt):
            smooth_layer_ig(model)
        assert alarm["fired"] == 1
        assert hooks(model) == before
        seen.clear()
        model(IDS)
        assert seen == ["module"]
    finally:
        for handle in own:
            handle.remove()


class RegistersInForward(TokenModel):
    """A forward that registers a hook of its own (once), as some models do lazily."""

    def __init__(self) -> None:
        super().__init__()
        self.own: RemovableHandle | None = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.own is None:
            self.own = self.hidden.register_forward_hook(lambda *_: None)
        return super().forward(ids)


def test_a_hook_the_forward_registers_stays_after_a_call_that_ends_normally() -> None:
    model = RegistersInForward()
    smooth_layer_ig(model)
    assert model.own is not None and model.own.id in model.hidden._forward_hooks


def test_a_hook_the_forward_registers_goes_with_an_interrupted_call(
    alarm: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Documented: the guard cannot tell it from Captum's; the interrupted call registered it.
    model = RegistersInForward()
    signal_after_captums_registration(monkeypatch, alarm)
    alarm["on"] = True
    with pytest.raises(KeyboardInterrupt):
        smooth_layer_ig(model)
    assert model.own is not None and not model.hidden._forward_hooks


def test_hook_guard_removes_every_kind_of_hook_added_on_an_exception() -> None:
    model = TokenModel()
    mine = model.hidden.register_forward_pre_hook(lambda *_: None)
    before = hooks(model)
    with pytest.raises(KeyboardInterrupt), HookGuard(model) as _:
        model.embedding.register_forward_hook(lambda *_: None, with_kwargs=True, always_call=True)
        model.hidden.register_forward_pre_hook(lambda *_, **__: None, with_kwargs=True)
        model.head.register_full_backward_hook(lambda *_: None)
        model.head.register_full_backward_pre_hook(lambda *_: None)
        model.register_state_dict_pre_hook(lambda *_: None)
        nn.modules.module.register_module_forward_hook(lambda *_: None)
        raise KeyboardInterrupt
    assert hooks(model) == before
    assert mine.id in model.hidden._forward_pre_hooks


def test_hook_guard_removes_nothing_when_the_block_ends_normally() -> None:
    model = TokenModel()
    guard = HookGuard(model)
    with guard:
        handle = model.hidden.register_forward_hook(lambda *_: None)
    assert guard.removed == 0 and handle.id in model.hidden._forward_hooks
    handle.remove()


def test_modules_of_a_captum_layer_method() -> None:
    from captum.attr import LayerIntegratedGradients

    model = TokenModel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Multiple layers provided"
        method = LayerIntegratedGradients(model.forward, [model.embedding, model.hidden])
    assert modules_of(method, None) == [model, model.embedding, model.hidden]
