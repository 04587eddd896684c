"""Insights through Flask's test client: our methods are listed and fetched (no socket)."""

from __future__ import annotations

import base64
import inspect
import io
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from captum_smooth.app import insights

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    # Insights' own batching of the examples warns about their requires_grad: harmless.
    pytest.mark.filterwarnings("ignore:It looks like that the attribution:UserWarning"),
]

OUR_NAMES = ["SmoothGrad", "AdaptGrad", "NoiseGrad", "FusionGrad", "SmoothTaylor"]
SMALL_ARGUMENTS = {
    "SmoothGrad": {"nt_samples": 3, "noise_level": "0.1", "kernel": "laplace"},
    "AdaptGrad": {"nt_samples": 3, "confidence": "0.99", "kernel": "gaussian"},
    "NoiseGrad": {"n_weight_samples": 2, "weight_stdev": "0.1"},
    "FusionGrad": {"n_weight_samples": 2, "nt_samples": 2, "weight_stdev": "0.2", "stdevs": "0.1"},
    "SmoothTaylor": {"nt_samples": 3, "stdevs": "0.25"},
}


@pytest.fixture
def client() -> Iterator[Any]:
    from captum.insights.attr_vis import server

    from cli_models import tiny_cnn

    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    server.visualizer = insights.build_visualizer(tiny_cnn(), images)
    try:
        yield server.app.test_client()
    finally:
        server.visualizer = None


def _png(b64: str) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(b64))) as image:
        assert image.format == "PNG"
        return image.size


def test_register_mutates_captum_dicts_in_place() -> None:
    from captum.insights.attr_vis import app, attribution_calculation, config

    names_dict = config.ATTRIBUTION_NAMES_TO_METHODS
    configs = config.ATTRIBUTION_METHOD_CONFIG
    assert insights.register() == OUR_NAMES
    assert insights.register() == OUR_NAMES  # idempotent
    assert config.ATTRIBUTION_NAMES_TO_METHODS is names_dict
    # The modules that imported the dicts see our methods.
    assert "SmoothGrad" in attribution_calculation.ATTRIBUTION_NAMES_TO_METHODS
    assert "NoiseGrad" in app.ATTRIBUTION_METHOD_CONFIG
    assert configs["Integrated Gradients"].params["n_steps"].value == 25  # Captum's untouched
    for name in OUR_NAMES:
        cls = names_dict[name]
        assert cls.get_name() == name
        assert hasattr(cls.attribute, "__wrapped__")  # Insights calls attribute.__wrapped__


def test_float_arguments_are_not_number_fields() -> None:
    from captum.insights.attr_vis.config import (
        ATTRIBUTION_METHOD_CONFIG,
        ATTRIBUTION_NAMES_TO_METHODS,
        NumberConfig,
        StrEnumConfig,
    )

    insights.register()
    for name in OUR_NAMES:
        parameters = ATTRIBUTION_METHOD_CONFIG[name]
        signature = inspect.signature(ATTRIBUTION_NAMES_TO_METHODS[name].attribute).parameters
        for argument, field in parameters.params.items():
            assert argument in signature
            if isinstance(field, NumberConfig):
                # The page parses number fields with parseInt: only integer arguments.
                assert isinstance(signature[argument].default, int)
                assert parameters.post_process[argument]("7") == 7
            else:
                assert isinstance(field, StrEnumConfig) and field.value in field.limit
                converted = parameters.post_process[argument](field.value)
                assert converted == field.value or converted == float(field.value)
    assert ATTRIBUTION_METHOD_CONFIG["SmoothGrad"].post_process["noise_level"]("0.1") == 0.1


def test_unregister_restores_captum() -> None:
    from captum.insights.attr_vis.config import ATTRIBUTION_NAMES_TO_METHODS

    insights.register()
    assert insights.unregister(["smoothgrad"]) == ["SmoothGrad"]
    assert "SmoothGrad" not in ATTRIBUTION_NAMES_TO_METHODS
    assert "AdaptGrad" in ATTRIBUTION_NAMES_TO_METHODS
    insights.register()


def test_init_lists_our_methods(client: Any) -> None:
    response = client.get("/init")
    assert response.status_code == 200
    data = response.get_json()
    for name in OUR_NAMES:
        assert name in data["methods"]
        assert name in data["method_arguments"]
    assert "Integrated Gradients" in data["methods"]
    assert data["method_arguments"]["SmoothGrad"]["noise_level"]["type"] == "enum"
    assert data["method_arguments"]["SmoothGrad"]["nt_samples"]["type"] == "number"
    assert data["classes"] == ["ant", "bee", "cat", "dog", "eel"]


def test_index_serves_the_page(client: Any) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert b"Captum Insights" in response.data


@pytest.mark.parametrize("name", OUR_NAMES)
def test_fetch_with_our_method_returns_attributions(client: Any, name: str) -> None:
    settings = {
        "attribution_method": name,
        "arguments": dict(SMALL_ARGUMENTS[name]),
        "prediction": "all",
        "classes": [],
    }
    response = client.post("/fetch", json=settings)
    assert response.status_code == 200, response.data[:500]
    outputs = response.get_json()
    assert len(outputs) >= 4  # Insights shows 4 examples (our 2 images, cycled)
    for per_model in outputs:
        (output,) = per_model  # one model
        (feature,) = output["feature_outputs"]
        assert feature["type"] == "image" and feature["name"] == "Photo"
        assert _png(feature["modified"])[0] > 0 and _png(feature["base"])[0] > 0
        assert output["predicted"][0]["label"] in ("ant", "bee", "cat", "dog", "eel")

    # /attribute recomputes one example for another class with the same method.
    response = client.post("/attribute", json={"inputIndex": 0, "modelIndex": 0, "labelIndex": 3})
    assert response.status_code == 200
    assert response.get_json()["active_index"] == 3
