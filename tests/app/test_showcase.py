"""The traps of issue 16, one test each: what a new user meets when trying the command line.

--version; random torchvision weights; rows labelled with the class explained; a tolerance
that is not reached (warned, marked, not warned twice); one naming scheme for methods and
kernels; options without effect; the convergence rule (every smoothing map samples until its
relative Monte-Carlo error is at most the tolerance, under the cap); the calibrated weight
noise (cached per model); the signed and magnitude views; the legend.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from captum_smooth.app import cli
from captum_smooth.app.calibrate import calibrated_weight_noise, model_fingerprint
from captum_smooth.app.method_spec import _call_quietly
from captum_smooth.app.methods import (
    cli_method,
    get_method,
    kernel_cli_names,
    resolve_kernel,
)

TESTS = Path(__file__).resolve().parent
TINY = "cli_models:tiny_cnn"


@pytest.fixture(autouse=True)
def _tests_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))


@pytest.fixture
def image(tmp_path: Path) -> str:
    array = (np.random.default_rng(0).random((30, 30, 3)) * 255).astype(np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(array).save(path)
    return str(path)


def _args(images: list[str], out: Path, *extra: str) -> list[str]:
    return [
        "explain",
        *images,
        "--model",
        TINY,
        "--size",
        "16",
        "--auc-steps",
        "0",
        "--no-progress",
        "--no-controls",
        "--out",
        str(out),
        *extra,
    ]


def _report(out: Path) -> dict[str, Any]:
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture
def grid_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The arguments every comparison grid is drawn with (the grid is still drawn)."""
    from captum_smooth.app import visualization

    calls: list[dict[str, Any]] = []
    real = visualization.comparison_grid

    def spy(images: Any, attributions: Any, **kwargs: Any) -> Any:
        calls.append({"attributions": attributions, **kwargs})
        return real(images, attributions, **kwargs)

    monkeypatch.setattr(visualization, "comparison_grid", spy)
    return calls


# ---------------------------------------------------------------------------- --version


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import captum

    from captum_smooth import __version__

    assert cli.main(["--version"]) == 0
    out = capsys.readouterr().out
    assert f"captum-smooth {__version__}" in out and f"captum {captum.__version__}" in out


# ---------------------------------------------------------------------------- random weights


def test_torchvision_random_weights_are_warned_about(
    image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from captum_smooth.app.loading import load_model
    from captum_smooth.app.models import _torchvision

    from cli_models import tiny_cnn

    # The builder is replaced by the tiny CNN: the warning is about the spec, not torchvision.
    monkeypatch.setattr(_torchvision, "torchvision_model", lambda name, **kw: tiny_cnn())
    assert "RANDOM weights" in load_model("torchvision:resnet18").warnings[0]
    assert load_model("torchvision:resnet18:DEFAULT").warnings == []
    out = tmp_path / "o"
    args = _args([image], out, "-m", "gradient")
    args[args.index(TINY)] = "torchvision:resnet18"
    assert cli.main(args) == 0
    err = capsys.readouterr().err
    assert "captum-smooth: warning: torchvision:resnet18 has RANDOM weights" in err
    assert "torchvision:resnet18:DEFAULT" in err
    assert "RANDOM weights" in _report(out)["warnings"][0]


# ---------------------------------------------------------------------------- rows


def test_rows_are_labelled_with_the_class_explained(
    image: str, tmp_path: Path, grid_calls: list[dict[str, Any]]
) -> None:
    out = tmp_path / "o"
    assert cli.main(_args([image], out, "-m", "gradient", "--target", "eel")) == 0
    info = _report(out)["images"][0]
    assert info["target_class"] == "eel" and info["predicted_class"] != "eel"
    label = grid_calls[0]["row_labels"][0]
    assert label.startswith(f"noise: eel {info['target_probability']:.2f}")
    assert f"predicted {info['predicted_class']}" in label
    out2 = tmp_path / "p"
    assert cli.main(_args([image], out2, "-m", "gradient")) == 0
    predicted = _report(out2)["images"][0]["predicted_class"]
    assert grid_calls[1]["row_labels"][0].startswith(f"noise: {predicted} ")
    assert "predicted" not in grid_calls[1]["row_labels"][0]


# ---------------------------------------------------------------------------- tolerance


def test_a_missed_tolerance_is_warned_and_marked(
    image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    args = _args([image], out, "-m", "smoothgrad,gradient", "--tolerance", "0.001")
    assert cli.main([*args, "--max-samples", "4"]) == 0
    captured = capsys.readouterr()
    warned = [line for line in captured.err.splitlines() if "did not reach" in line]
    assert len(warned) == 1 and "SmoothGrad" in warned[0] and "0.001" in warned[0]
    row = [line for line in captured.out.splitlines() if line.strip().startswith("SmoothGrad")]
    assert row and row[0].rstrip().endswith("*")
    report = _report(out)
    assert report["sampling"] == "to tolerance" and report["tolerance"] == 0.001
    smooth = next(r for r in report["results"] if r["method"] == "smoothgrad")
    assert smooth["tolerance_reached"] == 0.0 and smooth["mc_error"] > 0.001
    assert smooth["gradient_evaluations"] == 4
    assert any("did not reach" in w for w in report["warnings"])
    assert "*" in report["legend"]


def test_the_library_tolerance_warning_is_not_repeated() -> None:
    class ToleranceNotReachedWarning(UserWarning):
        """Stands for the library's warning (the CLI warns itself, from the report)."""

    class Method:
        def attribute(self, inputs: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            warnings.warn("tolerance not reached", ToleranceNotReachedWarning, stacklevel=1)
            warnings.warn("something else", UserWarning, stacklevel=1)
            return inputs

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _call_quietly(Method(), torch.zeros(1), 0, {})  # type: ignore[arg-type]
    assert [str(w.message) for w in caught] == ["something else"]


def test_smoothing_maps_converge_under_the_cap(image: str, tmp_path: Path) -> None:
    # The rule of `demo` and of `explain` without --samples: each smoothing method samples
    # until its map's relative MC error is <= 0.2, at most --max-samples gradients.
    out = tmp_path / "o"
    methods = "smoothgrad,adaptgrad,noisegrad,fusiongrad,ig,gradient"
    args = _args([image], out, "-m", methods, "--max-samples", "64", "--weight-noise", "0.05")
    assert cli.main(args) == 0
    report = _report(out)
    assert report["tolerance"] == 0.2 and report["samples"] == 64
    assert report["convention"] == "magnitude"
    rows = {r["method"]: r for r in report["results"]}
    for name in ("smoothgrad", "adaptgrad", "noisegrad", "fusiongrad"):
        row = rows[name]
        assert row["mc_error"] <= 0.2 and row["tolerance_reached"] == 1.0, row
        assert 2 <= row["gradients_used"] <= 64
        assert row["gradient_evaluations"] == round(row["gradients_used"])
    # FusionGrad's samples are weight draws of 4 input draws each: gradients = 4 x draws.
    assert rows["fusiongrad"]["gradients_used"] == 4 * rows["fusiongrad"]["samples_used"]
    # Integrated Gradients and the gradient do not sample: no error, a fixed step count.
    assert rows["ig"].get("mc_error") is None and rows["ig"]["gradient_evaluations"] == 32
    assert rows["gradient"]["gradient_evaluations"] == 1


def test_fixed_samples_and_tolerance_together_are_refused(
    image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for extra in (["--tolerance", "0.1"], ["--max-samples", "9"]):
        out = tmp_path / "o"
        assert cli.main(_args([image], out, "--samples", "4", *extra)) == 2
        err = capsys.readouterr().err
        assert "--samples 4" in err and extra[0] in err
        assert not out.exists()


# ---------------------------------------------------------------------------- names


def test_kernels_and_methods_share_one_spelling(
    image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "student-t" in kernel_cli_names()
    assert resolve_kernel("student-t") == resolve_kernel("student_t") == "student_t"
    assert get_method("smoothgrad-student-t").fixed == {"kernel": "student_t"}
    out = tmp_path / "o"
    args = _args([image], out, "-m", "smoothgrad", "--kernel", "student-t", "--samples", "2")
    assert cli.main(args) == 0
    assert _report(out)["kernel"] == "student-t"
    bad = tmp_path / "bad"
    assert cli.main(_args([image], bad, "--kernel", "studentt", "--samples", "2")) == 2
    assert "known kernels: gaussian, laplace" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-m", "gradient,ig", "--kernel", "laplace"], "--kernel laplace changes none"),
        (["-m", "smoothgrad", "--weight-noise", "0.1"], "--weight-noise changes none"),
        (["-m", "gradient", "--tolerance", "0.1"], "--tolerance changes none"),
        (["-m", "saliency"], "method 'saliency' is now called 'gradient'"),
    ],
)
def test_options_without_effect_and_old_names_are_errors(
    image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "o"
    assert cli.main(_args([image], out, *extra)) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_explain_dataset_runs_every_method_explain_offers(tmp_path: Path) -> None:
    from captum_smooth.app.methods import DEFAULT_METHODS

    for name in [*DEFAULT_METHODS, "smoothgrad-student-t"]:
        out = tmp_path / name
        args = ["explain-dataset", "--data", "digits", "--limit", "4", "--batch-size", "4"]
        budget = ["--ig-steps", "2"] if name == "ig" else ["--nt-samples", "2"]
        if name in ("gradient", "input-x-gradient"):  # one gradient: a budget has no effect
            budget = []
        args += ["--method", name, *budget, "--no-progress"]
        assert cli.main([*args, "--out", str(out)]) == 0, name
        assert cli_method(name).name == name
    kernel = tmp_path / "kernel"
    args = ["explain-dataset", "--data", "digits", "--limit", "4", "--method", "smoothgrad"]
    assert cli.main([*args, "--kernel", "student-t", "--out", str(kernel), "--no-progress"]) == 0
    assert cli.main([*args, "--method", "gradient", "--kernel", "laplace", "--out", "x"]) == 2
    assert cli.main([*args, "--method", "gradient", "--weight-noise", "0.1", "--out", "x"]) == 2
    noisy = tmp_path / "noisy"
    args[args.index("smoothgrad")] = "noisegrad"
    assert cli.main([*args, "--weight-noise", "0.01", "--out", str(noisy), "--no-progress"]) == 0


# ---------------------------------------------------------------------------- weight noise


def test_weight_noise_is_calibrated_once_per_model(
    image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli_models import tiny_cnn

    model = tiny_cnn()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = calibrated_weight_noise(model, 16, seed=0)
    assert not first.cached and first.cache_file is not None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # The authors' rule on the proxy: the scale kept >= 95 % agreement, and the first scale
    # tried above it (if any) did not.
    assert first.agreement >= first.threshold == pytest.approx(0.95)
    rejected = [s for s, a in first.history if a < first.threshold]
    assert all(s > first.stdev for s in rejected)
    again = calibrated_weight_noise(model, 16, seed=0)
    assert again.cached and again.stdev == first.stdev
    other = tiny_cnn()
    with torch.no_grad():
        other[0].weight.mul_(1.5)
    assert model_fingerprint(other) != model_fingerprint(model)
    # Through the command line: the proxy is said, the scale reported and used.
    out = tmp_path / "o"
    assert cli.main(_args([image], out, "-m", "noisegrad", "--samples", "2")) == 0
    err = capsys.readouterr().err
    assert "agreement with the clean model's own predictions" in err
    report = _report(out)
    assert report["weight_noise"]["stdev"] == first.stdev
    assert report["methods"][0]["settings"]["weight_stdev"] == first.stdev
    fixed = tmp_path / "fixed"
    args = _args([image], fixed, "-m", "noisegrad", "--samples", "2", "--weight-noise", "0.3")
    assert cli.main(args) == 0
    assert _report(fixed)["weight_noise"] == {"stdev": 0.3, "chosen_by": "--weight-noise"}


# ---------------------------------------------------------------------------- the picture


def test_signed_and_magnitude_views(
    image: str, tmp_path: Path, grid_calls: list[dict[str, Any]]
) -> None:
    from cli_models import tiny_cnn

    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    spec = get_method("smoothgrad")
    assert (spec.attribute(tiny_cnn(), x, 1, 4, seed=0, magnitude=True) >= 0).all()
    assert (spec.attribute(tiny_cnn(), x, 1, 4, seed=0) < 0).any()
    assert get_method("smoothtaylor").signed_only and not spec.signed_only
    out = tmp_path / "o"
    assert cli.main(_args([image], out, "-m", "smoothgrad", "--samples", "4", "--sign")) == 0
    call = grid_calls[-1]
    assert call["sign"] == "all" and (call["attributions"]["smoothgrad"] < 0).any()
    assert _report(out)["convention"] == "signed"
    assert cli.main(_args([image], tmp_path / "m", "-m", "smoothgrad", "--samples", "4")) == 0
    call = grid_calls[-1]
    assert call["sign"] == "absolute_value" and (call["attributions"]["smoothgrad"] >= 0).all()


def test_the_picture_explains_itself(
    image: str, tmp_path: Path, grid_calls: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    args = _args([image], out, "-m", "gradient,smoothgrad", "--max-samples", "16")
    args.remove("--no-controls")
    assert cli.main(args) == 0
    call = grid_calls[-1]
    # The controls are drawn beside the methods, with a colour bar and a caption per map.
    assert list(call["attributions"]) == [
        "gradient",
        "smoothgrad",
        "control-blurred-gradient",
        "control-edges",
        "control-random",
    ]
    assert call["colorbar"] is True
    assert call["captions"]["smoothgrad"][0].startswith(
        f"{_report(out)['results'][1]['gradient_evaluations']} grads, MC err "
    )
    assert (
        call["titles"]["smoothgrad"].startswith("SmoothGrad\n")
        and "s/image" in call["titles"]["smoothgrad"]
    )
    printed = capsys.readouterr().out
    # The legend says what each column means; complexity (~ln(pixels) everywhere) is left out.
    assert "columns:" in printed and "MC error: the map's relative Monte-Carlo error" in printed
    assert "complexity" not in printed
    assert "sparseness" in _report(out)["legend"]


def test_grid_captions_and_colour_bar(tmp_path: Path) -> None:
    from captum_smooth.app.visualization import comparison_grid

    images = torch.rand(2, 3, 10, 10)
    maps = {"A": torch.randn(2, 3, 10, 10)}
    figure = comparison_grid(
        images, maps, captions={"A": ["one", "two"]}, colorbar=True, path=tmp_path / "g.png"
    )
    assert len(figure.axes) == 2 * 2 + 1  # the cells and one colour bar
    texts = [t.get_text() for ax in figure.axes for t in ax.texts]
    assert "one" in texts and "two" in texts
    with Image.open(tmp_path / "g.png") as png:
        assert png.size == (2 * 200, 2 * 200)  # the bar fits inside the same size
    with pytest.raises(ValueError, match="captions"):
        comparison_grid(images, maps, captions={"A": ["one"]})


# ---------------------------------------------------------------------------- the real demo


@pytest.mark.slow  # the demo itself (calibration included): ~2-3 minutes on 2 idle cores
def test_the_demo_converges(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert cli.main(["demo", "--no-progress", "--auc-steps", "0", "--out", str(out)]) == 0
    report = _report(out)
    smoothing = [r for r in report["results"] if r.get("mc_error") is not None]
    assert {r["method"] for r in smoothing} == {
        "smoothgrad",
        "adaptgrad",
        "noisegrad",
        "fusiongrad",
    }
    for row in smoothing:  # the rule: no smoothing map with an error over 0.2
        assert row["mc_error"] <= 0.2 and row["tolerance_reached"] == 1.0, row
    assert report["warnings"] == []
    assert 0 < report["weight_noise"]["stdev"] < 0.2
    assert "own predictions" in report["weight_noise"]["proxy"]
