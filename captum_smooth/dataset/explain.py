"""explain_dataset: stream a data set through an attribution method into a resumable store.

The data set is cut into shards of ``shard_size`` consecutive examples and each shard into
batches of at most ``batch_size`` (a batch never crosses a shard boundary). A shard is computed
in one go by one process and written with its manifest (see :mod:`.store`); finished shards are
never recomputed. Under ``torch.distributed`` (e.g. ``torchrun``), rank 0 checks the store and
lists the unfinished shards, every rank takes every ``world_size``-th of them, and rank 0 writes
the index after a barrier.

Reproducibility: every batch gets its own seed, derived from ``seed`` and the index of its
first example. A method whose ``attribute`` takes a ``generator`` argument (the methods of
captum_smooth) gets a ``torch.Generator`` seeded with it; any other method runs with torch's
global random state seeded with it (and restored afterwards). Since the batches are the same
whatever the number of processes, so are the results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_positive_int
from .._warnings import warn
from . import _distributed as _dist
from ._data import DataSource, as_source
from ._fingerprint import DataFingerprint, changed_shards
from .store import (
    _CONFIG_NAME,
    _INDEX_NAME,
    FORMAT,
    FORMAT_VERSION,
    AttributionStore,
    StoreError,
    atomic_write_bytes,
    atomic_write_json,
    check_format,
    manifest_name,
    npy_bytes,
    read_checked,
    read_json,
    remove_temporary_files,
    sha256_bytes,
    shard_name,
    targets_name,
)

__all__ = ["batch_seed", "explain_dataset"]

TargetLike = str | int | Callable[[Tensor, "Tensor | None"], Any] | None

_DTYPES = {torch.float16: "float16", torch.float32: "float32"}
_REDUCTIONS = (None, "sum", "abs_sum", "mean")
_TARGET_MODES = ("label", "prediction")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_MAX_SEED = 2**63


# ----------------------------------------------------------------------------------------
# Seeds and fingerprints.


def batch_seed(seed: int, start: int) -> int:
    """The seed of the batch whose first example is ``start``: a 63-bit int.

    Derived with numpy's ``SeedSequence`` from ``(seed, start)``, so that it depends on the
    example index only, not on which process computes the batch.

    Args:
        seed: The run's seed (a non-negative int).
        start: Index of the batch's first example in the data set.

    Returns:
        An int in ``[0, 2**63)``.

    Examples::

        >>> batch_seed(0, 0) == batch_seed(0, 0) != batch_seed(0, 64)
        True
    """
    state = np.random.SeedSequence([seed, start]).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


def _qualname(obj: Any) -> str:
    kind = obj if isinstance(obj, type) else type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _tensor_digest(t: Tensor | np.ndarray) -> dict[str, Any]:
    tensor = torch.as_tensor(t).detach().cpu().contiguous()
    raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
    return {"tensor": list(tensor.shape), "dtype": str(tensor.dtype), "sha256": sha256_bytes(raw)}


def _state_digest(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, value in module.state_dict().items():
        digest.update(name.encode())
        digest.update(json.dumps(_tensor_digest(value), sort_keys=True).encode())
    return digest.hexdigest()


def _canonical(obj: Any, depth: int = 0) -> Any:
    """A JSON-able description of ``obj`` that is equal for equal arguments across runs."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else repr(obj)
    if isinstance(obj, (Tensor, np.ndarray)):
        return _tensor_digest(obj)
    if isinstance(obj, (list, tuple)):
        return [_canonical(v, depth + 1) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _canonical(obj[k], depth + 1) for k in sorted(obj, key=str)}
    if isinstance(obj, (torch.dtype, torch.device)):
        return str(obj)
    if isinstance(obj, torch.Generator):
        return {"generator": obj.initial_seed()}
    if isinstance(obj, nn.Module):
        return {"module": _qualname(obj), "sha256": _state_digest(obj)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return {"type": _qualname(obj), "fields": _canonical(fields, depth + 1)}
    if callable(obj) and hasattr(obj, "__qualname__"):
        return {"callable": f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"}
    if depth < 4 and hasattr(obj, "__dict__"):
        return {"type": _qualname(obj), "attrs": _canonical(vars(obj), depth + 1)}
    return _ADDRESS.sub("", repr(obj))


def _method_name(method: Any) -> str:
    name = type(method).__name__
    inner = getattr(method, "attribution_method", None)
    if inner is not None and hasattr(inner, "attribute"):
        return f"{name}({_method_name(inner)})"
    return name


def _model_digest(forward_func: Any) -> str | None:
    module = getattr(forward_func, "__self__", forward_func)
    if isinstance(module, nn.Module):
        return _state_digest(module)
    if callable(forward_func) and hasattr(forward_func, "__qualname__"):
        return f"{getattr(forward_func, '__module__', '?')}.{forward_func.__qualname__}"
    return None


def _accepts_generator(method: Any) -> bool:
    try:
        params = inspect.signature(method.attribute).parameters
    except (TypeError, ValueError):
        return False
    param = params.get("generator")
    return param is not None and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)


def _target_name(target: TargetLike) -> Any:
    if callable(target):
        return _canonical(target)
    return target


# ----------------------------------------------------------------------------------------
# Argument checks.


def _check_dtype(dtype: Any) -> str:
    """The canonical name (``"float16"`` or ``"float32"``) of a storage dtype or its alias."""
    if isinstance(dtype, str):
        # "half" and "float" are torch's aliases: stored under the canonical name.
        dtype = getattr(torch, dtype, dtype)
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(
        f"dtype must be torch.float16 or torch.float32 (or their names), got {dtype!r}"
    )


def _check_method_and_out(method: Any, out: Any) -> None:
    if not hasattr(method, "attribute") or not callable(method.attribute):
        raise TypeError(f"method must be a Captum attribution, got {type(method).__name__}")
    if not isinstance(out, (str, Path)) and not hasattr(out, "__fspath__"):
        raise TypeError(f"out must be a str or path-like, got {type(out).__name__}")


def _check_reduction(reduce_channels: Any) -> None:
    if reduce_channels not in _REDUCTIONS:
        raise ValueError(
            f"reduce_channels must be None, 'sum', 'abs_sum' or 'mean', got {reduce_channels!r}"
        )


def _check_seed(seed: Any, attribute_kwargs: dict[str, Any]) -> None:
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
    if not 0 <= seed < _MAX_SEED:
        raise ValueError(f"seed must be in [0, 2**63), got {seed}")
    # the per-batch generators would silently replace the caller's own
    if "generator" in attribute_kwargs:
        raise ValueError(
            "pass either seed (per-batch generators) or generator, not both; use seed=None "
            "to pass your own generator"
        )


def _check_metadata(metadata: Any) -> Any:
    """``metadata`` as it will read back from JSON (None stays None)."""
    if metadata is None:
        return None
    try:
        return json.loads(json.dumps(metadata, sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None


def _check_target(target: Any, source: DataSource) -> None:
    if isinstance(target, str):
        if target not in _TARGET_MODES:
            raise ValueError(
                f"target must be 'label', 'prediction', a callable, an int or None, got {target!r}"
            )
        if target == "label" and not source.has_labels:
            raise ValueError(
                "target='label' needs labels, but data gives inputs only; use "
                "target='prediction' or a callable"
            )
    elif not (target is None or callable(target) or isinstance(target, int)):
        raise TypeError(
            "target must be 'label', 'prediction', a callable (inputs, labels) -> targets, an "
            f"int or None, got {type(target).__name__}"
        )
    elif isinstance(target, bool):
        raise TypeError("target must not be a bool")


def _warn_if_training(forward_func: Any) -> None:
    module = getattr(forward_func, "__self__", forward_func)
    if isinstance(module, nn.Module) and module.training:
        warn(
            "the model is in training mode (dropout and BatchNorm batch statistics make the "
            "attributions depend on the batch); call model.eval() first",
            UserWarning,
        )


def _default_device(forward_func: Any) -> torch.device:
    module = getattr(forward_func, "__self__", forward_func)
    if isinstance(module, nn.Module):
        for tensor in module.parameters():
            return tensor.device
        for tensor in module.buffers():
            return tensor.device
    return torch.device("cpu")


# ----------------------------------------------------------------------------------------
# One batch.


def _targets(
    target: TargetLike, method: Any, x: Tensor, y: Tensor | None, kwargs: dict[str, Any]
) -> Any:
    if target == "label":
        assert y is not None
        return y.to(x.device)
    if target == "prediction":
        extra = kwargs.get("additional_forward_args")
        if extra is None:
            extra = ()
        elif not isinstance(extra, tuple):
            extra = (extra,)
        with torch.no_grad():
            out = method.forward_func(x, *extra)
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != len(x):
            raise ValueError(
                "target='prediction' needs a model output of shape (batch, classes), got "
                f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}"
            )
        return out.argmax(dim=1)
    if callable(target):
        return target(x, y)
    return target


def _storable_targets(targets: Any, n: int) -> np.ndarray | None:
    if isinstance(targets, int) and not isinstance(targets, bool):
        return np.full(n, targets, dtype=np.int64)
    if (
        isinstance(targets, Tensor)
        and targets.shape == (n,)
        and not targets.is_floating_point()
        and not targets.is_complex()
    ):
        return targets.detach().cpu().numpy().astype(np.int64)
    return None


def _reduce(attr: Tensor, reduce_channels: str | None) -> Tensor:
    if reduce_channels is None:
        return attr
    if attr.dim() < 3:
        raise ValueError(
            f"reduce_channels={reduce_channels!r} needs attributions of shape (batch, channels, "
            f"...), got {tuple(attr.shape)}"
        )
    if reduce_channels == "sum":
        return attr.sum(dim=1)
    if reduce_channels == "abs_sum":
        return attr.abs().sum(dim=1)
    return attr.mean(dim=1)


class _BatchRunner:
    """Runs the method on one batch with its seed, targets, reduction and dtype."""

    def __init__(
        self,
        method: Any,
        target: TargetLike,
        np_dtype: type,
        reduce_channels: str | None,
        seed: int | None,
        device: torch.device,
        attribute_kwargs: dict[str, Any],
    ) -> None:
        self.method = method
        self.target = target
        self.np_dtype = np_dtype
        self.reduce_channels = reduce_channels
        self.seed = seed
        self.device = device
        self.kwargs = attribute_kwargs
        self.uses_generator = seed is not None and _accepts_generator(method)

    def __call__(self, start: int, x: Tensor, y: Tensor | None) -> tuple[np.ndarray, Any]:
        x = x.to(self.device)
        targets = _targets(self.target, self.method, x, y, self.kwargs)
        kwargs = dict(self.kwargs)
        if self.seed is None:
            attr = self.method.attribute(x, target=targets, **kwargs)
        elif self.uses_generator:
            gen_device = x.device if x.device.type == "cuda" else torch.device("cpu")
            generator = torch.Generator(device=gen_device)
            generator.manual_seed(batch_seed(self.seed, start))
            attr = self.method.attribute(x, target=targets, generator=generator, **kwargs)
        else:
            devices = [x.device.index or 0] if x.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(batch_seed(self.seed, start))
                attr = self.method.attribute(x, target=targets, **kwargs)
        if isinstance(attr, tuple) and len(attr) == 1 and isinstance(attr[0], Tensor):
            attr = attr[0]
        if not isinstance(attr, Tensor):
            raise TypeError(
                "explain_dataset stores one tensor per example, but method.attribute returned "
                f"a {type(attr).__name__} (return_convergence_delta, return_error and "
                "multi-input methods are not supported)"
            )
        if attr.dim() == 0 or attr.shape[0] != len(x):
            raise ValueError(
                f"method.attribute returned shape {tuple(attr.shape)} for a batch of {len(x)}"
            )
        attr = _reduce(attr.detach(), self.reduce_channels)
        array = attr.to(torch.float32).cpu().numpy().astype(self.np_dtype, copy=False)
        return array, targets


# ----------------------------------------------------------------------------------------
# The store on disk.


def _diff(stored: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    lines = []
    for key in sorted(set(stored) | set(asked)):
        if stored.get(key) != asked.get(key):
            old = json.dumps(stored.get(key), sort_keys=True)
            new = json.dumps(asked.get(key), sort_keys=True)
            if len(old) + len(new) > 240:
                old, new = old[:117] + "...", new[:117] + "..."
            lines.append(f"  {key}: stored {old}, asked {new}")
    return lines


def _shard_range(k: int, shard_size: int, n: int) -> tuple[int, int]:
    return k * shard_size, min((k + 1) * shard_size, n)


def _shard_batches(k: int, sizes: tuple[int, int, int]) -> list[list[int]]:
    """The batches (lists of example indices) of shard ``k``; ``sizes`` = (n, shard, batch)."""
    n, shard_size, batch_size = sizes
    start, stop = _shard_range(k, shard_size, n)
    return [list(range(lo, min(lo + batch_size, stop))) for lo in range(start, stop, batch_size)]


def _read_manifest(root: Path, k: int, settings_sha: str, n: int, shard_size: int) -> dict:
    path = root / manifest_name(k)
    if not path.is_file():
        raise StoreError(f"shard {k} of {root} is not finished ({path.name} missing)")
    manifest = read_json(path)
    check_format(manifest, path)
    start, stop = _shard_range(k, shard_size, n)
    if (
        manifest.get("settings_sha256") != settings_sha
        or manifest.get("id") != k
        or (manifest.get("start"), manifest.get("stop")) != (start, stop)
    ):
        raise StoreError(f"{path} does not belong to this run")
    return manifest


def _finished_shard(root: Path, k: int, settings_sha: str, n: int, shard_size: int) -> bool:
    """Whether shard ``k`` is complete and intact (checksums verified)."""
    if not (root / manifest_name(k)).is_file():
        return False
    try:
        manifest = _read_manifest(root, k, settings_sha, n, shard_size)
        read_checked(root / manifest["file"], manifest["bytes"], manifest["sha256"])
        if manifest.get("targets_file") is not None:
            read_checked(
                root / manifest["targets_file"],
                manifest["targets_bytes"],
                manifest["targets_sha256"],
            )
    except (StoreError, KeyError, TypeError) as exc:
        # stacklevel 7: explain_dataset's frame, through _agree_on_plan, the lambda,
        # _plan_shards, _prepare and (Python 3.11) the comprehension in _prepare
        warn(f"recomputing shard {k}: {exc}", RuntimeWarning)
        return False
    return True


def _prepare(root: Path, settings: dict[str, Any], settings_sha: str) -> list[int]:
    """Create or check the store; return the ids of the shards still to compute."""
    if root.exists() and not root.is_dir():
        raise StoreError(f"out {root} exists and is not a directory")
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / _CONFIG_NAME
    if config_path.is_file():
        config = read_json(config_path)
        check_format(config, config_path)
        lines = _diff(config.get("settings", {}), settings)
        if lines:
            raise StoreError(
                f"the store at {root} was written with other settings; refusing to mix them:\n"
                + "\n".join(lines)
                + "\nUse another out directory, or delete this one to start over."
            )
    else:
        foreign = sorted(p.name for p in root.iterdir() if ".tmp-" not in p.name)
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise StoreError(
                f"out {root} is not empty and is not an attribution store (it holds {shown}); "
                "give an empty or new directory"
            )
        atomic_write_json(
            config_path, {"format": FORMAT, "version": FORMAT_VERSION, "settings": settings}
        )
    remove_temporary_files(root)
    n, shard_size = settings["num_examples"], settings["shard_size"]
    num_shards = -(-n // shard_size)
    pending = [
        k for k in range(num_shards) if not _finished_shard(root, k, settings_sha, n, shard_size)
    ]
    if pending and (root / _INDEX_NAME).exists():
        (root / _INDEX_NAME).unlink()  # a stale index must not outlive a damaged shard
    return pending


def _write_shard(
    root: Path,
    k: int,
    start: int,
    attrs: np.ndarray,
    targets: np.ndarray | None,
    settings_sha: str,
    data_sha: str,
) -> None:
    """Write the shard's files, then its manifest (the commit point)."""
    data = npy_bytes(attrs)
    atomic_write_bytes(root / shard_name(k), data)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "settings_sha256": settings_sha,
        "id": k,
        "start": start,
        "stop": start + len(attrs),
        "example_shape": list(attrs.shape[1:]),
        "dtype": str(attrs.dtype),
        "file": shard_name(k),
        "bytes": len(data),
        "sha256": sha256_bytes(data),
        "data_sha256": data_sha,
        "targets_file": None,
    }
    if targets is not None:
        tdata = npy_bytes(targets)
        atomic_write_bytes(root / targets_name(k), tdata)
        manifest["targets_file"] = targets_name(k)
        manifest["targets_bytes"] = len(tdata)
        manifest["targets_sha256"] = sha256_bytes(tdata)
    atomic_write_json(root / manifest_name(k), manifest)


def _write_index(root: Path, settings: dict[str, Any], settings_sha: str) -> None:
    n, shard_size = settings["num_examples"], settings["shard_size"]
    num_shards = -(-n // shard_size)
    shards = []
    for k in range(num_shards):
        try:
            manifest = _read_manifest(root, k, settings_sha, n, shard_size)
        except StoreError as exc:
            raise StoreError(
                f"{exc}; every rank must write to the same directory (a file system shared by "
                "all processes)"
            ) from None
        shards.append({key: v for key, v in manifest.items() if key not in ("format", "version")})
    shapes = {tuple(s["example_shape"]) for s in shards}
    if len(shapes) != 1:
        raise StoreError(f"the shards of {root} hold examples of different shapes: {shapes}")
    has_targets = all(s["targets_file"] is not None for s in shards)
    for s in shards:
        del s["example_shape"], s["dtype"], s["settings_sha256"]
        if not has_targets:
            for key in ("targets_file", "targets_bytes", "targets_sha256"):
                s.pop(key, None)
            s["targets_file"] = None
    index = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "settings": settings,
        "settings_sha256": settings_sha,
        "num_examples": n,
        "num_shards": num_shards,
        "example_shape": list(shapes.pop()),
        "dtype": settings["dtype"],
        "has_targets": has_targets,
        "shards": shards,
    }
    atomic_write_json(root / _INDEX_NAME, index)


# ----------------------------------------------------------------------------------------
# The entry point.


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
    ``out`` (numpy ``.npy`` shards with SHA-256 checksums, see :mod:`.store`). Memory is bounded
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
            settings (which is then resumed or, if finished, reopened).
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
        device: Where inputs go. Default: the device of the model's first parameter, else CPU.
        metadata: JSON-able data of yours stored with the settings (e.g. the data set's name);
            a different value refuses to resume. Default: None.
        **attribute_kwargs: Passed to every ``method.attribute`` call (``nt_samples``,
            ``bounds``, ``baselines``, ...); part of the settings fingerprint.

    Returns:
        The finished :class:`AttributionStore` (on every rank).

    Raises:
        TypeError: If an argument is of the wrong type, or ``method.attribute`` returns
            something other than one tensor.
        ValueError: If an argument is out of range, ``target="label"`` without labels, or the
            attributions do not match the batch.
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
    _check_method_and_out(method, out)
    source = as_source(data, num_workers)
    if batch_size is None:
        batch_size = source.default_batch_size or 64
    batch_size = check_positive_int(batch_size, "batch_size")
    shard_size = check_positive_int(shard_size, "shard_size")
    dtype_name = _check_dtype(dtype)
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got {type(overwrite).__name__}")
    _check_reduction(reduce_channels)
    _check_seed(seed, attribute_kwargs)
    if "target" in attribute_kwargs:
        raise TypeError("target is a keyword of explain_dataset, not an attribute kwarg")
    _check_target(target, source)
    if len(source) == 0:
        raise ValueError("data is empty")
    metadata = _check_metadata(metadata)
    forward_func = getattr(method, "forward_func", None)
    _warn_if_training(forward_func)
    device = torch.device(device) if device is not None else _default_device(forward_func)

    settings = _settings(
        method,
        target,
        attribute_kwargs,
        dtype=dtype_name,
        reduce_channels=reduce_channels,
        shard_size=shard_size,
        batch_size=batch_size,
        seed=seed,
        num_examples=len(source),
        metadata=metadata,
    )
    settings_sha = sha256_bytes(json.dumps(settings, sort_keys=True).encode())
    root = Path(out)
    sizes = (len(source), shard_size, batch_size)
    pending = _agree_on_plan(
        settings,
        lambda: _plan_shards(root, settings, settings_sha, source, overwrite, show_progress),
    )

    rank, world = _dist.rank_and_world()
    np_dtype = np.float16 if dtype_name == "float16" else np.float32
    runner = _BatchRunner(method, target, np_dtype, reduce_channels, seed, device, attribute_kwargs)
    progress = show_progress and rank == 0
    _run_shards(root, pending[rank::world], runner, source, settings_sha, sizes, progress)

    _dist.barrier()
    if rank == 0:
        _write_index(root, settings, settings_sha)
    _dist.barrier()
    return AttributionStore(root)


def _settings(
    method: Any, target: TargetLike, attribute_kwargs: dict[str, Any], **options: Any
) -> dict[str, Any]:
    """The run's settings as they read back from JSON: what a resumed run must match.

    Args:
        method: The attribution method.
        target: The ``target`` argument of :func:`explain_dataset`.
        attribute_kwargs: The kwargs passed to every ``method.attribute`` call.
        **options: The checked plain settings (dtype, reduce_channels, shard_size, batch_size,
            seed, num_examples, metadata), stored as they are.

    Returns:
        A JSON-able dict.
    """
    forward_func = getattr(method, "forward_func", None)
    settings: dict[str, Any] = {
        "method": _method_name(method),
        "model": _model_digest(forward_func),
        "target": _target_name(target),
        "attribute_kwargs": _canonical(attribute_kwargs),
        **options,
    }
    return json.loads(json.dumps(settings, sort_keys=True))


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
    sizes = (settings["num_examples"], settings["shard_size"], settings["batch_size"])
    n, shard_size = sizes[:2]
    finished = [k for k in range(-(-n // shard_size)) if k not in set(pending)]
    quiet = not show_progress or not finished
    manifests = (
        (k, _read_manifest(root, k, settings_sha, n, shard_size))
        for k in tqdm(finished, desc="checking stored data", unit="shard", disable=quiet)
    )
    changed = changed_shards(manifests, source, lambda k: _shard_batches(k, sizes))
    if changed and not overwrite:
        first, last = _shard_range(changed[0], shard_size, n)
        raise StoreError(
            f"the store at {root} was written for other data: the inputs or labels of "
            f"{len(changed)} finished shard(s) differ from the data given (first: shard "
            f"{changed[0]}, examples {first}..{last - 1}). Use another out directory, or pass "
            "overwrite=True to recompute the shards whose data changed."
        )
    if changed:
        (root / _INDEX_NAME).unlink(missing_ok=True)
        for k in changed:  # unfinished from now on, so that a killed rerun recomputes them
            (root / manifest_name(k)).unlink(missing_ok=True)
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
            "needed on every rank):\n" + "\n".join(_diff(other, settings))
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

    def add(self, lo: int, x: Tensor, y: Tensor | None, array: np.ndarray, targets: Any) -> None:
        """Store the attributions of examples ``lo, lo + 1, ...`` given inputs ``x``, ``y``."""
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
        stored = _storable_targets(targets, len(array))
        if stored is None:
            self.targets = None  # not one int per example: the shard keeps no targets
        elif self.targets is not None:
            self.targets[rows] = stored

    def write(self, root: Path, settings_sha: str) -> None:
        """Write the shard (its manifest last: the commit point)."""
        assert self.attrs is not None
        data_sha = self.fingerprint.hexdigest()
        _write_shard(root, self.k, self.start, self.attrs, self.targets, settings_sha, data_sha)


def _run_shards(
    root: Path,
    shards: list[int],
    runner: _BatchRunner,
    source: DataSource,
    settings_sha: str,
    sizes: tuple[int, int, int],
    show_progress: bool,
) -> None:
    from tqdm.auto import tqdm

    n, shard_size, _ = sizes
    world = _dist.rank_and_world()[1]
    plan = [(k, indices) for k in shards for indices in _shard_batches(k, sizes)]
    total = sum(len(indices) for _, indices in plan)
    desc = "explain_dataset" if world == 1 else f"explain_dataset (rank 0 of {world})"
    bar = tqdm(
        total=total,
        desc=desc,
        unit="ex",
        disable=not show_progress or total == 0,
        dynamic_ncols=True,
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
