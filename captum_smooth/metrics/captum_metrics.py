"""One-call infidelity and max-sensitivity of any Captum attribution instance.

Thin wrappers of ``captum.metrics.infidelity`` and ``captum.metrics.sensitivity_max``: the
attributions are computed with ``method.attribute`` and the model is ``method.forward_func``.

Reference:
    Yeh, C.-K., Hsieh, C.-Y., Suggala, A. S., Inouye, D. I., Ravikumar, P. "On the (In)fidelity
    and Sensitivity of Explanations." NeurIPS 2019. https://arxiv.org/abs/1901.09392
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from captum.attr import Attribution
from captum.metrics import infidelity, sensitivity_max
from captum.metrics._core.sensitivity import default_perturb_func
from torch import Tensor

from .._checks import check_bool, check_positive_int, check_target
from ._utils import _check_generator, _check_positive_real, call_named

__all__ = ["infidelity_of", "sensitivity_max_of"]

InputsLike = Tensor | tuple[Tensor, ...]


def _check_method(method: object) -> Attribution:
    if not hasattr(method, "attribute") or not hasattr(method, "forward_func"):
        raise TypeError(
            "`method` must be a Captum attribution instance (with `attribute` and "
            f"`forward_func`), got {type(method).__name__}"
        )
    return method


def _as_tuple(inputs: InputsLike) -> tuple[Tensor, ...]:
    if isinstance(inputs, Tensor):
        return (inputs,)
    if isinstance(inputs, tuple) and inputs and all(isinstance(t, Tensor) for t in inputs):
        return inputs
    raise TypeError("`inputs` must be a tensor or a non-empty tuple of tensors")


def _check_inputs(inputs: InputsLike) -> tuple[Tensor, ...]:
    """The inputs as a tuple: batch first, the same batch size in each, not empty."""
    inputs_t = _as_tuple(inputs)
    batch = inputs_t[0].shape[0] if inputs_t[0].dim() else 0
    if batch == 0 or any(t.dim() == 0 or t.shape[0] != batch for t in inputs_t):
        shapes = [tuple(t.shape) for t in inputs_t]
        raise ValueError(f"`inputs` must be batch first with a non-empty batch, got {shapes}")
    return inputs_t


def _check_sampling(
    n_perturb_samples: object, max_examples_per_batch: object, perturb_func: object
) -> None:
    """The options both wrappers take, checked before Captum sees them."""
    check_positive_int(n_perturb_samples, "n_perturb_samples")
    if max_examples_per_batch is not None:
        check_positive_int(max_examples_per_batch, "max_examples_per_batch")
    if perturb_func is not None and not callable(perturb_func):
        raise TypeError(f"`perturb_func` must be None or a callable, got {perturb_func!r}")


def _gaussian_perturb_func(
    std: float, generator: torch.Generator | None
) -> Callable[[InputsLike], tuple[InputsLike, InputsLike]]:
    """Perturbations ``I ~ N(0, std^2)`` (i.i.d. per element); returns ``(I, inputs - I)`` as
    ``captum.metrics.infidelity`` expects."""

    def perturb(inputs: InputsLike) -> tuple[InputsLike, InputsLike]:
        noises = []
        for inp in _as_tuple(inputs):
            device = generator.device if generator is not None else inp.device
            dtype = inp.dtype if inp.is_floating_point() else torch.get_default_dtype()
            noise = torch.randn(inp.shape, generator=generator, dtype=dtype, device=device)
            noises.append((noise * std).to(inp.device))
        if isinstance(inputs, Tensor):
            return noises[0], inputs - noises[0]
        return tuple(noises), tuple(i - n for i, n in zip(inputs, noises, strict=True))

    return perturb


def _uniform_perturb_func(
    generator: torch.Generator,
) -> Callable[[InputsLike, float], InputsLike]:
    """Uniform noise in the L-infinity ball of radius ``perturb_radius`` (as Captum's default
    perturbation of ``sensitivity_max``), drawn with ``generator``."""

    def perturb(inputs: InputsLike, perturb_radius: float = 0.02) -> InputsLike:
        out = []
        for inp in _as_tuple(inputs):
            u = torch.rand(inp.shape, generator=generator, dtype=inp.dtype, device=generator.device)
            out.append(inp + ((2.0 * u - 1.0) * perturb_radius).to(inp.device))
        return out[0] if isinstance(inputs, Tensor) else tuple(out)

    return perturb


def _own_or_default_perturb_func(
    perturb_func: Callable[..., Any] | None,
    perturb_generator: torch.Generator | None,
    default: Callable[[], Callable[..., Any]],
) -> Callable[..., Any]:
    """The user's ``perturb_func``, else ``default()``; a generator goes with the default only.

    Raises:
        ValueError: Both a ``perturb_func`` and a ``perturb_generator`` (which would be ignored).
    """
    if perturb_func is None:
        return default()
    if perturb_generator is not None:
        raise ValueError(
            "`perturb_generator` only applies to the default perturbation; seed your own "
            "`perturb_func` instead"
        )
    return perturb_func


def _with_target(attr_kwargs: dict[str, Any], target: Any) -> dict[str, Any]:
    """A copy of ``attr_kwargs`` with ``target`` added unless it is None (Captum's default)."""
    call_kwargs = dict(attr_kwargs)
    if target is not None:
        call_kwargs["target"] = target
    return call_kwargs


def _explain(method: Attribution, inputs: InputsLike, kwargs: dict[str, Any]) -> tuple[Tensor, ...]:
    """``method.attribute(inputs, **kwargs)`` with gradients enabled, detached, as a tuple.

    Captum's metrics call the explanation under ``torch.no_grad()``: gradient methods need it
    enabled again, whatever their implementation.
    """
    with torch.enable_grad():
        attributions = call_named(
            f"{type(method).__name__}.attribute", method.attribute, inputs, **kwargs
        )
    return tuple(a.detach() for a in _as_tuple(attributions))


def _per_example(
    metric: Callable[..., Tensor],
    *args: Any,
    n_perturb_samples: int,
    max_examples_per_batch: int | None,
    **kwargs: Any,
) -> Tensor:
    """Run a Captum metric with the sampling options both wrappers take: a score per example."""
    score = call_named(
        f"captum.metrics.{getattr(metric, '__name__', 'metric')}",
        metric,
        *args,
        n_perturb_samples=n_perturb_samples,
        max_examples_per_batch=max_examples_per_batch,
        **kwargs,
    )
    return score.reshape(-1)


def infidelity_of(
    method: Attribution,
    inputs: InputsLike,
    *,
    target: Any = None,
    perturb_func: Callable[..., Any] | None = None,
    n_perturb_samples: int = 10,
    perturb_std: float = 0.003,
    perturb_generator: torch.Generator | int | None = None,
    additional_forward_args: Any = None,
    max_examples_per_batch: int | None = None,
    normalize: bool = False,
    **attr_kwargs: Any,
) -> Tensor:
    r"""Explanation infidelity (Yeh et al. 2019) of ``method`` at ``inputs`` in one call.

    Computes ``attributions = method.attribute(inputs, target=target, **attr_kwargs)`` (with
    gradients enabled) and returns ``captum.metrics.infidelity(method.forward_func,
    perturb_func, inputs, attributions, target=target, ...)``: the mean over perturbations
    ``I`` of ``(I . attributions - (f(x) - f(x - I)))^2``.

    Args:
        method: Any Captum attribution instance (ours too): ``method.attribute`` explains,
            ``method.forward_func`` is the model.
        inputs: A tensor or a tuple of tensors, as for ``method.attribute``.
        target: The explained output index, as Captum takes it (int, tuple, tensor, list).
        perturb_func: Captum's perturbation function, returning ``(perturbations,
            perturbed_inputs)``. ``None`` (default): Gaussian noise ``I ~ N(0, perturb_std^2)``
            per element, perturbed input ``x - I`` (the perturbation of Captum's documented
            example).
        n_perturb_samples: Perturbations per example (default 10).
        perturb_std: Standard deviation of the default Gaussian perturbation (default 0.003,
            the value in Captum's example).
        perturb_generator: Random generator (or int seed) of the default perturbation (seed it for
            reproducible scores); ``None`` uses torch's global generator. (``generator=``
            goes to ``method.attribute`` like any other keyword: our smoothing methods take
            it for their own noise.)
        additional_forward_args: Passed both to ``method.attribute`` and to the model.
        max_examples_per_batch: Passed to ``infidelity`` (bounds memory).
        normalize: Passed to ``infidelity`` (the scale-normalised variant).
        **attr_kwargs: Further keyword arguments of ``method.attribute`` (e.g. ``baselines``,
            ``nt_samples``).

    Returns:
        A tensor ``(B,)``.

    Examples::

        >>> saliency = Saliency(model)
        >>> gen = torch.Generator().manual_seed(0)
        >>> infidelity_of(saliency, x, target=3, perturb_generator=gen)
    """
    method = _check_method(method)
    inputs_t = _check_inputs(inputs)
    check_target(target, inputs_t[0].shape[0])
    _check_sampling(n_perturb_samples, max_examples_per_batch, perturb_func)
    check_bool(normalize, "normalize")
    std = _check_positive_real(perturb_std, "perturb_std")
    gen = _check_generator(perturb_generator, "perturb_generator", inputs_t[0].device)
    perturb_func = _own_or_default_perturb_func(
        perturb_func, gen, lambda: _gaussian_perturb_func(std, gen)
    )
    call_kwargs = _with_target(attr_kwargs, target)
    if additional_forward_args is not None:
        call_kwargs["additional_forward_args"] = additional_forward_args
    attrs = _explain(method, inputs, call_kwargs)
    if len(attrs) != len(_as_tuple(inputs)):
        raise ValueError(
            f"`method` returned {len(attrs)} attribution tensor(s) for "
            f"{len(_as_tuple(inputs))} input tensor(s)"
        )
    for inp, attr in zip(_as_tuple(inputs), attrs, strict=True):
        if attr.shape != inp.shape:
            raise ValueError(
                f"the attributions of `method` have shape {tuple(attr.shape)} but `inputs` "
                f"{tuple(inp.shape)}: infidelity needs attributions shaped like the inputs"
            )
    return _per_example(
        infidelity,
        method.forward_func,
        perturb_func,
        inputs,
        attrs[0] if isinstance(inputs, Tensor) else attrs,
        n_perturb_samples=n_perturb_samples,
        max_examples_per_batch=max_examples_per_batch,
        additional_forward_args=additional_forward_args,
        target=target,
        normalize=normalize,
    )


def sensitivity_max_of(
    method: Attribution,
    inputs: InputsLike,
    *,
    target: Any = None,
    perturb_radius: float = 0.02,
    n_perturb_samples: int = 10,
    perturb_func: Callable[..., Any] | None = None,
    perturb_generator: torch.Generator | int | None = None,
    norm_ord: str = "fro",
    max_examples_per_batch: int | None = None,
    **attr_kwargs: Any,
) -> Tensor:
    r"""Max-sensitivity (Yeh et al. 2019) of ``method`` at ``inputs`` in one call.

    ``captum.metrics.sensitivity_max(method.attribute, inputs, ...)``: the largest relative
    change ``||E(x + d) - E(x)|| / ||E(x)||`` over ``n_perturb_samples`` perturbations ``d``
    drawn uniformly from the L-infinity ball of radius ``perturb_radius``. Captum calls the
    explanation under ``torch.no_grad()``; here it runs under ``torch.enable_grad()`` so that
    gradient methods work whatever their implementation.

    Args:
        method: Any Captum attribution instance (ours too).
        inputs: A tensor or a tuple of tensors, as for ``method.attribute``.
        target: The explained output index, as Captum takes it.
        perturb_radius: Radius of the L-infinity ball (default 0.02, Captum's default).
        n_perturb_samples: Perturbations per example (default 10).
        perturb_func: Captum's perturbation function ``(inputs[, perturb_radius]) ->
            perturbed_inputs``. ``None`` (default): Captum's uniform perturbation, drawn from
            torch's global generator, or from ``perturb_generator`` when one is given.
        perturb_generator: Random generator (or int seed) of the default perturbation.
        norm_ord: Norm of the explanation difference (default ``"fro"``).
        max_examples_per_batch: Passed to ``sensitivity_max`` (bounds memory).
        **attr_kwargs: Further keyword arguments of ``method.attribute`` (Captum expands
            ``additional_forward_args``, ``target`` and ``baselines`` per perturbation). For
            our smoothing methods pass an int ``generator=`` here: every perturbed input is
            then explained with the same noise (common random numbers), so the score measures
            the method's sensitivity, not its Monte-Carlo noise.

    Returns:
        A tensor ``(B,)``.

    Examples::

        >>> sensitivity_max_of(Saliency(model), x, target=3)
        >>> sensitivity_max_of(SmoothGrad(model), x, target=3, nt_samples=20, generator=0)
    """
    method = _check_method(method)
    single = isinstance(inputs, Tensor)
    inputs_t = _check_inputs(inputs)
    check_target(target, inputs_t[0].shape[0])
    _check_sampling(n_perturb_samples, max_examples_per_batch, perturb_func)
    radius = _check_positive_real(perturb_radius, "perturb_radius")
    gen = _check_generator(perturb_generator, "perturb_generator", inputs_t[0].device)
    perturb_func = _own_or_default_perturb_func(
        perturb_func,
        gen,
        lambda: default_perturb_func if gen is None else _uniform_perturb_func(gen),
    )

    def explanation_func(inp: InputsLike, **kwargs: Any) -> InputsLike:
        # Captum hands the inputs over as a tuple and indexes the explanations as one: give the
        # method the form the user gave (a tensor stays a tensor) and Captum back a tuple.
        if single and isinstance(inp, tuple) and len(inp) == 1:
            inp = inp[0]
        return _explain(method, inp, kwargs)

    return _per_example(
        sensitivity_max,
        explanation_func,
        inputs,
        n_perturb_samples=n_perturb_samples,
        max_examples_per_batch=max_examples_per_batch,
        perturb_func=perturb_func,
        perturb_radius=radius,
        norm_ord=norm_ord,
        **_with_target(attr_kwargs, target),
    )
