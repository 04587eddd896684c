"""Streaming statistics of the sampled attributions: memory bounded by one chunk.

The smoothing loop feeds each chunk of attributions (``B * k`` rows, example-major: the ``k``
samples of one example are adjacent) into :class:`StreamingMoments`, which keeps per example the
count, the mean and the sum of squared deviations (Welford's algorithm with Chan et al.'s
parallel merge). From these come the three reducers of Captum's NoiseTunnel:

* ``smoothgrad``: the mean;
* ``smoothgrad_sq``: the mean of squares, ``M2 / n + mean**2`` (no square root, as Captum);
* ``vargrad``: the population variance ``M2 / n``: numerically stable and never negative,
  unlike ``E[a^2] - E[a]^2``.

Samples whose attribution contains a NaN are dropped per example and counted.
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
    if dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    return dtype


class StreamingMoments:
    """Per-example running count, mean and M2 of a tuple of attribution tensors.

    Args:
        batch_size: The number of examples ``B``.

    Examples::

        >>> moments = StreamingMoments(batch_size=1)
        >>> moments.update((torch.tensor([[1.0], [3.0]]),), samples_per_example=2)
        tensor([0])
        >>> moments.reduce("vargrad")
        (tensor([[1.]]),)
    """

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.count: Tensor | None = None
        self.mean: list[Tensor] = []
        self.m2: list[Tensor] = []
        self._dtypes: list[torch.dtype] = []
        self.n_dropped: Tensor | None = None

    def update(self, attributions: tuple[Tensor, ...], samples_per_example: int) -> Tensor:
        """Merge one chunk of ``B * k`` attribution rows.

        Args:
            attributions: Tensors with ``B * samples_per_example`` rows each, example-major.
            samples_per_example: ``k``.

        Returns:
            The number of samples dropped for NaNs in this chunk, per example ``(B,)``.
        """
        b, k = self.batch_size, samples_per_example
        views = []
        for attr in attributions:
            if attr.shape[0] != b * k:
                raise ValueError(
                    f"the attribution method returned {attr.shape[0]} rows for {b} example(s) x "
                    f"{k} sample(s); expected one row per noisy sample"
                )
            views.append(attr.detach().reshape((b, k) + tuple(attr.shape[1:])))
        device = views[0].device
        # A sample is valid when none of its attribution tensors holds a NaN.
        valid = torch.ones(b, k, dtype=torch.bool, device=device)
        for view in views:
            if view.is_floating_point():
                valid &= ~torch.isnan(view.reshape(b, k, -1)).any(dim=2)
        n_chunk = valid.sum(dim=1)
        dropped = k - n_chunk

        if self.count is None:
            self.count = torch.zeros(b, dtype=torch.long, device=device)
            self.n_dropped = torch.zeros(b, dtype=torch.long, device=device)
            self._dtypes = [v.dtype for v in views]
        n_old = self.count
        n_new = n_old + n_chunk

        for i, view in enumerate(views):
            acc_dtype = _accumulation_dtype(
                view.dtype if view.is_floating_point() else torch.float32
            )
            x = view.to(acc_dtype)
            shape = (b, k) + (1,) * (x.dim() - 2)
            mask = valid.reshape(shape)
            x = torch.where(mask, x, torch.zeros((), dtype=acc_dtype, device=device))
            n_c = n_chunk.to(acc_dtype).reshape((b,) + (1,) * (x.dim() - 2))
            mean_c = x.sum(dim=1) / n_c.clamp_min(1)
            dev = torch.where(mask, x - mean_c.unsqueeze(1), torch.zeros((), dtype=acc_dtype))
            m2_c = (dev * dev).sum(dim=1)
            if i >= len(self.mean):
                self.mean.append(mean_c)
                self.m2.append(m2_c)
                continue
            # Chan et al.'s merge of two partial (count, mean, M2) triples.
            n_a = n_old.to(acc_dtype).reshape(n_c.shape)
            n_ab = (n_a + n_c).clamp_min(1)
            delta = mean_c - self.mean[i]
            self.mean[i] = self.mean[i] + delta * (n_c / n_ab)
            self.m2[i] = self.m2[i] + m2_c + delta * delta * (n_a * n_c / n_ab)
        self.count = n_new
        assert self.n_dropped is not None
        self.n_dropped = self.n_dropped + dropped
        return dropped

    def reduce(self, nt_type: str) -> tuple[Tensor, ...]:
        """Return the reduced attributions (one tensor per attribution tensor).

        Args:
            nt_type: ``smoothgrad`` (mean), ``smoothgrad_sq`` (mean of squares) or ``vargrad``
                (population variance). Examples with no valid sample give NaN.

        Returns:
            A tuple of ``(B, ...)`` tensors in the dtype the attribution method returned.
        """
        if self.count is None:
            raise RuntimeError("no attribution was accumulated")
        out = []
        for mean, m2, dtype in zip(self.mean, self.m2, self._dtypes):
            n = self.count.to(mean.dtype).reshape((-1,) + (1,) * (mean.dim() - 1))
            variance = m2 / n  # NaN where n == 0: nothing valid to average.
            if nt_type == "smoothgrad":
                value = torch.where(n > 0, mean, torch.full_like(mean, float("nan")))
            elif nt_type == "smoothgrad_sq":
                value = variance + mean * mean
            elif nt_type == "vargrad":
                value = variance
            else:
                raise ValueError(f"`nt_type` must be one of {NT_TYPES}, got {nt_type!r}")
            out.append(value.to(dtype) if dtype.is_floating_point else value)
        return tuple(out)

    def variance(self) -> tuple[Tensor, ...]:
        """The per-element population variance of the valid samples, per attribution tensor."""
        return self.reduce("vargrad")
