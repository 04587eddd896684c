"""Property suite of the metrics (captum_smooth.metrics): every argument's bad values give a clear
error naming it; valid calls on analytic cases give the known value.

Doors: ``metric <name>`` for each public metric. The analytic cases: a linear model
``f(x) = <w, x>`` (logits), whose deletion, insertion and region-perturbation curves are
cumulative sums of the sorted contributions ``w_i x_i``, whose Saliency has infidelity and
max-sensitivity 0; one-hot and constant maps for the concentration measures; a checkerboard for
the total variation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, Saliency
from doors import expect_clear_error, expect_exact
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from captum_smooth.metrics import (
    aupc,
    complexity,
    deletion_auc,
    infidelity_of,
    insertion_auc,
    quantus_explain_func,
    sensitivity_max_of,
    sparseness,
    total_variation,
)

SETTINGS = settings(max_examples=15, derandomize=True, database=None, deadline=None)
B, C, H, W = 2, 1, 4, 4
N_CLASSES = 3


class LinearLogits(nn.Module):
    """``f_c(x) = (c + 1) <w, x>``: class ``c``'s contributions are ``(c + 1) w_i x_i``."""

    def __init__(self, n: int = C * H * W, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.rand(n, generator=g, dtype=torch.float64) + 0.5)
        self.register_buffer("scale", torch.arange(1.0, N_CLASSES + 1.0, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return (x.reshape(x.shape[0], -1) @ self.w).unsqueeze(1) * self.scale


def _x(seed: int = 0) -> Tensor:
    return torch.rand(
        B, C, H, W, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


MODEL = LinearLogits()
X = _x()
MAPS = X * MODEL.w.detach().reshape(1, C, H, W)


# ----------------------------------------------------------------------------- bad values

CURVE_BAD: dict[str, list[Any]] = {
    "model": [3, "model"],
    "inputs": [
        [1.0],
        torch.zeros(0, 1, 4, 4),
        torch.rand(4),
        X.clone().fill_(math.nan),
        X.to(torch.complex128),
    ],
    "maps": [
        "maps",
        torch.rand(2),
        torch.rand(B, 2, H, W),
        MAPS.clone().fill_(math.inf),
        MAPS.to(torch.complex128),
        torch.ones(B, C, H, W, dtype=torch.bool),
    ],
    "target": [
        99,
        -1,
        [0, 99],
        [0],
        torch.tensor([0.5, 1.0]),
        torch.tensor([[0, 1]]),
        "cat",
        None,
        True,
        torch.tensor([0, 5]),
    ],
    "n_steps": [0, -3, "a", 1.5, True],
    "batch_size": [0, "a", None],
    "output": ["nope", 3],
    "baseline": ["a", torch.zeros(3, 3), True, lambda x: "not a tensor"],
}
DELETION_ARGS: dict[str, Any] = {"model": MODEL, "inputs": X, "maps": MAPS, "target": 0}

AUPC_BAD: dict[str, list[Any]] = {
    **{k: v for k, v in CURVE_BAD.items() if k not in ("n_steps",)},
    "inputs": [*CURVE_BAD["inputs"], torch.rand(B, 16, dtype=torch.float64)],
    "n_steps": [0, "a", -1],
    "window": [0, 9, (1, 2, 3), "a", (0, 1), 1.5],
    "value_range": [(1.0, 0.0), "ab", (0.0,), (0.0, math.inf), ("a", 1.0)],
    "generator": ["a", 1.5, 2**70],
}

TV_BAD: dict[str, list[Any]] = {
    "maps": [
        "maps",
        torch.rand(2, 3),
        torch.rand(2, 1, 1, 5),
        torch.rand(1, 2, 3, 4, 5),
        MAPS.clone().fill_(math.nan),
    ],
    "n_scales": [0, 9, "a", True],
    "percentile": [0, 101, math.nan, "a"],
    "min_size": [1, "a"],
    "sigma": [0, -1.0, math.inf, math.nan, "a", True],
    "subtract_min": ["no", 1],
}

CONCENTRATION_BAD: list[Any] = [
    [[1.0]],
    torch.rand(2),
    torch.zeros(0, 3),
    torch.tensor([[math.nan, 1.0]]),
    torch.tensor([[math.inf, 1.0]]),
    torch.rand(2, 3, dtype=torch.complex64),
    torch.tensor([[True, False]]),
]

CAPTUM_METRIC_BAD: dict[str, list[Any]] = {
    "method": [3, MODEL],
    "inputs": ["x", (), torch.zeros(0, 16, dtype=torch.float64)],
    "target": [99, -1, [0, 99], torch.tensor([0, 1], dtype=torch.uint8), "cat", [0]],
    "n_perturb_samples": [0, -1, 1.5, "a", True],
    "max_examples_per_batch": [0, "a"],
    "perturb_func": [3],
    "perturb_generator": ["a", 1.5],
}
INFIDELITY_BAD = {
    **CAPTUM_METRIC_BAD,
    "perturb_std": [0.0, -1.0, math.nan, "a"],
    "normalize": ["no", 1],
}
SENSITIVITY_BAD = {
    **CAPTUM_METRIC_BAD,
    "perturb_radius": [0.0, -1.0, math.inf, "a"],
    "norm_ord": ["nope"],
}


def _cases(table: dict[str, list[Any]]) -> list[tuple[str, int]]:
    return [(name, i) for name, values in table.items() for i in range(len(values))]


def _names(name: str) -> tuple[str, ...]:
    # A bad `inputs` shape may be reported against the maps it must match.
    return (name, "maps") if name == "inputs" else (name,)


@pytest.mark.parametrize("metric", [deletion_auc, insertion_auc], ids=lambda m: m.__name__)
@pytest.mark.parametrize(("name", "i"), _cases(CURVE_BAD))
def test_curves_name_every_bad_argument(metric: Any, name: str, i: int) -> None:
    kwargs = {**DELETION_ARGS, "n_steps": 4, name: CURVE_BAD[name][i]}
    model, inputs, maps, target = (kwargs.pop(k) for k in ("model", "inputs", "maps", "target"))
    expect_clear_error(
        f"metric {metric.__name__}",
        lambda: metric(model, inputs, maps, target, **kwargs),
        *_names(name),
    )


@pytest.mark.parametrize(("name", "i"), _cases(AUPC_BAD))
def test_aupc_names_every_bad_argument(name: str, i: int) -> None:
    kwargs: dict[str, Any] = {**DELETION_ARGS, "window": 2, "generator": 0, name: AUPC_BAD[name][i]}
    model, inputs, maps, target = (kwargs.pop(k) for k in ("model", "inputs", "maps", "target"))
    expect_clear_error(
        "metric aupc", lambda: aupc(model, inputs, maps, target, **kwargs), *_names(name)
    )


@pytest.mark.parametrize(("name", "i"), _cases(TV_BAD))
def test_total_variation_names_every_bad_argument(name: str, i: int) -> None:
    kwargs: dict[str, Any] = {"maps": MAPS, name: TV_BAD[name][i]}
    expect_clear_error("metric total_variation", lambda: total_variation(**kwargs), name)


@pytest.mark.parametrize("metric", [sparseness, complexity], ids=lambda m: m.__name__)
@pytest.mark.parametrize("i", range(len(CONCENTRATION_BAD)))
def test_concentration_names_bad_maps(metric: Callable[[Any], Tensor], i: int) -> None:
    expect_clear_error(f"metric {metric.__name__}", lambda: metric(CONCENTRATION_BAD[i]), "maps")


def _flat_model() -> LinearLogits:
    return LinearLogits(n=16)


def _captum_metric_call(metric: Any, name: str, value: Any) -> Callable[[], Any]:
    model = _flat_model()
    kwargs: dict[str, Any] = {
        "method": Saliency(model),
        "inputs": torch.rand(B, 16, dtype=torch.float64),
        "target": 0,
        "n_perturb_samples": 2,
        name: value,
    }
    method, inputs = kwargs.pop("method"), kwargs.pop("inputs")
    return lambda: metric(method, inputs, **kwargs)


@pytest.mark.parametrize(("name", "i"), _cases(INFIDELITY_BAD))
def test_infidelity_names_every_bad_argument(name: str, i: int) -> None:
    call = _captum_metric_call(infidelity_of, name, INFIDELITY_BAD[name][i])
    expect_clear_error("metric infidelity_of", call, name)


@pytest.mark.parametrize(("name", "i"), _cases(SENSITIVITY_BAD))
def test_sensitivity_names_every_bad_argument(name: str, i: int) -> None:
    call = _captum_metric_call(sensitivity_max_of, name, SENSITIVITY_BAD[name][i])
    expect_clear_error("metric sensitivity_max_of", call, name)


@pytest.mark.parametrize("metric", [infidelity_of, sensitivity_max_of], ids=lambda m: m.__name__)
def test_arguments_passed_to_the_explanation_are_named_with_the_method(metric: Any) -> None:
    model = _flat_model()
    x = torch.rand(B, 16, dtype=torch.float64)
    ig = IntegratedGradients(model)
    door = f"metric {metric.__name__}"
    err = expect_clear_error(door, lambda: metric(ig, x, target=0, n_steps=0), "n_steps")
    assert "IntegratedGradients" in str(err) and isinstance(err.__cause__, AssertionError)
    expect_clear_error(door, lambda: metric(ig, x, target=0, bogus=1), "bogus")
    assert not x.requires_grad  # Captum's failure leaves the user's inputs as they were


QUANTUS_BAD: dict[str, list[Any]] = {
    "targets": [[-1, 0], [99, 0], [0.5, 1.0]],
    "bogus": [1],
}


@pytest.mark.parametrize(("name", "i"), _cases(QUANTUS_BAD))
def test_quantus_explain_func_names_bad_targets_and_keywords(name: str, i: int) -> None:
    model = _flat_model()
    x = np.random.default_rng(0).random((B, 16))
    value = QUANTUS_BAD[name][i]
    if name == "targets":
        call = lambda: quantus_explain_func(Saliency)(model, x, value)  # noqa: E731
    else:
        call = lambda: quantus_explain_func(Saliency, **{name: value})(model, x, [0, 1])  # noqa: E731
    expect_clear_error("metric quantus_explain_func", call, "target", name)


def test_quantus_explain_func_refuses_a_non_attribution() -> None:
    expect_clear_error("metric quantus_explain_func", lambda: quantus_explain_func(3), "method")


# ----------------------------------------------------------------------------- exact results


def _contributions(model: LinearLogits, x: Tensor, c: int) -> Tensor:
    """``(B, P)`` contributions of class ``c``, sorted by decreasing value."""
    contrib = x.reshape(x.shape[0], -1) * model.w.detach() * (c + 1)
    return contrib.sort(dim=1, descending=True).values


def _trapezoid_mean(curve: Tensor) -> Tensor:
    """Trapezoid rule of ``curve`` (B, P + 1) over [0, 1] in P equal steps."""
    p = curve.shape[1] - 1
    return (curve[:, :-1] + curve[:, 1:]).sum(1) / (2 * p)


@SETTINGS
@given(seed=st.integers(0, 50), c=st.integers(0, N_CLASSES - 1))
def test_deletion_and_insertion_of_a_linear_model_are_the_trapezoid_of_sorted_sums(
    seed: int, c: int
) -> None:
    model, x = LinearLogits(seed=seed), _x(seed)
    maps = x * model.w.detach().reshape(1, C, H, W)
    contrib = _contributions(model, x, c)
    zero = torch.zeros(B, 1, dtype=torch.float64)
    inserted = torch.cat([zero, contrib.cumsum(1)], 1)  # the k most relevant present
    deleted = contrib.sum(1, keepdim=True) - inserted
    p = H * W

    def close(expected: Tensor) -> Callable[[Tensor], None]:
        return lambda got: torch.testing.assert_close(got, expected)

    expect_exact(
        "metric deletion_auc",
        lambda: deletion_auc(model, x, maps, c, n_steps=p, output="logit"),
        close(_trapezoid_mean(deleted)),
    )
    expect_exact(
        "metric insertion_auc",
        lambda: insertion_auc(model, x, maps, c, n_steps=p, output="logit"),
        close(_trapezoid_mean(inserted)),
    )
    expect_exact(
        "metric aupc",
        lambda: aupc(model, x, maps, c, window=1, baseline=0.0),
        close(inserted.mean(1)),  # f(x) - f(x^(k)) is the sum of the k most relevant
    )


@SETTINGS
@given(n=st.integers(2, 40), where=st.integers(0, 1000), scale=st.floats(1e-3, 1e3))
def test_concentration_of_one_hot_and_constant_maps(n: int, where: int, scale: float) -> None:
    one_hot = torch.zeros(1, n, dtype=torch.float64)
    one_hot[0, where % n] = -scale
    constant = torch.full((1, n), scale, dtype=torch.float64)
    maps = torch.cat([one_hot, constant])

    def equal(expected: list[float]) -> Callable[[Tensor], None]:
        return lambda got: torch.testing.assert_close(got, torch.tensor(expected).double())

    expect_exact("metric sparseness", lambda: sparseness(maps), equal([(n - 1) / n, 0.0]))
    expect_exact("metric complexity", lambda: complexity(maps), equal([0.0, math.log(n)]))


@SETTINGS
@given(size=st.integers(2, 12), value=st.floats(1e-3, 1e3))
def test_total_variation_of_a_checkerboard_and_a_constant_map(size: int, value: float) -> None:
    idx = torch.arange(size)
    checker = ((idx.reshape(-1, 1) + idx) % 2).double().reshape(1, size, size) * value
    maps = torch.cat([checker, torch.full((1, size, size), value, dtype=torch.float64)])
    expect_exact(
        "metric total_variation",
        lambda: total_variation(maps, n_scales=1),
        lambda got: torch.testing.assert_close(got, torch.tensor([1.0, 0.0]).double()),
    )


@SETTINGS
@given(seed=st.integers(0, 50), c=st.integers(0, N_CLASSES - 1))
def test_saliency_of_a_linear_model_is_faithful_and_insensitive(seed: int, c: int) -> None:
    model = LinearLogits(n=16, seed=seed)
    x = torch.rand(B, 16, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    zeros = torch.zeros(B, dtype=torch.float64)
    # I . grad = f(x) - f(x - I) exactly for a linear model; the gradient does not move.
    expect_exact(
        "metric infidelity_of",
        lambda: infidelity_of(Saliency(model), x, target=c, abs=False, perturb_generator=seed),
        lambda got: torch.testing.assert_close(got, zeros, atol=1e-20, rtol=0),
    )
    expect_exact(
        "metric sensitivity_max_of",
        lambda: sensitivity_max_of(Saliency(model), x, target=c, perturb_generator=seed),
        lambda got: torch.testing.assert_close(got, zeros),
    )
    expect_exact(
        "metric quantus_explain_func",
        lambda: quantus_explain_func(Saliency, abs=False)(model, x.numpy(), [c] * B),
        lambda got: np.testing.assert_allclose(
            got, ((c + 1) * model.w.detach()).expand(B, -1).numpy()
        ),
    )
