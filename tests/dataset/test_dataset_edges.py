"""explain_dataset at its edges (issue #22): a failed run leaves nothing that blocks the
corrected one, and the arguments the library passes on to Captum or torch are checked here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from captum.attr import Saliency
from test_dataset_store import SMOOTH, N, make_data, make_model, run, tunnel

from captum_smooth import AdaptGrad, StoreError


def _nan_data() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = make_data()
    x[3, 0, 0, 0] = float("nan")
    return x, y


# Each run fails in the first batch of shard 0, after the store's settings are written; the
# second item is the corrected call's change.
FAILED_FIRST_SHARD: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "confidence": ({"confidence": 2.0}, {"confidence": 0.9}),
    "target": ({"target": 99}, {"target": 1}),
    "NaN data": ({"data": _nan_data()}, {}),
    "unknown keyword": ({"stdevs_typo": 0.1}, {}),
}


@pytest.mark.parametrize("case", sorted(FAILED_FIRST_SHARD))
def test_a_run_that_failed_before_its_first_shard_does_not_block_the_corrected_one(
    tmp_path: Path, case: str
) -> None:
    bad, good = FAILED_FIRST_SHARD[case]
    out = tmp_path / "s"
    with pytest.raises((ValueError, TypeError)):
        run(AdaptGrad(make_model()), out, nt_samples=2, **bad)
    assert sorted(p.name for p in out.iterdir()) == ["store.json"]  # its settings only
    store = run(AdaptGrad(make_model()), out, nt_samples=2, **good)  # main: "other settings"
    reference = run(AdaptGrad(make_model()), tmp_path / "ref", nt_samples=2, **good)
    assert len(store) == N and torch.equal(store[:], reference[:])


def test_a_store_with_a_finished_shard_still_refuses_other_settings(tmp_path: Path) -> None:
    out = tmp_path / "s"
    x, y = make_data()
    x[20, 0, 0, 0] = float("nan")  # shard 2 (shards of 8): shards 0 and 1 are finished
    with pytest.raises(ValueError, match="example 20"):
        run(tunnel(), out, data=(x, y), **SMOOTH)
    assert (out / "shard-000001.json").is_file()
    with pytest.raises(StoreError, match=r"other settings(.|\n)*seed: stored"):
        run(tunnel(), out, seed=1, **SMOOTH)


def test_nan_inputs_are_refused_naming_the_example(tmp_path: Path) -> None:
    # main: Saliency stored NaN maps for example 3, silently
    with pytest.raises(ValueError, match="data: example 3 holds NaN"):
        run(Saliency(make_model()), tmp_path / "s", data=_nan_data())


def test_device_is_checked_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "s"
    with pytest.raises(ValueError, match="device 'banana'") as err:  # main: torch's RuntimeError
        run(Saliency(make_model()), out, device="banana")
    assert "captum_smooth" in err.traceback[-1].path.as_posix()
    if not torch.cuda.is_available():  # main: "Torch not compiled with CUDA", store.json left
        with pytest.raises(ValueError, match="device 'cuda'"):
            run(Saliency(make_model()), out, device="cuda")
    with pytest.raises(TypeError, match="device"):
        run(Saliency(make_model()), out, device=1.5)
    assert not out.exists()


def test_targets_and_labels_outside_the_model_are_named(tmp_path: Path) -> None:
    out = tmp_path / "s"
    with pytest.raises(ValueError, match="target 99 is not a class of the model's 5"):
        run(Saliency(make_model()), out, target=99)  # main: IndexError in Captum
    x, y = make_data()
    with pytest.raises(ValueError, match="label 7 of example 0"):
        run(Saliency(make_model()), out, data=(x, torch.full_like(y, 7)))
    with pytest.raises(ValueError, match="integer class indices"):
        run(Saliency(make_model()), out, data=(x, y.float()))  # main: gather() in Captum
    with pytest.raises(TypeError, match="target callable"):
        run(Saliency(make_model()), out, target=lambda inputs, labels: "cat")


def test_arguments_passed_on_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "s"
    cases: list[tuple[dict[str, Any], type, str]] = [
        ({"show_progress": "no"}, TypeError, "show_progress"),  # main: ran
        ({"metadata": {"x": float("nan")}}, TypeError, "metadata"),  # main: never resumable
        ({"inputs": make_data()[0]}, TypeError, "inputs"),
        ({"stdevs_typo": 0.1}, TypeError, "stdevs_typo"),  # Saliency takes no **kwargs
    ]
    for kwargs, error, name in cases:
        with pytest.raises(error, match=name):
            run(Saliency(make_model()), out, **kwargs)
    assert not out.exists()
