"""The on-disk format of an attribution store: file names, document keys, writing and reading.

Layout of a store directory (every file is written atomically, see :mod:`._files`)::

    store.json                 the format tag and the settings of the run (written first)
    shard-000000.npy           attributions of examples [0, shard_size), numpy .npy format
    shard-000000.targets.npy   the target of each of those examples, when targets are ints
    shard-000000.json          the shard's manifest: range, shape, sizes and SHA-256 checksums
    ...
    index.json                 every manifest merged, written once all shards are done

A shard counts as finished only once its manifest is in place, and the manifest is written
after the data files it describes, so a run killed at any moment leaves only finished shards
(and temporary files, removed on the next start). ``index.json`` is derived from the manifests
after the last shard; it is the only file a reader needs besides the shards.

This module is the one place that knows the names and keys: the writer
(:mod:`.explain`) and the reader (:mod:`.store`) both go through it. Every JSON document is
written with sorted keys, so its bytes depend on its content only.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ._files import atomic_write_bytes, atomic_write_json, sha256_bytes

__all__ = [
    "CONFIG_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_NAME",
    "KEY_BATCH_SIZE",
    "KEY_DTYPE",
    "KEY_EXAMPLE_SHAPE",
    "KEY_FORMAT",
    "KEY_HAS_TARGETS",
    "KEY_NUM_EXAMPLES",
    "KEY_NUM_SHARDS",
    "KEY_SETTINGS",
    "KEY_SETTINGS_SHA256",
    "KEY_SHARDS",
    "KEY_SHARD_SIZE",
    "KEY_VERSION",
    "NUMPY_DTYPES",
    "ShardEntry",
    "ShardManifest",
    "StoreError",
    "check_format",
    "check_sizes",
    "find_index",
    "manifest_name",
    "read_array",
    "read_checked",
    "read_config",
    "read_json",
    "read_manifest",
    "read_targets",
    "remove_index",
    "remove_manifest",
    "shard_name",
    "targets_name",
    "verify_entry",
    "write_config",
    "write_index",
    "write_shard",
]

#: The format tag written into ``store.json``, every manifest and ``index.json``.
FORMAT = "captum-smooth-attribution-store"
#: The version of the layout; a store of another version is refused.
FORMAT_VERSION = 1

CONFIG_NAME = "store.json"
INDEX_NAME = "index.json"
_SHARD_PREFIX = "shard-"
_MANIFEST_SUFFIX = ".json"
#: The storage dtypes, by the name the settings and the index give them.
NUMPY_DTYPES: dict[str, type] = {"float16": np.float16, "float32": np.float32}

# Keys of the JSON documents. The last four are also keys of the run's settings (which the
# writer builds and stores whole in store.json and index.json) that the format reads.
KEY_FORMAT = "format"
KEY_VERSION = "version"
KEY_SETTINGS = "settings"
KEY_SETTINGS_SHA256 = "settings_sha256"
KEY_EXAMPLE_SHAPE = "example_shape"
KEY_NUM_SHARDS = "num_shards"
KEY_HAS_TARGETS = "has_targets"
KEY_SHARDS = "shards"
KEY_DTYPE = "dtype"
KEY_NUM_EXAMPLES = "num_examples"
KEY_SHARD_SIZE = "shard_size"
KEY_BATCH_SIZE = "batch_size"

# A field that is written even when None (``"targets_file": null`` says "no targets").
_WRITTEN_WHEN_NONE = {"written_when_none": True}


class StoreError(ValueError):
    """A store directory that cannot be used as asked.

    Raised for a directory that is not an attribution store, a store written with other
    settings, an unfinished store, and a shard that is missing, truncated or whose checksum
    does not match. A subclass of :class:`ValueError`.
    """


# ----------------------------------------------------------------------------------------
# File names.


def shard_name(shard_id: int) -> str:
    """File name of a shard's attributions."""
    return f"{_SHARD_PREFIX}{shard_id:06d}.npy"


def targets_name(shard_id: int) -> str:
    """File name of a shard's targets."""
    return f"{_SHARD_PREFIX}{shard_id:06d}.targets.npy"


def manifest_name(shard_id: int) -> str:
    """File name of a shard's manifest."""
    return f"{_SHARD_PREFIX}{shard_id:06d}{_MANIFEST_SUFFIX}"


def _header() -> dict[str, Any]:
    """The keys every document of the store starts with."""
    return {KEY_FORMAT: FORMAT, KEY_VERSION: FORMAT_VERSION}


# ----------------------------------------------------------------------------------------
# Checked reads.


def read_json(path: Path) -> Any:
    """Parsed JSON of ``path``, or a :class:`StoreError` naming the file."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"cannot read {path}: {exc}") from exc


def check_format(obj: Any, path: Path) -> None:
    """Refuse a JSON document that is not of this store format and version."""
    if not isinstance(obj, dict) or obj.get(KEY_FORMAT) != FORMAT:
        raise StoreError(f"{path} is not a captum-smooth attribution store file")
    if obj.get(KEY_VERSION) != FORMAT_VERSION:
        raise StoreError(
            f"{path} has store format version {obj.get(KEY_VERSION)!r}; this captum-smooth "
            f"reads version {FORMAT_VERSION}"
        )


def _check_file_size(path: Path, size: int) -> None:
    """Raise :class:`StoreError` if the shard file ``path`` is missing or not ``size`` bytes."""
    if not path.is_file():
        raise StoreError(f"shard file {path} is missing")
    actual = path.stat().st_size
    if actual != size:
        raise StoreError(
            f"shard file {path} is truncated or overwritten: {actual} bytes, the index says {size}"
        )


def read_checked(path: Path, size: int, sha256: str) -> bytes:
    """The bytes of ``path`` after checking its size and checksum (:class:`StoreError` if not)."""
    _check_file_size(path, size)
    data = path.read_bytes()
    if sha256_bytes(data) != sha256:
        raise StoreError(f"shard file {path} is corrupted: its SHA-256 checksum does not match")
    return data


def _npy_bytes(array: np.ndarray) -> bytes:
    """``array`` serialised in the numpy ``.npy`` format."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _load_npy(data: bytes) -> np.ndarray:
    """The array of ``.npy`` bytes (never unpickling anything)."""
    return np.load(io.BytesIO(data), allow_pickle=False)


# ----------------------------------------------------------------------------------------
# Shards: one entry per shard in the index, the same fields plus a header in its manifest.


@dataclasses.dataclass(frozen=True)
class ShardEntry:
    """One shard's examples and files; its fields are the JSON keys, spelled here only.

    Attributes:
        id: The shard's index.
        start: Index of its first example.
        stop: One past the index of its last example.
        file: File name of its attributions.
        bytes: Size of that file.
        sha256: SHA-256 of that file.
        data_sha256: Fingerprint of the inputs and labels it was computed from (None in
            stores of earlier versions).
        targets_file: File name of its targets, or None when it keeps none.
        targets_bytes: Size of the targets file.
        targets_sha256: SHA-256 of the targets file.
    """

    id: int
    start: int
    stop: int
    file: str
    bytes: int
    sha256: str
    data_sha256: str | None = None
    targets_file: str | None = dataclasses.field(default=None, metadata=_WRITTEN_WHEN_NONE)
    targets_bytes: int | None = None
    targets_sha256: str | None = None

    @classmethod
    def from_json(cls, obj: Any, path: Path) -> ShardEntry:
        """The entry of a manifest or of an index's shard list read from ``path``.

        Raises:
            StoreError: If ``obj`` lacks a field that has no default.
        """
        if not isinstance(obj, dict):
            raise StoreError(f"{path} does not describe a shard: {type(obj).__name__}")
        fields = dataclasses.fields(cls)
        missing = [f.name for f in fields if f.default is dataclasses.MISSING and f.name not in obj]
        if missing:
            raise StoreError(f"{path} does not describe a shard (missing: {', '.join(missing)})")
        return cls(**{f.name: obj[f.name] for f in fields if f.name in obj})

    def to_json(self) -> dict[str, Any]:
        """The JSON object of the entry: None fields are left out, but for ``targets_file``."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None or f.metadata.get("written_when_none")
        }

    def without_targets(self) -> ShardEntry:
        """The entry as an index lists it when not every shard has targets."""
        return dataclasses.replace(self, targets_file=None, targets_bytes=None, targets_sha256=None)

    def files(self) -> list[tuple[str, int, str]]:
        """``(name, bytes, sha256)`` of the attributions and, if kept, the targets file."""
        files = [(self.file, self.bytes, self.sha256)]
        if self.targets_file is not None:
            if self.targets_bytes is None or self.targets_sha256 is None:
                raise StoreError(f"shard {self.id} names a targets file without size or checksum")
            files.append((self.targets_file, self.targets_bytes, self.targets_sha256))
        return files


@dataclasses.dataclass(frozen=True)
class ShardManifest:
    """A shard's manifest: its :class:`ShardEntry`, the run it belongs to and its layout.

    Attributes:
        entry: The shard's examples and files.
        settings_sha256: SHA-256 of the run's settings.
        example_shape: Shape of one example's attribution.
        dtype: Name of the stored numpy dtype.
    """

    entry: ShardEntry
    settings_sha256: str
    example_shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        """The manifest document."""
        return {
            **_header(),
            KEY_SETTINGS_SHA256: self.settings_sha256,
            KEY_EXAMPLE_SHAPE: list(self.example_shape),
            KEY_DTYPE: self.dtype,
            **self.entry.to_json(),
        }


def check_sizes(root: Path, entry: ShardEntry) -> None:
    """Check that the files of ``entry`` exist with their sizes (cheap: no checksum)."""
    for name, size, _ in entry.files():
        _check_file_size(root / name, size)


def verify_entry(root: Path, entry: ShardEntry) -> None:
    """Check the size and checksum of every file of ``entry`` (:class:`StoreError` if not)."""
    for name, size, sha256 in entry.files():
        read_checked(root / name, size, sha256)


def read_array(root: Path, entry: ShardEntry) -> np.ndarray:
    """The checked attributions of a shard, as stored."""
    return _load_npy(read_checked(root / entry.file, entry.bytes, entry.sha256))


def read_targets(root: Path, entry: ShardEntry) -> np.ndarray:
    """The checked targets of a shard, as stored."""
    if entry.targets_file is None:
        raise StoreError(f"shard {entry.id} of {root} keeps no targets")
    name, size, sha256 = entry.files()[1]
    return _load_npy(read_checked(root / name, size, sha256))


def write_shard(
    root: Path,
    k: int,
    start: int,
    attrs: np.ndarray,
    targets: np.ndarray | None,
    settings_sha: str,
    data_sha: str,
) -> None:
    """Write shard ``k``'s files, then its manifest (the commit point).

    Args:
        root: The store directory.
        k: The shard's index.
        start: Index of its first example.
        attrs: Its attributions, one row per example, in the storage dtype.
        targets: One int64 target per example, or None.
        settings_sha: SHA-256 of the run's settings.
        data_sha: Fingerprint of its inputs and labels.
    """
    data = _npy_bytes(attrs)
    atomic_write_bytes(root / shard_name(k), data)
    entry = ShardEntry(
        id=k,
        start=start,
        stop=start + len(attrs),
        file=shard_name(k),
        bytes=len(data),
        sha256=sha256_bytes(data),
        data_sha256=data_sha,
    )
    if targets is not None:
        tdata = _npy_bytes(targets)
        atomic_write_bytes(root / targets_name(k), tdata)
        entry = dataclasses.replace(
            entry,
            targets_file=targets_name(k),
            targets_bytes=len(tdata),
            targets_sha256=sha256_bytes(tdata),
        )
    manifest = ShardManifest(entry, settings_sha, tuple(attrs.shape[1:]), str(attrs.dtype))
    atomic_write_json(root / manifest_name(k), manifest.to_json())


def read_manifest(root: Path, k: int, settings_sha: str, span: tuple[int, int]) -> ShardManifest:
    """The manifest of shard ``k``, checked to belong to this run.

    Args:
        root: The store directory.
        k: The shard's index.
        settings_sha: SHA-256 of the run's settings.
        span: ``(start, stop)`` the shard must cover.

    Raises:
        StoreError: If the manifest is missing, unreadable, of another format, or of another
            run or shard.
    """
    path = root / manifest_name(k)
    if not path.is_file():
        raise StoreError(f"shard {k} of {root} is not finished ({path.name} missing)")
    obj = read_json(path)
    check_format(obj, path)
    if obj.get(KEY_SETTINGS_SHA256) != settings_sha:
        raise StoreError(f"{path} does not belong to this run")
    entry = ShardEntry.from_json(obj, path)
    if entry.id != k or (entry.start, entry.stop) != span:
        raise StoreError(f"{path} does not belong to this run")
    shape = obj.get(KEY_EXAMPLE_SHAPE)
    return ShardManifest(entry, settings_sha, tuple(shape or ()), str(obj.get(KEY_DTYPE)))


def remove_manifest(root: Path, k: int) -> None:
    """Make shard ``k`` unfinished (its data files are overwritten when it is recomputed)."""
    (root / manifest_name(k)).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------
# The run's settings (store.json) and the index.


def write_config(root: Path, settings: dict[str, Any]) -> None:
    """Write ``store.json``: it marks ``root`` as a store of a run with ``settings``."""
    atomic_write_json(root / CONFIG_NAME, {**_header(), KEY_SETTINGS: settings})


def read_config(root: Path) -> dict[str, Any] | None:
    """The settings in ``store.json``, or None if ``root`` has none (not a store yet)."""
    path = root / CONFIG_NAME
    if not path.is_file():
        return None
    config = read_json(path)
    check_format(config, path)
    return config.get(KEY_SETTINGS, {})


def write_index(
    root: Path, settings: dict[str, Any], settings_sha: str, manifests: list[ShardManifest]
) -> None:
    """Merge the manifests of every shard (in order) into ``index.json``.

    The index keeps the targets only if every shard has them, so that a reader finds either
    all or none.

    Raises:
        StoreError: If the shards hold examples of different shapes.
    """
    shapes = {m.example_shape for m in manifests}
    if len(shapes) != 1:
        raise StoreError(f"the shards of {root} hold examples of different shapes: {shapes}")
    has_targets = all(m.entry.targets_file is not None for m in manifests)
    entries = [m.entry if has_targets else m.entry.without_targets() for m in manifests]
    index = {
        **_header(),
        KEY_SETTINGS: settings,
        KEY_SETTINGS_SHA256: settings_sha,
        KEY_NUM_EXAMPLES: settings[KEY_NUM_EXAMPLES],
        KEY_NUM_SHARDS: len(manifests),
        KEY_EXAMPLE_SHAPE: list(shapes.pop()),
        KEY_DTYPE: settings[KEY_DTYPE],
        KEY_HAS_TARGETS: has_targets,
        KEY_SHARDS: [e.to_json() for e in entries],
    }
    atomic_write_json(root / INDEX_NAME, index)


def remove_index(root: Path) -> None:
    """Remove ``index.json``: a stale index must not outlive a shard that changes."""
    (root / INDEX_NAME).unlink(missing_ok=True)


def find_index(root: Path) -> Path:
    """The path of the index of the finished store at ``root``.

    Raises:
        StoreError: If ``root`` is not a directory, not a store, or an unfinished store.
    """
    if not root.is_dir():
        raise StoreError(f"{root} is not a directory")
    index_path = root / INDEX_NAME
    if index_path.is_file():
        return index_path
    if (root / CONFIG_NAME).is_file():
        done = len(list(root.glob(f"{_SHARD_PREFIX}*{_MANIFEST_SUFFIX}")))
        raise StoreError(
            f"the store at {root} is unfinished ({done} shard(s) done, no "
            f"{INDEX_NAME}): run explain_dataset again with the same settings to resume it"
        )
    raise StoreError(f"{root} is not an attribution store (no {INDEX_NAME})")
