"""One batch through the attribution method: seed, targets, reduction and storage dtype.

Reproducibility: every batch gets its own seed, derived from the run's seed and the index of
its first example (:func:`batch_seed`). A method whose ``attribute`` takes a ``generator``
argument (the methods of captum_smooth) gets a ``torch.Generator`` seeded with it; any other
method runs with torch's global random state seeded with it (and restored afterwards).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..core.random_state import derive_seed
from ._settings import TargetLike

__all__ = ["BatchRunner", "batch_seed"]


def batch_seed(seed: int, start: int) -> int:
    """The seed of the batch whose first example is ``start``: a 63-bit int.

    The one seed derivation of the package (:func:`~captum_smooth.core.random_state.derive_seed`,
    numpy's ``SeedSequence``) of ``(seed, start)``, so that it depends on the
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
    return derive_seed(seed, start)


def _accepts_generator(method: Any) -> bool:
    """Whether ``method.attribute`` takes ``generator`` by name."""
    try:
        params = inspect.signature(method.attribute).parameters
    except (TypeError, ValueError):
        return False
    param = params.get("generator")
    return param is not None and param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD)


def _forward(method: Any, x: Tensor, kwargs: dict[str, Any]) -> Any:
    """The model's output on ``x`` (with the ``additional_forward_args`` of ``kwargs``)."""
    extra = kwargs.get("additional_forward_args")
    if extra is None:
        extra = ()
    elif not isinstance(extra, tuple):
        extra = (extra,)
    with torch.no_grad():
        return method.forward_func(x, *extra)


def _check_inputs(start: int, x: Tensor) -> None:
    """Refuse a batch whose inputs hold NaN or inf (their maps would be NaN, silently)."""
    if not x.is_floating_point() or len(x) == 0:
        return
    finite = torch.isfinite(x.reshape(len(x), -1)).all(dim=1)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0])
        raise ValueError(f"data: example {start + bad} holds NaN or inf values")


def _check_labels(start: int, y: Tensor, num_classes: int | None) -> None:
    """Refuse labels that are not class indices (of the model's ``num_classes``, if known)."""
    if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(
            "target='label' needs labels that are integer class indices, one per example; "
            f"data gives {y.dtype} labels of shape {tuple(y.shape)}"
        )
    if num_classes is not None and len(y):
        bad = ((y < 0) | (y >= num_classes)).nonzero()
        if len(bad):
            i = int(bad[0])
            raise ValueError(
                f"target='label': the label {int(y[i])} of example {start + i} is not a class "
                f"of the model's {num_classes} outputs"
            )


def _targets(
    target: TargetLike, method: Any, x: Tensor, y: Tensor | None, kwargs: dict[str, Any]
) -> Any:
    """The ``target`` to pass to ``method.attribute`` for inputs ``x`` and labels ``y``."""
    if target == "label":
        assert y is not None
        return y.to(x.device)
    if target == "prediction":
        out = _forward(method, x, kwargs)
        if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != len(x):
            raise ValueError(
                "target='prediction' needs a model output of shape (batch, classes), got "
                f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}"
            )
        return out.argmax(dim=1)
    if callable(target):
        return _checked_callable_targets(target(x, y), len(x))
    return target


def _checked_callable_targets(targets: Any, n: int) -> Any:
    """What a ``target`` callable gave for a batch of ``n``, if Captum can take it as a target:
    None, an int, an integer tensor of no or ``n`` entries, or a list of ``n``."""
    if targets is None or (isinstance(targets, int) and not isinstance(targets, bool)):
        return targets
    if isinstance(targets, Tensor):
        integer = not (targets.is_floating_point() or targets.is_complex())
        if integer and targets.dtype != torch.bool and targets.numel() in (1, n):
            return targets
    elif isinstance(targets, list) and len(targets) == n:
        return targets
    shown = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
    raise TypeError(
        f"the target callable must give an int, an integer tensor of {n} entries or a list of "
        f"{n} for a batch of {n}, got {shown}"
    )


def _storable_targets(targets: Any, n: int) -> np.ndarray | None:
    """``targets`` as one int64 per example of ``n``, or None if they are not of that form."""
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
    """``attr`` reduced over dimension 1 (the channels) as ``reduce_channels`` says."""
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


class BatchRunner:
    """Runs the method on one batch with its seed, targets, reduction and dtype.

    Args:
        method: The attribution method.
        target: The ``target`` argument of explain_dataset.
        np_dtype: The numpy storage dtype.
        reduce_channels: The channel reduction, or None.
        seed: The run's seed, or None for no seeding.
        device: Where inputs go.
        attribute_kwargs: Passed to every ``method.attribute`` call.
    """

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
        self._classes: list[int | None] = []  # the model's outputs per example, once known

    def _num_classes(self, x: Tensor) -> int | None:
        """The size of the model's ``(batch, classes)`` output (one forward, on the first batch);
        None when the output is not of that form, there is no ``forward_func``, or the model
        is in training mode."""
        if not self._classes:
            out = None
            forward_func = getattr(self.method, "forward_func", None)
            module = getattr(forward_func, "__self__", forward_func)
            # a model in training mode would change its BatchNorm statistics: no extra forward
            training = isinstance(module, torch.nn.Module) and module.training
            if callable(forward_func) and not training:
                out = _forward(self.method, x, self.kwargs)
            if isinstance(out, Tensor) and out.dim() == 2 and out.shape[0] == len(x):
                self._classes.append(int(out.shape[1]))
            else:
                self._classes.append(None)
        return self._classes[0]

    def __call__(self, start: int, x: Tensor, y: Tensor | None) -> tuple[np.ndarray, Any]:
        """Attribute one batch.

        Args:
            start: Index of the batch's first example in the data set (its seed's source).
            x: The inputs.
            y: The labels, or None.

        Returns:
            ``(attributions in the storage dtype, targets)``: the targets are an int64 array,
            one per example, or None when they are not one int per example (not stored).
        """
        _check_inputs(start, x)
        x = x.to(self.device)
        if self.target == "label" and y is not None:
            _check_labels(start, y, self._num_classes(x))
        elif isinstance(self.target, int) and not isinstance(self.target, bool):
            classes = self._num_classes(x)
            if classes is not None and not -classes <= self.target < classes:
                raise ValueError(
                    f"target {self.target} is not a class of the model's {classes} outputs"
                )
        targets = _targets(self.target, self.method, x, y, self.kwargs)
        attr = _one_tensor(self._attribute(start, x, targets), len(x))
        attr = _reduce(attr.detach(), self.reduce_channels)
        array: np.ndarray = attr.to(torch.float32).cpu().numpy()
        return array.astype(self.np_dtype, copy=False), _storable_targets(targets, len(x))

    def _attribute(self, start: int, x: Tensor, targets: Any) -> Any:
        """``method.attribute`` under the batch's seed (a generator, or torch's global RNG)."""
        kwargs = dict(self.kwargs)
        if self.seed is None:
            return self.method.attribute(x, target=targets, **kwargs)
        if self.uses_generator:
            gen_device = x.device if x.device.type == "cuda" else torch.device("cpu")
            generator = torch.Generator(device=gen_device)
            generator.manual_seed(batch_seed(self.seed, start))
            return self.method.attribute(x, target=targets, generator=generator, **kwargs)
        devices = [x.device.index or 0] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(batch_seed(self.seed, start))
            return self.method.attribute(x, target=targets, **kwargs)


def _one_tensor(attr: Any, n: int) -> Tensor:
    """The attributions of a batch of ``n`` as one tensor (a 1-tuple is unpacked)."""
    if isinstance(attr, tuple) and len(attr) == 1 and isinstance(attr[0], Tensor):
        attr = attr[0]
    if not isinstance(attr, Tensor):
        raise TypeError(
            "explain_dataset stores one tensor per example, but method.attribute returned "
            f"a {type(attr).__name__} (return_convergence_delta, return_error and "
            "multi-input methods are not supported)"
        )
    if attr.dim() == 0 or attr.shape[0] != n:
        raise ValueError(f"method.attribute returned shape {tuple(attr.shape)} for a batch of {n}")
    return attr
