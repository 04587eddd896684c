"""The LLM wrappers' own argument checks: what Captum's LLM classes only assert, or leave to a
deep error inside the model, is named here before any work."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["check_inner_method", "check_prompt", "check_target", "check_tokenizer"]


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


def check_target(target: Any) -> None:
    """The target is None (generated), a text, or a 1-D tensor of token ids.

    Raises:
        TypeError: Another type, or a tensor of floating-point values.
        ValueError: A tensor that is not 1-D, or an empty target.
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
