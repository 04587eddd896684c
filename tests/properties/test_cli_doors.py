"""Property suite of the command line's doors: ``explain``, ``demo``, ``explain-text``,
``methods`` and ``insights``.

For every option of each subcommand, bad values (empty, negative, zero, out of range, of the
wrong type, paths that do not exist, lie below a file or name the working folder, options
without effect, options in conflict) go through :func:`doors.expect_cli_error`: exit status 2,
one line on stderr naming the option as typed, nothing written in the watched folders. The
values are refused before any model work: a value that passed the checks would reach a stub
that fails (exit 1, counted as an unclear error) instead of a slow run; ``explain`` runs the
tiny model of ``tests/app/cli_models.py`` for the checks that need a model (a target outside
its classes, a model that does not load).
"""

from __future__ import annotations

import importlib.util
import math
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from doors import expect_cli_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from captum_smooth.app import explain, text
from captum_smooth.app.cli import main

APP_TESTS = Path(__file__).resolve().parents[1] / "app"
TINY = "cli_models:tiny_cnn"
#: Hypothesis draws per drawn option (fixed values come on top).
DRAWS = 12
SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=DRAWS,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


class Workspace:
    """The files the bad values point at, and the folders that must stay as they are."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.image = root / "noise.png"
        array = (np.random.default_rng(0).random((20, 20, 3)) * 255).astype(np.uint8)
        Image.fromarray(array).save(self.image)
        self.file = root / "afile.txt"
        self.file.write_text("not an image, not a folder")
        self.folder = root / "folder"
        self.folder.mkdir()
        self.out = root / "out"  # never created: every value here is bad
        self.here = root / "here"  # the working folder of the `--out .` cases
        self.here.mkdir()
        self.clash = root / "clash"  # a folder holding folders named as the outputs
        for name in ("metrics.csv", "text_attributions.png"):
            (self.clash / name).mkdir(parents=True)
            (self.clash / name / "keep.txt").write_text("user data")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("cli-doors"))


@pytest.fixture(scope="module")
def caches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Outside the watched folder: the tokenizer's extraction is no output."""
    return tmp_path_factory.mktemp("cli-doors-caches")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, caches: Path) -> None:
    monkeypatch.syspath_prepend(str(APP_TESTS))  # --model cli_models:...
    monkeypatch.setenv("CAPTUM_SMOOTH_CACHE", str(caches / "calibration"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(caches / "xdg"))


def _ran(*_: Any, **__: Any) -> Any:
    raise RuntimeError("a bad value passed the checks and reached the model")


def _refuse(door: str, work: Workspace, argv: list[str], option: str) -> str:
    return expect_cli_error(door, main, argv, option, watch=[work.root])


# ----------------------------------------------------------------------------- drawn values


def _not_an_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return True
    return False


def _not_a_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return True
    return False


#: Text that is no number (ASCII only: Python's int() reads other scripts' digits), some with
#: a line break, which must not break the one-line message.
WORDS = st.text(alphabet=string.ascii_letters + string.digits + " .,-+_\n", max_size=12)
NOT_INT = WORDS.filter(_not_an_int)
NOT_FLOAT = WORDS.filter(_not_a_float)


def ints(below: int | None = None, above: int | None = None) -> st.SearchStrategy[str]:
    """Integers ``< below`` or ``> above``, or text that is no integer, as typed."""
    parts: list[st.SearchStrategy[Any]] = [NOT_INT]
    if below is not None:
        parts.append(st.integers(max_value=below - 1))
    if above is not None:
        parts.append(st.integers(min_value=above + 1))
    return st.one_of(*parts).map(str)


def floats(minimum: float, inclusive: bool) -> st.SearchStrategy[str]:
    """Numbers below ``minimum`` (or at it, if not ``inclusive``), nan, inf, or no number."""
    low = st.floats(max_value=minimum, exclude_max=inclusive, allow_nan=False)
    special = st.sampled_from(["nan", "inf", "-inf", "NaN", ""])
    return st.one_of(low.map(repr), special, NOT_FLOAT)


def _equals(option: str, value: str) -> str:
    # `--seed=-1`: a value that starts with "-" is the option's, not another option.
    return f"{option}={value}"


# ----------------------------------------------------------------------------- explain

DOOR = "cli explain"


def _explain(work: Workspace, *extra: str, methods: str = "gradient,smoothgrad") -> list[str]:
    return [
        "explain", str(work.image), "--model", TINY, "--size", "16", "--samples", "2",
        "--auc-steps", "0", "--no-controls", "--no-progress", "-m", methods,
        "--out", str(work.out), *extra,
    ]  # fmt: skip


#: (option, values) of explain's numeric options, drawn.
EXPLAIN_NUMBERS: dict[str, st.SearchStrategy[str]] = {
    "--samples": ints(below=1),
    "--seed": ints(below=0, above=2**64 - 1),
    "--size": ints(below=8, above=4096),
    "--auc-steps": ints(below=0),
    "--weight-noise": floats(0.0, inclusive=True),
}


@pytest.mark.parametrize("option", sorted(EXPLAIN_NUMBERS))
def test_explain_numbers(work: Workspace, option: str) -> None:
    methods = "noisegrad" if option == "--weight-noise" else "gradient,smoothgrad"

    @SETTINGS
    @given(value=EXPLAIN_NUMBERS[option])
    def check(value: str) -> None:
        _refuse(DOOR, work, _explain(work, _equals(option, value), methods=methods), option)

    check()


def _adaptive(work: Workspace, *extra: str, methods: str = "smoothgrad") -> list[str]:
    """explain sampling to a tolerance (no --samples)."""
    argv = _explain(work, *extra, methods=methods)
    i = argv.index("--samples")
    return argv[:i] + argv[i + 2 :]


@SETTINGS
@given(value=floats(0.0, inclusive=False))
def test_explain_tolerance(work: Workspace, value: str) -> None:
    _refuse(DOOR, work, _adaptive(work, _equals("--tolerance", value)), "--tolerance")


@SETTINGS
@given(value=ints(below=1))
def test_explain_max_samples(work: Workspace, value: str) -> None:
    _refuse(DOOR, work, _adaptive(work, _equals("--max-samples", value)), "--max-samples")


EXPLAIN_CASES: list[tuple[str, list[str], str]] = [
    # (what, extra arguments, the option the message names)
    ("cap below two draws", ["--max-samples", "2", "-m", "adaptgrad"], "--max-samples"),
    ("cap of one", ["--max-samples", "1"], "--max-samples"),
]


@pytest.mark.parametrize(("what", "extra", "option"), EXPLAIN_CASES)
def test_explain_caps(work: Workspace, what: str, extra: list[str], option: str) -> None:
    _refuse(DOOR, work, _adaptive(work, *extra), option)


def _explain_cases(work: Workspace) -> Iterator[tuple[list[str], str]]:
    """(argv, option) of each fixed bad value of explain."""
    yield from (
        (_explain(work, "--target", value), "--target")
        for value in ("", "   ", "-1", "1.5", "-0.5", "1e3", "5", "99", "zebra", "\n")
    )
    yield from (
        (_explain(work, "--model", value), "--model")
        for value in (
            "", "cli_models:nosuch", "cli_models:not_a_module", "cli_models:broken_model",
            "no_such_module_xyz:make", str(work.file), str(work.folder), "torchvision:",
        )
    )  # fmt: skip
    yield from (
        (_explain(work, "--methods", value), "--methods")
        for value in ("", ",", "gradient,,smoothgrad", "nosuch", "gradient,gradient", "saliency")
    )
    yield from (
        (_explain(work, "--kernel", value, methods=methods), "--kernel")
        for value, methods in (("", "smoothgrad"), ("boxcar", "smoothgrad"), ("gaussian", "ig"))
    )
    yield _explain(work, "--sampling", "sobol"), "--sampling"
    yield _explain(work, "--sampling", "antithetic", methods="gradient"), "--sampling"
    yield _explain(work, "--weight-noise", "0.1", methods="smoothgrad"), "--weight-noise"
    yield _adaptive(work, "--tolerance", "0.2", methods="gradient"), "--tolerance"
    yield _explain(work, "--tolerance", "0.2"), "--tolerance"  # with --samples: which rules?
    yield _explain(work, "--max-samples", "8"), "--max-samples"
    yield _explain(work, "--style", "sketch"), "--style"
    yield _explain(work, "--sign=yes"), "--sign"
    yield _explain(work, "--no-controls=1"), "--no-controls"
    yield _explain(work, "--nope"), "--nope"
    yield _explain(work, "--weight-stdev", "0.1"), "--weight-stdev"
    yield from _out_cases(work, _explain, "metrics.csv")


def _out_cases(
    work: Workspace, argv: Callable[..., list[str]], output: str
) -> Iterator[tuple[list[str], str]]:
    """--out: a file, below a file, the working folder, a folder holding a folder ``output``."""
    for out in (work.file, work.file / "sub", work.image / "sub" / "deeper", Path(".")):
        yield argv(work, "--out", str(out)), "--out"
    yield argv(work, "--out", str(work.root)), "--out"  # holds the working folder
    yield argv(work, "--out", str(work.clash)), output


def test_explain_fixed_values(
    work: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:  # the working folder: inside the watched one, so `--out .` would show
    monkeypatch.chdir(work.here)
    for argv, option in _explain_cases(work):
        _refuse(DOOR, work, argv, option)


@pytest.mark.parametrize(
    "source", ["missing.png", "", "skimage:nosuch", "afile.txt", "folder"], ids=repr
)
def test_explain_images(work: Workspace, source: str) -> None:
    path = str(work.root / source) if source in ("missing.png", "afile.txt", "folder") else source
    argv = _explain(work)
    argv[1] = path
    _refuse(DOOR, work, argv, path or "image")


# ----------------------------------------------------------------------------- demo

DEMO = "cli demo"


def _demo(work: Workspace, *extra: str, methods: str | None = None) -> list[str]:
    argv = ["demo", "--samples", "2", "--no-progress", "--out", str(work.out), *extra]
    return argv + ([] if methods is None else ["-m", methods])


@pytest.fixture
def _no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bad value that passed the checks fails fast (exit 1) instead of running the demo."""
    monkeypatch.setattr(explain, "_load_inputs", _ran)


DEMO_NUMBERS: dict[str, st.SearchStrategy[str]] = {
    "--samples": ints(below=1),
    "--seed": ints(below=0, above=2**64 - 1),
    "--auc-steps": ints(below=0),
    "--weight-noise": floats(0.0, inclusive=True),
}


@pytest.mark.usefixtures("_no_model")
@pytest.mark.parametrize("option", sorted(DEMO_NUMBERS))
def test_demo_numbers(work: Workspace, option: str) -> None:
    @SETTINGS
    @given(value=DEMO_NUMBERS[option])
    def check(value: str) -> None:
        _refuse(DEMO, work, _demo(work, _equals(option, value)), option)

    check()


def _demo_cases(work: Workspace) -> Iterator[tuple[list[str], str]]:
    for value in ("", ",", "nosuch", "smoothgrad,smoothgrad"):
        yield _demo(work, methods=value), "--methods"
    yield _demo(work, "--kernel", "boxcar"), "--kernel"
    yield _demo(work, "--kernel", "laplace", methods="gradient"), "--kernel"
    yield _demo(work, "--tolerance", "0.2"), "--tolerance"
    yield _demo(work, "--sampling", "sobol"), "--sampling"
    yield _demo(work, "--style", "sketch"), "--style"
    yield _demo(work, "--target", "1"), "--target"  # the demo explains its own photos
    yield _demo(work, "--model", TINY), "--model"
    yield _demo(work, "--size", "16"), "--size"
    for value in ("0", "-1", "x"):
        demo = _demo(work, _equals("--max-samples", value))
        yield demo[:1] + demo[3:], "--max-samples"  # without --samples: to a tolerance
    yield ["demo", "--no-progress", "--max-samples", "2", "-m", "adaptgrad"], "--max-samples"
    yield from _out_cases(work, _demo, "metrics.csv")


@pytest.mark.usefixtures("_no_model")
def test_demo_fixed_values(work: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(work.here)
    for argv, option in _demo_cases(work):
        if "--out" not in argv:
            argv += ["--out", str(work.out)]
        _refuse(DEMO, work, argv, option)


# ----------------------------------------------------------------------------- explain-text

TEXT = "cli explain-text"
needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None
    or importlib.util.find_spec("all_minilm_l6_v2") is None,
    reason="the text extra (transformers) or the MiniLM model wheel is not installed",
)


@pytest.fixture
def _no_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is loaded: a bad value that passed the checks fails fast (exit 1)."""
    monkeypatch.setattr(text, "_import_transformers", _ran)


def _text(work: Workspace, *extra: str, methods: str = "fusiongrad") -> list[str]:
    """explain-text with a method that takes every option (fusiongrad: input and weight noise)."""
    return ["explain-text", "--methods", methods, "--out", str(work.out), *extra]


TEXT_NUMBERS: dict[str, st.SearchStrategy[str]] = {
    "--samples": ints(below=1),
    "--steps": ints(below=2),
    "--seed": ints(below=0, above=2**64 - 1),
    "--noise-level": floats(0.0, inclusive=True),
    "--weight-noise": floats(0.0, inclusive=True),
}


@pytest.mark.usefixtures("_no_encoder")
@pytest.mark.parametrize("option", sorted(TEXT_NUMBERS))
def test_text_numbers(work: Workspace, option: str) -> None:
    @SETTINGS
    @given(value=TEXT_NUMBERS[option])
    def check(value: str) -> None:
        _refuse(TEXT, work, _text(work, _equals(option, value)), option)

    check()


def _text_cases(work: Workspace) -> Iterator[tuple[list[str], str]]:
    for option in ("--text", "--compare"):
        for value in ("", " ", "\t\n"):
            yield _text(work, option, value), option
    for value in ("", ",", "gradcam", "plain,plain", "plain,,noisegrad"):
        yield ["explain-text", "--methods", value, "--out", str(work.out)], "--methods"
    yield _text(work, "--sampling", "sobol"), "--sampling"
    # options that change none of the methods run
    yield _text(work, "--samples", "4", methods="plain"), "--samples"
    yield _text(work, "--sampling", "antithetic", methods="plain"), "--sampling"
    yield _text(work, "--noise-level", "0.1", methods="plain,noisegrad"), "--noise-level"
    yield _text(work, "--weight-noise", "0.1", methods="plain,smoothgrad"), "--weight-noise"
    yield _text(work, "--weight-stdev", "0.1"), "--weight-stdev"
    yield _text(work, "--nope"), "--nope"
    yield from _out_cases(work, _text, "text_attributions.png")


@pytest.mark.usefixtures("_no_encoder")
def test_text_fixed_values(work: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(work.here)
    for argv, option in _text_cases(work):
        _refuse(TEXT, work, argv, option)


@needs_minilm
@pytest.mark.parametrize("option", ["--text", "--compare"])
def test_text_longer_than_the_model_reads(
    work: Workspace, monkeypatch: pytest.MonkeyPatch, option: str
) -> None:
    # The tokenizer is loaded to count the tokens; the model is not.
    monkeypatch.setattr(text, "_load_encoder", _ran)
    line = _refuse(TEXT, work, _text(work, option, "word " * 600), option)
    assert "602 tokens" in line and "at most 512" in line


# ----------------------------------------------------------------------------- methods

METHODS = "cli methods"


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["methods", "--nope"], "--nope"),
        (["methods", "smoothgrad"], "smoothgrad"),
        (["methods", "-m", "smoothgrad"], "-m"),
        (["methods", "--out", "x"], "--out"),
        (["methods", "--kernel=laplace"], "--kernel"),
    ],
)
def test_methods_takes_no_options(work: Workspace, argv: list[str], option: str) -> None:
    _refuse(METHODS, work, argv, option)


# ----------------------------------------------------------------------------- insights

INSIGHTS = "cli insights"


@SETTINGS
@given(port=ints(below=1, above=65535))
def test_insights_port(work: Workspace, port: str) -> None:
    _refuse(INSIGHTS, work, ["insights", _equals("--port", port)], "--port")


@SETTINGS
@given(size=ints(below=8, above=4096))
def test_insights_size(work: Workspace, size: str) -> None:
    _refuse(INSIGHTS, work, ["insights", _equals("--size", size)], "--size")


def test_insights_empty_images(work: Workspace) -> None:
    _refuse(INSIGHTS, work, ["insights", "--images"], "--images")


# The drawn values really are out of range (a strategy that drew valid values would count
# silent results, not test the door).
def test_the_strategies_draw_bad_values() -> None:
    @SETTINGS
    @given(value=floats(0.0, inclusive=False))
    def check(value: str) -> None:
        try:
            number = float(value)
        except ValueError:
            return
        assert not (math.isfinite(number) and number > 0)

    check()
