"""Small real models: the digits CNN, the ResNet-18-sized network and the torchvision shim."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from captum_smooth.app.models import _torchvision, digits
from captum_smooth.app.models.digits import (
    DigitsCNN,
    DigitsData,
    load_digits_data,
    train_digits_cnn,
    trained_digits_cnn,
)
from captum_smooth.app.models.resnet import BasicBlock, ResNet18Like, resnet18_like

_HAS_SKLEARN = importlib.util.find_spec("sklearn") is not None
needs_sklearn = pytest.mark.skipif(not _HAS_SKLEARN, reason="scikit-learn not installed")
_HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
needs_torchvision = pytest.mark.skipif(not _HAS_TORCHVISION, reason="torchvision not installed")


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def digits_data() -> DigitsData:
    return load_digits_data()


@pytest.fixture(scope="module")
def trained_model() -> DigitsCNN:
    return trained_digits_cnn(seed=0)


# ---------------------------------------------------------------- digits data


@needs_sklearn
def test_digits_data_shapes_range_and_stratification(digits_data: DigitsData) -> None:
    x_train, y_train, x_test, y_test = digits_data
    assert x_train.shape == (1347, 1, 8, 8) and x_test.shape == (450, 1, 8, 8)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert float(x_train.min()) == 0.0 and float(x_train.max()) == 1.0
    assert float(x_test.min()) >= 0.0 and float(x_test.max()) <= 1.0
    counts_train = y_train.bincount(minlength=10).double()
    counts_test = y_test.bincount(minlength=10).double()
    share = counts_test / (counts_train + counts_test)
    assert torch.all((share - 0.25).abs() < 0.02)


@needs_sklearn
def test_digits_data_deterministic_and_fresh() -> None:
    a, b, c = load_digits_data(seed=0), load_digits_data(seed=0), load_digits_data(seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a.y_test, c.y_test)
    a.x_train.zero_()
    assert float(load_digits_data(seed=0).x_train.max()) == 1.0
    smaller = load_digits_data(test_size=0.5)
    assert len(smaller.x_test) in (898, 899)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"seed": -1}, ValueError),
        ({"seed": True}, TypeError),
        ({"seed": 1.0}, TypeError),
        ({"test_size": 0.0}, ValueError),
        ({"test_size": 1.5}, ValueError),
        ({"test_size": "0.2"}, TypeError),
    ],
)
def test_digits_data_rejects_bad_arguments(kwargs: dict, error: type[Exception]) -> None:
    name = next(iter(kwargs))
    with pytest.raises(error, match=name):
        load_digits_data(**kwargs)


def test_digits_data_without_sklearn_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    digits._digits_arrays.cache_clear()
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    try:
        with pytest.raises(ImportError, match="scikit-learn"):
            load_digits_data()
    finally:
        monkeypatch.undo()
        digits._digits_arrays.cache_clear()


# ---------------------------------------------------------------- digits CNN


def test_digits_cnn_structure() -> None:
    model = DigitsCNN()
    assert _num_params(model) == 37_738
    names = dict(model.named_modules())
    assert isinstance(names["classifier"], nn.Linear)
    assert isinstance(names["dropout"], nn.Dropout)
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(batch_norms) == 3
    assert all(m.track_running_stats for m in batch_norms)
    assert not any(getattr(m, "inplace", False) for m in model.modules())
    assert model.eval()(torch.rand(5, 1, 8, 8)).shape == (5, 10)


def test_digits_cnn_rejects_bad_input_and_arguments() -> None:
    with pytest.raises(ValueError, match="x"):
        DigitsCNN()(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="num_classes"):
        DigitsCNN(num_classes=0)
    with pytest.raises(ValueError, match="dropout"):
        DigitsCNN(dropout=1.0)


@needs_sklearn
def test_training_is_deterministic_and_leaves_global_state(digits_data: DigitsData) -> None:
    rng_before = torch.get_rng_state()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    a, acc_a = train_digits_cnn(seed=3, epochs=2, data=digits_data)
    b, acc_b = train_digits_cnn(seed=3, epochs=2, data=digits_data)
    c, _ = train_digits_cnn(seed=4, epochs=2, data=digits_data)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.are_deterministic_algorithms_enabled() == deterministic_before
    assert _same_state(a, b) and acc_a == acc_b
    assert not _same_state(a, c)
    assert not a.training
    assert float(a.features.bn1.running_var.sub(1).abs().max()) > 0  # running stats updated


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seed": -1}, ValueError, "seed"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"epochs": 2.0}, TypeError, "epochs"),
        ({"data": (1, 2, 3, 4)}, TypeError, "data"),
    ],
)
def test_train_rejects_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        train_digits_cnn(**kwargs)


@needs_sklearn
def test_train_rejects_malformed_data(digits_data: DigitsData) -> None:
    bad = digits_data._replace(y_train=digits_data.y_train + 10)
    with pytest.raises(ValueError, match="y_train"):
        train_digits_cnn(epochs=1, data=bad)


@needs_sklearn
def test_trained_model_is_accurate(trained_model: DigitsCNN, digits_data: DigitsData) -> None:
    assert not trained_model.training
    with torch.no_grad():
        predictions = trained_model(digits_data.x_test).argmax(dim=1)
    accuracy = (predictions == digits_data.y_test).float().mean().item()
    assert accuracy >= 0.95


@needs_sklearn
def test_cached_model_returns_independent_copies(trained_model: DigitsCNN) -> None:
    first = trained_digits_cnn(seed=0)
    assert first is not trained_model and _same_state(first, trained_model)
    with torch.no_grad():
        for parameter in first.parameters():
            parameter.zero_()
    first.features.bn1.running_mean.fill_(5.0)
    first.train()
    second = trained_digits_cnn(seed=0)
    assert _same_state(second, trained_model) and not second.training
    with pytest.raises(TypeError, match="seed"):
        trained_digits_cnn(seed="0")  # type: ignore[arg-type]


@pytest.mark.slow
@needs_sklearn
def test_full_training_is_reproducible_and_matches_cache(trained_model: DigitsCNN) -> None:
    model, accuracy = train_digits_cnn(seed=0)
    assert accuracy >= 0.95
    assert _same_state(model, trained_model)


# ---------------------------------------------------------------- ResNet-18-like


def test_resnet18_like_size_and_output() -> None:
    model = resnet18_like()
    assert isinstance(model, ResNet18Like) and not model.training
    assert 11_600_000 <= _num_params(model) <= 11_700_000
    assert _num_params(model) == 11_689_512
    assert sum(isinstance(m, BasicBlock) for m in model.modules()) == 8
    with torch.no_grad():
        out = model(torch.rand(1, 3, 224, 224))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()
    assert resnet18_like(num_classes=10).fc.out_features == 10


def test_resnet18_like_is_seeded_and_leaves_global_rng() -> None:
    rng_before = torch.get_rng_state()
    a, b, c = resnet18_like(seed=1), resnet18_like(seed=1), resnet18_like(seed=2)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert _same_state(a, b) and not _same_state(a, c)


def test_resnet18_like_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        resnet18_like(num_classes=0)
    with pytest.raises(TypeError, match="seed"):
        resnet18_like(seed=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x"):
        resnet18_like(num_classes=2)(torch.rand(1, 1, 32, 32))


# ---------------------------------------------------------------- torchvision shim


@needs_torchvision
def test_import_torchvision_is_idempotent() -> None:
    first = _torchvision.import_torchvision()
    assert _torchvision.import_torchvision() is first
    assert hasattr(first.models, "resnet18")


@needs_torchvision
def test_import_torchvision_in_a_fresh_process() -> None:
    code = textwrap.dedent(
        """
        from captum_smooth.app.models._torchvision import import_torchvision
        tv = import_torchvision()
        assert import_torchvision() is tv
        model = tv.models.resnet18(weights=None)
        print(sum(p.numel() for p in model.parameters()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "11689512"


def test_import_torchvision_reports_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.setattr(_torchvision.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="torchvision is not installed"):
        _torchvision.import_torchvision()


@needs_torchvision
def test_torchvision_resnet18_matches_resnet18_like() -> None:
    theirs = _torchvision.torchvision_model("resnet18")
    ours = resnet18_like()
    assert not theirs.training
    assert _num_params(theirs) == _num_params(ours)
    assert list(theirs.state_dict()) == list(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


@needs_torchvision
def test_torchvision_model_never_downloads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="resnet18-"):
        _torchvision.torchvision_model("resnet18", weights="DEFAULT")
    with pytest.raises(FileNotFoundError, match="weights_backbone"):
        _torchvision.torchvision_model(
            "lraspp_mobilenet_v3_large", weights_backbone="IMAGENET1K_V1"
        )
    # Default backbone weights are switched off rather than downloaded.
    assert _torchvision.torchvision_model("lraspp_mobilenet_v3_large", num_classes=3) is not None


@needs_torchvision
def test_torchvision_model_loads_weights_from_the_hub_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    tv = _torchvision.import_torchvision()
    weights = tv.models.ResNet18_Weights.IMAGENET1K_V1
    checkpoints = os.path.join(str(tmp_path), "hub", "checkpoints")
    os.makedirs(checkpoints)
    source = resnet18_like(seed=5)
    torch.save(source.state_dict(), os.path.join(checkpoints, os.path.basename(weights.url)))
    model = _torchvision.torchvision_model("resnet18", weights=weights)
    assert _same_state(model, source)


@needs_torchvision
@pytest.mark.parametrize(
    ("name", "kwargs", "error", "match"),
    [
        (18, {}, TypeError, "name"),
        ("not_a_model", {}, ValueError, "name"),
        ("resnet18", {"weights": "bogus"}, ValueError, "weights"),
        ("resnet18", {"pretrained": True}, TypeError, "pretrained"),
    ],
)
def test_torchvision_model_rejects_bad_arguments(
    name: object, kwargs: dict, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        _torchvision.torchvision_model(name, **kwargs)  # type: ignore[arg-type]
