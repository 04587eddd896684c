"""A Ctrl-C while the global random states are put back: they are put back all the same.

With ``generator=``, the loop seeds Python's, numpy's and torch's global states for the inner
calls and puts the caller's back on exit (captum_smooth.core.random_state). Here a real signal
(``signal.raise_signal``) arrives at a chosen point: inside each setter of the restore, inside
the seeding, inside the inner method. The signal's KeyboardInterrupt must still come out of
the call, and every global state must be the caller's.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from interrupt_cases import (
    TokenModel,
    armed_alarm,
    from_the_signal,
    random_states,
    same_random_states,
    smooth_layer_ig,
)

from captum_smooth.core.random_state import seeded_global_states
from captum_smooth.noise._signals import GUARD

alarm_fixture = pytest.fixture(armed_alarm, name="alarm")

#: The setters and seeders the loop calls, by the module attribute it reads them from.
RESTORE = {
    "random.setstate": (random, "setstate"),
    "numpy.random.set_state": (np.random, "set_state"),
    "torch.set_rng_state": (torch, "set_rng_state"),
}
SEED = {
    "random.seed": (random, "seed"),
    "numpy.random.seed": (np.random, "seed"),
}


def signal_inside(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> None:
    """``owner.name`` first receives a real SIGALRM (while the alarm is armed), then runs."""
    real: Callable[..., Any] = getattr(owner, name)

    def signalled(*args: Any, **kwargs: Any) -> Any:
        signal.raise_signal(signal.SIGALRM)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, signalled)


def scrambled_states() -> None:
    """Global states no seed of the loop's gives (the caller's own)."""
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    random.random(), np.random.rand(), torch.rand(1)


@pytest.mark.parametrize("setter", list(RESTORE))
def test_a_ctrl_c_inside_the_restore(
    alarm: dict[str, Any], monkeypatch: pytest.MonkeyPatch, setter: str
) -> None:
    model = TokenModel()
    scrambled_states()
    before = random_states()
    signal_inside(monkeypatch, *RESTORE[setter])
    alarm["on"] = True
    with pytest.raises(KeyboardInterrupt) as info:
        smooth_layer_ig(model)
    monkeypatch.undo()
    assert from_the_signal(info.value) and alarm["fired"] == 1
    assert same_random_states(before, random_states())
    assert GUARD.depth == 0 and not GUARD.pending


def test_a_ctrl_c_inside_the_restore_of_a_bare_block(
    alarm: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    scrambled_states()
    before = random_states()
    signal_inside(monkeypatch, *RESTORE["random.setstate"])
    alarm["on"] = True
    with pytest.raises(KeyboardInterrupt), seeded_global_states(torch.Generator().manual_seed(0)):
        np.random.rand()
    monkeypatch.undo()
    assert alarm["fired"] == 1
    assert same_random_states(before, random_states())


def test_a_generator_that_ran_out_of_draws_is_not_moved_twice_by_the_interrupt(
    alarm: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The block draws nothing from the generator: the exit takes the seed from it (once),
    # also when a signal lands in the restore.
    gen, twin = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    with seeded_global_states(twin):
        pass
    signal_inside(monkeypatch, *RESTORE["torch.set_rng_state"])
    alarm["on"] = True
    with pytest.raises(KeyboardInterrupt), seeded_global_states(gen):
        pass
    monkeypatch.undo()
    assert torch.equal(gen.get_state(), twin.get_state())


@pytest.mark.parametrize("seeder", list(SEED))
def test_a_ctrl_c_inside_the_seeding(
    alarm: dict[str, Any], monkeypatch: pytest.MonkeyPatch, seeder: str
) -> None:
    # The entry is guarded too: the states are seeded completely, then put back, then the
    # KeyboardInterrupt comes out of the entry.
    model = TokenModel()
    scrambled_states()
    before = random_states()
    signal_inside(monkeypatch, *SEED[seeder])
    alarm["on"] = True
    with pytest.raises(KeyboardInterrupt):
        smooth_layer_ig(model)
    monkeypatch.undo()
    assert alarm["fired"] == 1
    assert same_random_states(before, random_states())


def test_a_ctrl_c_inside_the_inner_method(
    alarm: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = TokenModel()
    scrambled_states()
    before = random_states()
    signal_inside(monkeypatch, model.head, "forward")
    alarm["on"] = True
    with pytest.raises(KeyboardInterrupt):
        smooth_layer_ig(model)
    monkeypatch.undo()
    assert alarm["fired"] == 1
    assert same_random_states(before, random_states())
