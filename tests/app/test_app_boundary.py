"""The library/application boundary and the one method table every front end reads."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from captum_smooth.app import dataset_cli, insights
from captum_smooth.app.methods import (
    DEFAULT_METHODS,
    RENAMED,
    get_method,
    listing,
    method_names,
)
from captum_smooth.noise import kernel_names

ROOT = Path(__file__).resolve().parents[2]


def test_library_imports_without_the_app_or_torchvision() -> None:
    code = (
        "import sys, captum_smooth, captum_smooth.core, captum_smooth.noise, "
        "captum_smooth.methods, captum_smooth.metrics, captum_smooth.dataset\n"
        "app = sorted(m for m in sys.modules if m.startswith('captum_smooth.app'))\n"
        "assert not app, app\n"
        "assert 'torchvision' not in sys.modules\n"
        "import captum_smooth.app.cli\n"
        "assert 'torchvision' not in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr


def _dataset_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="captum-smooth")
    dataset_cli.add_explain_dataset_parser(parser.add_subparsers(dest="command"))
    return parser


def _dataset_args(method: str) -> argparse.Namespace:
    argv = ["explain-dataset", "--data", "digits", "--out", "x", "--method", method]
    return _dataset_parser().parse_args(argv)


def test_explain_dataset_offers_every_method_of_the_table() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    for name in method_names():
        args = _dataset_args(name)
        assert args.method == name
        method, kwargs = dataset_cli._method(args, model)
        spec = get_method(name)
        assert type(method) is spec.cls
        assert set(kwargs) == set(spec.kwargs(3))
    for name in ("noisegrad", "fusiongrad", "smoothtaylor", "gradient", "ig"):
        assert name in method_names()


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_explain_dataset_names_the_new_name_of_an_old_one(
    old: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _dataset_args(old)
    err = capsys.readouterr().err
    assert f"is now called {RENAMED[old]!r}" in err


def test_explain_dataset_refuses_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _dataset_args("magic")
    assert "known methods: gradient" in capsys.readouterr().err


def test_explain_runs_the_table() -> None:
    from captum_smooth.app import explain

    assert explain.DEFAULT_METHODS is DEFAULT_METHODS
    assert set(DEFAULT_METHODS) <= set(method_names())


def test_insights_offers_methods_of_the_table() -> None:
    names = insights.insights_method_names()
    assert names == ["smoothgrad", "adaptgrad", "noisegrad", "fusiongrad", "smoothtaylor"]
    for name in names:
        assert insights._method_class(name) is get_method(name).cls


def test_benchmarks_read_the_table() -> None:
    pytest.importorskip("sklearn")
    from benchmarks import bench_quality

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    rows = [s for s in bench_quality.method_specs(10, blur_sigma=1.0) if s.kind == "method"]
    from_table = [s for s in rows if s.method]
    # Every method row but Captum's own NoiseTunnel reference is a table entry.
    assert [s.label for s in rows if not s.method] == ["SmoothGrad (Captum NoiseTunnel)"]
    for row in from_table:
        spec = get_method(row.method)
        method, kwargs = row.build(model, 0)
        assert type(method) is spec.cls
        assert set(spec.kwargs(10)) <= set(kwargs)
    assert {s.method for s in from_table} >= {
        "gradient",
        "adaptgrad",
        "noisegrad",
        "fusiongrad",
        "smoothtaylor",
        "ig",
    }


def test_methods_listing_reads_the_table_and_the_kernels() -> None:
    text = listing()
    for name in method_names():
        assert name in text
    kernels_line = [line for line in text.splitlines() if line.startswith("kernels")]
    # Kernels are listed as --kernel and the smoothgrad-<kernel> names spell them (hyphens).
    assert kernels_line and all(k.replace("_", "-") in kernels_line[0] for k in kernel_names())
