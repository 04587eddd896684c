"""A Ctrl-C while the loop puts the caller's grad mode back: it is put back all the same.

The loop runs its inner calls under no_grad (Captum turns gradients on where it needs them).
``torch.no_grad().__exit__`` restores the caller's mode in one statement that a signal arriving
first skips: the caller's process was left with gradients off. Here a real signal arrives
right when the mode is being put back.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import pytest
import torch
from interrupt_cases import TokenModel, armed_alarm, from_the_signal, smooth_layer_ig

from captum_smooth.core.hook_guard import NoGrad

alarm_fixture = pytest.fixture(armed_alarm, name="alarm")


def signal_when_grad_mode_is_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.set_grad_enabled(True)`` called from a context manager's exit receives a real
    SIGALRM first (gradients are still off at that moment)."""
    real = torch.set_grad_enabled

    def signalled(mode: bool) -> Any:
        caller = sys._getframe(1).f_code.co_name
        if mode and not torch.is_grad_enabled() and caller in ("__exit__", "_exit"):
            signal.raise_signal(signal.SIGALRM)
        return real(mode)

    monkeypatch.setattr(torch, "set_grad_enabled", signalled)


def test_a_ctrl_c_while_the_grad_mode_is_put_back(
    alarm: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = TokenModel()
    torch.set_grad_enabled(True)
    signal_when_grad_mode_is_put_back(monkeypatch)
    alarm["on"] = True
    with pytest.raises(KeyboardInterrupt) as info:
        smooth_layer_ig(model)
    monkeypatch.undo()
    assert from_the_signal(info.value) and alarm["fired"] == 1
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("mode", [True, False])
def test_no_grad_puts_the_callers_mode_back(mode: bool) -> None:
    with torch.set_grad_enabled(mode):
        with NoGrad():
            assert not torch.is_grad_enabled()
        assert torch.is_grad_enabled() is mode
        with pytest.raises(KeyboardInterrupt), NoGrad():
            raise KeyboardInterrupt
        assert torch.is_grad_enabled() is mode
