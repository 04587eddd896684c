"""Random access to the data sets explain_dataset accepts, batch by batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    IterableDataset,
    SequentialSampler,
    default_collate,
)

__all__ = ["DataSource", "as_source"]

Batch = tuple[Tensor, "Tensor | None"]


def _as_tensor(value: Any, name: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    raise TypeError(f"{name} must be a tensor or numpy array, got {type(value).__name__}")


def _split(batch: Any) -> Batch:
    """``(inputs, labels or None)`` of one collated batch."""
    if isinstance(batch, (tuple, list)):
        if len(batch) == 0:
            raise ValueError("data gave an empty item; expected x or (x, y)")
        x = batch[0]
        y = batch[1] if len(batch) >= 2 else None
    else:
        x, y = batch, None
    if not isinstance(x, Tensor):
        raise TypeError(
            "data must give one input tensor per example (x or (x, y)); got inputs of type "
            f"{type(x).__name__} (multi-input models are not supported by explain_dataset)"
        )
    if y is not None and not isinstance(y, Tensor):
        y = torch.as_tensor(y)
    return x, y


class DataSource:
    """A data set of known length read by lists of example indices.

    Args:
        length: Number of examples.
        has_labels: Whether batches come with labels.
        fetch: ``fetch(batches)`` yields one ``(x, y or None)`` per list of indices, in order.
        default_batch_size: Batch size to use when the caller gives none.
    """

    def __init__(
        self,
        length: int,
        has_labels: bool,
        fetch: Callable[[Sequence[Sequence[int]]], Iterator[Batch]],
        default_batch_size: int | None = None,
    ) -> None:
        self.length = length
        self.has_labels = has_labels
        self.default_batch_size = default_batch_size
        self._fetch = fetch

    def __len__(self) -> int:
        return self.length

    def batches(self, index_lists: Sequence[Sequence[int]]) -> Iterator[Batch]:
        """One ``(x, y or None)`` per list of example indices, in the order given."""
        return self._fetch(index_lists)


def _tensor_source(x: Tensor, y: Tensor | None) -> DataSource:
    if x.dim() == 0:
        raise ValueError("data tensor must have a batch dimension")
    if y is not None and (y.dim() == 0 or len(y) != len(x)):
        raise ValueError(
            f"data labels must have one entry per example: {len(x)} inputs, labels of shape "
            f"{tuple(y.shape)}"
        )

    def fetch(index_lists: Sequence[Sequence[int]]) -> Iterator[Batch]:
        for indices in index_lists:
            lo, hi = indices[0], indices[-1] + 1
            if hi - lo == len(indices):  # a contiguous range: a view, no copy
                yield x[lo:hi], None if y is None else y[lo:hi]
            else:
                idx = torch.as_tensor(list(indices))
                yield x[idx], None if y is None else y[idx]

    return DataSource(len(x), y is not None, fetch)


def _loader_source(
    dataset: Dataset[Any],
    collate_fn: Callable[[list[Any]], Any],
    num_workers: int,
    loader_kwargs: dict[str, Any],
    default_batch_size: int | None,
) -> DataSource:
    try:
        length = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError("data must have a length (a map-style Dataset with __len__)") from None
    has_labels = False
    if length > 0:
        _, y = _split(collate_fn([dataset[0]]))
        has_labels = y is not None

    def fetch(index_lists: Sequence[Sequence[int]]) -> Iterator[Batch]:
        if not index_lists:
            return
        loader = DataLoader(
            dataset,
            batch_sampler=[list(indices) for indices in index_lists],
            num_workers=num_workers,
            collate_fn=collate_fn,
            **loader_kwargs,
        )
        for batch in loader:
            yield _split(batch)

    return DataSource(length, has_labels, fetch, default_batch_size)


def as_source(data: Any, num_workers: int | None) -> DataSource:
    """Wrap ``data`` for reading by index.

    Args:
        data: A map-style ``Dataset`` giving ``x`` or ``(x, y, ...)``; a ``DataLoader`` over
            one, in its natural order (its collate function, workers and pinning are kept);
            a tensor of inputs; or a ``(inputs, labels)`` pair of tensors or numpy arrays.
        num_workers: Loader worker processes for datasets (None: the DataLoader's, else 0).

    Returns:
        A :class:`DataSource`.

    Raises:
        TypeError: If ``data`` is of none of these kinds, or an iterable-style dataset.
        ValueError: If a DataLoader shuffles or has a custom sampler, or labels do not match.
    """
    if num_workers is not None and (
        isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0
    ):
        raise ValueError(f"num_workers must be a non-negative int or None, got {num_workers!r}")
    if isinstance(data, (Tensor, np.ndarray)):
        return _tensor_source(_as_tensor(data, "data"), None)
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data, Dataset):
        return _tensor_source(_as_tensor(data[0], "data[0]"), _as_tensor(data[1], "data[1]"))
    if isinstance(data, DataLoader):
        if isinstance(data.dataset, IterableDataset):
            raise TypeError(
                "data is a DataLoader over an IterableDataset; explain_dataset needs random "
                "access to resume and to split the work (a map-style Dataset with __len__)"
            )
        sequential = isinstance(data.sampler, SequentialSampler)
        if not sequential or type(data.batch_sampler) is not BatchSampler:
            raise ValueError(
                "data is a DataLoader that shuffles or has a custom sampler; explain_dataset "
                "stores examples in data order, so pass an unshuffled, batched DataLoader or the "
                "Dataset"
            )
        loader_kwargs: dict[str, Any] = {
            "pin_memory": data.pin_memory,
            "worker_init_fn": data.worker_init_fn,
        }
        workers = data.num_workers if num_workers is None else num_workers
        if workers > 0:
            loader_kwargs["multiprocessing_context"] = data.multiprocessing_context
        return _loader_source(
            data.dataset, data.collate_fn, workers, loader_kwargs, data.batch_size
        )
    if isinstance(data, IterableDataset):
        raise TypeError(
            "data is an IterableDataset; explain_dataset needs random access to resume and to "
            "split the work (a map-style Dataset with __len__)"
        )
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        return _loader_source(data, default_collate, num_workers or 0, {}, None)
    raise TypeError(
        "data must be a map-style Dataset, a DataLoader, a tensor or an (inputs, labels) pair, "
        f"got {type(data).__name__}"
    )
