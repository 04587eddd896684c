"""Noise added at a layer's output instead of the raw inputs (token ids, embeddings).

Integer inputs such as token ids cannot take Gaussian noise (captum issue 1281). The noise is
then added to the output of a layer, typically the embedding, by a forward hook. Within one
chunk the same draw is added in every forward pass the inner method makes, so the inner method
explains one fixed perturbed model ``g(h(x) + t)``; passes that evaluate several points per copy
(Integrated Gradients' steps, laid out step-major as Captum does) get the draw tiled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["LayerNoise"]


class LayerNoise:
    """A forward hook that adds one chunk's noise to ``layer``'s output.

    Args:
        layer: The module whose output gets the noise.
        draw: ``draw(clean_output, samples_per_example) -> noise`` returns the noise for the
            ``B * k`` rows of the chunk from the clean output ``(B, ...)`` of the layer.

    Use as a context manager (the hook is removed on exit, also on error) and call
    :meth:`arm` before each chunk and :meth:`disarm` after it.
    """

    def __init__(self, layer: nn.Module, draw: Callable[[Tensor, int], Tensor]) -> None:
        if not isinstance(layer, nn.Module):
            raise TypeError(f"`noise_layer` must be an nn.Module, got {type(layer).__name__}")
        self.layer = layer
        self._draw = draw
        self._handle: Any = None
        self._batch = 0
        self._k = 0
        self._noise: Tensor | None = None
        self._armed = False

    def __enter__(self) -> LayerNoise:
        self._handle = self.layer.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.disarm()

    def arm(self, batch_size: int, samples_per_example: int) -> None:
        """Add fresh noise for ``batch_size * samples_per_example`` rows from the next pass."""
        self._batch, self._k = batch_size, samples_per_example
        self._noise = None
        self._armed = True

    def disarm(self) -> None:
        """Stop adding noise (e.g. for the clean sample)."""
        self._armed = False
        self._noise = None

    def _hook(self, module: nn.Module, args: Any, output: Any) -> Any:
        if not self._armed:
            return None
        if not isinstance(output, Tensor) or not output.is_floating_point():
            raise TypeError(
                f"`noise_layer` {type(module).__name__} must return a floating-point tensor to "
                f"take noise, got {type(output).__name__}"
            )
        rows = self._batch * self._k
        if output.shape[0] % rows != 0:
            raise ValueError(
                f"`noise_layer` output has {output.shape[0]} rows, not a multiple of the "
                f"{rows} noisy copies of this chunk; the inner method batches its forward passes "
                "in a way layer noise cannot follow (try nt_samples_batch_size=1 or no "
                "internal_batch_size)"
            )
        if self._noise is None:
            # The first pass of the chunk carries the (repeated, un-noised) activations.
            clean = output.detach().reshape((self._batch, self._k) + tuple(output.shape[1:]))
            with torch.no_grad():
                self._noise = self._draw(clean[:, 0], self._k)
        reps = output.shape[0] // rows
        noise = self._noise
        if reps > 1:
            noise = noise.repeat((reps,) + (1,) * (noise.dim() - 1))
        return output + noise
