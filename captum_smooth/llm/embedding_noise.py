"""Fixed embedding-output noise per sample, for FusionGrad over perturbation methods."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..core.noising import evaluate_sigma

__all__ = ["EmbeddingNoise"]


class EmbeddingNoise:
    """A forward hook adding one fixed draw ``t`` to the embedding output of every pass of a
    sample: the perturbed-model view ``g(h(x) + t)``, ablated inputs included.

    The draw has shape ``(1, L_max, d)``; a pass over ``L`` tokens takes positions ``[0, L)``.
    It grows lazily from the generator when a longer sequence (prompt + target) appears, so
    its first positions do not depend on the target's length.

    Args:
        embedding: The model's input embedding (``model.get_input_embeddings()``).
        stdevs: A float (absolute), a tensor or a sigma rule, evaluated on ``clean``.
        clean: The clean prompt's embedding output ``(1, L, d)``.
        generator: The generator of every draw (None: torch's global state).

    Use as a context manager (the hook is removed on exit, also on error); call
    :meth:`next_sample` between samples.
    """

    def __init__(
        self, embedding: nn.Module, stdevs: Any, clean: Tensor, generator: torch.Generator | None
    ) -> None:
        sigma = evaluate_sigma(stdevs, clean)
        if isinstance(sigma, Tensor) and sigma.dim() > 1 and sigma.shape[1] != 1:
            raise ValueError(
                "`stdevs` gives one value per token position; the noise also covers the "
                "target's positions: give a float or a rule with one value per example or feature"
            )
        self.embedding = embedding
        self.sigma = sigma
        self.generator = generator
        self._noise: Tensor | None = None
        self._handle: Any = None

    def __enter__(self) -> EmbeddingNoise:
        self._handle = self.embedding.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._noise = None

    def next_sample(self) -> None:
        """Start a new sample: its draw is taken at its first pass."""
        self._noise = None

    def _extend(self, length: int, like: Tensor) -> Tensor:
        have = 0 if self._noise is None else self._noise.shape[1]
        if length > have:
            gen = self.generator
            device = gen.device if gen is not None else like.device
            shape = (1, length - have, like.shape[-1])
            fresh = torch.randn(shape, generator=gen, device=device, dtype=like.dtype)
            fresh = fresh.to(like.device) * self.sigma
            self._noise = fresh if self._noise is None else torch.cat([self._noise, fresh], 1)
        assert self._noise is not None
        return self._noise[:, :length]

    def _hook(self, module: nn.Module, args: Any, output: Any) -> Tensor:
        if not isinstance(output, Tensor) or output.dim() != 3:
            raise TypeError(
                "the input embedding must return a (batch, tokens, features) tensor to take "
                f"`stdevs` noise, got {getattr(output, 'shape', type(output).__name__)}"
            )
        return output + self._extend(output.shape[1], output)
