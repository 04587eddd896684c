"""The weight-noise cache at its edges (issue #22, case 4), and the CLI's text when the search
did not bracket its answer (case 3).

* an entry with a wrong type or range is recalibrated, with a warning naming the cache file;
* writers in several processes keep every entry (an flock serializes read-modify-write);
* no temporary file is left behind whatever fails (the cache a folder, a full disk, an
  interrupt, a folder that cannot be made);
* a file that is not JSON is kept aside, not silently overwritten.
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from captum_smooth.app import calibrate
from captum_smooth.app.calibrate import calibrated_weight_noise
from captum_smooth.methods.noisegrad import NoiseGrad

from cli_models import tiny_cnn

SIZE = 16
_PROXY: dict[tuple[int, int], Tensor] = {}
_REAL_PROXY = calibrate.proxy_images


def _memo_proxy(size: int, seed: int = 0) -> Tensor:
    # The bundled photos take ~1 s to load and resize; the same images every time.
    if (size, seed) not in _PROXY:
        _PROXY[size, seed] = _REAL_PROXY(size, seed)
    return _PROXY[size, seed].clone()


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache folder per test (the cache file inside it), the proxy images memoized."""
    monkeypatch.setenv("CAPTUM_SMOOTH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(calibrate, "proxy_images", _memo_proxy)
    return tmp_path / "cache" / "weight-noise.json"


def temporary_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".weight-noise.*")) if folder.is_dir() else []


def edit_the_entry(path: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    """Replace the cache's one entry by ``edit(entry)`` (written as JSON text, NaN allowed)."""
    data = json.loads(path.read_text("utf-8"))
    (key,) = data
    data[key] = edit(data[key])
    path.write_text(json.dumps(data), "utf-8")


def with_field(name: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda entry: {**entry, name: value}


BAD_ENTRIES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "stdev a string": with_field("stdev", "0.01"),
    "stdev 1e6": with_field("stdev", 1e6),
    "stdev negative": with_field("stdev", -0.01),
    "stdev NaN": with_field("stdev", float("nan")),
    "agreement above 1": with_field("agreement", 1.5),
    "n_images a bool": with_field("n_images", True),
    "history not pairs": with_field("history", [0.01, 0.02]),
    "warnings not strings": with_field("warnings", [1]),
    "bracketed missing": lambda entry: {k: v for k, v in entry.items() if k != "bracketed"},
    "another model's fingerprint": with_field("fingerprint", "0" * 64),
    "not an object": lambda entry: [entry["stdev"]],
}


_CALIBRATED: dict[str, Any] = {}


def calibrated_once(cache: Path) -> calibrate.WeightNoiseChoice:
    """tiny_cnn's choice, its cache file written at ``cache`` (calibrated once per module)."""
    if not _CALIBRATED:
        _CALIBRATED["choice"] = calibrated_weight_noise(tiny_cnn(), SIZE)
        _CALIBRATED["text"] = cache.read_text("utf-8")
    else:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(_CALIBRATED["text"], "utf-8")
    return _CALIBRATED["choice"]


@pytest.mark.parametrize("kind", list(BAD_ENTRIES))
def test_a_bad_entry_is_recalibrated_with_a_warning_naming_the_file(cache: Path, kind: str) -> None:
    first = calibrated_once(cache)
    edit_the_entry(cache, BAD_ENTRIES[kind])
    model = tiny_cnn()
    again = calibrated_weight_noise(model, SIZE)
    assert not again.cached and again.stdev == first.stdev
    assert [w for w in again.warnings if str(cache) in w and "bad entry" in w], again.warnings
    # The entry was replaced: read from the cache from now on, without the warning.
    third = calibrated_weight_noise(model, SIZE)
    assert third.cached and third.stdev == first.stdev and third.warnings == first.warnings


def test_a_string_scale_in_the_cache_no_longer_breaks_noisegrad(cache: Path) -> None:
    # On main the entry {"stdev": "0.01", ...} was returned as it was, and NoiseGrad refused it
    # in every later run, with a message that did not name the cache.
    calibrated_once(cache)
    edit_the_entry(cache, with_field("stdev", "0.01"))
    model = tiny_cnn()
    choice = calibrated_weight_noise(model, SIZE)
    x = torch.rand(1, 3, SIZE, SIZE)
    NoiseGrad(model).attribute(x, target=0, weight_stdev=choice.stdev, n_weight_samples=2)


def _write_keys(path: str, first: int, barrier: Any) -> None:
    barrier.wait()  # all four start together: the most overlap, if there is a race
    for i in range(first, first + 50):
        calibrate._write_cache(Path(path), f"key{i}", {"i": i})


def test_writers_in_four_processes_keep_every_entry(cache: Path) -> None:
    # On main (no lock) 50-93 of the 200 entries were kept. With the lock every write reads
    # the file after the previous write's rename, whatever the timing.
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    cache.parent.mkdir(parents=True)
    workers = [
        context.Process(target=_write_keys, args=(str(cache), 50 * k, barrier)) for k in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert [w.exitcode for w in workers] == [0] * 4
    data = json.loads(cache.read_text("utf-8"))
    assert data == {f"key{i}": {"i": i} for i in range(200)}
    assert temporary_files(cache.parent) == []


def test_a_writer_waits_for_the_one_between_its_read_and_its_write(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A deterministic interleaving: writer A is held between reading the file and writing it
    # back; writer B starts then. Without a lock B writes first and A's stale copy drops B's
    # entry; with the lock B waits (it is released once B is inside flock, or done).
    fcntl = pytest.importorskip("fcntl")
    cache.parent.mkdir(parents=True)
    a_read, b_waits, b_done, go = (threading.Event() for _ in range(4))
    read, flock = calibrate._read_cache, fcntl.flock

    def read_then_hold(path: Path) -> Any:
        result = read(path)
        if threading.current_thread().name == "A":
            a_read.set()
            assert go.wait(60)
        return result

    def flock_seen(handle: int, operation: int) -> None:
        if threading.current_thread().name == "B":
            b_waits.set()
        flock(handle, operation)

    monkeypatch.setattr(calibrate, "_read_cache", read_then_hold)
    monkeypatch.setattr(fcntl, "flock", flock_seen)

    def write(key: str, done: threading.Event | None = None) -> None:
        calibrate._write_cache(cache, key, {"key": key})
        if done is not None:
            done.set()

    a = threading.Thread(target=write, args=("a",), name="A")
    b = threading.Thread(target=write, args=("b", b_done), name="B")
    a.start()
    assert a_read.wait(60)
    b.start()
    while not (b_waits.wait(0.01) or b_done.is_set()):
        pass
    go.set()
    a.join(60)
    b.join(60)
    assert sorted(json.loads(cache.read_text("utf-8"))) == ["a", "b"]


def _full_disk(*args: Any, **kwargs: Any) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


def _interrupt(*args: Any, **kwargs: Any) -> None:
    raise KeyboardInterrupt


def test_no_temporary_file_is_left_when_the_cache_is_a_folder(cache: Path) -> None:
    cache.mkdir(parents=True)
    choice = calibrated_weight_noise(tiny_cnn(), SIZE)
    assert choice.cache_file is None
    assert [w for w in choice.warnings if f"could not write the calibration cache {cache}" in w]
    assert temporary_files(cache.parent) == [] and cache.is_dir()


@pytest.mark.parametrize("failure", ["full disk", "interrupt"])
def test_no_temporary_file_is_left_when_the_write_fails(
    cache: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    model = tiny_cnn()
    first = calibrated_once(cache)
    before = cache.read_text("utf-8")
    other = tiny_cnn()
    with torch.no_grad():
        other[0].weight.mul_(1.5)
    monkeypatch.setattr(json, "dump", _full_disk if failure == "full disk" else _interrupt)
    if failure == "full disk":
        choice = calibrated_weight_noise(other, SIZE)
        assert choice.cache_file is None
        assert [w for w in choice.warnings if "No space left" in w and str(cache) in w]
    else:
        with pytest.raises(KeyboardInterrupt):
            calibrated_weight_noise(other, SIZE)
    assert temporary_files(cache.parent) == []
    assert cache.read_text("utf-8") == before  # the old file, whole
    monkeypatch.undo()
    assert calibrated_weight_noise(model, SIZE).stdev == first.stdev


def test_a_cache_folder_that_cannot_be_made_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A folder under a regular file (what an unwritable folder does to a root user, too).
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("CAPTUM_SMOOTH_CACHE", str(tmp_path / "file" / "cache"))
    choice = calibrated_weight_noise(tiny_cnn(), SIZE)
    assert choice.cache_file is None and not choice.cached
    assert [w for w in choice.warnings if "could not write the calibration cache" in w]
    assert [p.name for p in tmp_path.iterdir()] == ["file"]
    assert (tmp_path / "file").read_text() == "x"


def test_a_file_that_is_not_json_is_kept_aside(cache: Path) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json", "utf-8")
    choice = calibrated_weight_noise(tiny_cnn(), SIZE)
    aside = cache.with_name("weight-noise.json.corrupt")
    assert [w for w in choice.warnings if str(cache) in w and str(aside) in w], choice.warnings
    assert aside.read_text("utf-8") == "{not json"
    assert len(json.loads(cache.read_text("utf-8"))) == 1 and choice.cache_file == str(cache)


def robust_cnn() -> nn.Module:
    """tiny_cnn with zero weights and one bias: its logits are that bias, (1, 0, 0, 0, 0).

    Multiplicative noise keeps zeros at zero; class 0 stays the prediction unless 1 + s z < 0,
    which no scale of the CLI's search (s <= 0.32) reaches on the seeded draws.
    """
    model = tiny_cnn()
    with torch.no_grad():
        for param in model.parameters():
            param.zero_()
        model[-1].bias[0] = 1.0
    return model


def test_the_text_says_at_least_s_when_the_search_did_not_bracket_it() -> None:
    choice = calibrated_weight_noise(robust_cnn(), SIZE)
    # Six doublings from 0.01, every one kept the agreement: 0.32 is the largest tried.
    assert [s for s, _ in choice.history] == pytest.approx([0.01 * 2**k for k in range(6)])
    assert choice.stdev == 0.32 and choice.bracketed is False
    assert "at least s keeping 95% of the clean accuracy" in choice.describe()
    assert "the largest s" not in choice.describe()
    assert [w for w in choice.warnings if "lower bound" in w]
    cached = calibrated_weight_noise(robust_cnn(), SIZE)
    assert cached.cached and cached.describe().count("at least s") == 1
    bracketed = calibrated_weight_noise(tiny_cnn(), SIZE)
    assert bracketed.bracketed and "the largest s keeping 95%" in bracketed.describe()
