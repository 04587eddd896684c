"""SmoothLLMAttribution: Captum's LLMAttribution (perturbation methods) under weight noise,
optionally with noise on the embedding output (FusionGrad)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from captum.attr import LLMAttribution, LLMAttributionResult
from torch import Tensor

from .._checks import check_bool, resolve_generator
from ..core import MonteCarloError, SampleTransform, SamplingReport
from ..core.error_model import relative_error
from ..core.noising import is_zero
from ..core.router import COMMON_OPTIONS, Router
from ..methods._weight_noise import weight_noise_option, with_weight_stdev
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
from .embedding_noise import EmbeddingNoise

__all__ = ["PERTURBATION_ROUTER", "SmoothLLMAttribution"]

_SET_HERE = {
    "noise_layer": "the noise goes on the embedding output (`model.get_input_embeddings()`)",
    "weight_noise": "give the weight noise as `weight_stdev` (with `noise_type`, `parameters`, "
    "`exclude`)",
    "additional_forward_args": "Captum's LLM wrapper passes the target tokens itself",
    "nt_samples_batch_size": "Captum's LLM forward takes one sequence at a time",
}

#: The door's declared options: the loop options it takes, its own arguments (the weight noise,
#: and ``stdevs``, the embedding noise of FusionGrad, which it adds itself), and pointers.
PERTURBATION_ROUTER = Router(
    "SmoothLLMAttribution",
    loop_defaults={"nt_samples": 1, "n_weight_samples": 10, **COMMON_OPTIONS},
    parameters={
        **with_weight_stdev(0.05, "Weight noise scale ``s`` (NoiseGrad), or None for none."),
        "stdevs": (
            None,
            "FusionGrad: noise on the embedding output, one fixed draw per sample added in "
            "every forward pass of that sample (the ablated inputs' included); a float "
            "(absolute), a tensor or a sigma rule evaluated on the clean prompt's embedding "
            "output (e.g. ``RangeShareSigma(0.01)``). None: weight noise only.",
        ),
    },
    pointers=_SET_HERE,
    docs={
        "nt_samples": "Samples of embedding noise per weight draw (with ``stdevs``).",
        "max_samples": "With ``tolerance``: the most weight draws (default ``n_weight_samples``).",
    },
)


def flatten_rows(
    clean: tuple[Tensor, ...], noisy: tuple[Tensor, ...], attrs: tuple[Tensor, ...], k: int
) -> tuple[Tensor, ...]:
    """One row per sample: Captum's FeatureAblation flattens its per-token outputs into the
    first dimension (Shapley keeps a batch dimension); Captum reshapes the result afterwards."""
    rows = noisy[0].shape[0]
    return tuple(a.reshape(rows, -1) for a in attrs)


class SmoothLLMAttribution(LLMAttribution):
    r"""Captum's :class:`~captum.attr.LLMAttribution`, smoothed by weight noise (NoiseGrad).

    The same constructor and ``attribute`` as Captum's class (``isinstance(x, LLMAttribution)``
    holds; the result is Captum's :class:`~captum.attr.LLMAttributionResult`), over the same
    perturbation methods (FeatureAblation, ShapleyValueSampling, ShapleyValues, Lime,
    KernelShap), plus weight noise: the perturbation attribution is averaged (or reduced by
    ``nt_type``) over ``n_weight_samples`` draws of the model with multiplicative
    ``N(1, weight_stdev^2)`` noise on every trainable weight (Bykov et al., NoiseGrad, 2022).
    Weight noise needs no input noise, so it smooths perturbation methods, which take no
    gradient. FusionGrad adds ``stdevs``: ``nt_samples`` draws of noise on the embedding output
    per weight draw, each draw fixed for its sample and added in every forward pass of it (the
    ablated inputs' too: the perturbed model ``g(h(x) + t)``). The model is restored bit for
    bit and the embedding hook removed afterwards, also on error. With
    ``return_error`` the Monte-Carlo error comes back shaped like the result's attributions.

    Args:
        attr_method: A Captum perturbation method built on the model.
        tokenizer: The model's tokenizer.
        attr_target: ``"log_prob"`` or ``"prob"`` (Captum's).

    Examples::

        >>> from captum.attr import FeatureAblation, TextTemplateInput
        >>> llm = SmoothLLMAttribution(FeatureAblation(model), tokenizer)
        >>> inp = TextTemplateInput("{} lives in {}", values=["Dave", "Palm Coast"])
        >>> result = llm.attribute(inp, target="playing golf", n_weight_samples=10,
        ...                        weight_stdev=0.05, generator=0)
        >>> fused = llm.attribute(inp, target="playing golf", n_weight_samples=10,
        ...                       weight_stdev=0.05, stdevs=RangeShareSigma(0.01), nt_samples=2)
    """

    last_reports: list[SamplingReport]
    #: The loop options this wrapper takes, its own arguments, what it sets itself.
    router: ClassVar[Router] = PERTURBATION_ROUTER

    def __init__(self, attr_method: Any, tokenizer: Any, attr_target: str = "log_prob") -> None:
        check_inner_method(type(self), attr_method)
        check_tokenizer(type(self), tokenizer)
        if attr_target not in ("log_prob", "prob"):
            raise ValueError(f"`attr_target` must be 'log_prob' or 'prob', got {attr_target!r}")
        super().__init__(attr_method, tokenizer, attr_target)
        self.last_reports = []

    def _embedding_noise(
        self, inp: Any, stdevs: Any, generator: torch.Generator | None
    ) -> EmbeddingNoise:
        """The embedding noise, its sigma evaluated on the clean prompt's embedding output."""
        model_inp = self._format_model_input(inp.to_model_input())
        if "input_ids" not in model_inp:
            raise TypeError("`stdevs` needs a text input (token ids for the embedding)")
        embedding = self.model.get_input_embeddings()
        with torch.no_grad():
            clean = embedding(model_inp["input_ids"])
        return EmbeddingNoise(embedding, stdevs, clean, generator)

    def attribute(
        self,
        inp: Any,
        target: str | Tensor | None = None,
        num_trials: int = 1,
        gen_args: dict[str, Any] | None = None,
        use_cached_outputs: bool | None = None,
        _inspect_forward: Any = None,
        forward_in_tokens: bool = True,
        **kwargs: Any,
    ) -> LLMAttributionResult | tuple[LLMAttributionResult, MonteCarloError]:
        """Attribute the target's log-probability to the input features, under weight noise.

        Args:
            inp: A Captum ``TextTokenInput``, ``TextTemplateInput`` or ``ImageMaskInput``.
            target: The target text or token ids; None generates it (``gen_args``).
            num_trials: Captum's repetitions; must be 1 here (give ``n_weight_samples``).
            gen_args: Generation arguments when ``target`` is None (Captum's).
            use_cached_outputs: Captum's option for token-by-token forward passes. Default:
                None, Captum's True, but False with ``stdevs`` (a cached pass feeds only the
                new token, whose embedding noise would land on position 0); True with
                ``stdevs`` is an error.
            _inspect_forward: Captum's internal callback.
            forward_in_tokens: Captum's option (token-by-token or one sequence pass).
            {options}
            **kwargs: Passed to the inner method (``feature_mask``, ``n_samples``, ...).

        Returns:
            Captum's ``LLMAttributionResult``; with ``return_error``, also a
            :class:`~captum_smooth.core.error_model.MonteCarloError` whose
            ``standard_error``
            has one row for the sequence and one per target token (when the method gives
            per-token attributions) and whose ``relative_error`` has one entry per row.

        Raises:
            ValueError: An option this wrapper does not take (or sets itself), or a bad value.
        """
        routed = self.router.route(kwargs)
        if not callable(getattr(inp, "to_model_input", None)):
            raise TypeError(
                "`inp` must be a Captum TextTokenInput, TextTemplateInput or ImageMaskInput, "
                f"got {type(inp).__name__}"
            )
        check_prompt(inp.to_model_input())
        check_target(target, vocabulary_size(self.model))
        check_gen_args(target, gen_args)
        check_bool(forward_in_tokens, "forward_in_tokens")
        if use_cached_outputs is not None:
            check_bool(use_cached_outputs, "use_cached_outputs")
        check_weight_noise_given(self.router.name, routed.params, routed.given)
        stdevs = routed.params["stdevs"]
        _check_counts(num_trials, routed.loop["nt_samples"], stdevs)
        fusion = stdevs is not None and not is_zero(stdevs)
        use_cached_outputs = _cached_outputs(use_cached_outputs, fusion, forward_in_tokens)
        gen = resolve_generator(routed.loop["generator"], self.device)
        noise = self._embedding_noise(inp, stdevs, gen) if fusion else None
        weight_noise = weight_noise_option(
            self.router.name,
            self.model,
            routed.params,
            optional=True,
            n_weight_samples=routed.loop["n_weight_samples"],
        )
        options = routed.options(
            {
                # Captum's LLM forward takes one sequence at a time; one sample per inner call.
                "nt_samples_batch_size": 1,
                # The embedding noise (FusionGrad) is added by `noise`, not by the loop.
                "stdevs": 0.0,
                "generator": gen,
                "weight_noise": weight_noise,
                "sample_transform": _per_sample(noise),
            }
        )
        with routed_through(self, _FusionCall(self.attr_method, options, noise=noise)) as call:
            result = super().attribute(
                inp,
                target=target,
                gen_args=gen_args,
                use_cached_outputs=use_cached_outputs,
                _inspect_forward=_inspect_forward,
                forward_in_tokens=forward_in_tokens,
                **routed.inner,
            )
        if options.return_error:
            return result, _rows_error(call.errors[0], result)
        return result


PERTURBATION_ROUTER.document(SmoothLLMAttribution.attribute)


def _rows_error(error: MonteCarloError, result: LLMAttributionResult) -> MonteCarloError:
    """The error with one row per attribution row (the sequence, then each target token)."""
    attr = result.seq_attr.reshape(1, -1)
    if result.token_attr is not None:
        attr = torch.cat([attr, result.token_attr], dim=0)
    se = error.standard_error.reshape(attr.shape[0], -1)
    attr = attr.to(se.device)
    return MonteCarloError(
        standard_error=se,
        relative_error=relative_error((se,), (attr,)),
        n_samples=error.n_samples.expand(attr.shape[0]).clone(),
        nested=error.nested,
    )


def _check_counts(num_trials: int, nt_samples: int, stdevs: Any) -> None:
    """Counts without effect are errors."""
    if num_trials != 1:
        raise ValueError(
            "`num_trials` repeats the whole smoothing; give more `n_weight_samples` instead"
        )
    if stdevs is None and nt_samples != 1:
        raise ValueError(
            "`nt_samples` > 1 needs `stdevs` (the embedding noise); without it the samples "
            "are equal: give more `n_weight_samples` instead"
        )


def _cached_outputs(given: bool | None, fusion: bool, forward_in_tokens: bool) -> bool:
    """Captum's ``use_cached_outputs``: False by default with embedding noise.

    Raises:
        ValueError: True with ``stdevs`` token by token (the noise would be misplaced).
    """
    if given is None:
        return not fusion
    if given and fusion and forward_in_tokens:
        raise ValueError(
            "`stdevs` needs use_cached_outputs=False (a cached pass feeds only the new token, "
            "so its embedding noise would be misplaced); leave `use_cached_outputs` unset"
        )
    return bool(given)


def _per_sample(noise: EmbeddingNoise | None) -> SampleTransform:
    """:func:`flatten_rows`, starting the next sample's embedding draw after each sample."""

    def transform(
        clean: tuple[Tensor, ...], noisy: tuple[Tensor, ...], attrs: tuple[Tensor, ...], k: int
    ) -> tuple[Tensor, ...]:
        if noise is not None:
            noise.next_sample()
        return flatten_rows(clean, noisy, attrs, k)

    return transform


@dataclass
class _FusionCall(SmoothedCall):
    """:class:`SmoothedCall` with the embedding noise hooked in during the call only (not while
    Captum generates the target), removed afterwards, also on error."""

    noise: EmbeddingNoise | None = None

    def attribute(
        self, inputs: Tensor, additional_forward_args: tuple[Any, ...] = (), **kwargs: Any
    ) -> Tensor:
        with self.noise if self.noise is not None else contextlib.nullcontext():
            return super().attribute(inputs, additional_forward_args, **kwargs)
