"""The store's on-disk format: what the writer writes, the reader reads, key for key."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from captum.attr import Saliency
from torch import nn

from captum_smooth import AttributionStore, StoreError, explain_dataset
from captum_smooth.dataset import _format as fmt

SETTINGS_SHA = "a" * 64
DATA_SHA = "b" * 64


def write_store(root: Path, targets: list[bool]) -> list[fmt.ShardManifest]:
    """Shards of 3 examples of shape (2,), written and read back through the format only."""
    root.mkdir(parents=True, exist_ok=True)
    n = 3 * len(targets)
    settings = {
        fmt.KEY_NUM_EXAMPLES: n,
        fmt.KEY_SHARD_SIZE: 3,
        fmt.KEY_BATCH_SIZE: 2,
        fmt.KEY_DTYPE: "float32",
    }
    fmt.write_config(root, settings)
    manifests = []
    for k, with_targets in enumerate(targets):
        attrs = np.arange(6, dtype=np.float32).reshape(3, 2) + 10 * k
        kept = np.array([k, k, k], dtype=np.int64) if with_targets else None
        fmt.write_shard(root, k, 3 * k, attrs, kept, SETTINGS_SHA, DATA_SHA)
        manifests.append(fmt.read_manifest(root, k, SETTINGS_SHA, (3 * k, 3 * k + 3)))
    fmt.write_index(root, settings, SETTINGS_SHA, manifests)
    return manifests


def test_manifest_written_is_read_with_every_key(tmp_path: Path) -> None:
    manifest = write_store(tmp_path, [True])[0]
    raw = json.loads((tmp_path / fmt.manifest_name(0)).read_text())
    fields = {f.name for f in dataclasses.fields(fmt.ShardEntry)}
    header = {fmt.KEY_FORMAT, fmt.KEY_VERSION, fmt.KEY_SETTINGS_SHA256}
    assert set(raw) == fields | header | {fmt.KEY_EXAMPLE_SHAPE, fmt.KEY_DTYPE}
    assert manifest.to_json() == raw
    entry = manifest.entry
    assert (entry.id, entry.start, entry.stop, entry.data_sha256) == (0, 0, 3, DATA_SHA)
    assert entry.file == fmt.shard_name(0) and entry.targets_file == fmt.targets_name(0)
    assert (manifest.example_shape, manifest.dtype) == ((2,), "float32")
    fmt.verify_entry(tmp_path, entry)
    assert fmt.read_targets(tmp_path, entry).tolist() == [0, 0, 0]


def test_index_written_is_read_by_the_store(tmp_path: Path) -> None:
    write_store(tmp_path, [True, False])
    store = AttributionStore(tmp_path, verify=True)
    assert len(store) == 6 and store.shape == (2,) and store.dtype == torch.float32
    assert torch.equal(store[4], torch.tensor([12.0, 13.0]))
    assert store.targets is None  # one shard without targets: the index keeps none
    index = json.loads((tmp_path / fmt.INDEX_NAME).read_text())
    entries = [fmt.ShardEntry.from_json(s, tmp_path) for s in index[fmt.KEY_SHARDS]]
    assert all(e.targets_file is None and e.targets_bytes is None for e in entries)
    assert set(store.metadata) == {
        fmt.KEY_FORMAT,
        fmt.KEY_VERSION,
        fmt.KEY_SETTINGS,
        fmt.KEY_SETTINGS_SHA256,
        fmt.KEY_NUM_EXAMPLES,
        fmt.KEY_NUM_SHARDS,
        fmt.KEY_EXAMPLE_SHAPE,
        fmt.KEY_DTYPE,
        fmt.KEY_HAS_TARGETS,
    }


def test_entry_of_an_earlier_version_round_trips(tmp_path: Path) -> None:
    old = {"id": 0, "start": 0, "stop": 3, "file": "f", "bytes": 1, "sha256": "c", "x": 1}
    old["targets_file"] = None
    entry = fmt.ShardEntry.from_json(old, tmp_path)
    assert entry.data_sha256 is None
    assert entry.to_json() == {k: v for k, v in old.items() if k != "x"}
    with pytest.raises(StoreError, match="missing: sha256"):
        fmt.ShardEntry.from_json({k: v for k, v in old.items() if k != "sha256"}, tmp_path)


def test_manifest_of_another_run_is_refused(tmp_path: Path) -> None:
    write_store(tmp_path, [True])
    with pytest.raises(StoreError, match="does not belong to this run"):
        fmt.read_manifest(tmp_path, 0, "c" * 64, (0, 3))
    with pytest.raises(StoreError, match="does not belong to this run"):
        fmt.read_manifest(tmp_path, 0, SETTINGS_SHA, (0, 4))
    with pytest.raises(StoreError, match="not finished"):
        fmt.read_manifest(tmp_path, 1, SETTINGS_SHA, (3, 6))


def test_runner_writes_the_keys_the_format_reads(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    x, y = torch.rand(5, 4), torch.tensor([0, 1, 2, 0, 1])
    explain_dataset(
        Saliency(model), (x, y), tmp_path, batch_size=2, shard_size=3, show_progress=False
    )
    config = json.loads((tmp_path / fmt.CONFIG_NAME).read_text())
    settings = config[fmt.KEY_SETTINGS]
    assert settings[fmt.KEY_NUM_EXAMPLES] == 5 and settings[fmt.KEY_SHARD_SIZE] == 3
    assert settings[fmt.KEY_BATCH_SIZE] == 2 and settings[fmt.KEY_DTYPE] == "float32"
    assert fmt.read_config(tmp_path) == settings
    index_path = tmp_path / fmt.INDEX_NAME
    index = json.loads(index_path.read_text())
    assert index[fmt.KEY_HAS_TARGETS] and len(index[fmt.KEY_SHARDS]) == 2
    for k, shard in enumerate(index[fmt.KEY_SHARDS]):
        entry = fmt.ShardEntry.from_json(shard, index_path)
        span = (entry.start, entry.stop)
        manifest = fmt.read_manifest(tmp_path, k, index[fmt.KEY_SETTINGS_SHA256], span)
        assert manifest.entry == entry and manifest.entry.to_json() == shard
        assert entry.data_sha256 is not None and entry.targets_file == fmt.targets_name(k)
