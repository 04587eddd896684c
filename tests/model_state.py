"""Models whose whole state matters, and the snapshot that checks it came back bit-identical.

Shared by the weight-noise tests and the NoiseGrad / FusionGrad tests.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class Net(nn.Module):
    """Conv + BatchNorm + head: parameters, buffers and submodules to keep intact."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten()
        )
        self.classifier = nn.Linear(4 * 5 * 5, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def make_net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    net = Net()
    bn = net.features[1]
    with torch.no_grad():  # non-trivial running statistics
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    bn.num_batches_tracked.fill_(7)
    return net.eval()


def snapshot(model: nn.Module) -> dict[str, Any]:
    """Everything the guarantee covers, by value and by identity."""
    params = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        params[name] = (
            id(p),
            p.detach().clone(),
            p.dtype,
            p.device,
            p.requires_grad,
            None if p.grad is None else (id(p.grad), p.grad.clone()),
        )
    buffers = {name: (id(b), b.clone()) for name, b in model.named_buffers()}
    training = {name: m.training for name, m in model.named_modules()}
    return {"params": params, "buffers": buffers, "training": training}


def assert_identical(before: dict[str, Any], model: nn.Module) -> None:
    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["params"].keys() == before["params"].keys()
    for name, (pid, value, dtype, device, req, grad) in before["params"].items():
        apid, avalue, adtype, adevice, areq, agrad = after["params"][name]
        assert apid == pid, f"{name}: Parameter object replaced"
        assert adtype == dtype and adevice == device and areq == req, name
        assert torch.equal(avalue, value), f"{name}: values changed"
        if grad is None:
            assert agrad is None, f"{name}: .grad appeared"
        else:
            assert agrad is not None and agrad[0] == grad[0], f"{name}: .grad replaced"
            assert torch.equal(agrad[1], grad[1]), f"{name}: .grad values changed"
    assert after["buffers"].keys() == before["buffers"].keys()
    for name, (bid, value) in before["buffers"].items():
        assert after["buffers"][name][0] == bid, f"{name}: buffer replaced"
        assert torch.equal(after["buffers"][name][1], value), f"{name}: buffer changed"


def awkward_net() -> Net:
    """Existing .grad, frozen parameters, a submodule in train mode, half-precision head."""
    net = make_net()
    net.features[1].train()  # BatchNorm in train mode: the forward updates running stats
    net.classifier.weight.grad = torch.randn_like(net.classifier.weight)
    net.features[0].bias.requires_grad_(False)
    return net
