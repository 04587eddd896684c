"""explain_dataset under torch.distributed (gloo on localhost): disjoint shards, one store."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_dataset_store import SMOOTH, Counting, make_data, tunnel

from captum_smooth import AttributionStore, explain_dataset

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo"
)

ROOT = Path(__file__).resolve().parents[2]  # the repository
N = 37  # shards of 8: 0..4, the last one short
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str, log_dir: str, world: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        method = Counting(tunnel())
        starts: list[int] = []
        inner = method.attribute

        def recording(inputs, target=None, generator=None, **kwargs):
            # The data are rows of make_data(): find each batch's first example by value.
            x, _ = make_data()
            starts.append(int((x == inputs[0]).flatten(1).all(1).nonzero()[0]))
            return inner(inputs, target=target, generator=generator, **kwargs)

        method.attribute = recording  # type: ignore[method-assign]
        store = explain_dataset(
            method, make_data(), out, batch_size=4, shard_size=8, show_progress=False, **SMOOTH
        )
        Path(log_dir, f"rank{rank}.json").write_text(
            json.dumps({"calls": method.calls, "starts": starts, "len": len(store)})
        )
    finally:
        dist.destroy_process_group()


def _spawn(out: Path, logs: Path, world: int = WORLD) -> list[dict]:
    logs.mkdir(exist_ok=True)
    mp.spawn(_worker, args=(_free_port(), str(out), str(logs), world), nprocs=world, join=True)
    return [json.loads((logs / f"rank{r}.json").read_text()) for r in range(world)]


def test_two_ranks_cover_every_example_once_and_match_one_process(tmp_path: Path) -> None:
    reports = _spawn(tmp_path / "dist", tmp_path / "logs")
    starts = [set(r["starts"]) for r in reports]
    assert starts[0].isdisjoint(starts[1])
    assert starts[0] | starts[1] == set(range(0, N, 4))  # batches of 4 inside shards of 8
    # Shards dealt round-robin: rank 0 has shards 0, 2, 4; rank 1 has 1, 3.
    assert {s // 8 for s in starts[0]} == {0, 2, 4} and {s // 8 for s in starts[1]} == {1, 3}
    assert [r["calls"] for r in reports] == [6, 4] and all(r["len"] == N for r in reports)

    single = explain_dataset(
        Counting(tunnel()),
        make_data(),
        tmp_path / "single",
        batch_size=4,
        shard_size=8,
        show_progress=False,
        **SMOOTH,
    )
    store = AttributionStore(tmp_path / "dist", verify=True)
    assert len(store) == N
    assert store.metadata["settings"] == single.metadata["settings"]
    assert torch.equal(store[:], single[:])  # a stochastic method, seeded per batch
    assert torch.equal(store.targets, make_data()[1])


def test_two_ranks_resume_a_single_process_run(tmp_path: Path) -> None:
    out = tmp_path / "s"
    with pytest.raises(RuntimeError, match="simulated crash"):
        explain_dataset(
            Counting(tunnel(), fail_at=4),  # shard 0 written, crash in shard 1
            make_data(),
            out,
            batch_size=4,
            shard_size=8,
            show_progress=False,
            **SMOOTH,
        )
    reports = _spawn(out, tmp_path / "logs")
    done = sorted(s // 8 for r in reports for s in r["starts"])
    assert sorted(set(done)) == [1, 2, 3, 4]  # shard 0 not recomputed
    reference = explain_dataset(
        Counting(tunnel()),
        make_data(),
        tmp_path / "ref",
        batch_size=4,
        shard_size=8,
        show_progress=False,
        **SMOOTH,
    )
    assert torch.equal(AttributionStore(out)[:], reference[:])


@pytest.mark.slow
def test_torchrun_cli_matches_single_process(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from captum_smooth.app.models.digits import DigitsCNN

    torch.manual_seed(0)
    weights = tmp_path / "digits.pt"
    torch.save(DigitsCNN().eval().state_dict(), weights)
    common = ["explain-dataset", "--data", "digits", "--limit", "50", "--method", "adaptgrad"]
    common += ["--nt-samples", "3", "--weights", str(weights), "--shard-size", "16"]
    common += ["--batch-size", "8", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    torchrun += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    subprocess.run(
        [*torchrun, "-m", "captum_smooth.app.dataset_cli", *common, "--out", str(tmp_path / "d")],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "captum_smooth.app.dataset_cli",
            *common,
            "--out",
            str(tmp_path / "s"),
        ],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=300,
    )
    dist_store, single = AttributionStore(tmp_path / "d"), AttributionStore(tmp_path / "s")
    assert dist_store.metadata == single.metadata
    assert torch.equal(dist_store[:], single[:])
