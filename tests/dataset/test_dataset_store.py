"""explain_dataset and AttributionStore in one process: formats, targets, resumption, errors."""

from __future__ import annotations

import argparse
import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, NoiseTunnel, Saliency
from captum.attr._utils.attribution import Attribution
from torch import nn
from torch.utils.data import DataLoader, Dataset

from captum_smooth import AdaptGrad, AttributionStore, SmoothTunnel, StoreError, explain_dataset
from captum_smooth.app.dataset_cli import add_explain_dataset_parser, main
from captum_smooth.dataset import batch_seed

N, C, H = 37, 3, 6
ROOT = Path(__file__).resolve().parents[2]  # the repository


def make_model() -> nn.Module:
    """A small conv net, the same in every process (seeded construction)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.Conv2d(C, 4, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(4 * H * H, 5),
        )
    return model.eval()


def make_data(n: int = N) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.rand(n, C, H, H, generator=gen), torch.randint(0, 5, (n,), generator=gen)


class Counting(Attribution):
    """Wraps a method, counts its calls, records batch sizes, optionally fails or sleeps."""

    def __init__(self, inner: Any, fail_at: int | None = None, delay: float = 0.0) -> None:
        super().__init__(inner.forward_func)
        self.attribution_method = inner
        self.fail_at = fail_at
        self.delay = delay
        self.calls = 0
        self.sizes: list[int] = []

    def attribute(self, inputs: Any, target: Any = None, generator: Any = None, **kwargs: Any):
        self.calls += 1
        self.sizes.append(len(inputs))
        if self.fail_at is not None and self.calls == self.fail_at:
            raise RuntimeError("simulated crash")
        if self.delay:
            time.sleep(self.delay)
        if "generator" in inspect.signature(self.attribution_method.attribute).parameters:
            kwargs["generator"] = generator
        return self.attribution_method.attribute(inputs, target=target, **kwargs)


def tunnel() -> SmoothTunnel:
    return SmoothTunnel(Saliency(make_model()))


SMOOTH = {"nt_samples": 3, "stdevs": 0.1}


def run(method: Any, out: Path, data: Any = None, **kw: Any) -> AttributionStore:
    kw.setdefault("batch_size", 4)
    kw.setdefault("shard_size", 8)
    kw.setdefault("show_progress", False)
    return explain_dataset(method, make_data() if data is None else data, out, **kw)


# ------------------------------------------------------------------------------------------
# Round trip, reading.


def test_round_trip_matches_direct_calls(tmp_path: Path) -> None:
    x, y = make_data()
    model = make_model()
    store = run(Saliency(model), tmp_path / "s", batch_size=5, shard_size=8)
    expected = Saliency(model).attribute(x, target=y)
    assert len(store) == N
    assert store.shape == (C, H, H) and store.dtype == torch.float32
    close = torch.testing.assert_close  # batches of 5 vs one of 37: last-bit differences
    close(store[:], expected)
    assert torch.equal(store[3], store[:][3])
    assert torch.equal(store[-1], store[:][N - 1])
    assert torch.equal(store[-N], store[:][0])
    assert torch.equal(torch.stack(list(store)), store[:])
    assert torch.equal(store.targets, y)
    assert len(store.shard_paths) == 5 and all(p.is_file() for p in store.shard_paths)
    meta = store.metadata
    assert meta["num_examples"] == N and meta["settings"]["method"] == "Saliency"
    assert meta["settings"]["batch_size"] == 5 and meta["settings"]["target"] == "label"
    for bad in (N, -N - 1):
        with pytest.raises(IndexError):
            store[bad]
    with pytest.raises(TypeError):
        store["a"]  # type: ignore[index]
    # Shards are plain .npy files.
    first = np.load(store.shard_paths[0])
    assert first.shape == (8, C, H, H) and torch.equal(torch.from_numpy(first), store[:8])
    # Batches never cross a shard boundary: 8 = 5 + 3.
    assert "AttributionStore(" in repr(store)


def test_batches_stay_inside_shards(tmp_path: Path) -> None:
    method = Counting(Saliency(make_model()))
    run(method, tmp_path / "s", batch_size=5, shard_size=8)
    assert method.sizes == [5, 3] * 4 + [5]


def test_dataset_dataloader_and_inputs_only(tmp_path: Path) -> None:
    x, y = make_data()

    class Pairs(Dataset):
        def __len__(self) -> int:
            return N

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return x[i], int(y[i])

    class Inputs(Pairs):
        def __getitem__(self, i: int) -> torch.Tensor:  # type: ignore[override]
            return x[i]

    reference = run(Saliency(make_model()), tmp_path / "ref")[:]
    assert torch.equal(run(Saliency(make_model()), tmp_path / "ds", Pairs())[:], reference)
    loader = DataLoader(Pairs(), batch_size=4)
    assert torch.equal(run(Saliency(make_model()), tmp_path / "dl", loader)[:], reference)
    # Inputs only: labels are needed for target="label".
    with pytest.raises(ValueError, match="needs labels"):
        run(Saliency(make_model()), tmp_path / "in", Inputs())
    with pytest.raises(ValueError, match="needs labels"):
        run(Saliency(make_model()), tmp_path / "in", x)
    store = run(Saliency(make_model()), tmp_path / "in", Inputs(), target="prediction")
    assert len(store) == N
    with pytest.raises(ValueError, match="shuffles"):
        run(Saliency(make_model()), tmp_path / "sh", DataLoader(Pairs(), shuffle=True))


# ------------------------------------------------------------------------------------------
# Storage options and targets.


def test_float16_storage(tmp_path: Path) -> None:
    full = run(tunnel(), tmp_path / "f32", **SMOOTH)
    half = run(tunnel(), tmp_path / "f16", dtype=torch.float16, **SMOOTH)
    assert half.dtype == torch.float16 and half[0].dtype == torch.float16
    assert np.load(half.shard_paths[0]).dtype == np.float16
    torch.testing.assert_close(half[:].float(), full[:], rtol=1e-3, atol=1e-4)
    assert half.shard_paths[0].stat().st_size < 0.6 * full.shard_paths[0].stat().st_size


@pytest.mark.parametrize(
    ("reduce", "fn"),
    [
        ("sum", lambda a: a.sum(1)),
        ("abs_sum", lambda a: a.abs().sum(1)),
        ("mean", lambda a: a.mean(1)),
    ],
)
def test_channel_reduction(tmp_path: Path, reduce: str, fn: Any) -> None:
    method = IntegratedGradients(make_model())  # signed attributions
    full = run(method, tmp_path / "full", n_steps=4)[:]
    reduced = run(method, tmp_path / reduce, reduce_channels=reduce, n_steps=4)
    assert reduced.shape == (H, H)
    torch.testing.assert_close(reduced[:], fn(full), rtol=1e-5, atol=1e-6)


def test_target_modes(tmp_path: Path) -> None:
    x, _ = make_data()
    model = make_model()
    predicted = model(x).argmax(1)
    store = run(Saliency(model), tmp_path / "pred", target="prediction")
    assert torch.equal(store.targets, predicted)
    torch.testing.assert_close(store[:], Saliency(model).attribute(x, target=predicted))

    seen: list[bool] = []

    def second_best(inputs: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        seen.append(labels is not None)
        return model(inputs).topk(2, dim=1).indices[:, 1]

    store = run(Saliency(model), tmp_path / "call", target=second_best)
    assert all(seen) and torch.equal(store.targets, model(x).topk(2, dim=1).indices[:, 1])
    assert "second_best" in json.dumps(store.metadata["settings"]["target"])

    store = run(Saliency(model), tmp_path / "int", target=2)
    assert torch.equal(store.targets, torch.full((N,), 2))
    torch.testing.assert_close(store[:], Saliency(model).attribute(x, target=2))


# ------------------------------------------------------------------------------------------
# Seeds.


def test_seeds_make_stochastic_methods_reproducible(tmp_path: Path) -> None:
    a = run(tunnel(), tmp_path / "a", seed=3, **SMOOTH)[:]
    b = run(tunnel(), tmp_path / "b", seed=3, **SMOOTH)[:]
    c = run(tunnel(), tmp_path / "c", seed=4, **SMOOTH)[:]
    assert torch.equal(a, b) and not torch.equal(a, c)
    # The batch starting at example 8 used the seed of (3, 8).
    x, y = make_data()
    direct = tunnel().attribute(x[8:12], target=y[8:12], generator=batch_seed(3, 8), **SMOOTH)
    assert torch.equal(a[8:12], direct)


def test_methods_without_generator_use_seeded_global_state(tmp_path: Path) -> None:
    captum_nt = NoiseTunnel(Saliency(make_model()))
    state = torch.get_rng_state()
    a = run(captum_nt, tmp_path / "a", nt_samples=3, stdevs=0.1)[:]
    assert torch.equal(torch.get_rng_state(), state)  # restored
    b = run(captum_nt, tmp_path / "b", nt_samples=3, stdevs=0.1)[:]
    assert torch.equal(a, b)


def test_adaptgrad_end_to_end(tmp_path: Path) -> None:
    store = run(
        AdaptGrad(make_model()),
        tmp_path / "ag",
        nt_samples=4,
        bounds=(0.0, 1.0),
        dtype="float16",
        reduce_channels="abs_sum",
    )
    assert store.metadata["settings"]["method"] == "AdaptGrad(Saliency)"
    assert store[:].shape == (N, H, H) and torch.isfinite(store[:].float()).all()


# ------------------------------------------------------------------------------------------
# Resumption.


def test_resume_after_exception_does_not_recompute(tmp_path: Path) -> None:
    out = tmp_path / "s"
    reference = run(Counting(tunnel()), tmp_path / "ref", **SMOOTH)[:]
    # 37 examples, shards of 8 (2 batches of 4 each, the last shard 5 = 4 + 1): crash on the
    # 6th call, inside shard 2, after shards 0 and 1 are written.
    crashing = Counting(tunnel(), fail_at=6)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(crashing, out, **SMOOTH)
    manifests = sorted(p.name for p in out.glob("shard-*.json"))
    assert manifests == ["shard-000000.json", "shard-000001.json"]
    assert not (out / "index.json").exists()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    with pytest.raises(StoreError, match="unfinished"):
        AttributionStore(out)
    resumed = Counting(tunnel())
    store = run(resumed, out, **SMOOTH)
    assert resumed.calls == 10 - 4  # shards 2, 3 and 4 only
    assert torch.equal(store[:], reference)
    # A finished store is reopened without any call.
    again = Counting(tunnel())
    assert torch.equal(run(again, out, **SMOOTH)[:], reference) and again.calls == 0


# The writer stops in its fifth batch, two shards (two batches each) on disk, until it is
# killed: where the kill lands does not depend on how fast or loaded the machine is.
_KILL_SCRIPT = """
import functools, sys, time, torch
sys.path.insert(0, {tests!r})
from test_dataset_store import Counting, make_data, tunnel, SMOOTH
from captum_smooth import explain_dataset

method = Counting(tunnel())
attribute = method.attribute

@functools.wraps(attribute)  # the same signature: explain_dataset passes it `generator`
def stalling(inputs, *args, **kwargs):
    if method.calls == 4:
        time.sleep(3600)
    return attribute(inputs, *args, **kwargs)

method.attribute = stalling
explain_dataset(method, make_data(), {out!r}, batch_size=4, shard_size=8, show_progress=False,
                **SMOOTH)
"""


def test_resume_after_sigkill(tmp_path: Path) -> None:
    out = tmp_path / "s"
    script = _KILL_SCRIPT.format(tests=str(Path(__file__).resolve().parent), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        deadline = time.monotonic() + 600  # only a bound: the writer waits to be killed
        while len(list(out.glob("shard-*.json"))) < 2:
            assert proc.poll() is None, "the writer ended before it could be killed"
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = len(list(out.glob("shard-*.json")))
    assert done == 2 and not (out / "index.json").exists()
    resumed = Counting(tunnel())
    store = run(resumed, out, **SMOOTH)
    batches_per_shard = [2, 2, 2, 2, 2]
    assert resumed.calls == sum(batches_per_shard[done:])
    reference = run(Counting(tunnel()), tmp_path / "ref", **SMOOTH)
    assert torch.equal(store[:], reference[:])
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_damaged_shard_is_recomputed_on_resume(tmp_path: Path) -> None:
    out = tmp_path / "s"
    reference = run(Counting(tunnel()), out, **SMOOTH)[:]
    data = bytearray((out / "shard-000001.npy").read_bytes())
    data[-1] ^= 0xFF
    (out / "shard-000001.npy").write_bytes(bytes(data))
    method = Counting(tunnel())
    with pytest.warns(RuntimeWarning, match="recomputing shard 1"):
        store = run(method, out, **SMOOTH)
    assert method.calls == 2 and torch.equal(store[:], reference)


# ------------------------------------------------------------------------------------------
# Errors.


def test_other_settings_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "s"
    run(tunnel(), out, **SMOOTH)
    changes: list[tuple[dict[str, Any], str]] = [
        ({"seed": 1}, "seed"),
        ({"dtype": torch.float16}, "dtype"),
        ({"reduce_channels": "sum"}, "reduce_channels"),
        ({"shard_size": 16}, "shard_size"),
        ({"nt_samples": 4}, "attribute_kwargs"),
        ({"target": "prediction"}, "target"),
        ({"metadata": {"data": "other"}}, "metadata"),
    ]
    for change, key in changes:
        kwargs = {**SMOOTH, **change}
        with pytest.raises(StoreError, match=f"other settings(.|\n)*{key}: stored"):
            run(tunnel(), out, **kwargs)
    with pytest.raises(StoreError, match="method: stored"):
        run(Saliency(make_model()), out)
    with pytest.raises(StoreError, match="num_examples: stored 37, asked 20"):
        run(tunnel(), out, make_data(20), **SMOOTH)
    other_model = SmoothTunnel(Saliency(make_model().apply(_perturb)))
    with pytest.raises(StoreError, match="model: stored"):
        run(other_model, out, **SMOOTH)


def _perturb(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        with torch.no_grad():
            module.bias.add_(1.0)


def test_foreign_and_damaged_stores(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not an attribution store"):
        run(tunnel(), foreign, **SMOOTH)
    with pytest.raises(StoreError, match="not an attribution store"):
        AttributionStore(foreign)
    with pytest.raises(StoreError, match="not a directory"):
        AttributionStore(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="not a directory"):
        run(tunnel(), tmp_path / "file", **SMOOTH)
    bad_format = tmp_path / "bad"
    bad_format.mkdir()
    (bad_format / "index.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(StoreError, match="not a captum-smooth attribution store"):
        AttributionStore(bad_format)

    out = tmp_path / "s"
    reference = run(tunnel(), out, **SMOOTH)[:]
    shard = out / "shard-000002.npy"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x55  # same size, different content
    shard.write_bytes(bytes(data))
    store = AttributionStore(out)  # sizes are fine
    assert torch.equal(store[0], reference[0])  # shard 0 is intact
    with pytest.raises(StoreError, match="corrupted"):
        store[17]
    with pytest.raises(StoreError, match="corrupted"):
        store.verify()
    with pytest.raises(StoreError, match="corrupted"):
        AttributionStore(out, verify=True)
    shard.write_bytes(bytes(data[:-10]))
    with pytest.raises(StoreError, match="truncated"):
        AttributionStore(out)
    shard.unlink()
    with pytest.raises(StoreError, match="missing"):
        AttributionStore(out)


def test_invalid_arguments(tmp_path: Path) -> None:
    method = Saliency(make_model())
    out = tmp_path / "s"
    cases: list[tuple[dict[str, Any], type, str]] = [
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"batch_size": 2.0}, TypeError, "batch_size"),
        ({"shard_size": -1}, ValueError, "shard_size"),
        ({"dtype": torch.int8}, ValueError, "dtype"),
        ({"reduce_channels": "max"}, ValueError, "reduce_channels"),
        ({"target": "foo"}, ValueError, "target"),
        ({"target": 1.5}, TypeError, "target"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": "0"}, TypeError, "seed"),
        ({"generator": 0}, ValueError, "generator"),
        ({"metadata": {"a": object()}}, TypeError, "metadata"),
        ({"num_workers": -1}, ValueError, "num_workers"),
    ]
    for kwargs, error, name in cases:
        with pytest.raises(error, match=name):
            run(method, out, **kwargs)
    with pytest.raises(TypeError, match="method"):
        run(object(), out)
    with pytest.raises(TypeError, match="data"):
        run(method, out, data=42)
    with pytest.raises(ValueError, match="empty"):
        run(method, out, data=make_data(0))
    with pytest.raises(ValueError, match="labels"):
        run(method, out, data=(make_data()[0], torch.zeros(3)))
    with pytest.raises(TypeError, match="return_convergence_delta"):
        run(IntegratedGradients(make_model()), out, return_convergence_delta=True)
    assert not out.exists() or not any(out.glob("shard-*"))


# ------------------------------------------------------------------------------------------
# CLI.


def test_cli_parser_defaults() -> None:
    parser = argparse.ArgumentParser(prog="captum-smooth")
    add_explain_dataset_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["explain-dataset", "--data", "digits", "--out", "x"])
    assert (args.method, args.batch_size, args.dtype, args.target) == (
        "adaptgrad",
        64,
        "float32",
        "auto",
    )
    assert callable(args.func)


def test_cli_digits_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    from captum_smooth.app.models.digits import DigitsCNN

    torch.manual_seed(0)
    weights = tmp_path / "digits.pt"
    torch.save(DigitsCNN().eval().state_dict(), weights)
    argv = ["explain-dataset", "--data", "digits", "--out", str(tmp_path / "s"), "--limit", "40"]
    argv += ["--method", "smoothgrad", "--nt-samples", "2", "--weights", str(weights)]
    argv += ["--shard-size", "16", "--batch-size", "8", "--dtype", "float16", "--no-progress"]
    assert main(argv) == 0
    assert "40 attributions of shape (1, 8, 8)" in capsys.readouterr().out
    store = AttributionStore(tmp_path / "s")
    assert store.metadata["settings"]["metadata"]["data"] == "digits"
    assert main(argv) == 0  # finished store: reopened
    assert main([*argv[:-1], "--seed", "5", "--no-progress"]) == 1
    assert "other settings" in capsys.readouterr().err
