"""Noise added at a layer's output instead of the raw inputs (token ids, embeddings).

Integer inputs such as token ids cannot take Gaussian noise (captum issue 1281). The noise is
then added to the output of a layer, typically the embedding, by a forward hook. Which forward
passes of the inner method take it depends on the method:

* **Captum layer methods** (``LayerIntegratedGradients``, ``LayerGradientXActivation``, ...):
  the noise is input noise of the layer-level attribution, so it reaches the *input's path
  only*, as Captum's NoiseTunnel leaves baselines un-noised. A pass is on the input's path when
  the model is called with the very tensors the loop gave the inner method (the evaluation of
  the inputs, and of the end point of the convergence delta); the baselines' evaluation and the
  interpolation points, which Captum rebuilds at the attributed layer from the (noisy) input's
  and the (clean) baseline's evaluations, stay clean. Adding it on both paths would cancel
  exactly on a model linear after the layer. The noise layer must run before the attributed
  layer's output (or be that layer): noise after it could not reach the attribution, an error.
* **Any other method** (input-level gradients, perturbation methods): the noise perturbs the
  model, ``g(h(x) + t)``, in every forward pass of the chunk, as weight noise does; passes that
  evaluate several points per copy (Integrated Gradients' steps, laid out step-major as Captum
  does) get the draw tiled.

Within one chunk the same draw is used in every pass that takes noise. A chunk in which the
layer took no noise (a layer the model never runs, or a method that evaluates inputs and
baselines in one batch) is an error, never a silent un-noised result.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from captum.attr._utils.attribution import LayerAttribution
from torch import Tensor, nn

__all__ = ["LayerNoise"]


def _attributed_layers(method: Any) -> list[nn.Module]:
    """The layers a Captum layer method attributes to (empty for any other method)."""
    if not isinstance(method, LayerAttribution):
        return []
    layer = method.layer
    return list(layer) if isinstance(layer, (list, tuple)) else [layer]


class _InputPathForward:
    """The inner method's forward function, telling :class:`LayerNoise` which passes evaluate the
    inputs themselves (the model is called with the chunk's own input tensors)."""

    def __init__(self, forward_func: Callable[..., Any], noise: LayerNoise) -> None:
        self._forward = forward_func
        self._noise = noise

    def __getattr__(self, name: str) -> Any:
        # Captum reads attributes of the forward function (``device_ids``).
        return getattr(self._forward, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._noise.pass_of(args):
            return self._forward(*args, **kwargs)


class LayerNoise:
    """A forward hook that adds one chunk's noise to ``layer``'s output.

    Args:
        layer: The module whose output gets the noise.
        draw: ``draw(clean_output, samples_per_example) -> noise`` returns the noise for the
            ``B * k`` rows of the chunk from the clean output ``(B, ...)`` of the layer.
        method: The inner attribution method. For a Captum layer method the noise reaches the
            input's path only (see the module docstring); None, or any other method: every pass.
        to_layer_input: The method attributes to its layer's input (``attribute_to_layer_input``).

    Use as a context manager (the hooks are removed on exit, also on error), call :meth:`arm`
    before each noisy chunk, run the chunk through :meth:`method_for` and call :meth:`check`
    after it; :meth:`disarm` for an un-noised chunk.
    """

    def __init__(
        self,
        layer: nn.Module,
        draw: Callable[[Tensor, int], Tensor],
        method: Any = None,
        to_layer_input: bool = False,
    ) -> None:
        if not isinstance(layer, nn.Module):
            raise TypeError(f"`noise_layer` must be an nn.Module, got {type(layer).__name__}")
        self.layer = layer
        self._draw = draw
        self._handles: list[Any] = []
        self._batch = 0
        self._k = 0
        self._noise: Tensor | None = None
        self._armed = False
        self._targets = _attributed_layers(method)
        self._to_layer_input = bool(to_layer_input)
        self._inputs: tuple[Tensor, ...] = ()
        self._on_input_path = False
        self._added_in_pass = False
        self._method = method
        self._watched: Any = None

    @property
    def input_path_only(self) -> bool:
        """Whether the noise reaches the input's path only (a Captum layer method)."""
        return bool(self._targets)

    def __enter__(self) -> LayerNoise:
        self._handles.append(self.layer.register_forward_hook(self._hook))
        for target in self._targets:
            if self._to_layer_input:
                self._handles.append(target.register_forward_pre_hook(self._reached))
            else:
                self._handles.append(target.register_forward_hook(self._reached))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
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

    def method_for(self, method: Any, inputs: tuple[Tensor, ...]) -> Any:
        """The method to call on the chunk's ``inputs``: for the input-path rule, a shallow copy
        whose forward function marks the passes on the input's path (the user's method is not
        touched; Captum's LLM attribution copies methods the same way)."""
        self._inputs = inputs
        if not self.input_path_only:
            return method
        if self._watched is None:
            self._watched = copy.copy(method)
            self._watched.forward_func = _InputPathForward(method.forward_func, self)
        return self._watched

    def check(self) -> None:
        """After an armed chunk: raise when the layer took no noise (nothing silent)."""
        if not self._armed or self._noise is not None:
            return
        name = type(self.layer).__name__
        if self.input_path_only:
            raise ValueError(
                f"`noise_layer` ({name}) took no noise: it did not run while "
                f"{type(self._method).__name__} evaluated the inputs (is it a module of the "
                "model? methods that evaluate the inputs batched with the baselines or through "
                "an inner method, such as LayerDeepLift and LayerGradientShap, cannot take "
                "noise at a layer; weight noise works with them)"
            )
        raise ValueError(
            f"`noise_layer` ({name}) never ran in the forward passes of the inner method: "
            "give a module the model runs (such as its embedding)"
        )

    # ------------------------------------------------------------------------------- the hooks

    def pass_of(self, args: tuple[Any, ...]) -> Any:
        """A context for one call of the model: on the input's path when its first arguments are
        the chunk's own input tensors."""
        n = len(self._inputs)
        on_path = n > 0 and len(args) >= n and all(a is x for a, x in zip(args, self._inputs))
        return _Pass(self, on_path)

    def _takes_noise(self) -> bool:
        return self._armed and (not self.input_path_only or self._on_input_path)

    def _reached(self, module: nn.Module, *rest: Any) -> None:
        if self._takes_noise() and not self._added_in_pass:
            raise ValueError(
                f"`noise_layer` ({type(self.layer).__name__}) runs after the attributed layer "
                f"{type(module).__name__}: noise there cannot reach a layer attribution; put "
                "it at the attributed layer (such as the embedding) or before it"
            )

    def _hook(self, module: nn.Module, args: Any, output: Any) -> Any:
        if not self._takes_noise():
            return None
        if not isinstance(output, Tensor) or not output.is_floating_point():
            raise TypeError(
                f"`noise_layer` {type(module).__name__} must return a floating-point tensor to "
                f"take noise, got {type(output).__name__}"
            )
        rows = self._batch * self._k
        if output.shape[0] % rows != 0 or (self.input_path_only and output.shape[0] != rows):
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
        self._added_in_pass = True
        reps = output.shape[0] // rows
        noise = self._noise
        if reps > 1:
            noise = noise.repeat((reps,) + (1,) * (noise.dim() - 1))
        return output + noise


class _Pass:
    """One call of the model (nested calls keep the outer state)."""

    def __init__(self, noise: LayerNoise, on_path: bool) -> None:
        self._noise = noise
        self._on_path = on_path
        self._saved = (False, False)

    def __enter__(self) -> None:
        n = self._noise
        self._saved = (n._on_input_path, n._added_in_pass)
        n._on_input_path, n._added_in_pass = self._on_path, False

    def __exit__(self, *exc: object) -> None:
        self._noise._on_input_path, self._noise._added_in_pass = self._saved
