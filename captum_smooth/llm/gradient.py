"""SmoothLLMGradientAttribution: Captum's LLMGradientAttribution through the sampling loop."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from captum.attr import LLMAttributionResult, LLMGradientAttribution, TextTokenInput
from torch import Tensor, nn

from .._checks import resolve_generator
from ..core import MonteCarloError, SampleTransform, SamplingReport
from ..core.error_model import relative_error
from ..core.noising import is_zero
from ..core.router import COMMON_OPTIONS, Routed, Router
from ..methods._weight_noise import weight_noise_option, with_weight_stdev
from ..noise import RangeShareSigma
from ._arguments import (
    check_gen_args,
    check_inner_method,
    check_prompt,
    check_target,
    check_tokenizer,
    check_weight_noise_given,
    vocabulary_size,
)
from .binding import SmoothedCall, routed_through

__all__ = [
    "EMBEDDING_NOISE_LEVEL",
    "GRADIENT_ROUTER",
    "SmoothLLMGradientAttribution",
    "token_scores",
]

#: The default share of the embedding output's range (max - min over each example's elements)
#: taken as the noise's standard deviation: AllenNLP Interpret's SmoothGradient default (0.01).
EMBEDDING_NOISE_LEVEL = 0.01

# Options the wrapper sets itself, each with why.
_SET_HERE = {
    "noise_layer": "the noise goes on the attributed layer's output (the method's `layer`)",
    "weight_noise": "give the weight noise as `weight_stdev` (with `noise_type`, `parameters`, "
    "`exclude`)",
    "sample_transform": "the token attribution (the sum over the embedding) is reduced",
    "additional_forward_args": "Captum's LLM wrapper passes the target tokens itself",
    "draw_baseline_from_distrib": "the baselines of an LLM input are token ids",
}

#: The door's declared options: the loop options it takes, its weight-noise arguments, and
#: pointers for what it sets itself.
GRADIENT_ROUTER = Router(
    "SmoothLLMGradientAttribution",
    loop_defaults={
        "nt_samples": 10,
        "nt_samples_batch_size": None,
        "stdevs": RangeShareSigma(EMBEDDING_NOISE_LEVEL),
        "kernel": "gaussian",
        "include_clean": False,
        "n_weight_samples": 1,
        **COMMON_OPTIONS,
    },
    parameters=with_weight_stdev(
        None, "Weight noise scale ``s`` (NoiseGrad), or None for no weight noise."
    ),
    pointers=_SET_HERE,
    docs={
        "nt_samples": "Noisy samples per target token (per weight draw).",
        "stdevs": "Noise on the attributed layer's output (the embedding): a float (absolute), "
        "a tensor, or a sigma rule evaluated on that output; None gives the default.",
        "return_error": "Also return the Monte-Carlo error of the token attributions.",
        "tolerance": "Sample each target token until its relative error is at most this.",
    },
)


def token_scores(n_input: int) -> SampleTransform:
    """The per-sample transform: each token's attribution (the sum over the embedding, as
    Captum takes it afterwards), kept as a last dimension of size 1 for Captum's own sum.

    The positions after the ``n_input`` tokens of the prompt (the target tokens already
    generated, which Captum cuts off afterwards) are zeroed, so that the Monte-Carlo error and
    the tolerance concern the prompt's tokens alone.

    Args:
        n_input: The number of tokens of the model input (the prompt).

    Returns:
        ``transform(clean, noisy, attrs, k) -> attrs``.
    """

    def transform(
        clean: tuple[Tensor, ...], noisy: tuple[Tensor, ...], attrs: tuple[Tensor, ...], k: int
    ) -> tuple[Tensor, ...]:
        out = []
        for a in attrs:
            token = a.sum(-1, keepdim=True)
            token[:, n_input:] = 0.0
            out.append(token)
        return tuple(out)

    return transform


class SmoothLLMGradientAttribution(LLMGradientAttribution):
    r"""Captum's :class:`~captum.attr.LLMGradientAttribution`, smoothed.

    The same constructor and ``attribute(inp, target=None, gen_args=None, **kwargs)`` as
    Captum's class (``isinstance(x, LLMGradientAttribution)`` holds, the result is Captum's
    :class:`~captum.attr.LLMAttributionResult`, so its plots work), plus the sampling loop's
    options. For each target token the inner layer method (LayerIntegratedGradients,
    LayerGradientXActivation) is averaged over

    * **noise on the attributed layer's output** (the embedding), on the input's path only (the
      baselines' embedding stays clean, as Captum's NoiseTunnel leaves baselines un-noised):
      ``stdevs`` is absolute, a tensor, or a sigma rule evaluated on the embedding output;
      the default is AllenNLP Interpret's convention, ``RangeShareSigma(0.01)``: 1 % of the
      range (max - min) of each example's embedding output;
    * and/or **weight noise** (NoiseGrad / FusionGrad): ``n_weight_samples`` draws of the model
      with multiplicative ``N(1, weight_stdev^2)`` noise on every trainable weight; the model is
      restored bit for bit.

    The target token ids are passed to Captum's forward function unexpanded (NoiseTunnel would
    repeat them per sample, a silent error). The reducer acts on the token attributions (the
    sum over the embedding that Captum takes), so ``nt_type="vargrad"`` gives each token's
    variance and the Monte-Carlo error is per token. One sample with zero noise gives Captum's
    plain result. :attr:`last_reports` holds one
    :class:`~captum_smooth.core.loop.SamplingReport` per target token.

    References: Smilkov et al. 2017 (SmoothGrad); Wallace et al., "AllenNLP Interpret", 2019
    (noise on the embedding, a share of its range); Bykov et al. 2022 (NoiseGrad, FusionGrad).

    Args:
        attr_method: A Captum ``LayerIntegratedGradients`` or ``LayerGradientXActivation`` on the
            model's embedding layer (``LayerGradientShap`` takes weight noise only).
        tokenizer: The model's tokenizer.

    Examples::

        >>> from captum.attr import LayerIntegratedGradients, TextTokenInput
        >>> lig = LayerIntegratedGradients(model, model.transformer.wte)
        >>> llm = SmoothLLMGradientAttribution(lig, tokenizer)
        >>> result = llm.attribute(TextTokenInput("The capital of France is", tokenizer),
        ...                        target=" Paris", nt_samples=10, generator=0, n_steps=16)
        >>> result.plot_token_attr()
        >>> result, error = llm.attribute(inp, target=" Paris", tolerance=0.1, max_samples=64,
        ...                               return_error=True)
    """

    last_reports: list[SamplingReport]
    #: The loop options this wrapper takes, its own arguments, what it sets itself.
    router: ClassVar[Router] = GRADIENT_ROUTER

    def __init__(self, attr_method: Any, tokenizer: Any) -> None:
        check_inner_method(type(self), attr_method)
        check_tokenizer(type(self), tokenizer)
        super().__init__(attr_method, tokenizer)
        self.last_reports = []

    def attribute(
        self,
        inp: TextTokenInput,
        target: str | Tensor | None = None,
        gen_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> LLMAttributionResult | tuple[LLMAttributionResult, MonteCarloError]:
        """Attribute each target token's log-probability to the input tokens, smoothed.

        Args:
            inp: A Captum ``TextTokenInput``.
            target: The target text or token ids; None generates it (``gen_args``).
            gen_args: Generation arguments when ``target`` is None (Captum's).
            {options}
            **kwargs: Passed to the inner method (``n_steps``, ``baselines``, ...).

        Returns:
            Captum's ``LLMAttributionResult``; with ``return_error``, also a
            :class:`~captum_smooth.core.error_model.MonteCarloError` whose
            ``standard_error``
            is shaped like ``token_attr`` (one row per target token) and whose
            ``relative_error`` has one entry per target token.

        Raises:
            ValueError: An option this wrapper does not take (or sets itself), or a bad value.
        """
        routed = self.router.route(kwargs)
        if not isinstance(inp, TextTokenInput):
            raise TypeError(f"`inp` must be a TextTokenInput, got {type(inp).__name__}")
        check_prompt(inp.to_model_input())
        check_target(target, vocabulary_size(self.model))
        check_gen_args(target, gen_args)
        check_weight_noise_given(self.router.name, routed.params, routed.given)
        layer = self.attr_method.layer
        if not isinstance(layer, nn.Module):
            raise TypeError("the inner method must attribute to one layer (the embedding)")
        options = routed.options(self._fixed(routed, layer, inp))
        with routed_through(self, SmoothedCall(self.attr_method, options)) as call:
            result = super().attribute(inp, target=target, gen_args=gen_args, **routed.inner)
        if options.return_error:
            return result, _token_error(call.errors, inp, result)
        return result

    def _fixed(self, routed: Routed, layer: nn.Module, inp: TextTokenInput) -> dict[str, Any]:
        """The options this wrapper sets: the noise at the layer, the weight noise, the token
        transform, the generator on the model's device."""
        stdevs = routed.loop["stdevs"]
        stdevs = GRADIENT_ROUTER.loop_defaults["stdevs"] if stdevs is None else stdevs
        n_weight_samples = routed.loop["n_weight_samples"]
        return {
            "stdevs": stdevs,
            "generator": resolve_generator(routed.loop["generator"], self.device),
            # No input noise (NoiseGrad): no hook, so any supported method takes weight noise.
            "noise_layer": None if is_zero(stdevs) else layer,
            "weight_noise": weight_noise_option(
                self.router.name,
                self.model,
                routed.params,
                optional=True,
                n_weight_samples=n_weight_samples,
            ),
            "sample_transform": token_scores(int(inp.to_model_input().shape[1])),
        }


GRADIENT_ROUTER.document(SmoothLLMGradientAttribution.attribute)


def _token_error(
    errors: list[MonteCarloError], inp: TextTokenInput, result: LLMAttributionResult
) -> MonteCarloError:
    """The per-call errors laid out as Captum lays out the token attributions."""
    rows = []
    for i, error in enumerate(errors):
        se = error.standard_error.squeeze(-1)
        rows.append(se[:, :-i] if i else se)
    se = torch.cat(rows, dim=0)
    if inp.itp_mask is not None:
        mask = inp.itp_mask.to(se.device).expand_as(se)
        se = se[mask].view(se.size(0), -1)
    token_attr = result.token_attr
    assert token_attr is not None
    return MonteCarloError(
        standard_error=se,
        relative_error=relative_error((se,), (token_attr.to(se.device),)),
        n_samples=torch.cat([e.n_samples for e in errors]),
        nested=any(e.nested for e in errors),
    )
