"""Property suite, doors ``explain_dataset`` and ``cli explain-dataset`` (see doors.py).

* ``explain_dataset``: each argument's bad values (drawn) must raise a clear ValueError or
  TypeError from captum_smooth naming it; valid calls (drawn batch and shard sizes, dtypes,
  reductions, targets, seeds, a deterministic and a sampling method) must store exactly the
  maps of the method run directly on the same batches with the same seeds.
* ``cli explain-dataset``: each option's bad values must exit with status 2, one line on stderr
  naming the option as typed, and write nothing (the store's folder is watched).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from captum.attr import Saliency
from doors import expect_clear_error, expect_cli_error, expect_exact
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from captum_smooth import AttributionStore, SmoothGrad, explain_dataset
from captum_smooth.app import cli
from captum_smooth.app.methods import kernel_cli_names, method_names
from captum_smooth.dataset import batch_seed

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require")

SETTINGS: dict[str, Any] = {"deadline": None, "derandomize": True, "database": None}
N, C, H, CLASSES = 10, 2, 3, 3
DOOR, CLI_DOOR = "explain_dataset", "cli explain-dataset"
_COUNTER = itertools.count()


def _model() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(C * H * H, CLASSES)).eval()


def _data(n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, C, H, H, generator=gen), torch.randint(0, CLASSES, (n,), generator=gen)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dataset-doors")


def _fresh(folder: Path) -> Path:
    """A new ``out`` for each call (a call failing in its first batch leaves its settings)."""
    return folder / f"s{next(_COUNTER)}"


def _call(where: Path, **overrides: Any) -> AttributionStore:
    """explain_dataset of Saliency on the test model and data into ``where``, with overrides."""
    kwargs: dict[str, Any] = {"method": Saliency(_model()), "data": _data(), "out": where}
    kwargs.update(batch_size=4, shard_size=8, show_progress=False)
    kwargs.update(overrides)
    return explain_dataset(kwargs.pop("method"), kwargs.pop("data"), kwargs.pop("out"), **kwargs)


# ------------------------------------------------------------------------------------------
# explain_dataset: bad values, argument by argument.

_junk = st.one_of(st.text(max_size=3), st.floats(allow_nan=True), st.none(), st.just([1]))
_not_int = st.one_of(st.floats(), st.booleans(), st.text(max_size=3), st.just([4]))


def _nan_data() -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _data()
    x[5, 1, 0, 0] = float("nan")
    return x, y


#: argument -> (bad values, the names a message may use)
BAD: dict[str, tuple[st.SearchStrategy[Any], tuple[str, ...]]] = {
    "batch_size": (st.one_of(st.integers(max_value=0), _not_int), ("batch_size",)),
    "shard_size": (st.one_of(st.integers(max_value=0), _not_int), ("shard_size",)),
    "dtype": (
        st.one_of(
            st.sampled_from([torch.int8, torch.float64, torch.bfloat16, "int", "double", None]),
            st.integers(),
        ),
        ("dtype",),
    ),
    "reduce_channels": (
        st.one_of(
            st.text(max_size=4).filter(lambda s: s not in ("sum", "abs_sum", "mean")), _not_int
        ),
        ("reduce_channels",),
    ),
    "target": (
        st.one_of(
            st.integers(min_value=CLASSES),
            st.integers(max_value=-1),
            st.text(max_size=4).filter(lambda s: s not in ("label", "prediction")),
            st.floats(),
            st.booleans(),
            st.just(lambda inputs, labels: "cat"),
            st.just(lambda inputs, labels: torch.zeros(len(inputs))),
        ),
        ("target",),
    ),
    "seed": (
        st.one_of(st.integers(max_value=-1), st.integers(min_value=2**63), _not_int),
        ("seed",),
    ),
    "show_progress": (st.one_of(st.integers(), st.text(max_size=2), st.none()), ("show_progress",)),
    "overwrite": (st.one_of(st.integers(), st.text(max_size=2), st.none()), ("overwrite",)),
    "num_workers": (
        st.one_of(st.integers(max_value=-1), st.floats(), st.text(max_size=2)),
        ("num_workers",),
    ),
    "device": (
        st.one_of(
            st.sampled_from(["banana", "cuda:99", "gpu", "", "cpu:x", "meta", "xla", "mps:7"]),
            st.integers(min_value=64),
            st.floats(),
            st.booleans(),
        ),
        ("device",),
    ),
    "metadata": (
        st.sampled_from([{"a": object()}, {"x": float("nan")}, float("inf"), b"x", {"s": {1, 2}}]),
        ("metadata",),
    ),
    "out": (st.one_of(st.integers(), st.floats(), st.none(), st.just([1])), ("out",)),
    "method": (
        st.sampled_from([object(), "saliency", None, 5, nn.Linear(2, 2), Saliency]),
        ("method",),
    ),
    "data": (
        st.one_of(
            _junk,
            st.just(torch.tensor(1.0)),
            st.just(_data(0)),
            st.just((_data()[0], torch.zeros(3, dtype=torch.long))),
            st.just((_data()[0], _data()[1].float())),
            st.just((_data()[0], torch.full((N,), CLASSES))),
            st.just(_nan_data()),
        ),
        ("data", "label"),
    ),
}

#: attribute kwargs explain_dataset must refuse, and the name their message must hold
BAD_KWARGS: list[tuple[dict[str, Any], str]] = [
    ({"inputs": _data()[0]}, "inputs"),
    ({"generator": torch.Generator()}, "generator"),
    ({"return_convergence_delta": True}, "return_convergence_delta"),
]


@pytest.mark.parametrize("argument", sorted(BAD))
@settings(max_examples=6, **SETTINGS)
@given(draw=st.data())
def test_explain_dataset_names_each_bad_argument(
    folder: Path, argument: str, draw: st.DataObject
) -> None:
    values, names = BAD[argument]
    value = draw.draw(values, label=argument)
    out = _fresh(folder)
    kwargs = {argument: value}
    if argument == "target" and isinstance(value, int) and not isinstance(value, bool):
        kwargs["data"] = _data()  # the check needs the model's outputs: one forward
    expect_clear_error(DOOR, lambda: _call(out, **kwargs), *names)


@settings(max_examples=8, **SETTINGS)
@given(name=st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True))
def test_explain_dataset_names_an_unknown_attribute_keyword(folder: Path, name: str) -> None:
    known = {"inputs", "target", "abs", "additional_forward_args"} | set(
        explain_dataset.__code__.co_varnames
    )
    if name in known:
        return
    out = _fresh(folder)
    expect_clear_error(DOOR, lambda: _call(out, **{name: 1}), name)


@pytest.mark.parametrize(("kwargs", "name"), BAD_KWARGS, ids=[n for _, n in BAD_KWARGS])
def test_explain_dataset_refuses_attribute_kwargs_it_owns(
    folder: Path, kwargs: dict[str, Any], name: str
) -> None:
    out = _fresh(folder)
    method = SmoothGrad(_model()) if name == "generator" else Saliency(_model())
    if name == "return_convergence_delta":
        from captum.attr import IntegratedGradients

        method = IntegratedGradients(_model())
    expect_clear_error(DOOR, lambda: _call(out, method=method, **kwargs), name)


# ------------------------------------------------------------------------------------------
# explain_dataset: valid calls store exactly the method's maps.


def _reduced(attr: torch.Tensor, reduce: str | None) -> torch.Tensor:
    if reduce == "sum":
        return attr.sum(dim=1)
    if reduce == "abs_sum":
        return attr.abs().sum(dim=1)
    return attr.mean(dim=1) if reduce == "mean" else attr


def _direct(model: nn.Module, sampling: bool, target: Any, sizes: tuple[int, int], seed: int,
            reduce: str | None, dtype: torch.dtype) -> torch.Tensor:  # fmt: skip
    """The maps of the method run directly, batch by batch inside the shards, seeded the same."""
    x, y = _data()
    batch, shard = sizes
    maps = []
    for start in range(0, N, shard):
        for lo in range(start, min(start + shard, N), batch):
            hi = min(lo + batch, start + shard, N)
            xb = x[lo:hi]
            t = y[lo:hi] if target == "label" else target
            if target == "prediction":
                t = model(xb).argmax(dim=1)
            if sampling:
                gen = torch.Generator().manual_seed(batch_seed(seed, lo))
                a = SmoothGrad(model).attribute(xb, target=t, nt_samples=2, generator=gen)
            else:
                a = Saliency(model).attribute(xb, target=t)
            maps.append(_reduced(a.detach(), reduce).to(torch.float32).to(dtype))
    return torch.cat(maps)


@settings(max_examples=12, **SETTINGS)
@given(
    sampling=st.booleans(),
    target=st.one_of(st.sampled_from(["label", "prediction"]), st.integers(0, CLASSES - 1)),
    batch=st.integers(1, 5),
    shard=st.integers(1, 7),
    seed=st.integers(0, 2**63 - 1),
    reduce=st.sampled_from([None, "sum", "abs_sum", "mean"]),
    dtype=st.sampled_from([torch.float32, torch.float16]),
)
def test_explain_dataset_stores_exactly_the_methods_maps(
    folder: Path, sampling: bool, target: Any, batch: int, shard: int, seed: int,
    reduce: str | None, dtype: torch.dtype,
) -> None:  # fmt: skip
    model = _model()
    method = SmoothGrad(model) if sampling else Saliency(model)
    extra = {"nt_samples": 2} if sampling else {}
    expected = _direct(model, sampling, target, (batch, shard), seed, reduce, dtype)

    def check(store: AttributionStore) -> None:
        assert len(store) == N and store.dtype == dtype
        assert torch.equal(store[:], expected)

    options = {"batch_size": batch, "shard_size": shard, "seed": seed, "dtype": dtype}
    options.update(method=method, target=target, reduce_channels=reduce, **extra)
    out = _fresh(folder)
    expect_exact(DOOR, lambda: _call(out, **options), check)


# ------------------------------------------------------------------------------------------
# The command line: each option's bad values.


@pytest.fixture(scope="module")
def weights(folder: Path) -> Path:
    """Untrained digits CNN weights (no training if a bad value ever ran)."""
    pytest.importorskip("sklearn")
    from captum_smooth.app.models.digits import DigitsCNN

    torch.manual_seed(0)
    path = folder / "digits.pt"
    torch.save(DigitsCNN().eval().state_dict(), path)
    return path


def _below(minimum: int) -> st.SearchStrategy[str]:
    return st.integers(max_value=minimum - 1).map(str)


_NOT_INT = st.sampled_from(["x", "1.5", "1e3", "", "0x10", "one"])
_NOT_FLOAT = st.sampled_from(["x", "", "1,5", "one"])
_NON_FINITE = st.sampled_from(["nan", "inf", "-inf"])
_WORD = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)

#: option -> (bad values, the arguments that go with it)
CLI_BAD: dict[str, tuple[st.SearchStrategy[str], list[str]]] = {
    "--batch-size": (st.one_of(_below(1), _NOT_INT), []),
    "--shard-size": (st.one_of(_below(1), _NOT_INT), []),
    "--nt-samples": (st.one_of(_below(1), _NOT_INT), []),
    "--ig-steps": (st.one_of(_below(1), _NOT_INT), ["--method", "ig"]),
    "--image-size": (st.one_of(_below(8), _NOT_INT), []),
    "--limit": (st.one_of(_below(1), _NOT_INT), []),
    "--num-workers": (st.one_of(_below(0), _NOT_INT), []),
    "--seed": (st.one_of(_below(0), st.integers(min_value=2**63).map(str), _NOT_INT), []),
    "--confidence": (
        st.one_of(
            st.floats(max_value=0).map(str),
            st.floats(min_value=1).map(str),
            _NON_FINITE,
            _NOT_FLOAT,
        ),
        ["--method", "adaptgrad"],
    ),
    "--noise-level": (
        st.one_of(st.floats(max_value=-1e-9).map(str), _NON_FINITE, _NOT_FLOAT),
        ["--method", "smoothgrad"],
    ),
    "--weight-noise": (
        st.one_of(st.floats(max_value=-1e-9).map(str), _NON_FINITE, _NOT_FLOAT),
        ["--method", "noisegrad"],
    ),
    "--dtype": (_WORD.filter(lambda s: s not in ("float16", "float32")), []),
    "--reduce-channels": (_WORD.filter(lambda s: s not in ("sum", "abs_sum", "mean")), []),
    "--target": (_WORD.filter(lambda s: s not in ("auto", "label", "prediction")), []),
    "--model": (_WORD.filter(lambda s: s not in ("auto", "digits")), []),
    "--sampling": (_WORD.filter(lambda s: s not in ("iid", "antithetic")), []),
    "--method": (_WORD.filter(lambda s: s not in method_names()), []),
    "--kernel": (_WORD.filter(lambda s: s not in kernel_cli_names()), ["--method", "smoothgrad"]),
    "--device": (st.sampled_from(["banana", "cuda:99", "gpu", "cpu:x", "xla", "mps:7"]), []),
    "--data": (st.sampled_from(["no-such-folder", "digits.csv", "./missing/"]), []),
    "--weights": (st.sampled_from(["no-such.pt", "missing/w.pt"]), []),
}

#: Options that have no effect on the method given: (arguments, the option named).
WITHOUT_EFFECT = [
    (["--noise-level", "0.1", "--method", "adaptgrad"], "--noise-level"),
    (["--confidence", "0.9", "--method", "smoothgrad"], "--confidence"),
    (["--weight-noise", "0.1", "--method", "smoothgrad"], "--weight-noise"),
    (["--kernel", "laplace", "--method", "gradient"], "--kernel"),
    (["--sampling", "antithetic", "--method", "gradient"], "--sampling"),
    (["--model", "efficientnet-lite0"], "--data"),
    (["--nope"], "--nope"),
]


def _cli_argv(out: Path, weights: Path, *extra: str) -> list[str]:
    return [
        "explain-dataset", "--data", "digits", "--out", str(out), "--weights", str(weights),
        "--limit", "8", "--no-progress", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("option", sorted(CLI_BAD))
@settings(max_examples=5, **SETTINGS)
@given(draw=st.data())
def test_cli_names_each_bad_option(
    folder: Path, weights: Path, option: str, draw: st.DataObject
) -> None:
    values, extra = CLI_BAD[option]
    value = draw.draw(values, label=option)
    out = _fresh(folder)
    argv = [*_cli_argv(out, weights, *extra), f"{option}={value}"]  # the last one counts
    expect_cli_error(CLI_DOOR, cli.main, argv, option, watch=[folder])


@pytest.mark.parametrize(("extra", "option"), WITHOUT_EFFECT, ids=[o for _, o in WITHOUT_EFFECT])
def test_cli_refuses_an_option_without_effect(
    folder: Path, weights: Path, extra: list[str], option: str
) -> None:
    argv = _cli_argv(_fresh(folder), weights, *extra)
    expect_cli_error(CLI_DOOR, cli.main, argv, option, watch=[folder])


def test_cli_refuses_an_out_that_is_a_file_and_labels_images_lack(
    folder: Path, weights: Path
) -> None:
    from PIL import Image

    a_file = folder / "a-file"
    a_file.write_text("x")
    expect_cli_error(CLI_DOOR, cli.main, _cli_argv(a_file, weights), "--out", watch=[folder])
    images = folder / "flat-images"
    images.mkdir(exist_ok=True)
    Image.new("RGB", (8, 8)).save(images / "one.png")
    argv = ["explain-dataset", "--data", str(images), "--out", str(_fresh(folder))]
    argv += ["--target", "label", "--no-progress"]
    expect_cli_error(CLI_DOOR, cli.main, argv, "--target", watch=[folder])
