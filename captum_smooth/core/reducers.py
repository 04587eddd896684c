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

from typing import Literal

import torch
from torch import Tensor

NtType = Literal["smoothgrad", "smoothgrad_sq", "vargrad"]
NT_TYPES: tuple[str, ...] = ("smoothgrad", "smoothgrad_sq", "vargrad")

__all__ = ["NT_TYPES", "NtType", "StreamingMoments"]


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
        k = samples_per_example
        views = []
        for attr in attributions:
            if attr.shape[0] != b * k:
                raise ValueError(
                    f"the attribution method returned {attr.shape[0]} rows for {b} example(s) x "
                    f"{k} sample(s); expected one row per noisy sample"
                )
            views.append(attr.detach().reshape((b, k, *attr.shape[1:])))
        device = views[0].device
        # A sample is valid when none of its attribution tensors holds a NaN.
        valid = torch.ones(b, k, dtype=torch.bool, device=device)
        for view in views:
            if view.is_floating_point():
                valid &= ~torch.isnan(view.reshape(b, k, -1)).any(dim=2)
        n_chunk = valid.sum(dim=1)
        dropped = k - n_chunk

        first = self.count is None
        if self.count is None:
            self.count = torch.zeros(self.batch_size, dtype=torch.long, device=device)
            self.n_dropped = torch.zeros(self.batch_size, dtype=torch.long, device=device)
            self._dtypes = [v.dtype for v in views]
        n_old = self.count if rows is None else self.count[rows]

        # NaN samples are rare: without any, skip the masking (two passes over the chunk).
        all_valid = bool(valid.all())
        for i, view in enumerate(views):
            acc_dtype = _accumulation_dtype(view.dtype)
            x = view.to(acc_dtype)
            n_c = n_chunk.to(acc_dtype).reshape((b,) + (1,) * (x.dim() - 2))
            if all_valid:
                mean_c = x.sum(dim=1) / k
                dev = x - mean_c.unsqueeze(1)
            else:
                mask = valid.reshape((b, k) + (1,) * (x.dim() - 2))
                zero = torch.zeros((), dtype=acc_dtype, device=device)
                x = torch.where(mask, x, zero)
                mean_c = x.sum(dim=1) / n_c.clamp_min(1)
                dev = torch.where(mask, x - mean_c.unsqueeze(1), zero)
            dev2 = dev * dev
            chunk = [mean_c, dev2.sum(dim=1)]
            if self.higher_moments:
                dev3 = dev2 * dev
                chunk += [dev3.sum(dim=1), dev3.mul_(dev).sum(dim=1)]
            if first and rows is None:
                # The first chunk's statistics are taken as they are (bit for bit Captum's mean).
                for store, value in zip((self.mean, self.m2, self.m3, self.m4), chunk):
                    store.append(value)
                continue
            if first:
                for store, value in zip((self.mean, self.m2, self.m3, self.m4), chunk):
                    store.append(value.new_zeros((self.batch_size, *value.shape[1:])))
            old = [self.mean[i], self.m2[i]]
            if self.higher_moments:
                old += [self.m3[i], self.m4[i]]
            if rows is not None:
                old = [t[rows] for t in old]
            n_a = n_old.to(acc_dtype).reshape(n_c.shape)
            merged = _merge(n_a, old, n_c, chunk)
            # Examples without earlier samples take the chunk's statistics as they are.
            if not bool((n_a > 0).all()):
                merged = [torch.where(n_a > 0, m, c) for m, c in zip(merged, chunk)]
            for store, value in zip((self.mean, self.m2, self.m3, self.m4), merged):
                if rows is None:
                    store[i] = value
                else:
                    store[i] = store[i].index_copy(0, rows, value)
        n_dropped = self.n_dropped
        if rows is None:
            self.count = self.count + n_chunk
            self.n_dropped = n_dropped + dropped if n_dropped is not None else dropped
        else:
            self.count = self.count.index_add(0, rows, n_chunk)
            if n_dropped is not None:
                self.n_dropped = n_dropped.index_add(0, rows, dropped)
        return dropped

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
