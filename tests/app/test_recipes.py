"""One recipe table: every front end reads its methods and FusionGrad's budget split from it,
and the options the subcommands share are spelled, typed and explained alike."""

from __future__ import annotations

import argparse
import re

import pytest
import torch

from benchmarks import _quality_methods, bench_methods
from captum_smooth.app import dataset_cli, explain, fusion_split, insights, methods, text
from captum_smooth.app.cli import build_parser, main
from captum_smooth.app.options import SHARED_OPTIONS

BUDGETS = range(1, 41)


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _dataset_kwargs(budget: int) -> dict:
    argv = ["explain-dataset", "--data", "digits", "--out", "unused", "--method", "fusiongrad"]
    args = build_parser().parse_args([*argv, "--nt-samples", str(budget)])
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    return dataset_cli._method(args, model)[1]


def test_every_front_end_splits_the_fusion_budget_with_the_one_function() -> None:
    one = fusion_split.fusion_split
    # The same function object, wherever it is read...
    assert methods.fusion_split is one
    assert _quality_methods.fusion_split is one and bench_methods.fusion_split is one
    spec = methods.get_method("fusiongrad")
    recipe = methods.text_methods()["fusiongrad"].text
    assert recipe is not None
    layer = torch.nn.Embedding(4, 2)
    for n in BUDGETS:
        # ...and the draws each front end asks for are the ones it returns.
        table = spec.kwargs(n)
        assert (table["n_weight_samples"], table["nt_samples"]) == one(n)  # explain
        dataset = _dataset_kwargs(n) if n in (4, 20) else table
        assert (dataset["n_weight_samples"], dataset["nt_samples"]) == one(n)  # explain-dataset
        tolerance = spec.budget_kwargs(n, tolerance=0.1)
        drawn = (tolerance["n_weight_samples"], tolerance["nt_samples"])
        assert drawn == one(n, fusion_split.FUSION_INPUT_DRAWS, min_weight_draws=2)
        options = text._options(recipe, layer, n, 0.05, 0.05)  # explain-text
        assert (options["n_weight_samples"], options["nt_samples"]) == one(n, rounded="input")
    rows = _quality_methods.method_specs(20, blur_sigma=1.0)
    fusion = next(r for r in rows if r.method == "fusiongrad")
    weight_draws, input_draws = one(20, input_draws=_quality_methods.QUALITY_INPUT_DRAWS)
    assert fusion.label == f"FusionGrad {weight_draws}x{input_draws}"  # the benchmarks
    fields = insights.INSIGHTS_METHODS["fusiongrad"]  # Insights' starting values
    start = (fields["n_weight_samples"][1], fields["nt_samples"][1])
    assert insights.fusion_split is one and start == one(insights._START_BUDGET)


def test_the_split_rules_are_those_of_earlier_versions() -> None:
    """The outputs stay: each parameter of the one function reproduces an earlier rule."""
    for n in BUDGETS:
        root = max(1, round(n**0.5))
        assert fusion_split.fusion_split(n) == (root, max(1, n // root))
        assert fusion_split.fusion_split(n, rounded="input") == (max(1, n // root), root)
        assert fusion_split.fusion_split(n, 4, min_weight_draws=2) == (max(2, n // 4), 4)
        assert fusion_split.fusion_split(n, input_draws=5) == (max(1, n // 5), 5)


def test_text_recipes_are_table_entries_and_keep_their_arguments() -> None:
    layer = torch.nn.Embedding(4, 2)
    assert text.TEXT_METHODS == ("plain", "smoothgrad", "noisegrad", "fusiongrad")
    entries = methods.text_methods()
    # explain-text's names are the table's, but for the un-smoothed row it calls "plain".
    assert {name: s.name for name, s in entries.items()} == {
        "plain": "gradient",
        "smoothgrad": "smoothgrad",
        "noisegrad": "noisegrad",
        "fusiongrad": "fusiongrad",
    }
    recipes = {name: s.text for name, s in entries.items() if s.text is not None}
    assert list(recipes) == list(entries) and not recipes["plain"].smoothed
    smooth = text._options(recipes["smoothgrad"], layer, 8, 0.05, 0.1)
    assert set(smooth) == {"stdevs", "nt_samples", "noise_layer"} and smooth["nt_samples"] == 8
    noisy = text._options(recipes["noisegrad"], layer, 8, 0.05, 0.1)
    assert noisy["stdevs"] == 0.0 and noisy["nt_samples"] == 1 and noisy["n_weight_samples"] == 8
    assert "noise_layer" not in noisy


def test_front_ends_name_methods_from_the_one_table() -> None:
    names = set(methods.method_names())
    assert set(explain.DEFAULT_METHODS) <= names  # explain and demo
    assert {s.name for s in methods.text_methods().values()} <= names  # explain-text
    for name in names:  # explain-dataset takes every table name
        argv = ["explain-dataset", "--data", "d", "--out", "o", "--method", name]
        assert build_parser().parse_args(argv).method == name
    rows = _quality_methods.method_specs(10, blur_sigma=1.0)
    assert {r.method for r in rows if r.method} <= names  # the benchmarks
    # The rows hold the table's own specs (the app's MethodSpec), not copies of their own.
    assert all(isinstance(r.spec, methods.MethodSpec) for r in rows if r.method)


def test_the_old_weight_stdev_spelling_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain-text", "--weight-stdev", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--weight-stdev is now --weight-noise" in err[0], err
    args = build_parser().parse_args(["explain-text", "--weight-noise", "0.1"])
    assert args.weight_noise == 0.1
    with pytest.raises(TypeError, match="weight_stdev"):
        text.explain_text(torch.nn.Identity(), object(), "a", "b", weight_stdev=0.1)


def test_shared_options_have_one_spelling_type_and_help() -> None:
    seen: dict[str, tuple] = {}
    for command, parser in _subcommands().items():
        helps = {
            o for a in parser._actions if a.help != argparse.SUPPRESS for o in a.option_strings
        }
        assert "--weight-stdev" not in helps, command
        for action in parser._actions:
            option = next((o for o in action.option_strings if o in SHARED_OPTIONS), None)
            if option is None:
                continue
            # The help up to its default: only the default may differ between subcommands.
            before_default = re.sub(r"(default|required): .*", "", str(action.help), flags=re.S)
            shape = (type(action).__name__, action.type, action.metavar, before_default)
            assert seen.setdefault(option, shape) == shape, (command, option)
    assert set(seen) == set(SHARED_OPTIONS)
    weight = [c for c, p in _subcommands().items() if "--weight-noise" in p._option_string_actions]
    assert {"explain", "explain-dataset", "explain-text", "demo"} <= set(weight)
