"""Streaming statistics of the sampled attributions: memory bounded by one chunk.

The smoothing loop feeds each chunk of attributions (``b * k`` rows, example-major: the ``k``
samples of one example are adjacent) into :class:`StreamingMoments`, which keeps per example the
count, the mean and the sums of powers of deviations (Welford's algorithm with the pairwise merge
of Chan et al. and, for the third and fourth, Pébay 2008). From these come the three reducers of
Captum's NoiseTunnel:

* ``smoothgrad``: the mean;
* ``smoothgrad_sq``: the mean of squares, ``M2 / n + mean**2`` (no square root, as Captum);
* ``vargrad``: the population variance ``M2 / n``: numerically stable and never negative,
  unlike ``E[a^2] - E[a]^2``;

and their Monte-Carlo standard errors (:meth:`StreamingMoments.standard_error`): from ``M2``
for the mean, and from the third and fourth central moments (tracked on request) for the mean
of squares and the variance. Samples whose attribution contains a NaN are dropped per example and
counted. A chunk may cover a subset of the examples (those still sampling).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Union, runtime_checkable

import torch
from torch import Tensor

from ..registry import Registry

NtType = Literal["smoothgrad", "smoothgrad_sq", "vargrad"]
#: Captum's NoiseTunnel reducers (``nt_type``), built in here.
NT_TYPES: tuple[str, ...] = ("smoothgrad", "smoothgrad_sq", "vargrad")

__all__ = [
    "NT_TYPES",
    "REDUCERS",
    "REDUCER_FLAGS",
    "REDUCER_MEMBERS",
    "CountingReducer",
    "ErrorReducer",
    "MeanReducer",
    "MeanSquareReducer",
    "NtType",
    "Reducer",
    "ReducerFactory",
    "ReducerTraits",
    "StreamingMoments",
    "VarianceReducer",
    "get_reducer",
    "make_reducer",
    "reducer_names",
    "register_reducer",
]


@runtime_checkable
class Reducer(Protocol):
    """What the loop feeds the sampled attributions into: the required members.

    A reducer is made per call by a factory: ``factory(batch_size)`` returns it (a factory may
    also take the keyword ``track_error: bool``, told whether ``standard_error()`` will be
    asked for). Every member the loop reads, required or optional (:data:`REDUCER_MEMBERS`):

    * ``update(attributions, k, rows=None)`` (required): ``attributions`` is a tuple of tensors
      holding one chunk of ``k`` samples of each example being sampled, example-major (the
      ``k`` rows of one example adjacent): ``len(rows) * k`` rows, or ``batch_size * k`` when
      ``rows`` is None; ``rows`` are the indices of the examples the chunk covers. What it
      returns is ignored;
    * ``result()`` (required): a tuple of tensors with one row per example;
    * ``standard_error()`` (optional, :class:`ErrorReducer`): the Monte-Carlo standard error of
      ``result()``, same shapes. Without it ``return_error`` and ``tolerance`` are refused (a
      ``ValueError`` says so) and the report carries no error;
    * ``count`` and ``n_dropped`` (optional, :class:`CountingReducer`): tensors ``(B,)`` (None
      before the first update) of the samples used and dropped per example, for the report.
      Without them the report counts every sample fed and none dropped;
    * ``draw_average`` (optional flag, default False): ``result()`` of all samples is the
      average of the results of the weight draws (the mean, the mean of squares): the error
      under weight noise is then the spread between draws, and ``standard_error()`` is not
      needed for it;
    * ``error_is_free`` (optional flag, default False, with ``standard_error()``): the error
      costs nothing beyond what ``result()`` keeps, so the loop reports it even unasked.

    The loop tests the optional methods and counts with ``isinstance`` against
    :class:`ErrorReducer` and :class:`CountingReducer`, and reads the flags through
    :meth:`ReducerTraits.of`, which gathers all four (defaults filled in).
    """

    def update(
        self, attributions: tuple[Tensor, ...], k: int, rows: Tensor | None = None
    ) -> Any: ...

    def result(self) -> tuple[Tensor, ...]: ...


@runtime_checkable
class ErrorReducer(Reducer, Protocol):
    """A reducer that knows the Monte-Carlo standard error of its result (see :class:`Reducer`)."""

    def standard_error(self) -> tuple[Tensor, ...]:
        """The per-element standard error of ``result()``: a tuple of the same shapes."""
        ...


@runtime_checkable
class CountingReducer(Reducer, Protocol):
    """A reducer that counts the samples it used and dropped (see :class:`Reducer`).

    Attributes:
        count: Valid samples per example ``(B,)``, None before the first update.
        n_dropped: Samples dropped per example (e.g. for NaNs) ``(B,)``, None before the first
            update.
    """

    @property
    def count(self) -> Tensor | None: ...

    @property
    def n_dropped(self) -> Tensor | None: ...


#: The optional flags of a reducer and the value assumed when a reducer does not set one.
REDUCER_FLAGS: dict[str, bool] = {"draw_average": False, "error_is_free": False}

#: Every member the loop reads of a reducer: name -> required.
REDUCER_MEMBERS: dict[str, bool] = {
    "update": True,
    "result": True,
    "standard_error": False,
    "count": False,
    "n_dropped": False,
    **dict.fromkeys(REDUCER_FLAGS, False),
}


def _flag(reducer: Reducer, name: str) -> bool:
    # The one place an optional flag is read: a flag is a plain class or instance attribute,
    # which no Protocol can give a default to.
    return bool(getattr(reducer, name, REDUCER_FLAGS[name]))


@dataclass(frozen=True)
class ReducerTraits:
    """The optional members of one reducer (see :class:`Reducer`), read once, defaults filled.

    Attributes:
        has_error: It has ``standard_error()`` (an :class:`ErrorReducer`).
        counts: It has ``count`` and ``n_dropped`` (a :class:`CountingReducer`).
        draw_average: Its result averages the weight draws' results.
        error_is_free: Its error is reported even unasked (only with ``has_error``).
    """

    has_error: bool
    counts: bool
    draw_average: bool
    error_is_free: bool

    @classmethod
    def of(cls, reducer: Reducer) -> ReducerTraits:
        """Read the optional members of ``reducer``.

        Args:
            reducer: Any reducer.

        Returns:
            Its traits.
        """
        has_error = isinstance(reducer, ErrorReducer)
        return cls(
            has_error=has_error,
            counts=isinstance(reducer, CountingReducer),
            draw_average=_flag(reducer, "draw_average"),
            error_is_free=has_error and _flag(reducer, "error_is_free"),
        )


ReducerFactory = Callable[..., Reducer]
ReducerLike = Union[str, ReducerFactory]

#: The reducers by name: :func:`register_reducer` adds to it; ``nt_type`` and ``reducer``
#: take its names; the command line, the README's list and the tests read it.
REDUCERS: Registry[ReducerFactory] = Registry("reducer", "reducer")


def register_reducer(name: str, *, aliases: tuple[str, ...] = ()) -> Callable[[Any], Any]:
    """Register a reducer factory (a class or a function of ``batch_size``) under ``name``.

    Once registered, ``nt_type="name"`` or ``reducer="name"`` selects it in every method, and
    :func:`reducer_names` lists it.

    Args:
        name: The reducer's name (case-insensitive; ``-`` and spaces read as ``_``).
        aliases: Other names for it.

    Returns:
        The decorator (it returns the factory unchanged).

    Examples::

        >>> @register_reducer("maximum")
        ... class Maximum:
        ...     def __init__(self, batch_size): self.best = None
        ...     def update(self, attributions, k, rows=None): ...
        ...     def result(self): return self.best
    """
    add = REDUCERS.register(name, aliases=aliases)

    def _check_and_add(factory: Any) -> Any:
        if not callable(factory):
            raise TypeError(f"register_reducer takes a callable factory, got {factory!r}")
        return add(factory)

    return _check_and_add


def reducer_names() -> list[str]:
    """The registered reducer names, Captum's ``nt_type`` names first."""
    return REDUCERS.names()


def get_reducer(reducer: ReducerLike) -> ReducerFactory:
    """A reducer factory from a registered name or a factory (returned as it is).

    Raises:
        ValueError: Unknown name (the message lists the registered ones).
        TypeError: Neither a string nor a callable.
    """
    if isinstance(reducer, str):
        return REDUCERS.get(reducer)
    if callable(reducer):
        return reducer
    raise TypeError(
        f"`reducer` must be a registered name ({REDUCERS}) or a factory "
        f"`factory(batch_size) -> reducer`, got {type(reducer).__name__}"
    )


def make_reducer(factory: ReducerFactory, batch_size: int, *, track_error: bool) -> Reducer:
    """Call ``factory(batch_size)``, passing ``track_error`` when the factory takes it.

    Raises:
        TypeError: The object made lacks ``update`` or ``result``.
    """
    try:
        takes_flag = "track_error" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes_flag = False
    reducer = factory(batch_size, track_error=track_error) if takes_flag else factory(batch_size)
    if not (isinstance(reducer, Reducer) and callable(reducer.update) and callable(reducer.result)):
        raise TypeError(
            f"the reducer factory {factory!r} made {type(reducer).__name__}, which lacks "
            "`update(attributions, k, rows=None)` or `result()`"
        )
    return reducer


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision sums lose digits quickly over many samples: accumulate in float32 at least.
    if dtype in (torch.float16, torch.bfloat16) or not dtype.is_floating_point:
        return torch.float32
    return dtype


class StreamingMoments:
    """Per-example running count, mean and central-moment sums of a tuple of tensors.

    Args:
        batch_size: The number of examples ``B``.
        higher_moments: Also track the third and fourth central moments (needed for the standard
            errors of ``smoothgrad_sq`` and ``vargrad``). Default: False.

    Examples::

        >>> moments = StreamingMoments(batch_size=1)
        >>> moments.update((torch.tensor([[1.0], [3.0]]),), samples_per_example=2)
        tensor([0])
        >>> moments.reduce("vargrad")
        (tensor([[1.]]),)
    """

    def __init__(self, batch_size: int, higher_moments: bool = False) -> None:
        self.batch_size = batch_size
        self.higher_moments = higher_moments
        self.count: Tensor | None = None
        self.n_dropped: Tensor | None = None
        self.mean: list[Tensor] = []
        self.m2: list[Tensor] = []
        self.m3: list[Tensor] = []
        self.m4: list[Tensor] = []
        self._dtypes: list[torch.dtype] = []

    def update(
        self,
        attributions: tuple[Tensor, ...],
        samples_per_example: int,
        rows: Tensor | None = None,
    ) -> Tensor:
        """Merge one chunk of ``b * k`` attribution rows.

        Args:
            attributions: Tensors with ``b * samples_per_example`` rows each, example-major.
            samples_per_example: ``k``.
            rows: The indices of the ``b`` examples the chunk covers (None: all ``B``).

        Returns:
            The number of samples dropped for NaNs in this chunk, per covered example ``(b,)``.
        """
        b = self.batch_size if rows is None else int(rows.numel())
        views = _example_views(attributions, b, samples_per_example)
        valid = _valid_samples(views)
        n_chunk = valid.sum(dim=1)
        first = self.count is None
        if self.count is None:
            self.count = torch.zeros(self.batch_size, dtype=torch.long, device=valid.device)
            self.n_dropped = torch.zeros_like(self.count)
            self._dtypes = [v.dtype for v in views]
        n_old = self.count if rows is None else self.count[rows]
        # NaN samples are rare: without any, skip the masking (two passes over the chunk).
        mask = None if bool(valid.all()) else valid
        for i, view in enumerate(views):
            chunk = self._chunk_moments(view, n_chunk, mask)
            if first and rows is None:
                # The first chunk's statistics are taken as they are (bit for bit Captum's mean).
                self._stores_append(chunk)
                continue
            if first:
                self._stores_append([c.new_zeros((self.batch_size, *c.shape[1:])) for c in chunk])
            self._merge_into(i, n_old, n_chunk, chunk, rows)
        self._count_samples(n_chunk, samples_per_example - n_chunk, rows)
        return samples_per_example - n_chunk

    def _stores(self) -> tuple[list[Tensor], ...]:
        stores = (self.mean, self.m2, self.m3, self.m4)
        return stores if self.higher_moments else stores[:2]

    def _stores_append(self, values: list[Tensor]) -> None:
        for store, value in zip(self._stores(), values):
            store.append(value)

    def _chunk_moments(self, view: Tensor, n_chunk: Tensor, mask: Tensor | None) -> list[Tensor]:
        """Mean and sums of powers of deviations of one chunk ``(b, k, ...)``, NaN rows masked."""
        b, k = view.shape[:2]
        acc_dtype = _accumulation_dtype(view.dtype)
        x = view.to(acc_dtype)
        if mask is None:
            mean_c = x.sum(dim=1) / k
            dev = x - mean_c.unsqueeze(1)
        else:
            n_c = n_chunk.to(acc_dtype).reshape((b,) + (1,) * (x.dim() - 2))
            mask = mask.reshape((b, k) + (1,) * (x.dim() - 2))
            zero = torch.zeros((), dtype=acc_dtype, device=x.device)
            x = torch.where(mask, x, zero)
            mean_c = x.sum(dim=1) / n_c.clamp_min(1)
            dev = torch.where(mask, x - mean_c.unsqueeze(1), zero)
        dev2 = dev * dev
        chunk = [mean_c, dev2.sum(dim=1)]
        if self.higher_moments:
            dev3 = dev2 * dev
            chunk += [dev3.sum(dim=1), dev3.mul_(dev).sum(dim=1)]
        return chunk

    def _merge_into(
        self, i: int, n_old: Tensor, n_chunk: Tensor, chunk: list[Tensor], rows: Tensor | None
    ) -> None:
        """Merge a chunk's statistics into tensor ``i``'s running ones (rows or all examples)."""
        old = [store[i] for store in self._stores()]
        if rows is not None:
            old = [t[rows] for t in old]
        shape = (n_old.shape[0],) + (1,) * (chunk[0].dim() - 1)
        dtype = chunk[0].dtype
        n_a = n_old.to(dtype).reshape(shape)
        merged = _merge(n_a, old, n_chunk.to(dtype).reshape(shape), chunk)
        # Examples without earlier samples take the chunk's statistics as they are.
        if not bool((n_a > 0).all()):
            merged = [torch.where(n_a > 0, m, c) for m, c in zip(merged, chunk)]
        for store, value in zip(self._stores(), merged):
            store[i] = value if rows is None else store[i].index_copy(0, rows, value)

    def _count_samples(self, n_chunk: Tensor, dropped: Tensor, rows: Tensor | None) -> None:
        assert self.count is not None and self.n_dropped is not None
        if rows is None:
            self.count = self.count + n_chunk
            self.n_dropped = self.n_dropped + dropped
        else:
            self.count = self.count.index_add(0, rows, n_chunk)
            self.n_dropped = self.n_dropped.index_add(0, rows, dropped)

    def _counts(self, like: Tensor) -> Tensor:
        if self.count is None:
            raise RuntimeError("no attribution was accumulated")
        return self.count.to(like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))

    def reduce(self, nt_type: str) -> tuple[Tensor, ...]:
        """Return the reduced attributions (one tensor per attribution tensor).

        Args:
            nt_type: ``smoothgrad`` (mean), ``smoothgrad_sq`` (mean of squares) or ``vargrad``
                (population variance). Examples with no valid sample give NaN.

        Returns:
            A tuple of ``(B, ...)`` tensors in the dtype the attribution method returned.
        """
        if nt_type not in NT_TYPES:
            raise ValueError(f"`nt_type` must be one of {NT_TYPES}, got {nt_type!r}")
        out = []
        for mean, m2, dtype in zip(self.mean, self.m2, self._dtypes):
            n = self._counts(mean)
            variance = m2 / n  # NaN where n == 0: nothing valid to average.
            if nt_type == "smoothgrad":
                value = torch.where(n > 0, mean, torch.full_like(mean, float("nan")))
            elif nt_type == "smoothgrad_sq":
                value = variance + mean * mean
            else:
                value = variance
            out.append(value.to(dtype) if dtype.is_floating_point else value)
        return tuple(out)

    def standard_error(self, nt_type: str) -> tuple[Tensor, ...]:
        """Monte-Carlo standard error of :meth:`reduce`'s result, per element.

        For the mean, ``sqrt(s^2 / n)`` with the unbiased sample variance ``s^2``. For the mean
        of squares, the same with the variance of ``a^2`` written in central moments,
        ``m4 + 4 mu m3 + 4 mu^2 m2 - m2^2``; for the variance, the asymptotic
        ``sqrt((m4 - m2^2) / (n - 1))``. Both need ``higher_moments=True``. ``inf`` where fewer
        than two samples are valid. Samples are assumed independent (see the nested estimate
        of the loop for weight noise).

        Args:
            nt_type: The reducer whose error is wanted.

        Returns:
            A tuple of ``(B, ...)`` float tensors.
        """
        if nt_type != "smoothgrad" and not self.higher_moments:
            raise RuntimeError(f"the standard error of {nt_type} needs higher_moments=True")
        out = []
        for i, mean in enumerate(self.mean):
            n = self._counts(mean)
            m2 = self.m2[i] / n
            if nt_type == "smoothgrad":
                spread = m2
            else:
                m3, m4 = self.m3[i] / n, self.m4[i] / n
                if nt_type == "smoothgrad_sq":
                    spread = m4 + 4 * mean * m3 + 4 * mean * mean * m2 - m2 * m2
                else:
                    spread = m4 - m2 * m2
            se = (spread.clamp_min(0) / (n - 1)).sqrt()
            out.append(torch.where(n > 1, se, torch.full_like(se, float("inf"))))
        return tuple(out)


def _example_views(attributions: tuple[Tensor, ...], b: int, k: int) -> list[Tensor]:
    """``(b * k, ...)`` rows as ``(b, k, ...)`` views, checking the row count."""
    views = []
    for attr in attributions:
        if attr.shape[0] != b * k:
            raise ValueError(
                f"the attribution method returned {attr.shape[0]} rows for {b} example(s) x "
                f"{k} sample(s); expected one row per noisy sample"
            )
        views.append(attr.detach().reshape((b, k, *attr.shape[1:])))
    return views


def _valid_samples(views: list[Tensor]) -> Tensor:
    """``(b, k)``: a sample is valid when none of its attribution tensors holds a NaN."""
    b, k = views[0].shape[:2]
    valid = torch.ones(b, k, dtype=torch.bool, device=views[0].device)
    for view in views:
        if view.is_floating_point():
            valid &= ~torch.isnan(view.reshape(b, k, -1)).any(dim=2)
    return valid


def _merge(n_a: Tensor, a: list[Tensor], n_b: Tensor, b: list[Tensor]) -> list[Tensor]:
    """Merge (mean, M2[, M3, M4]) of two disjoint sample sets (Chan et al.; Pébay 2008).

    The counts are ``(b, 1, ...)``: their products are formed first, so that each term costs as
    few passes over the full-size statistics as possible.
    """
    n = (n_a + n_b).clamp_min(1)
    delta = b[0] - a[0]
    delta_n = delta / n
    mean = a[0] + delta_n * n_b
    nab = n_a * n_b
    delta_delta_n = delta * delta_n
    m2 = a[1] + b[1] + delta_delta_n * nab
    if len(a) == 2:
        return [mean, m2]
    # delta^3 / n^2 and delta^4 / n^3, from the products already formed.
    d3 = delta_delta_n * delta_n
    d4 = d3 * delta_n
    m3 = a[2] + b[2] + d3 * (nab * (n_a - n_b)) + delta_n * ((3 * n_a) * b[1] - (3 * n_b) * a[1])
    m4 = (
        a[3]
        + b[3]
        + d4 * (nab * (n_a * n_a - nab + n_b * n_b))
        + (delta_n * delta_n) * ((6 * n_a * n_a) * b[1] + (6 * n_b * n_b) * a[1])
        + delta_n * ((4 * n_a) * b[2] - (4 * n_b) * a[2])
    )
    return [mean, m2, m3, m4]


class _MomentReducer:
    """A built-in reducer: streaming moments reduced to one of Captum's statistics."""

    #: Captum's ``nt_type`` name of the statistic.
    statistic: str = "smoothgrad"
    #: Whether the standard error needs the third and fourth moments.
    needs_higher_moments: bool = True
    draw_average: bool = True

    def __init__(self, batch_size: int, *, track_error: bool = False) -> None:
        self.moments = StreamingMoments(
            batch_size, higher_moments=track_error and self.needs_higher_moments
        )

    def update(
        self, attributions: tuple[Tensor, ...], k: int, rows: Tensor | None = None
    ) -> Tensor:
        return self.moments.update(attributions, k, rows=rows)

    def result(self) -> tuple[Tensor, ...]:
        return self.moments.reduce(self.statistic)

    def standard_error(self) -> tuple[Tensor, ...]:
        return self.moments.standard_error(self.statistic)

    @property
    def count(self) -> Tensor | None:
        return self.moments.count

    @property
    def n_dropped(self) -> Tensor | None:
        return self.moments.n_dropped

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_size={self.moments.batch_size})"


@register_reducer("smoothgrad", aliases=("mean",))
class MeanReducer(_MomentReducer):
    """The mean of the samples (Captum's ``smoothgrad``); its error needs no extra moment."""

    statistic = "smoothgrad"
    needs_higher_moments = False
    #: Its standard error comes from the moments it keeps anyway: the loop reports it unasked.
    error_is_free = True


@register_reducer("smoothgrad_sq", aliases=("mean_square",))
class MeanSquareReducer(_MomentReducer):
    """The mean of squares, no square root (Captum's ``smoothgrad_sq``)."""

    statistic = "smoothgrad_sq"


@register_reducer("vargrad", aliases=("variance",))
class VarianceReducer(_MomentReducer):
    """The population variance (Captum's ``vargrad``), never negative.

    Not an average of per-draw variances: under weight noise its error stays the i.i.d. one.
    """

    statistic = "vargrad"
    draw_average = False
