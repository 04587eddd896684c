"""explain_dataset: stream a data set through an attribution method into a resumable store.

The data set is cut into shards of ``shard_size`` consecutive examples and each shard into
batches of at most ``batch_size`` (a batch never crosses a shard boundary). A shard is computed
in one go by one process and written with its manifest (see :mod:`._format`); finished shards
are never recomputed. Under ``torch.distributed`` (e.g. ``torchrun``), rank 0 checks the store
and lists the unfinished shards, every rank takes every ``world_size``-th of them, and rank 0
writes the index after a barrier.

This module runs the shards. The arguments are checked in :mod:`._settings`, the settings and
data are fingerprinted in :mod:`._fingerprint`, each batch is attributed (with its own seed,
so that the results do not depend on the number of processes) in :mod:`._batch`, and every
file is written and read through :mod:`._format`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_positive_int
from .._progress import progress_bar
from .._warnings import warn
from . import _distributed as _dist
from ._batch import BatchRunner, batch_seed
from ._data import DataSource, as_source
from ._files import is_temporary, remove_temporary_files
from ._fingerprint import DataFingerprint, changed_shards, run_settings, settings_digest
from ._format import (
    CONFIG_NAME,
    KEY_BATCH_SIZE,
    KEY_DTYPE,
    KEY_NUM_EXAMPLES,
    KEY_SHARD_SIZE,
    NUMPY_DTYPES,
    ShardManifest,
    StoreError,
    manifest_name,
    read_config,
    read_manifest,
    remove_index,
    remove_manifest,
    verify_entry,
    write_config,
    write_index,
    write_shard,
)
from ._settings import (
    TargetLike,
    check_attribute_kwargs,
    check_device,
    check_dtype,
    check_metadata,
    check_method_and_out,
    check_reduction,
    check_seed,
    check_target,
    default_device,
    settings_diff,
    warn_if_training,
)
from .store import AttributionStore

# batch_seed is defined with the batch runner and re-exported here, where it always was.
__all__ = ["batch_seed", "explain_dataset"]


def explain_dataset(
    method: Any,
    data: Any,
    out: str | Path,
    *,
    batch_size: int | None = None,
    target: TargetLike = "label",
    dtype: torch.dtype | str = torch.float32,
    reduce_channels: str | None = None,
    shard_size: int = 256,
    seed: int | None = 0,
    show_progress: bool = True,
    overwrite: bool = False,
    num_workers: int | None = None,
    device: torch.device | str | None = None,
    metadata: dict[str, Any] | None = None,
    **attribute_kwargs: Any,
) -> AttributionStore:
    r"""Attribute every example of a data set and store the results on disk, resumably.

    The examples go through ``method.attribute`` batch by batch and land in a sharded store at
    ``out`` (numpy ``.npy`` shards with SHA-256 checksums, see :mod:`._format`). Memory is bounded
    by one shard, whatever the size of the data set. A run that is killed resumes where it
    stopped when called again with the same arguments: finished shards are kept and not
    recomputed; a store written with other settings is refused.

    Under ``torch.distributed`` (``torchrun``; gloo on CPU, NCCL on GPU) every rank calls this
    with the same arguments: the unfinished shards are dealt round-robin to the ranks, which
    write into the one store (``out`` must be on a file system they share), and rank 0 writes
    the index after a barrier. Without an initialised process group it runs in one process.

    Batches never cross shard boundaries and each batch's seed comes from ``seed`` and the
    index of its first example (:func:`batch_seed`), so the stored attributions do not depend
    on the number of processes. Methods whose ``attribute`` takes ``generator`` (those of
    captum_smooth) get a seeded ``torch.Generator``; others run under torch's global random
    state seeded the same way (restored afterwards).

    Args:
        method: A Captum attribution (``AdaptGrad(model)``, ``SmoothTunnel(Saliency(model))``,
            ``IntegratedGradients(model)``, ...) of a single-input model. ``forward_func`` is
            used for ``target="prediction"``.
        data: A map-style ``Dataset`` giving ``x`` or ``(x, y, ...)``, an unshuffled
            ``DataLoader`` over one (its collate function and workers are used), a tensor of
            inputs, or an ``(inputs, labels)`` pair of tensors.
        out: The store directory: new or empty, or a store of an earlier run with the same
            settings (which is then resumed or, if finished, reopened). A store that holds
            nothing but the settings of a run that failed before its first shard (a bad
            argument, NaN data) takes this run's settings: nothing is lost.
        batch_size: Examples per ``attribute`` call. Default: the DataLoader's, else 64.
        target: ``"label"`` (the data's labels), ``"prediction"`` (the model's top class,
            from ``method.forward_func``), a callable ``(inputs, labels) -> targets`` giving
            anything Captum accepts as ``target`` (labels may be None), an int (the same class
            for all), or None. Default: ``"label"``.
        dtype: Storage dtype, ``torch.float16`` (half the space) or ``torch.float32``.
            Default: ``torch.float32``.
        reduce_channels: None, or ``"sum"``, ``"abs_sum"`` or ``"mean"`` over dimension 1 of
            each attribution (the channels of an image). Default: None.
        shard_size: Examples per shard (the unit of work, of resumption and of memory).
            Default: 256.
        seed: Seed of the per-batch seeds, a non-negative int, or None for no seeding (not
            reproducible). Default: 0.
        show_progress: Show a tqdm progress bar (rank 0 only). Default: True.
        overwrite: Recompute the finished shards of an earlier run whose data (inputs or
            labels) differ from ``data``. Every shard keeps a SHA-256 fingerprint of its data,
            and a run that finds finished shards reads their data again to compare (no
            attribution). Without ``overwrite``, other data than the store's are a
            :class:`StoreError`. Default: False.
        num_workers: DataLoader workers for a Dataset. Default: the DataLoader's, else 0.
        device: Where inputs go: a ``torch.device``, a name (``"cuda:1"``) or a CUDA index,
            of a device this machine has. Default: the device of the model's first parameter,
            else CPU.
        metadata: JSON-able data of yours stored with the settings (e.g. the data set's name);
            a different value refuses to resume. Default: None.
        **attribute_kwargs: Passed to every ``method.attribute`` call (``nt_samples``,
            ``bounds``, ``baselines``, ...); part of the settings fingerprint.

    Returns:
        The finished :class:`AttributionStore` (on every rank).

    Raises:
        TypeError: If an argument is of the wrong type, an attribute kwarg is not an
            argument of ``method.attribute`` (when it takes no ``**kwargs``), or
            ``method.attribute`` returns something other than one tensor.
        ValueError: If an argument is out of range, ``target="label"`` without labels, a
            device this machine lacks, inputs holding NaN or inf, a label or int target that
            is not a class of the model's ``(batch, classes)`` output, or attributions that
            do not match the batch.
        StoreError: If ``out`` is not empty and not a store, or holds a store of other settings
            (the message lists the differences) or of other data (unless ``overwrite``), or
            ranks disagree on the settings.

    Examples::

        >>> from captum.attr import Saliency
        >>> from captum_smooth import AttributionStore, SmoothTunnel, explain_dataset
        >>> store = explain_dataset(SmoothTunnel(Saliency(model)), (images, labels),
        ...                         "attributions/", batch_size=32, dtype=torch.float16,
        ...                         reduce_channels="abs_sum", nt_samples=10, stdevs=0.1)
        >>> store[0].shape  # doctest: +SKIP
        torch.Size([224, 224])
        >>> AttributionStore("attributions/")[-1]  # later, elsewhere  # doctest: +SKIP
    """
    check_method_and_out(method, out)
    source = as_source(data, num_workers)
    if batch_size is None:
        batch_size = source.default_batch_size or 64
    batch_size = check_positive_int(batch_size, "batch_size")
    shard_size = check_positive_int(shard_size, "shard_size")
    dtype_name = check_dtype(dtype)
    for flag, name in ((overwrite, "overwrite"), (show_progress, "show_progress")):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    check_reduction(reduce_channels)
    check_seed(seed, attribute_kwargs)
    check_attribute_kwargs(method, attribute_kwargs)
    check_target(target, source)
    if len(source) == 0:
        raise ValueError("data is empty")
    metadata = check_metadata(metadata)
    forward_func = getattr(method, "forward_func", None)
    warn_if_training(forward_func)
    checked_device = check_device(device)
    device = default_device(forward_func) if checked_device is None else checked_device

    options = {
        KEY_DTYPE: dtype_name,
        "reduce_channels": reduce_channels,
        KEY_SHARD_SIZE: shard_size,
        KEY_BATCH_SIZE: batch_size,
        "seed": seed,
        KEY_NUM_EXAMPLES: len(source),
        "metadata": metadata,
    }
    settings = run_settings(method, target, attribute_kwargs, **options)
    settings_sha = settings_digest(settings)
    root = Path(out)
    sizes = (len(source), shard_size, batch_size)
    pending = _agree_on_plan(
        settings,
        lambda: _plan_shards(root, settings, settings_sha, source, overwrite, show_progress),
    )

    rank, world = _dist.rank_and_world()
    np_dtype = NUMPY_DTYPES[dtype_name]
    runner = BatchRunner(method, target, np_dtype, reduce_channels, seed, device, attribute_kwargs)
    progress = show_progress and rank == 0
    _run_shards(root, pending[rank::world], runner, source, settings_sha, sizes, progress)

    _dist.barrier()
    if rank == 0:
        _write_index(root, settings, settings_sha)
    _dist.barrier()
    return AttributionStore(root)


def _plan_shards(
    root: Path,
    settings: dict[str, Any],
    settings_sha: str,
    source: DataSource,
    overwrite: bool,
    show_progress: bool,
) -> list[int]:
    """Prepare the store and list the shards to compute: unfinished ones, and finished ones
    whose data changed when ``overwrite`` (without it, changed data are a StoreError)."""
    from tqdm.auto import tqdm

    pending = _prepare(root, settings, settings_sha)
    sizes = (settings[KEY_NUM_EXAMPLES], settings[KEY_SHARD_SIZE], settings[KEY_BATCH_SIZE])
    n, shard_size = sizes[:2]
    finished = [k for k in range(_num_shards(n, shard_size)) if k not in set(pending)]
    quiet = not show_progress or not finished
    stored_digests = (
        (k, _read_manifest(root, k, settings_sha, n, shard_size).entry.data_sha256)
        for k in (finished if quiet else tqdm(finished, desc="checking stored data", unit="shard"))
    )
    changed = changed_shards(stored_digests, source, lambda k: _shard_batches(k, sizes))
    if changed and not overwrite:
        first, last = _shard_range(changed[0], shard_size, n)
        raise StoreError(
            f"the store at {root} was written for other data: the inputs or labels of "
            f"{len(changed)} finished shard(s) differ from the data given (first: shard "
            f"{changed[0]}, examples {first}..{last - 1}). Use another out directory, or pass "
            "overwrite=True to recompute the shards whose data changed."
        )
    if changed:
        remove_index(root)
        for k in changed:  # unfinished from now on, so that a killed rerun recomputes them
            remove_manifest(root, k)
    return sorted(pending + changed)


def _agree_on_plan(settings: dict[str, Any], plan_shards: Callable[[], list[int]]) -> list[int]:
    """Check that all ranks share ``settings``; rank 0 prepares the store for everyone.

    Returns:
        The ids of the shards still to compute (the same list on every rank).

    Raises:
        StoreError: The ranks disagree on the settings, or rank 0 failed to prepare the store
            (rank 0 itself raises the original exception).
    """
    everyone = _dist.all_gather_object(settings)
    other = next((s for s in everyone if s != settings), None)
    if other is not None:
        raise StoreError(
            "the ranks disagree on the settings (same model weights, data and arguments are "
            "needed on every rank):\n" + "\n".join(settings_diff(other, settings))
        )
    plan: dict[str, Any] = {}
    error: BaseException | None = None
    if _dist.rank_and_world()[0] == 0:
        try:
            plan["pending"] = plan_shards()
        except BaseException as exc:  # every rank must hear of it, or the others would hang
            error = exc
            plan["error"] = f"{type(exc).__name__}: {exc}"
    plan = _dist.broadcast_object(plan)
    if error is not None:
        raise error
    if "error" in plan:
        raise StoreError(f"rank 0 could not prepare the store: {plan['error']}")
    return plan["pending"]


class _ShardBuffer:
    """One shard's attributions, targets and data fingerprint, filled batch by batch."""

    def __init__(self, k: int, start: int, stop: int) -> None:
        self.k, self.start, self.stop = k, start, stop
        self.attrs: np.ndarray | None = None
        self.targets: np.ndarray | None = np.empty(stop - start, dtype=np.int64)
        self.fingerprint = DataFingerprint()

    def add(
        self, lo: int, x: Tensor, y: Tensor | None, array: np.ndarray, targets: np.ndarray | None
    ) -> None:
        """Store the attributions of examples ``lo, lo + 1, ...`` given inputs ``x``, ``y``.

        Args:
            lo: Index of the batch's first example.
            x: The batch's inputs (fingerprinted).
            y: Its labels or None (fingerprinted).
            array: Its attributions in the storage dtype.
            targets: Its int64 targets, or None when they are not one int per example.
        """
        self.fingerprint.update(x, y)
        if self.attrs is None:
            self.attrs = np.empty((self.stop - self.start, *array.shape[1:]), dtype=array.dtype)
        if array.shape[1:] != self.attrs.shape[1:]:
            raise ValueError(
                f"attributions of examples {lo}.. have shape {array.shape[1:]}, earlier "
                f"ones {self.attrs.shape[1:]}; explain_dataset needs one shape for all examples"
            )
        rows = slice(lo - self.start, lo - self.start + len(array))
        self.attrs[rows] = array
        if targets is None:
            self.targets = None  # not one int per example: the shard keeps no targets
        elif self.targets is not None:
            self.targets[rows] = targets

    def write(self, root: Path, settings_sha: str) -> None:
        """Write the shard (its manifest last: the commit point)."""
        assert self.attrs is not None
        data_sha = self.fingerprint.hexdigest()
        write_shard(root, self.k, self.start, self.attrs, self.targets, settings_sha, data_sha)


def _run_shards(
    root: Path,
    shards: list[int],
    runner: BatchRunner,
    source: DataSource,
    settings_sha: str,
    sizes: tuple[int, int, int],
    show_progress: bool,
) -> None:
    """Compute and write ``shards``, batch by batch, with a progress bar if asked."""
    n, shard_size, _ = sizes
    world = _dist.rank_and_world()[1]
    plan = [(k, indices) for k in shards for indices in _shard_batches(k, sizes)]
    total = sum(len(indices) for _, indices in plan)
    desc = "explain_dataset" if world == 1 else f"explain_dataset (rank 0 of {world})"
    bar = progress_bar(
        show_progress and total > 0, total=total, desc=desc, unit="ex", dynamic_ncols=True
    )
    shard: _ShardBuffer | None = None
    try:
        for (k, indices), (x, y) in zip(plan, source.batches([ix for _, ix in plan])):
            if len(x) != len(indices):
                raise ValueError(f"data gave {len(x)} examples for a batch of {len(indices)}")
            lo = indices[0]
            if shard is None or shard.k != k:
                shard = _ShardBuffer(k, *_shard_range(k, shard_size, n))
            array, targets = runner(lo, x, y)
            shard.add(lo, x, y, array, targets)
            bar.update(len(array))
            if lo + len(array) == shard.stop:
                shard.write(root, settings_sha)
    finally:
        bar.close()


def _num_shards(n: int, shard_size: int) -> int:
    """How many shards ``n`` examples make (the last one may be short)."""
    return -(-n // shard_size)


def _shard_range(k: int, shard_size: int, n: int) -> tuple[int, int]:
    """``(start, stop)`` of the examples of shard ``k``."""
    return k * shard_size, min((k + 1) * shard_size, n)


def _shard_batches(k: int, sizes: tuple[int, int, int]) -> list[list[int]]:
    """The batches (lists of example indices) of shard ``k``; ``sizes`` = (n, shard, batch)."""
    n, shard_size, batch_size = sizes
    start, stop = _shard_range(k, shard_size, n)
    return [list(range(lo, min(lo + batch_size, stop))) for lo in range(start, stop, batch_size)]


def _read_manifest(root: Path, k: int, settings_sha: str, n: int, shard_size: int) -> ShardManifest:
    """The manifest of shard ``k`` of this run (:class:`StoreError` if it has none)."""
    return read_manifest(root, k, settings_sha, _shard_range(k, shard_size, n))


def _finished_shard(root: Path, k: int, settings_sha: str, n: int, shard_size: int) -> bool:
    """Whether shard ``k`` is complete and intact (checksums verified)."""
    if not (root / manifest_name(k)).is_file():
        return False
    try:
        verify_entry(root, _read_manifest(root, k, settings_sha, n, shard_size).entry)
    except (StoreError, KeyError, TypeError) as exc:
        warn(f"recomputing shard {k}: {exc}", RuntimeWarning)
        return False
    return True


def _check_or_create(root: Path, settings: dict[str, Any]) -> None:
    """Check that ``root`` is a store of ``settings``, or make a new or empty ``root`` one."""
    if root.exists() and not root.is_dir():
        raise StoreError(f"out {root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    stored = read_config(root)
    held = sorted(p.name for p in root.iterdir() if not is_temporary(p.name))
    if stored is None:
        if held:
            shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
            raise StoreError(
                f"out {root} is not empty and is not an attribution store (it holds {shown}); "
                "give an empty or new directory"
            )
        write_config(root, settings)
        return
    lines = settings_diff(stored, settings)
    if lines and held == [CONFIG_NAME]:
        # A run that failed before its first shard (a bad argument, NaN data) left only its
        # settings: nothing is lost by taking the corrected run's instead of refusing it.
        write_config(root, settings)
        return
    if lines:
        raise StoreError(
            f"the store at {root} was written with other settings; refusing to mix them:\n"
            + "\n".join(lines)
            + "\nUse another out directory, or delete this one to start over."
        )


def _prepare(root: Path, settings: dict[str, Any], settings_sha: str) -> list[int]:
    """Create or check the store; return the ids of the shards still to compute."""
    _check_or_create(root, settings)
    remove_temporary_files(root)
    n, shard_size = settings[KEY_NUM_EXAMPLES], settings[KEY_SHARD_SIZE]
    pending = [
        k
        for k in range(_num_shards(n, shard_size))
        if not _finished_shard(root, k, settings_sha, n, shard_size)
    ]
    if pending:
        remove_index(root)  # a stale index must not outlive a damaged shard
    return pending


def _write_index(root: Path, settings: dict[str, Any], settings_sha: str) -> None:
    """Read every shard's manifest and merge them into the index."""
    n, shard_size = settings[KEY_NUM_EXAMPLES], settings[KEY_SHARD_SIZE]
    manifests = []
    for k in range(_num_shards(n, shard_size)):
        try:
            manifests.append(_read_manifest(root, k, settings_sha, n, shard_size))
        except StoreError as exc:
            raise StoreError(
                f"{exc}; every rank must write to the same directory (a file system shared by "
                "all processes)"
            ) from None
    write_index(root, settings, settings_sha, manifests)
