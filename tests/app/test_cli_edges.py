"""The command line at its edges (issue #22): output folders written as a whole, bad input
refused before any work in one line naming the option, exit status 2, nothing written."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from captum_smooth.app import cli, explain, report, text

TESTS = Path(__file__).resolve().parent
TINY = "cli_models:tiny_cnn"

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None
    or importlib.util.find_spec("all_minilm_l6_v2") is None,
    reason="the text extra (transformers) or the MiniLM model wheel is not installed",
)


@pytest.fixture(autouse=True)
def _tests_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))


@pytest.fixture
def image(tmp_path: Path) -> str:
    array = (np.random.default_rng(0).random((20, 20, 3)) * 255).astype(np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(array).save(path)
    return str(path)


def _explain(
    image: str, out: Path, *extra: str, methods: str = "gradient,smoothgrad", samples: str = "2"
) -> list[str]:
    """explain on the tiny model, fast; ``samples=""`` samples to the default tolerance."""
    argv = [
        "explain", image, "--model", TINY, "--size", "16", "--auc-steps", "0", "--no-controls",
        "--no-progress", "-m", methods, "--out", str(out), *extra,
    ]  # fmt: skip
    return argv + (["--samples", samples] if samples else [])


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def _siblings(folder: Path) -> list[str]:
    """What a run left beside ``folder`` (staging or set-aside folders)."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def _must_not_run(*_: Any, **__: Any) -> Any:
    raise AssertionError("bad input must be refused before this runs")


# ------------------------------------------------------------------- 2: folders as a whole


@pytest.fixture
def old_run(image: str, tmp_path: Path) -> Path:
    """An --out folder holding a previous run's results and a file of the user's."""
    out = tmp_path / "results"
    assert cli.main(_explain(image, out, "--seed", "1")) == 0
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    (out / "mine" / "data.txt").write_text("kept")
    return out


@pytest.mark.parametrize("failing", [1, 2])
def test_a_failed_replacement_leaves_the_old_results_whole(
    image: str,
    old_run: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    failing: int,
) -> None:
    # The failing-th rename into the output folder fails (on main, the 2nd left the folder
    # with the new PNG and the old JSON and CSV).
    before = _snapshot(old_run)
    calls = {"n": 0}
    real_replace = os.replace

    def flaky_replace(source: Any, destination: Any) -> None:
        calls["n"] += 1
        if calls["n"] == failing:
            raise OSError(28, "No space left on device")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", flaky_replace)
    capsys.readouterr()
    assert cli.main(_explain(image, old_run, "--seed", "2")) == 1
    assert "No space left" in _one_line(capsys)
    assert _snapshot(old_run) == before
    assert _siblings(old_run) == []


def test_a_folder_named_as_an_output_is_refused_before_any_work(
    image: str, old_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # On main the PNG and JSON were replaced and the run failed on this folder: a mix.
    (old_run / "metrics.csv").unlink()
    (old_run / "metrics.csv").mkdir()
    (old_run / "metrics.csv" / "x").write_text("user data")
    before = _snapshot(old_run)
    monkeypatch.setattr(explain, "load_model", _must_not_run)
    capsys.readouterr()
    assert cli.main(_explain(image, old_run, "--seed", "2")) == 2
    line = _one_line(capsys)
    assert "--out" in line and "'metrics.csv'" in line
    assert _snapshot(old_run) == before


def test_a_new_run_replaces_the_results_and_keeps_the_users_files(
    image: str, old_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = _snapshot(old_run)
    os.chmod(old_run, 0o750)
    assert cli.main(_explain(image, old_run, "--seed", "2")) == 0
    new = _snapshot(old_run)
    assert set(new) == set(old)
    assert new["notes.txt"] == b"mine" and new["mine/data.txt"] == b"kept"
    assert all(new[name] != old[name] for name in report.OUTPUT_FILES)
    assert (old_run.stat().st_mode & 0o777) == 0o750
    assert _siblings(old_run) == []


def test_a_linked_out_folder_stays_a_link(image: str, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    assert cli.main(_explain(image, link)) == 0
    assert link.is_symlink() and (real / "metrics.json").is_file()


def test_write_folder_failing_leaves_no_new_folder(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b" / "out"

    def fill(folder: Path) -> None:
        (folder / "x.txt").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        report.write_folder(out, fill)
    assert list(tmp_path.iterdir()) == []  # nor the parents it made


@needs_minilm
def test_explain_text_writes_its_folder_as_a_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On main each file was written in place: a failure after the HTML left it with old files.
    out = tmp_path / "text"
    out.mkdir()
    (out / "text_attributions.html").write_text("old")
    (out / "text_attributions.csv").write_text("old")

    def broken_png(*_: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(text, "_png", broken_png)
    rows = [text.TokenRow("plain", ["[CLS]", "a", "[SEP]"], [0.0, 1.0, 0.0], [0.0] * 3, 0.0, 1, 0)]
    meta = {"text": "a", "compare": "b", "similarity": 0.5}
    with pytest.raises(RuntimeError, match="disk full"):
        text.write_text_outputs(rows, meta, out)
    assert _snapshot(out) == {"text_attributions.csv": b"old", "text_attributions.html": b"old"}
    assert _siblings(out) == []


# ------------------------------------------------------------------- 6: bad input that ran


def test_an_empty_target_is_refused(image: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    for target in ("", "   "):
        assert cli.main(_explain(image, out, "--target", target)) == 2
        assert "--target is empty" in _one_line(capsys)
        assert not out.exists()


@pytest.mark.parametrize("sentence", ["", "   "])
@pytest.mark.parametrize("option", ["--text", "--compare"])
def test_an_empty_sentence_is_refused_before_loading(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    option: str,
    sentence: str,
) -> None:
    monkeypatch.setattr(text, "_import_transformers", _must_not_run)
    out = tmp_path / "o"
    argv = ["explain-text", option, sentence, "--methods", "plain", "--out", str(out)]
    assert cli.main(argv) == 2
    assert f"{option} is empty" in _one_line(capsys)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- 7: exit 2, not 1


def test_out_below_a_file_is_bad_input(
    image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setattr(explain, "load_model", _must_not_run)
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert cli.main(_explain(image, afile / "sub")) == 2
    assert "--out" in _one_line(capsys)
    assert afile.read_text() == "x"


@pytest.mark.parametrize("seed", [str(2**70), str(2**64), "-1"])
def test_a_seed_torch_cannot_take_is_bad_input(
    image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    seed: str,
) -> None:
    monkeypatch.setattr(explain, "load_model", _must_not_run)
    out = tmp_path / "o"
    assert cli.main(_explain(image, out, "--seed", seed)) == 2
    assert "--seed must be in 0..2**64-1" in _one_line(capsys)
    assert not out.exists()


def test_the_largest_seed_runs_on_every_image(image: str, tmp_path: Path) -> None:
    # Image i is explained with seed + i: wrapped, not an overflow.
    out = tmp_path / "o"
    argv = _explain(image, out, "--seed", str(2**64 - 1))
    argv.insert(1, image)
    assert cli.main(argv) == 0


@pytest.mark.parametrize(("methods", "cap", "need"), [("smoothgrad", 1, 2), ("adaptgrad", 2, 3)])
def test_a_cap_too_small_for_an_error_names_max_samples(
    image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    methods: str,
    cap: int,
    need: int,
) -> None:
    monkeypatch.setattr(explain, "load_model", _must_not_run)
    argv = _explain(image, tmp_path / "o", "--max-samples", str(cap), methods=methods, samples="")
    assert cli.main(argv) == 2
    line = _one_line(capsys)
    assert f"--max-samples {cap} is too small for {methods}" in line
    assert f">= {need}" in line and "min_samples" not in line


@pytest.mark.parametrize("target", ["-1", "1.5", "-0.5", "1e3", "+2.0"])
def test_a_target_that_is_no_class_index_is_refused_before_any_work(
    image: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    target: str,
) -> None:
    monkeypatch.setattr(explain, "load_model", _must_not_run)
    assert cli.main(_explain(image, tmp_path / "o", "--target", target)) == 2
    assert f"--target {target!r} is not a class index" in _one_line(capsys)


@needs_minilm
def test_a_text_longer_than_the_model_reads_names_text_and_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(text, "load_minilm", _must_not_run)
    monkeypatch.setattr(text, "_load_encoder", _must_not_run, raising=False)
    out = tmp_path / "o"
    argv = ["explain-text", "--text", "word " * 2000, "--methods", "plain", "--out", str(out)]
    assert cli.main(argv) == 2
    line = _one_line(capsys)
    assert "--text is 2002 tokens long" in line and "at most 512" in line
    assert not out.exists()
