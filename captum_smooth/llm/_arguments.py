"""The LLM wrappers' own argument checks: what Captum's LLM classes only assert, or leave to a
deep error inside the model, is named here before any work."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = [
    "check_gen_args",
    "check_inner_method",
    "check_prompt",
    "check_target",
    "check_tokenizer",
    "check_weight_noise_given",
    "vocabulary_size",
]

#: The weight-noise arguments that mean nothing without ``weight_stdev``.
_WEIGHT_NOISE_DETAILS = ("noise_type", "parameters", "exclude")


def check_inner_method(wrapper: type, attr_method: Any) -> None:
    """The inner method is one Captum's LLM class supports.

    Raises:
        TypeError: Naming ``attr_method``, what was given and what is supported.
    """
    # Captum's LLM classes list the methods they take (an assertion in their constructor).
    supported: tuple[type, ...] = getattr(wrapper, "SUPPORTED_METHODS", ())
    if not isinstance(attr_method, supported):
        names = ", ".join(cls.__name__ for cls in supported)
        raise TypeError(
            f"{wrapper.__name__}: `attr_method` must be one of {names} (built on the model), "
            f"got {type(attr_method).__name__}"
        )


def check_tokenizer(wrapper: type, tokenizer: Any) -> None:
    """A tokenizer with the Hugging Face methods Captum calls.

    Raises:
        TypeError: Naming ``tokenizer`` and the missing method.
    """
    for method in ("encode", "decode"):
        if not callable(getattr(tokenizer, method, None)):
            raise TypeError(
                f"{wrapper.__name__}: `tokenizer` must be the model's tokenizer (a Hugging Face "
                f"tokenizer with `{method}`), got {type(tokenizer).__name__}"
            )


def check_prompt(model_input: Any) -> None:
    """The prompt has at least one token.

    Raises:
        ValueError: An empty prompt (nothing to attribute to).
    """
    if isinstance(model_input, Tensor) and model_input.numel() == 0:
        raise ValueError("`inp` has no tokens: give a non-empty prompt")


def vocabulary_size(model: Any) -> int | None:
    """The number of token ids the model's input embedding takes, or None if unknown."""
    get = getattr(model, "get_input_embeddings", None)
    embedding = get() if callable(get) else None
    size = getattr(embedding, "num_embeddings", None)
    return size if isinstance(size, int) else None


def check_target(target: Any, vocabulary: int | None = None) -> None:
    """The target is None (generated), a text, or a 1-D tensor of token ids in the vocabulary.

    Args:
        target: The wrapper's ``target``.
        vocabulary: The number of token ids the model takes (None: not checked).

    Raises:
        TypeError: Another type, or a tensor of floating-point values.
        ValueError: A tensor that is not 1-D, an empty target, or ids outside the vocabulary.
    """
    if target is None:
        return
    if isinstance(target, str):
        if not target.strip():
            raise ValueError("`target` is an empty text: give the target text or token ids")
        return
    if not isinstance(target, Tensor):
        raise TypeError(
            f"`target` must be a text, a 1-D tensor of token ids or None, got "
            f"{type(target).__name__}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise TypeError(f"`target` token ids must be an integer tensor, got {target.dtype}")
    if target.dim() != 1 or target.numel() == 0:
        raise ValueError(
            f"`target` token ids must be a non-empty 1-D tensor, got shape {tuple(target.shape)}"
        )
    top = vocabulary
    outside = [int(i) for i in target.tolist() if i < 0 or (top is not None and i >= top)]
    if outside:
        where = f"[0, {top})" if top is not None else ">= 0"
        raise ValueError(f"`target` token ids must lie in {where}, got {outside[:5]}")


def check_gen_args(target: Any, gen_args: Any) -> None:
    """``gen_args`` is None or a dict, and only for a target to generate (``target=None``).

    Raises:
        TypeError: Not a dict.
        ValueError: Given with a ``target`` (it would have no effect).
    """
    if gen_args is None:
        return
    if not isinstance(gen_args, dict):
        raise TypeError(f"`gen_args` must be a dict or None, got {type(gen_args).__name__}")
    if target is not None:
        raise ValueError(
            "`gen_args` generates the target, so it needs target=None; with a `target` given "
            "it has no effect"
        )


def check_weight_noise_given(door: str, params: dict[str, Any], given: set[str]) -> None:
    """The weight-noise details are only given with a weight-noise scale.

    Raises:
        ValueError: ``noise_type``, ``parameters`` or ``exclude`` without ``weight_stdev``.
    """
    details = [name for name in _WEIGHT_NOISE_DETAILS if name in given]
    if params.get("weight_stdev") is None and details:
        names = ", ".join(f"`{name}`" for name in details)
        raise ValueError(
            f"{door}: {names} describe the weight noise, which needs `weight_stdev` (its "
            "scale, e.g. 0.05); without it they have no effect"
        )
