"""Property suite of two doors: ``calibrate_weight_noise`` and the CLI's weight-noise cache.

* ``calibrate_weight_noise``: every argument's bad values end in a clear error naming it; valid
  calls (hypothesis draws the model, the data's form and every setting) return a result whose
  every figure is checked: the clean accuracy and the accuracy at the answer (and at the failed
  scale above it) recomputed through the public :class:`WeightNoise` with the same seed, the
  search's bracket, and, on two models whose accuracy under weight noise is known, the exact
  history (noise reaching only a zero bias: accuracy 1 at every scale; a logit that is NaN off
  its clean weight: accuracy 0 at every scale).
* ``weight-noise cache``: an entry with a bad value in any field (or a file that is not a JSON
  object) is not used: the model is recalibrated, with a warning naming the cache file, and the
  entry replaced by a valid one.
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from doors import expect_clear_error, expect_exact
from hypothesis import event, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from captum_smooth.app import calibrate
from captum_smooth.methods.calibration import CalibrationResult, calibrate_weight_noise
from captum_smooth.noise.weights import WeightNoise

from analytic_models import NaNOffItsWeight
from model_state import assert_identical, snapshot

DOOR = "calibrate_weight_noise"
CACHE_DOOR = "weight-noise cache"
SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=40)


# ----------------------------------------------------------------------------------- models


def blobs() -> tuple[nn.Module, Tensor, Tensor]:
    """A linear classifier on 3 Gaussian blobs (clean accuracy ~ 1; noise degrades it)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    y = torch.arange(60) % 3
    x = centres[y] + 0.5 * torch.randn(60, 2, generator=g)
    model = nn.Linear(2, 3)
    with torch.no_grad():
        model.weight.copy_(centres)
        model.bias.zero_()
    return model.eval(), x, y


def robust() -> tuple[nn.Module, Tensor, Tensor]:
    """Identity weights, zero bias, labels the argmax: with noise on the bias only, exact 1."""
    model, x, _ = blobs()
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    return model.eval(), x, x.argmax(dim=1)


def nan_off() -> tuple[nn.Module, Tensor, Tensor]:
    _, x, _ = blobs()
    return NaNOffItsWeight(), x, torch.zeros(len(x), dtype=torch.long)


class Flat(nn.Module):
    """A model returning one number per example, not logits."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x)[:, 0]


class NaNLogits(nn.Linear):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) * math.nan


# ------------------------------------------------------------------------------ bad values

MODEL, X, Y = blobs()
Q = {"show_progress": False, "max_iter": 2, "n_draws": 1, "generator": 0}


def _with_nan(x: Tensor, value: float) -> Tensor:
    out = x.clone()
    out[3, 1] = value
    return out


#: (argument, bad value, the names the message may use); data and model as whole calls.
BAD_KEYWORDS: list[tuple[str, Any]] = [
    *[("target_drop", v) for v in (0, 1, -0.1, 1.5, math.nan, math.inf, "0.1", True, None)],
    *[("n_draws", v) for v in (0, -1, 1.5, True, "2", None)],
    *[("max_stdev", v) for v in (0, -1.0, math.nan, math.inf, "2", True, None)],
    *[("initial_stdev", v) for v in (0, -0.1, 3.0, math.nan, "0.1", True)],
    *[("tol", v) for v in (0, 1, -0.1, math.nan, "x", True)],
    *[("max_iter", v) for v in (0, -3, 2.0, True, "6")],
    *[("generator", v) for v in ("a", 1.5, True, 2**70, [1])],
    *[("show_progress", v) for v in ("no", None, 1)],
    *[("noise_type", v) for v in ("uniform", None, 3)],
    *[("parameters", v) for v in (5, "nothing")],
    *[("exclude", v) for v in (5, "weight|bias")],
]

BAD_DATA: dict[str, Any] = {
    "inputs alone": X,
    "a string": "abc",
    "no batch": [],
    "no example": (X[:0], Y[:0]),
    "float labels": (X, Y.float()),
    "bool labels": (X, Y.bool()),
    "labels (N, 1)": (X, Y[:, None]),
    "labels too few": (X, Y[:5]),
    "labels >= classes": (X, Y + 3),
    "negative labels": (X, Y - 3),
    "a NaN input": (_with_nan(X, math.nan), Y),
    "an inf input": (_with_nan(X, math.inf), Y),
    "all NaN": (torch.full_like(X, math.nan), Y),
    "a bad batch": [(X, Y), 5],
    "a NaN in batch 2": [(X, Y), (_with_nan(X, -math.inf), Y)],
    "three tensors, not batches": (X, Y, Y),
}

BAD_MODELS: dict[str, tuple[Callable[[], Any], tuple[str, ...]]] = {
    "None": (lambda: None, ("model",)),
    "a function": (lambda: lambda t: t, ("model",)),
    "no parameter": (nn.ReLU, ("parameter",)),
    "frozen": (lambda: nn.Linear(2, 3).requires_grad_(False), ("parameter",)),
    "one number per example": (Flat, ("model",)),
    "NaN logits": (lambda: NaNLogits(2, 3), ("model",)),
}


@pytest.mark.parametrize(("name", "value"), BAD_KEYWORDS, ids=lambda v: repr(v)[:20])
def test_bad_keyword_values_are_clear_errors(name: str, value: Any) -> None:
    kwargs = {**Q, name: value}

    def call() -> Any:
        if name == "target_drop":  # the one positional option
            return calibrate_weight_noise(MODEL, (X, Y), kwargs.pop(name), **kwargs)
        return calibrate_weight_noise(MODEL, (X, Y), **kwargs)

    before = snapshot(MODEL)
    expect_clear_error(DOOR, call, name)
    assert_identical(before, MODEL)


@pytest.mark.parametrize("kind", list(BAD_DATA))
def test_bad_data_is_a_clear_error(kind: str) -> None:
    before = snapshot(MODEL)
    expect_clear_error(DOOR, lambda: calibrate_weight_noise(MODEL, BAD_DATA[kind], **Q), "data")
    assert_identical(before, MODEL)


@pytest.mark.parametrize("kind", list(BAD_MODELS))
def test_bad_models_are_clear_errors(kind: str) -> None:
    make, names = BAD_MODELS[kind]
    model = make()
    expect_clear_error(DOOR, lambda: calibrate_weight_noise(model, (X, Y), **Q), *names)


# ----------------------------------------------------------------------------- valid calls


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Share right; a row with a non-finite logit is wrong (it classified nothing)."""
    with torch.no_grad():
        out = model(x)
    return int(((out.argmax(1) == y) & torch.isfinite(out).all(1)).sum()) / len(y)


def noisy_accuracy(
    model: nn.Module, x: Tensor, y: Tensor, stdev: float, seed: int, call: dict[str, Any]
) -> float:
    """The mean accuracy of ``n_draws`` perturbed models, drawn as documented: a generator
    seeded with ``seed``, in the same state for every scale, one session."""
    generator = torch.Generator().manual_seed(seed)
    noise = WeightNoise(call["max_stdev"], call["noise_type"], call.get("parameters"))
    total = 0.0
    with torch.no_grad(), noise.session(model) as perturber:
        for _ in range(call["n_draws"]):
            perturber.perturb(generator, stdev=stdev)
            total += accuracy(model, x, y)
    return total / call["n_draws"]


def doubling(initial: float, max_stdev: float, max_iter: int) -> list[float]:
    """The scales of a search in which every scale is accepted."""
    scales = [initial]
    while len(scales) < max_iter and scales[-1] < max_stdev:
        scales.append(min(2 * scales[-1], max_stdev))
    return scales


def check_search(res: CalibrationResult, call: dict[str, Any], x: Tensor, y: Tensor) -> None:
    """What every result must be, whatever the model."""
    model, seed = call["model"], call["generator"]
    clean = accuracy(model, x, y)
    assert res.accuracy_clean == pytest.approx(clean, abs=1e-12)
    assert res.threshold == pytest.approx((1 - call["target_drop"]) * clean, abs=1e-12)
    assert 1 <= len(res.history) <= call["max_iter"]
    assert all(h.accepted == (h.accuracy >= res.threshold) for h in res.history)
    assert res.bracketed == math.isfinite(res.upper)
    accepted = [h.stdev for h in res.history if h.accepted]
    if res.stdev == 0.0:
        assert not accepted and res.accuracy_noisy == res.accuracy_clean
    else:
        assert res.stdev in accepted
        expected = noisy_accuracy(model, x, y, res.stdev, seed, call)
        assert res.accuracy_noisy == pytest.approx(expected, abs=1e-12)
        assert res.accuracy_noisy >= res.threshold
    if res.bracketed:  # the failed scale above: below the threshold, nothing accepted between
        assert res.upper > res.stdev and not [s for s in accepted if res.stdev < s < res.upper]
        below = noisy_accuracy(model, x, y, res.upper, seed, call)
        assert below < res.threshold
        assert [h.accuracy for h in res.history if h.stdev == res.upper] == [pytest.approx(below)]
    else:  # every scale tried was accepted and the answer is the last of them
        assert len(accepted) == len(res.history) and res.stdev == res.history[-1].stdev


MODELS = {"blobs": blobs, "robust": robust, "nan_off": nan_off}


def check_known(kind: str, res: CalibrationResult, call: dict[str, Any]) -> None:
    """The exact history on the models whose accuracy under noise is known."""
    if kind == "robust":  # accuracy 1 at every scale: the doubling, never bracketed
        scales = doubling(call["initial_stdev"], call["max_stdev"], call["max_iter"])
        assert [h.stdev for h in res.history] == pytest.approx(scales, rel=1e-12)
        assert [h.accuracy for h in res.history] == [1.0] * len(scales)
        assert res.stdev == res.history[-1].stdev and not res.bracketed
    elif kind == "nan_off":  # accuracy 0 at every scale: halving from initial_stdev
        scales = [call["initial_stdev"] / 2**k for k in range(call["max_iter"])]
        assert [h.stdev for h in res.history] == pytest.approx(scales, rel=1e-12)
        assert [h.accuracy for h in res.history] == [0.0] * len(scales)
        assert res.stdev == 0.0 and res.bracketed and res.upper == res.history[-1].stdev


def as_data(form: str, x: Tensor, y: Tensor) -> Any:
    if form == "pair":
        return (x, y)
    if form == "batches":
        return [(x[i : i + 25], y[i : i + 25]) for i in range(0, len(y), 25)]
    if form == "iterator":
        return ((x[i : i + 16], y[i : i + 16]) for i in range(0, len(y), 16))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)


@st.composite
def options(draw: st.DrawFn, kind: str) -> dict[str, Any]:
    """The keyword options of a valid call on model ``kind``."""
    # The known models are built for multiplicative noise (zeros stay zero). For nan_off,
    # scales >= 2e-3: 1 + s z rounds to 1 in float32 only if |z| < 3e-5.
    max_stdev = draw(
        st.sampled_from(
            {"blobs": [0.5, 2.0, 8.0], "nan_off": [0.5, 2.0]}.get(kind, [0.05, 0.5, 2.0])
        )
    )
    share = draw(st.floats(0.5 if kind == "nan_off" else 0.01, 1.0))
    return {
        "target_drop": draw(st.floats(0.01, 0.6)),
        "n_draws": draw(st.integers(1, 3)),
        "max_stdev": max_stdev,
        "initial_stdev": max(share * max_stdev, 1e-3),
        "tol": draw(st.floats(0.01, 0.5)),
        "max_iter": draw(st.integers(1, 10)),
        "generator": draw(st.integers(0, 2**32)),
        "noise_type": draw(st.sampled_from(["multiplicative", "additive"]))
        if kind == "blobs"
        else "multiplicative",
        **({"parameters": "bias"} if kind == "robust" else {}),
    }


FORMS = st.sampled_from(["pair", "batches", "iterator", "loader"])


def run_and_check(kind: str, form: str, args: dict[str, Any]) -> None:
    """A valid call through ``expect_exact``: the result checked by :func:`check_search` and,
    on the known models, :func:`check_known`; the model bit-identical; a warning when the
    answer is not bracketed."""
    model, x, y = MODELS[kind]()
    call = {"model": model, **args}
    before = snapshot(model)

    def run() -> CalibrationResult:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = calibrate_weight_noise(model, as_data(form, x, y), show_progress=False, **args)
        said = " ".join(str(w.message) for w in caught)
        assert res.bracketed or "not bracketed" in said, said
        return res

    def check(res: CalibrationResult) -> None:
        event(f"{kind}, bracketed={res.bracketed}")
        assert_identical(before, model)
        check_search(res, call, x, y)
        check_known(kind, res, call)

    expect_exact(DOOR, run, check)


@SETTINGS
@given(form=FORMS, args=options("blobs"))
def test_valid_calls_on_a_classifier_return_the_checked_result(
    form: str, args: dict[str, Any]
) -> None:
    run_and_check("blobs", form, args)


@settings(SETTINGS, max_examples=30)
@given(kind=st.sampled_from(["robust", "nan_off"]), form=FORMS, data=st.data())
def test_valid_calls_on_models_of_known_accuracy_return_the_exact_search(
    kind: str, form: str, data: st.DataObject
) -> None:
    run_and_check(kind, form, data.draw(options(kind)))


# ---------------------------------------------------------------------- the cache's reading

SIZE = 8


def tiny_cnn() -> nn.Module:
    """The same small CNN every time (seeded, without touching torch's global state)."""
    with torch.random.fork_rng():
        torch.manual_seed(7)
        layers = [nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)]
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(3, 4)).eval()


_PROXY: dict[int, Tensor] = {}
_REAL_PROXY = calibrate.proxy_images


def _memo_proxy(size: int, seed: int = 0) -> Tensor:
    if size not in _PROXY:
        _PROXY[size] = _REAL_PROXY(size, seed)
    return _PROXY[size].clone()


#: Bad values per field of a cached entry: wrong types, out of range, not finite.
_JUNK = st.one_of(st.text(max_size=3), st.none(), st.lists(st.integers(), max_size=2))
BAD_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "stdev": st.one_of(
        _JUNK,
        st.booleans(),
        st.floats(2.0, 1e9, exclude_min=True),
        st.floats(max_value=-1e-9),
        st.sampled_from([math.nan, math.inf, "0.01"]),
    ),
    "agreement": st.one_of(_JUNK, st.floats(1.0, exclude_min=True), st.just(math.nan)),
    "threshold": st.one_of(_JUNK, st.floats(max_value=0.0), st.just(math.inf)),
    "n_images": st.one_of(_JUNK, st.booleans(), st.integers(max_value=0), st.just(36.0)),
    "fingerprint": st.one_of(st.none(), st.integers(), st.just("0" * 64)),
    "bracketed": st.one_of(_JUNK, st.integers(0, 1)),
    "history": st.one_of(
        st.none(),
        st.text(max_size=2),
        st.just([]),
        st.just([[0.01]]),
        st.just([["0.01", 1.0]]),
        st.just([[-0.01, 1.0]]),
        st.just([[0.01, 2.0]]),
        st.just([[0.01, 1.0]] * 7),
    ),
    "warnings": st.one_of(st.none(), st.text(max_size=2), st.just([1]), st.just([None])),
}


@st.composite
def bad_entries(draw: st.DrawFn) -> tuple[str, Callable[[dict[str, Any]], Any]]:
    """(what, how to spoil a valid entry): one field bad, a field missing or added, not a dict."""
    how = draw(st.sampled_from(["field", "missing", "extra", "not an object"]))
    if how == "field":
        name = draw(st.sampled_from(list(BAD_FIELDS)))
        value = draw(BAD_FIELDS[name])
        return f"{name}={value!r}", lambda e: {**e, name: value}
    if how == "missing":
        name = draw(st.sampled_from(list(BAD_FIELDS)))
        return f"no {name}", lambda e: {k: v for k, v in e.items() if k != name}
    if how == "extra":
        return "extra field", lambda e: {**e, "cached": True}
    value = draw(st.one_of(st.none(), st.integers(), st.lists(st.floats(0, 1), max_size=2)))
    return f"entry {value!r}", lambda e: value


def _recalibrated(path: Path, fresh: calibrate.WeightNoiseChoice) -> Callable[[Any], None]:
    def check(choice: calibrate.WeightNoiseChoice) -> None:
        assert not choice.cached and choice.stdev == fresh.stdev
        assert [w for w in choice.warnings if str(path) in w], choice.warnings
        (entry,) = json.loads(path.read_text("utf-8")).values()  # replaced by a valid one
        assert calibrate._entry_problem(entry, fresh.fingerprint) is None

    return check


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> tuple[calibrate.WeightNoiseChoice, str]:
    """tiny_cnn calibrated once: (its choice, the cache file's text)."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAPTUM_SMOOTH_CACHE", str(folder))
        mp.setattr(calibrate, "proxy_images", _memo_proxy)
        choice = calibrate.calibrated_weight_noise(tiny_cnn(), SIZE)
    return choice, (folder / "weight-noise.json").read_text("utf-8")


@settings(SETTINGS, max_examples=25)  # each example recalibrates (~0.1 s on a quiet core)
@given(spoil=bad_entries())
def test_bad_cache_entries_are_recalibrated_with_a_warning(
    calibrated: tuple[calibrate.WeightNoiseChoice, str], spoil: tuple[str, Any]
) -> None:
    fresh, text = calibrated
    _, edit = spoil
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAPTUM_SMOOTH_CACHE", folder)
        mp.setattr(calibrate, "proxy_images", _memo_proxy)
        path = Path(folder) / "weight-noise.json"
        data = json.loads(text)
        (key,) = data
        path.write_text(json.dumps({key: edit(data[key])}), "utf-8")
        run = lambda: calibrate.calibrated_weight_noise(tiny_cnn(), SIZE)  # noqa: E731
        expect_exact(CACHE_DOOR, run, _recalibrated(path, fresh))


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"null", b"\xff\xfe", b""], ids=repr)
def test_a_cache_file_that_is_not_a_json_object_is_kept_aside(
    calibrated: tuple[calibrate.WeightNoiseChoice, str],
    content: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fresh, _ = calibrated
    monkeypatch.setenv("CAPTUM_SMOOTH_CACHE", str(tmp_path))
    monkeypatch.setattr(calibrate, "proxy_images", _memo_proxy)
    path = tmp_path / "weight-noise.json"
    path.write_bytes(content)
    aside = tmp_path / "weight-noise.json.corrupt"

    def check(choice: calibrate.WeightNoiseChoice) -> None:
        _recalibrated(path, fresh)(choice)
        assert [w for w in choice.warnings if str(aside) in w]
        assert aside.read_bytes() == content

    expect_exact(CACHE_DOOR, lambda: calibrate.calibrated_weight_noise(tiny_cnn(), SIZE), check)
