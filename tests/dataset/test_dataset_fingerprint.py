"""A store never mixes two data sets, and storage dtypes are checked before any work."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from captum.attr import Saliency
from test_dataset_store import Counting, make_data, make_model, run

from captum_smooth import AttributionStore, StoreError
from captum_smooth.dataset._fingerprint import DataFingerprint

# 37 examples, shards of 8 in batches of 4: 5 shards, 10 attribute calls.
CALLS = 10


def saliency() -> Counting:
    return Counting(Saliency(make_model()))


def other_data(changed: slice) -> tuple[torch.Tensor, torch.Tensor]:
    """The test data with the inputs of the examples in ``changed`` replaced."""
    x, y = make_data()
    x = x.clone()
    x[changed] = 1.0 - x[changed]
    return x, y


def test_the_same_data_reopen_without_any_call(tmp_path: Path) -> None:
    first = run(saliency(), tmp_path / "s")[:]
    again = saliency()
    assert torch.equal(run(again, tmp_path / "s")[:], first)
    assert again.calls == 0


@pytest.mark.parametrize("what", ["inputs", "labels"])
def test_other_data_of_the_same_length_are_refused(tmp_path: Path, what: str) -> None:
    run(saliency(), tmp_path / "s")
    x, y = make_data()
    if what == "inputs":
        x = x.clone()
        x[20, 0, 0, 0] += 1e-3  # one element of one example (shard 2)
    else:
        y = y.clone()
        y[20] = (y[20] + 1) % 5
    method = saliency()
    with pytest.raises(StoreError, match=r"other data.*shard 2, examples 16\.\.23.*overwrite=True"):
        run(method, tmp_path / "s", data=(x, y))
    assert method.calls == 0
    # The store itself is untouched by the refusal.
    assert torch.equal(AttributionStore(tmp_path / "s")[:], run(saliency(), tmp_path / "r")[:])


def test_overwrite_recomputes_only_the_shards_whose_data_changed(tmp_path: Path) -> None:
    run(saliency(), tmp_path / "s")
    data = other_data(slice(9, 18))  # shards 1 (8..15) and 2 (16..23)
    method = saliency()
    store = run(method, tmp_path / "s", data=data, overwrite=True)
    assert method.calls == 4  # two shards of two batches
    fresh = run(saliency(), tmp_path / "fresh", data=data)
    assert torch.equal(store[:], fresh[:])
    # Now the store is the new data's: they reopen it without any call.
    again = saliency()
    run(again, tmp_path / "s", data=data)
    assert again.calls == 0


def test_overwrite_that_is_interrupted_leaves_the_changed_shards_unfinished(
    tmp_path: Path,
) -> None:
    run(saliency(), tmp_path / "s")
    data = other_data(slice(0, 37))  # every shard
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(Counting(Saliency(make_model()), fail_at=3), tmp_path / "s", data=data, overwrite=True)
    # Shard 0 was recomputed; none of the old data's shards 1.. may count as finished.
    with pytest.raises(StoreError, match="unfinished"):
        AttributionStore(tmp_path / "s")
    resumed = saliency()
    store = run(resumed, tmp_path / "s", data=data)
    assert resumed.calls == CALLS - 2
    assert torch.equal(store[:], run(saliency(), tmp_path / "fresh", data=data)[:])


def test_a_store_without_fingerprints_is_kept_with_a_warning(tmp_path: Path) -> None:
    reference = run(saliency(), tmp_path / "s")[:]
    for manifest in (tmp_path / "s").glob("shard-*.json"):
        content = json.loads(manifest.read_text())
        del content["data_sha256"]
        manifest.write_text(json.dumps(content))
    method = saliency()
    with pytest.warns(RuntimeWarning, match="5 finished shard.*without a data fingerprint"):
        store = run(method, tmp_path / "s")
    assert method.calls == 0 and torch.equal(store[:], reference)


def test_the_index_keeps_each_shards_data_fingerprint(tmp_path: Path) -> None:
    run(saliency(), tmp_path / "s")
    index = json.loads((tmp_path / "s" / "index.json").read_text())
    x, y = make_data()
    fingerprint = DataFingerprint()
    fingerprint.update(x[:8], y[:8])
    assert index["shards"][0]["data_sha256"] == fingerprint.hexdigest()
    assert len({shard["data_sha256"] for shard in index["shards"]}) == 5


def test_fingerprint_does_not_depend_on_batching_but_on_every_byte() -> None:
    x, y = make_data()

    def digest(x: torch.Tensor, y: torch.Tensor | None, cuts: list[int]) -> str:
        fingerprint = DataFingerprint()
        for lo, hi in zip([0, *cuts], [*cuts, len(x)]):
            fingerprint.update(x[lo:hi], None if y is None else y[lo:hi])
        return fingerprint.hexdigest()

    whole = digest(x, y, [])
    assert digest(x, y, [1, 5, 30]) == whole
    assert digest(x.double(), y, []) != whole  # the dtype counts, not only the values
    assert digest(x, None, []) != whole
    assert digest(x.reshape(37, 3, 36), y, []) != whole  # the per-example shape counts
    flipped = x.clone()
    flipped.view(-1)[-1] = torch.nextafter(flipped.view(-1)[-1], torch.tensor(2.0))
    assert digest(flipped, y, []) != whole
    assert digest(x.bfloat16(), y, [3]) == digest(x.bfloat16(), y, [])


@pytest.mark.parametrize(
    ("given", "stored"),
    [("half", torch.float16), ("float16", torch.float16), ("float", torch.float32)],
)
def test_dtype_aliases_are_stored_under_their_canonical_name(
    tmp_path: Path, given: str, stored: torch.dtype
) -> None:
    store = run(saliency(), tmp_path / "s", dtype=given)
    reopened = AttributionStore(tmp_path / "s")
    assert store.dtype == reopened.dtype == stored
    assert reopened.metadata["dtype"] == str(stored).removeprefix("torch.")


@pytest.mark.parametrize("bad", ["bfloat16", "int8", "double", "halfs", torch.float64, 16, None])
def test_bad_dtypes_are_refused_before_any_work(tmp_path: Path, bad: object) -> None:
    method = saliency()
    with pytest.raises(ValueError, match=r"dtype must be torch\.float16 or torch\.float32"):
        run(method, tmp_path / "s", dtype=bad)
    assert method.calls == 0
    assert not (tmp_path / "s").exists()


def test_overwrite_must_be_a_bool(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="overwrite must be a bool"), warnings.catch_warnings():
        run(saliency(), tmp_path / "s", overwrite="yes")


def test_cli_refuses_other_data_unless_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("sklearn")
    from captum_smooth.app import dataset_cli
    from captum_smooth.app.models.digits import DigitsCNN

    torch.manual_seed(0)
    weights = tmp_path / "digits.pt"
    torch.save(DigitsCNN().eval().state_dict(), weights)
    argv = ["explain-dataset", "--data", "digits", "--out", str(tmp_path / "s"), "--limit", "24"]
    argv += ["--method", "gradient", "--weights", str(weights), "--shard-size", "8"]
    argv += ["--batch-size", "8", "--no-progress"]
    assert dataset_cli.main(argv) == 0
    first = AttributionStore(tmp_path / "s")[:]
    real_data = dataset_cli._data

    def other_digits(args: object) -> tuple:
        (x, y), model, meta = real_data(args)
        return (x.flip(-1), y), model, meta  # the same settings, other images

    monkeypatch.setattr(dataset_cli, "_data", other_digits)
    capsys.readouterr()
    assert dataset_cli.main(argv) == 1
    assert "other data" in capsys.readouterr().err
    assert torch.equal(AttributionStore(tmp_path / "s")[:], first)
    assert dataset_cli.main([*argv, "--overwrite"]) == 0
    assert not torch.equal(AttributionStore(tmp_path / "s")[:], first)
