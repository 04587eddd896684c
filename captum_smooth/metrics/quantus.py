"""Use any Captum attribution (ours included) as a Quantus ``explain_func``.

Quantus (Hedström et al., "Quantus: An Explainable AI Toolkit for Responsible Evaluation of
Neural Network Explanations and Beyond", JMLR 24(34), 2023, https://arxiv.org/abs/2202.06861)
evaluates explanations through a callable ``explain_func(model, inputs, targets, **kwargs) ->
np.ndarray``. This module builds one from a Captum method. Quantus stays optional: nothing here
imports it.

Quantus 0.6.0 on numpy >= 2.4: ``np.trapz`` (removed from numpy) breaks PixelFlipping, IROF,
Selectivity and RegionPerturbation, and ``np.NaN`` breaks Continuity.
:func:`quantus_explain_func` applies :func:`patch_numpy_for_quantus` itself (both names restored
as aliases, only where missing), so a Quantus metric called with its ``explain_func`` works
without a step of the user's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from captum.attr import Attribution
from torch import Tensor

from .._warnings import warn
from ._utils import call_named

__all__ = ["as_quantus_explain_func", "patch_numpy_for_quantus", "quantus_explain_func"]

ExplainFunc = Callable[..., np.ndarray]


def patch_numpy_for_quantus() -> list[str]:
    """Restore the numpy names that Quantus 0.6.0 still uses, as aliases, where they are missing.

    Sets ``np.trapz = np.trapezoid`` (removed in numpy 2.4) and ``np.NaN = np.nan`` (removed in
    numpy 2.0) on the ``numpy`` module, only when absent. Safe to call more than once; it changes
    nothing on a numpy that still has them.

    Returns:
        The names that were added (empty when nothing was missing).

    Examples::

        >>> from captum_smooth.metrics import patch_numpy_for_quantus
        >>> patch_numpy_for_quantus()  # on numpy 2.4
        ['trapz', 'NaN']
    """
    added = []
    if not hasattr(np, "trapz") and hasattr(np, "trapezoid"):
        np.trapz = np.trapezoid  # type: ignore[attr-defined]
        added.append("trapz")
    if not hasattr(np, "NaN"):
        np.NaN = np.nan  # type: ignore[attr-defined]
        added.append("NaN")
    return added


def _model_device(model: Any) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for parameter in model.parameters():
            return parameter.device
        for buffer in model.buffers():
            return buffer.device
    return torch.device("cpu")


def _model_dtype(model: Any) -> torch.dtype:
    if isinstance(model, torch.nn.Module):
        for tensor in model.parameters():
            if tensor.is_floating_point():
                return tensor.dtype
    return torch.get_default_dtype()


def _explainer_for(method: Attribution | Callable[[Any], Attribution], model: Any) -> Attribution:
    """The attribution instance that explains ``model`` (see :func:`quantus_explain_func`).

    Args:
        method: An attribution instance (used as it is), or a class or factory of the model.
        model: The model Quantus passes.

    Returns:
        ``method`` itself, or ``method(model)``.
    """
    if isinstance(method, Attribution):
        if model is not None and model is not method.forward_func:
            warn(
                "quantus_explain_func: the attribution instance explains its own "
                "forward_func, not the model passed by Quantus; pass the class to rebuild it "
                "for every model"
            )
        return method
    explainer = method(model)
    if not hasattr(explainer, "attribute"):
        raise TypeError("`method` as a factory must return an object with `attribute`")
    return explainer


def _targets(targets: Any, batch: int, device: torch.device) -> Tensor:
    """Quantus' ``targets`` as a long tensor ``(B,)`` of indices >= 0 (no silent truncation)."""
    values = targets if isinstance(targets, Tensor) else torch.as_tensor(np.asarray(targets))
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise TypeError(f"`targets` must be integer class indices, got dtype {values.dtype}")
    target = values.to(device=device, dtype=torch.long).reshape(-1)
    if target.numel() == 1 and batch != 1:
        target = target.expand(batch)
    if bool((target < 0).any()):
        raise ValueError(f"`targets` must be >= 0, got {target.tolist()[:5]}")
    return target


def quantus_explain_func(
    method: Attribution | Callable[[Any], Attribution], **attribute_kwargs: Any
) -> ExplainFunc:
    """A Quantus ``explain_func`` that explains with a Captum attribution method.

    The returned callable has Quantus' signature ``(model, inputs: np.ndarray, targets:
    np.ndarray, **kwargs) -> np.ndarray``. It converts ``inputs`` to a tensor of the model's
    floating dtype on the model's device (or ``device=`` when Quantus passes one), ``targets``
    to a long tensor, runs ``attribute(inputs, target=targets, **attribute_kwargs, **kwargs)``
    with gradients enabled (keyword arguments given at call time win), and returns the
    attributions as a numpy array of the inputs' shape. The model's mode is not changed.
    Building it applies :func:`patch_numpy_for_quantus` (Quantus 0.6.0 on numpy >= 2.4 needs it).

    ``method`` is either

    * a class or factory ``model -> attribution`` (e.g. ``AdaptGrad``, ``Saliency`` or
      ``lambda m: NoiseTunnel(Saliency(m))``): it is built from the model Quantus passes, on
      every call, so that metrics that swap the model (randomisation tests) explain the model
      they are given; or
    * an attribution instance, used as is: it explains its own ``forward_func`` (a warning is
      issued if Quantus passes a different model).

    Args:
        method: An attribution class/factory or instance.
        **attribute_kwargs: Keyword arguments of ``attribute`` (e.g. ``nt_samples=50``).

    Returns:
        The ``explain_func`` callable.

    Examples::

        >>> explain = quantus_explain_func(Saliency, abs=True)
        >>> metric = quantus.Sparseness(disable_warnings=True)
        >>> scores = metric(model, x_batch, y_batch, explain_func=explain)
    """
    patch_numpy_for_quantus()  # Quantus calls np.trapz / np.NaN, gone from numpy 2.4
    if not isinstance(method, Attribution) and not callable(method):
        raise TypeError(
            "`method` must be a Captum attribution instance, class or factory, got "
            f"{type(method).__name__}"
        )

    def explain_func(model: Any, inputs: Any, targets: Any, **kwargs: Any) -> np.ndarray:
        device = kwargs.pop("device", None)
        device = torch.device(device) if device is not None else _model_device(model)
        explainer = _explainer_for(method, model)
        x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, Tensor) else inputs)
        # A fresh leaf of our own: gradient methods need no copy and Captum does not warn.
        x = x.to(device=device, dtype=_model_dtype(model)).detach().clone().requires_grad_(True)
        target = _targets(targets, x.shape[0], device)
        call_kwargs = {**attribute_kwargs, **kwargs}
        with torch.enable_grad():
            attributions = call_named(
                f"{type(explainer).__name__}.attribute",
                explainer.attribute,
                x,
                target=target,
                **call_kwargs,
            )
        if isinstance(attributions, tuple):
            if len(attributions) != 1:
                raise ValueError("quantus_explain_func supports single-input models only")
            attributions = attributions[0]
        return attributions.detach().cpu().numpy()

    return explain_func


as_quantus_explain_func = quantus_explain_func
