"""The command line: runs on a tiny model, writes a valid grid and tables, refuses bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_smooth.app import cli
from captum_smooth.app.methods import (
    DEFAULT_METHODS,
    get_method,
    method_names,
    resolve_methods,
)
from captum_smooth.noise import kernel_names

TESTS = Path(__file__).resolve().parent
TINY = "cli_models:tiny_cnn"
N_CONTROLS = 3


@pytest.fixture(autouse=True)
def _tests_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    # `--model cli_models:...` imports from the working directory or sys.path.
    monkeypatch.syspath_prepend(str(TESTS))


@pytest.fixture
def images(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for name, size in (("noise", (40, 30)), ("stripes", (36, 36))):
        array = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
        if name == "stripes":
            array[::4] = 255
        path = tmp_path / f"{name}.png"
        Image.fromarray(array).save(path)
        paths.append(str(path))
    return paths


def _args(images: list[str], out: Path, *extra: str) -> list[str]:
    return [
        "explain",
        *images,
        "--model",
        TINY,
        "--size",
        "24",
        "--samples",
        "2",
        "--auc-steps",
        "3",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def _adaptive(args: list[str]) -> list[str]:
    """``args`` without ``--samples N``: each smoothing method samples to a tolerance."""
    i = args.index("--samples")
    return args[:i] + args[i + 2 :]


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert err[0].startswith("captum-smooth")
    return err[0]


def _nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if ".partial-" in p.name]


# ---------------------------------------------------------------------------- registry


def test_method_names_cover_every_kernel() -> None:
    names = method_names()
    for name in DEFAULT_METHODS:
        assert name in names
    for kernel in kernel_names():
        spec = get_method("smoothgrad-" + kernel.replace("_", "-"))
        assert spec.fixed == {"kernel": kernel}


def test_unknown_method_lists_known_names() -> None:
    with pytest.raises(ValueError, match="known methods: gradient, smoothgrad"):
        resolve_methods(["smoothgrad", "nosuch"])
    with pytest.raises(ValueError, match="named twice"):
        resolve_methods(["vanilla", "gradient"])


def test_aliases_and_budgets() -> None:
    assert [s.name for s in resolve_methods(["Saliency", "integrated-gradients"])] == [
        "gradient",
        "ig",
    ]
    for n in (1, 2, 7, 16, 50):
        assert get_method("smoothgrad").evaluations(n) == n
        assert get_method("adaptgrad").evaluations(n) == max(2, n)
        assert 1 <= get_method("fusiongrad").evaluations(n) <= max(1, n)
    assert get_method("fusiongrad").settings(16)["n_weight_samples"] == 4


def test_default_methods_hold_the_presets() -> None:
    assert {"gradient", "smoothgrad", "adaptgrad", "ig"} <= set(DEFAULT_METHODS)


def test_every_method_holds_its_class() -> None:
    # The table holds the classes themselves (no import strings, nothing "not available").
    from captum.attr import Attribution

    for name in method_names():
        spec = get_method(name)
        assert isinstance(spec.cls, type) and issubclass(spec.cls, Attribution)
    missing = type(get_method("smoothgrad"))(
        "missing", "Missing", "", get_method("smoothgrad").cls, lambda n: {}, lambda n: n
    )
    with pytest.raises(ValueError, match="samples"):
        missing.kwargs(0)


@pytest.mark.parametrize(
    "name", ["gradient", "smoothgrad", "adaptgrad", "ig", "smoothgrad-laplace"]
)
def test_spec_attribute_is_signed_shape_and_seeded(name: str) -> None:
    from cli_models import tiny_cnn

    model = tiny_cnn()
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    spec = get_method(name)
    a = spec.attribute(model, x, 2, 3, seed=5)
    b = spec.attribute(model, x, 2, 3, seed=5)
    assert a.shape == x.shape
    assert torch.equal(a, b)
    assert not a.requires_grad
    if name != "ig":
        assert (a < 0).any()  # signed gradients (abs=False)


# ---------------------------------------------------------------------------- explain


def test_explain_in_process_writes_grid_json_csv(
    images: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "result"
    assert cli.main(_args(images, out, "--methods", "gradient,smoothgrad", "-m", "adaptgrad")) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "comparison.png",
        "metrics.csv",
        "metrics.json",
    ]
    printed = capsys.readouterr().out
    assert "SmoothGrad" in printed and "deletion AUC" in printed and "control random" in printed

    with Image.open(out / "comparison.png") as png:
        assert png.format == "PNG"
        # 2 image rows, 1 image column + 3 methods + 3 controls, 2 inches a cell at 100 dpi.
        assert png.size == ((1 + 3 + N_CONTROLS) * 200, 2 * 200)

    report = json.loads((out / "metrics.json").read_text())
    assert [m["name"] for m in report["methods"]] == ["gradient", "smoothgrad", "adaptgrad"]
    assert report["samples"] == 2 and report["seed"] == 0 and report["auc_steps"] == 3
    assert [i["name"] for i in report["images"]] == ["noise", "stripes"]
    classes = ["ant", "bee", "cat", "dog", "eel"]
    for info in report["images"]:
        assert info["predicted_class"] == classes[info["predicted_index"]]
        assert info["target"] == info["predicted_index"]
        assert 0.0 < info["probability"] <= 1.0
    assert len(report["results"]) == 2 * (3 + N_CONTROLS)
    for row in report["results"]:
        assert row["total_variation"] >= 0 and 0 <= row["sparseness"] <= 1
        assert row["complexity"] >= 0
        assert 0 <= row["deletion_auc"] <= 1 and 0 <= row["insertion_auc"] <= 1
        assert row["time_s"] >= 0
    summary = {entry["method"]: entry for entry in report["summary"]}
    assert summary["smoothgrad"]["gradient_evaluations"] == 2
    assert summary["control-random"]["kind"] == "control"
    assert report["versions"]["captum"]

    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(report["results"])
    assert {"image", "method", "time_s", "total_variation", "sparseness", "complexity"} <= set(
        rows[0]
    )
    assert rows[0]["method"] == "gradient"
    assert float(rows[0]["sparseness"]) == pytest.approx(report["results"][0]["sparseness"])


def test_tolerance_reports_error_and_samples_used(images: list[str], tmp_path: Path) -> None:
    out = tmp_path / "tol"
    args = _adaptive(_args(images, out, "-m", "smoothgrad,adaptgrad,gradient"))
    args += ["--tolerance", "0.5", "--max-samples", "64"]
    assert cli.main(args) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["tolerance"] == 0.5
    for row in report["results"]:
        if row["method"] in ("smoothgrad", "adaptgrad"):
            # Each map stops once its relative Monte-Carlo error is at most the tolerance
            # (or at the budget of 64), and says how many samples it used.
            assert 2 <= row["samples_used"] <= 64
            assert row["mc_error"] <= 0.5 or row["samples_used"] == 64
        else:
            assert "mc_error" not in row or row["mc_error"] is None


def test_explain_target_by_name_kernel_and_sample_images(tmp_path: Path) -> None:
    out = tmp_path / "o"
    args = _args(["skimage:coffee"], out, "--methods", "smoothgrad,smoothgrad-uniform")
    args += ["--target", "bee", "--kernel", "laplace", "--no-controls", "--auc-steps", "0"]
    assert cli.main(args) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert {r["target_class"] for r in report["results"]} == {"bee"}
    assert report["kernel"] == "laplace"
    assert report["methods"][1]["settings"]["kernel"] == "uniform"
    assert "deletion_auc" not in report["results"][0]
    assert len(report["results"]) == 2


def test_explain_is_reproducible_with_a_seed(images: list[str], tmp_path: Path) -> None:
    scores = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert cli.main(_args(images, out, "-m", "smoothgrad,noisegrad", "--seed", "3")) == 0
        results = json.loads((out / "metrics.json").read_text())["results"]
        scores.append([(r["total_variation"], r["sparseness"]) for r in results])
    assert scores[0] == scores[1]


def test_explain_into_an_existing_folder_keeps_other_files(
    images: list[str], tmp_path: Path
) -> None:
    out = tmp_path / "existing"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert cli.main(_args(images[:1], out, "-m", "gradient")) == 0
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "comparison.png").is_file()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_torchscript_model(images: list[str], tmp_path: Path) -> None:
    from cli_models import tiny_cnn

    path = tmp_path / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(tiny_cnn()).save(str(path))
    out = tmp_path / "o"
    args = _args(images[:1], out, "-m", "gradient,smoothgrad")
    args[args.index(TINY)] = str(path)
    assert cli.main(args) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["model"].startswith("TorchScript")
    # The scripted module keeps its `classes` attribute.
    assert report["images"][0]["predicted_class"] in ("ant", "bee", "cat", "dog", "eel")


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-m", "smoothgrad,nosuch"], "unknown method 'nosuch'; known methods: gradient"),
        (["--target", "5"], "target 5 is outside the model's classes (0..4)"),
        (["--target", "-1"], "--target '-1' is not a class index"),
        (["--target", "zebra"], "neither a class index"),
        (["--samples", "0"], "--samples must be >= 1"),
        (["--kernel", "boxcar"], "unknown kernel 'boxcar'"),
        (["--samples", "x"], "invalid int value"),
        (["--tolerance", "0"], "--tolerance must be a positive number"),
        (["--tolerance", "-0.1"], "--tolerance must be a positive number"),
    ],
)
def test_bad_options_exit_2_with_one_line(
    images: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "o"
    assert cli.main(_args(images, out, *extra)) == 2
    assert message in _one_error_line(capsys)
    _nothing_written(out)


def test_bad_images_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    folder = tmp_path / "folder"
    folder.mkdir()
    cases = [
        (str(text), "not a readable image file"),
        (str(tmp_path / "missing.jpg"), "no such file"),
        (str(folder), "it is a directory"),
        ("skimage:nosuch", "unknown sample image"),
    ]
    for source, message in cases:
        out = tmp_path / "o"
        assert cli.main(_args([source], out)) == 2
        line = _one_error_line(capsys)
        assert message in line and source in line
        _nothing_written(out)


def test_bad_models_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    garbage = tmp_path / "model.pt"
    garbage.write_bytes(b"\x00garbage")
    cases = [
        ("cli_models:not_a_module", "not a torch.nn.Module"),
        ("cli_models:broken_model", "weights file missing"),
        ("cli_models:nosuch", "has no attribute"),
        ("no_such_package_xyz:make", "cannot import module"),
        (str(garbage), "not a TorchScript file"),
        ("some random words", "expected 'efficientnet-lite0'"),
        ("torchvision:", "torchvision:NAME"),
    ]
    for spec, message in cases:
        out = tmp_path / "o"
        args = _args(["skimage:coffee"], out)
        args[args.index(TINY)] = spec
        assert cli.main(args) == 2, spec
        line = _one_error_line(capsys)
        assert "cannot load model" in line and message in line, line
        _nothing_written(out)


def test_out_is_a_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "file"
    out.write_text("x")
    assert cli.main(_args(["skimage:coffee"], out)) == 2
    assert "not a directory" in _one_error_line(capsys)
    assert out.read_text() == "x"


def test_failure_mid_run_leaves_nothing(
    images: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from captum_smooth.app.visualization import comparison_grid

    def broken_grid(*args: object, **kwargs: object) -> None:
        comparison_grid(*args, **kwargs)  # writes the PNG into the staging folder
        raise RuntimeError("disk full")

    monkeypatch.setattr("captum_smooth.app.visualization.comparison_grid", broken_grid)
    out = tmp_path / "o"
    assert cli.main(_args(images, out, "-m", "gradient")) == 1
    assert "disk full" in _one_error_line(capsys)
    _nothing_written(out)


def test_no_command_and_methods_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    capsys.readouterr()
    assert cli.main(["methods"]) == 0
    listed = capsys.readouterr().out
    assert "smoothgrad-laplace" in listed and "adaptgrad" in listed


def test_explain_dataset_subcommand_is_wired(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["explain-dataset", "--help"]) == 0
    assert "--data" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    assert "explain-dataset" in capsys.readouterr().out


def test_insights_without_captum_insights_points_to_explain(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from captum_smooth.app import insights

    if insights.insights_available():
        pytest.skip("captum.insights is installed here (tests/insights covers it)")
    assert cli.main(["insights"]) != 0
    line = _one_error_line(capsys)
    assert "Insights" in line and "explain" in line


# ---------------------------------------------------------------------------- subprocess


def _env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(TESTS.parents[1])
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), root, env.get("PYTHONPATH", "")])
    return env


def test_python_m_explain_subprocess(images: list[str], tmp_path: Path) -> None:
    out = tmp_path / "sub"
    result = subprocess.run(
        [sys.executable, "-m", "captum_smooth", *_args(images, out, "-m", "gradient,smoothgrad")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "SmoothGrad" in result.stdout
    with Image.open(out / "comparison.png") as png:
        assert png.size == ((1 + 2 + N_CONTROLS) * 200, 2 * 200)


def test_python_m_bad_input_subprocess(tmp_path: Path) -> None:
    out = tmp_path / "sub"
    result = subprocess.run(
        [sys.executable, "-m", "captum_smooth", *_args(["skimage:coffee"], out, "-m", "magic")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "unknown method 'magic'" in lines[0]
    _nothing_written(out)


# ---------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_demo_on_the_embedded_model(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--samples", "2", "--auc-steps", "2", "--no-progress", "--out", str(out)]
    assert cli.main(args) == 0
    report = json.loads((out / "metrics.json").read_text())
    predicted = {i["name"]: i["predicted_class"] for i in report["images"]}
    assert predicted["coffee"] == "espresso"
    assert predicted["chelsea"] in ("Egyptian cat", "tiger cat", "tabby")
    # The default methods but SmoothTaylor, which the demo leaves out and says why.
    assert [m["name"] for m in report["methods"]] == list(cli.DEMO_METHODS)
    assert set(cli.DEMO_METHODS) == set(DEFAULT_METHODS) - {"smoothtaylor"}
    n_cols = 1 + len(report["methods"]) + N_CONTROLS
    with Image.open(out / "comparison.png") as png:
        assert png.size == (n_cols * 200, 3 * 200)
