"""``--sampling {iid,antithetic}``: one spelling in explain, demo, explain-dataset and
explain-text, passed through the method table with even counts, end to end on tiny models."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_smooth.app import cli, dataset_cli, text
from captum_smooth.app.methods import DEFAULT_METHODS, get_method, text_methods
from captum_smooth.app.options import SHARED_OPTIONS
from captum_smooth.dataset._fingerprint import run_settings

TESTS = Path(__file__).resolve().parent
COMMANDS = ("explain", "demo", "explain-dataset", "explain-text")
SMOOTHING = ("smoothgrad", "adaptgrad", "noisegrad", "fusiongrad", "smoothtaylor")


@pytest.fixture(autouse=True)
def _tests_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))


@pytest.fixture
def image(tmp_path: Path) -> str:
    array = (np.random.default_rng(0).random((20, 20, 3)) * 255).astype(np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(array).save(path)
    return str(path)


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _explain(image: str, out: Path, *extra: str) -> list[str]:
    return [
        "explain", image, "--model", "cli_models:tiny_cnn", "--size", "16", "--auc-steps", "0",
        "--no-controls", "--no-progress", "--out", str(out), *extra,
    ]  # fmt: skip


def test_sampling_has_one_spelling_and_one_help_in_every_subcommand() -> None:
    commands = _subcommands()
    helps = set()
    for name in COMMANDS:
        actions = [a for a in commands[name]._actions if "--sampling" in a.option_strings]
        assert len(actions) == 1, name
        action = actions[0]
        assert action.option_strings == ["--sampling"], name
        assert tuple(action.choices or ()) == ("iid", "antithetic"), name
        helps.add(action.help.split("(default")[0] if action.help else "")
    assert len(helps) == 1  # one text (only the default's note differs)
    assert SHARED_OPTIONS["--sampling"]["choices"] == ("iid", "antithetic")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_sampling_exits_2_with_one_line(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    head = {"explain": ["x.png"], "explain-dataset": ["--data", "digits", "--out", "o"]}
    assert cli.main([command, *head.get(command, []), "--sampling", "stratified"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--sampling" in err[0] and "stratified" in err[0], err


def test_antithetic_counts_are_even_and_rounded_up() -> None:
    for name in SMOOTHING:
        spec = get_method(name)
        for n in range(1, 40):
            kwargs = spec.budget_kwargs(n, None, "antithetic")
            assert kwargs["sampling"] == "antithetic"
            assert kwargs.get("n_weight_samples", 2) % 2 == 0, (name, n)
            if "n_weight_samples" not in kwargs or kwargs.get("nt_samples", 1) > 1:
                assert kwargs["nt_samples"] % 2 == 0, (name, n)
            assert spec.gradients(n, "antithetic") >= spec.gradients(n), (name, n)
            if n % 2 == 0 and name in ("smoothgrad", "noisegrad", "smoothtaylor"):
                assert spec.gradients(n, "antithetic") == n  # even budgets are kept
            tolerance = spec.budget_kwargs(n, 0.2, "antithetic")
            assert tolerance.get("n_weight_samples", 2) % 2 == 0
        assert spec.budget_kwargs(5, None) == spec.kwargs(5)  # iid: the table's, unchanged
    assert "sampling" not in get_method("gradient").budget_kwargs(3, None, "antithetic")


@pytest.mark.parametrize("name", SMOOTHING)
def test_explain_antithetic_end_to_end(
    name: str, image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / name
    args = _explain(image, out, "-m", name, "--samples", "5", "--sampling", "antithetic")
    if name in ("noisegrad", "fusiongrad"):
        args += ["--weight-noise", "0.1"]  # not calibrated (faster)
    assert cli.main(args) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["noise_sampling"] == {name: "antithetic"}
    settings = report["methods"][0]["settings"]
    assert settings["sampling"] == "antithetic"
    (row,) = report["results"]
    expected = get_method(name).gradients(5, "antithetic")
    assert row["gradient_evaluations"] == expected >= get_method(name).gradients(5)
    assert row["mc_error"] == "inf" or float(row["mc_error"]) >= 0
    err = capsys.readouterr().err
    assert "antithetic sampling (--sampling antithetic)" in err
    if expected != get_method(name).gradients(5):
        assert "rounded up" in err


def test_explain_antithetic_to_a_tolerance_and_seeded(image: str, tmp_path: Path) -> None:
    maps = []
    for run in ("a", "b"):
        out = tmp_path / run
        args = _explain(image, out, "-m", "smoothgrad,gradient", "--sampling", "antithetic")
        assert cli.main([*args, "--tolerance", "0.5", "--max-samples", "15"]) == 0
        report = json.loads((out / "metrics.json").read_text())
        row = next(r for r in report["results"] if r["method"] == "smoothgrad")
        assert row["samples_used"] % 2 == 0 and 2 <= row["samples_used"] <= 16
        maps.append(row["total_variation"])
    assert maps[0] == maps[1]


def test_explain_refuses_antithetic_without_a_sampling_method(
    image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _explain(image, tmp_path / "o", "-m", "gradient,ig", "--sampling", "antithetic")
    assert cli.main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "--sampling antithetic changes none" in err[0]


def test_demo_without_sampling_uses_each_methods_choice() -> None:
    from captum_smooth.app.settings import Settings, sampling_of

    def settings(command: str, sampling: str | None) -> Settings:
        return Settings(command, [], None, None, None, 2, 0, None, Path("o"), 16, 0, False,
                        False, "heat_map", sampling=sampling)  # fmt: skip

    for name in DEFAULT_METHODS:
        spec = get_method(name)
        assert spec.sampling in ("iid", "antithetic")
        assert sampling_of(settings("demo", None), spec) == spec.sampling
        assert sampling_of(settings("explain", None), spec) == "iid"
        assert sampling_of(settings("demo", "iid"), spec) == "iid"


def _dataset_args(method: str, *extra: str) -> argparse.Namespace:
    argv = ["explain-dataset", "--data", "digits", "--out", "x", "--method", method, *extra]
    return cli.build_parser().parse_args(argv)


def test_explain_dataset_passes_sampling_into_the_kwargs_and_the_fingerprint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    for name in SMOOTHING:
        method, iid = dataset_cli._method(_dataset_args(name, "--nt-samples", "9"), model)
        assert "sampling" not in iid  # earlier stores keep their settings
        args = _dataset_args(name, "--nt-samples", "9", "--sampling", "antithetic")
        _, paired = dataset_cli._method(args, model)
        assert paired["sampling"] == "antithetic"
        assert paired.get("n_weight_samples", 2) % 2 == 0
        before = run_settings(method, None, iid)
        after = run_settings(method, None, paired)
        assert before != after and after["attribute_kwargs"]["sampling"] == "antithetic"
    assert "antithetic pairs need even counts" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--sampling antithetic has no effect"):
        dataset_cli._method(_dataset_args("gradient", "--sampling", "antithetic"), model)


def test_explain_dataset_antithetic_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "store"
    argv = ["explain-dataset", "--data", "digits", "--out", str(out), "--method", "smoothgrad",
            "--nt-samples", "4", "--limit", "8", "--batch-size", "8", "--no-progress",
            "--sampling", "antithetic"]  # fmt: skip
    assert cli.main(argv) == 0
    manifest = next(out.rglob("*.json")).read_text()
    assert '"sampling": "antithetic"' in manifest


def test_explain_text_options_pair_and_round_up() -> None:
    layer = torch.nn.Embedding(4, 2)
    for name, spec in text_methods().items():
        if spec.text is None or not spec.text.smoothed:
            continue
        for n in range(1, 20):
            options = text._options(spec.text, layer, n, 0.05, 0.05, "antithetic")
            assert options["sampling"] == "antithetic"
            assert options.get("n_weight_samples", 2) % 2 == 0, (name, n)
            if "n_weight_samples" not in options or options["nt_samples"] > 1:
                assert options["nt_samples"] % 2 == 0, (name, n)
        assert "sampling" not in text._options(spec.text, layer, 3, 0.05, 0.05)


class _TinyEncoder(torch.nn.Module):
    """A BERT-shaped encoder: ``embeddings.word_embeddings``, a nonlinear layer, and an output
    with ``last_hidden_state`` (what explain-text reads)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embeddings = torch.nn.Module()
        self.embeddings.word_embeddings = torch.nn.Embedding(30, 8)
        self.layer = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> object:
        hidden = self.layer(self.embeddings.word_embeddings(input_ids))
        return argparse.Namespace(last_hidden_state=hidden * attention_mask[..., None])


def test_explain_text_antithetic_end_to_end_on_a_tiny_encoder() -> None:
    model = text.SimilarityModel(_TinyEncoder(), torch.tensor([[1, 5, 6, 2]]))
    ids, baseline = torch.tensor([[1, 7, 8, 9, 2]]), torch.tensor([[1, 0, 0, 0, 2]])
    settings = {**text.DEFAULT_SETTINGS, "samples": 3, "steps": 4, "sampling": "antithetic"}
    for method in ("smoothgrad", "noisegrad", "fusiongrad"):
        scores, _, _, samples = text._explain_one(model, ids, baseline, method, settings)
        assert scores.shape == (5,) and bool(torch.isfinite(scores).all())
        assert samples % 2 == 0 and samples >= 3, (method, samples)


def test_the_table_holds_the_benchmarks_verdicts() -> None:
    # benchmarks/README.md, "Antithetic sampling": not worse at equal gradients on the digits
    # CNN and EfficientNet-Lite0 for these magnitude maps; AdaptGrad 1.07x, FusionGrad 1.08x and
    # SmoothTaylor 1.05x worse on EfficientNet-Lite0.
    chosen = {name: get_method(name).sampling for name in DEFAULT_METHODS}
    assert chosen == {
        "gradient": "iid", "smoothgrad": "antithetic", "adaptgrad": "iid",
        "noisegrad": "antithetic", "fusiongrad": "iid", "smoothtaylor": "iid", "ig": "iid",
    }  # fmt: skip


def test_demo_uses_and_says_its_per_method_sampling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    args = ["demo", "-m", "smoothgrad,adaptgrad", "--samples", "3", "--auc-steps", "0",
            "--no-controls", "--no-progress", "--out", str(out)]  # fmt: skip
    assert cli.main(args) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["noise_sampling"] == {"smoothgrad": "antithetic", "adaptgrad": "iid"}
    grads = {r["method"]: r["gradient_evaluations"] for r in report["results"]}
    assert grads == {"smoothgrad": 4, "adaptgrad": 3}  # 3 rounded up to a whole pair
    err = capsys.readouterr().err
    assert "antithetic sampling (the demo's choice where benchmarks/bench_antithetic.py" in err
    assert "for smoothgrad;" in err and "smoothgrad 3 -> 4" in err
    assert cli.main([*args, "--sampling", "iid"]) == 0
    report = json.loads((out / "metrics.json").read_text())
    assert report["noise_sampling"] == {"smoothgrad": "iid", "adaptgrad": "iid"}
