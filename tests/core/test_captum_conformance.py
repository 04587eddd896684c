"""Captum's own attribution test configurations (``captum.testing``) as a conformance suite.

Every configuration of Captum's test config runs through SmoothTunnel:

* the NoiseTunnel configurations: SmoothTunnel gives exactly what Captum's NoiseTunnel gives
  under the same seed, and batched targets agree with one example at a time (Captum's
  ``test_targets`` check);
* every other configuration (layer and neuron methods included): one sample with zero noise
  is the inner method itself.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import pytest
import torch
from captum.attr import NoiseTunnel
from captum.attr._utils.attribution import Attribution
from captum.testing.attr.helpers.gen_test_utils import (
    get_target_layer,
    parse_test_config,
    should_create_generated_test,
)
from captum.testing.attr.helpers.test_config import config

from captum_smooth import SmoothTunnel

# Methods whose result depends on their own random draws inside a call.
_RANDOM_METHODS = {
    "ShapleyValueSampling",
    "FeaturePermutation",
    "Lime",
    "KernelShap",
    "GradientShap",
    "LayerGradientShap",
    "NeuronGradientShap",
}


def _cases() -> list[Any]:
    cases = []
    for cfg in config:
        algorithms = parse_test_config(cfg)[0]
        for algorithm in algorithms:
            if not should_create_generated_test(algorithm):
                continue
            cases.append(pytest.param(cfg, algorithm, id=f"{cfg['name']}-{algorithm.__name__}"))
    return cases


def _build(algorithm: type[Attribution], model: torch.nn.Module, layer: Any) -> Attribution:
    if layer is not None and "layer" in inspect.signature(algorithm.__init__).parameters:
        target_layer = get_target_layer(model, layer)
        return algorithm(model, target_layer)
    return algorithm(model)


def _close(a: Any, b: Any) -> None:
    if isinstance(a, (tuple, list)):
        assert isinstance(b, (tuple, list)) and len(a) == len(b)
        for x, y in zip(a, b):
            _close(x, y)
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    else:
        assert a == b


@pytest.mark.parametrize(("cfg", "algorithm"), _cases())
def test_conformance(cfg: dict[str, Any], algorithm: type[Attribution]) -> None:
    _, model, args, layer, noise_tunnel, baseline_distr = parse_test_config(cfg)
    model = copy.deepcopy(model)
    args = dict(args)
    method = _build(algorithm, model, layer)
    if noise_tunnel:
        torch.manual_seed(7)
        expected = NoiseTunnel(method).attribute(**args)
        torch.manual_seed(7)
        got = SmoothTunnel(_build(algorithm, model, layer)).attribute(**args)
        _close(got, expected)
        _check_targets(algorithm, model, layer, args)
        return
    if baseline_distr or algorithm.__name__ in _RANDOM_METHODS:
        pytest.skip("the method draws its own randomness; compared in the NoiseTunnel configs")
    if isinstance(layer, list):
        pytest.skip("multi-layer outputs are lists of tuples, not per-example tensors")
    inputs = args.pop("inputs")
    expected = method.attribute(inputs, **args)
    got = SmoothTunnel(_build(algorithm, model, layer)).attribute(
        inputs, nt_samples=1, stdevs=0.0, generator=torch.Generator().manual_seed(0), **args
    )
    _close(got, expected)


def _check_targets(algorithm: type[Attribution], model: Any, layer: Any, args: dict) -> None:
    """Batched targets give each example what it gets alone (Captum's test_targets check)."""
    target = args["target"]
    if not (isinstance(target, list) or (isinstance(target, torch.Tensor) and target.numel() > 1)):
        return
    tunnel = SmoothTunnel(_build(algorithm, model, layer))
    batched = tunnel.attribute(**args)
    inputs = args["inputs"]
    n = (inputs[0] if isinstance(inputs, tuple) else inputs).shape[0]
    for i in range(n):
        single = dict(args)
        single["target"] = target[i] if isinstance(target, list) else target[i : i + 1]
        single["inputs"] = (
            tuple(x[i : i + 1] for x in inputs) if isinstance(inputs, tuple) else inputs[i : i + 1]
        )
        extra = args.get("additional_forward_args")
        if extra is not None:
            single["additional_forward_args"] = tuple(
                a[i : i + 1] if isinstance(a, torch.Tensor) and a.dim() > 0 else a
                for a in (extra if isinstance(extra, tuple) else (extra,))
            )
        one = tunnel.attribute(**single)
        if isinstance(batched, tuple):
            for b, o in zip(batched, one):
                torch.testing.assert_close(b[i : i + 1], o, rtol=1e-4, atol=1e-5)
        else:
            torch.testing.assert_close(batched[i : i + 1], one, rtol=1e-4, atol=1e-5)
