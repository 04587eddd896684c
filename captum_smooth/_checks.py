"""Argument checks shared by the whole package: one helper per repeated check.

Every public entry point checks its arguments with these, so that the same mistake gets the same
message (naming the argument) wherever it is made.
"""

from __future__ import annotations

import numbers
from typing import Any, Union

import torch

__all__ = [
    "GeneratorLike",
    "check_bool",
    "check_passed_through",
    "check_positive_int",
    "check_real",
    "check_target",
    "resolve_generator",
    "seed_from",
    "target_mismatch",
]

GeneratorLike = Union[torch.Generator, int, None]

_GENERATOR_TYPES = "a torch.Generator, an int seed or None"
# torch.Generator.manual_seed takes a signed or an unsigned 64-bit integer.
_SEED_RANGE = (-(2**63), 2**64 - 1)


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Return ``value`` if it is an int ``>= minimum`` (bools refused), else raise.

    Args:
        value: The argument's value.
        name: The argument's name, for the message.
        minimum: The smallest accepted value. Default: 1.

    Returns:
        ``value``.

    Raises:
        TypeError: Not an int (or a bool).
        ValueError: Below ``minimum``.

    Examples::

        >>> check_positive_int(8, "nt_samples")
        8
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`{name}` must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return int(value)


def check_bool(value: Any, name: str) -> bool:
    """Return ``value`` if it is a bool, else raise TypeError naming ``name``.

    Examples::

        >>> check_bool(True, "return_error")
        True
    """
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be True or False, got {value!r}")
    return value


def check_real(value: Any, name: str) -> float:
    """Return ``value`` as a float if it is a real number (bools refused), else raise TypeError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number, got {value!r}")
    return float(value)


def _check_generator_type(generator: Any) -> None:
    if generator is None or isinstance(generator, torch.Generator):
        return
    if isinstance(generator, bool) or not isinstance(generator, numbers.Integral):
        raise TypeError(f"`generator` must be {_GENERATOR_TYPES}, got {generator!r}")
    if not _SEED_RANGE[0] <= int(generator) <= _SEED_RANGE[1]:
        raise ValueError(
            f"`generator` as an int seed must lie in [-2**63, 2**64 - 1] (a 64-bit seed), "
            f"got {generator!r}"
        )


def resolve_generator(generator: GeneratorLike, device: torch.device) -> torch.Generator | None:
    """Turn ``generator`` (a torch.Generator, an int seed or None) into a generator or None.

    ``None`` keeps torch's global random state, as Captum's NoiseTunnel uses it; an int seeds a
    fresh generator on ``device`` (the CPU for a meta device).

    Raises:
        TypeError: Anything else.
    """
    _check_generator_type(generator)
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    gen_device = device if device.type != "meta" else torch.device("cpu")
    return torch.Generator(device=gen_device).manual_seed(int(generator))


def seed_from(generator: GeneratorLike) -> int:
    """An int seed: the int itself, or one drawn from the generator (torch's global state for None).

    This is the root of a computation's seeds; the seeds of its parts (examples, samples,
    streams) are derived from it with :func:`captum_smooth.core.random_state.derive_seed`.

    Raises:
        TypeError: Anything but a torch.Generator, an int or None.
    """
    _check_generator_type(generator)
    if generator is not None and not isinstance(generator, torch.Generator):
        return int(generator)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=gen_device))


_TARGET_FORMS = (
    "an int, a tuple of ints, a list of one int (or tuple) per example, or an int64 (or int32) "
    "tensor of one element or of shape (B,)"
)
# Captum selects per-example targets with ``torch.gather``, which takes these index dtypes only.
_TARGET_DTYPES = (torch.int64, torch.int32)


def _is_index(value: Any) -> bool:
    return isinstance(value, (int, slice)) and not isinstance(value, bool)


def _check_not_negative(values: list[Any]) -> None:
    """Refuse negative indices: Captum takes them for an int and fails on them per example
    (``gather``), so one spelling of "the last output" would work and the other not."""
    negative = [v for v in values if isinstance(v, int) and v < 0]
    if negative:
        raise ValueError(
            f"`target` indices must be >= 0 (output index c of C outputs: 0 <= c < C; "
            f"write C - 1 for the last), got {negative[:5]}"
        )


def _check_target_tensor(target: torch.Tensor, batch: int) -> None:
    if target.dtype not in _TARGET_DTYPES:
        integer = target.dtype != torch.bool and not (
            target.is_floating_point() or target.is_complex()
        )
        hint = " (convert it with `target.long()`)" if integer else ""
        raise TypeError(
            f"`target` must be {_TARGET_FORMS}; got a tensor of dtype {target.dtype}{hint}"
        )
    if target.numel() != 1 and tuple(target.shape) != (batch,):
        raise ValueError(
            f"`target` as a tensor must have one element or shape (B,) = ({batch},) (one index "
            f"per example), got shape {tuple(target.shape)}"
        )
    _check_not_negative(target.reshape(-1).tolist())


def _check_target_list(target: list, batch: int) -> None:
    if len(target) != batch:
        raise ValueError(
            f"`target` as a list must hold one entry per example ({batch}), got {len(target)}"
        )
    ints = all(_is_index(t) and not isinstance(t, slice) for t in target)
    tuples = all(isinstance(t, tuple) and t and all(_is_index(i) for i in t) for t in target)
    if not (ints or tuples):
        raise TypeError(
            f"`target` as a list must hold ints only or tuples of ints only, got {target!r}"
        )
    _check_not_negative([i for t in target for i in (t if isinstance(t, tuple) else (t,))])


def check_target(target: Any, batch: int) -> None:
    """Check ``target``'s type, dtype and shape against the batch size (Captum's forms).

    The range of the indices needs the model's output: :func:`target_mismatch` checks it.

    Args:
        target: Captum's ``target``: None, an int, a tuple of ints, a list of ``B`` ints or
            tuples, or an integer tensor of one element or shape ``(B,)``.
        batch: The number of examples ``B``.

    Raises:
        TypeError: Not one of Captum's forms, or a tensor whose dtype is not int64 or int32
            (what Captum's ``gather`` takes).
        ValueError: A list or tensor whose length is not ``B``, or a negative index.

    Examples::

        >>> check_target([0, 2], batch=2)
    """
    if target is None:
        return
    if isinstance(target, int) and not isinstance(target, bool):
        _check_not_negative([target])
    elif isinstance(target, torch.Tensor):
        _check_target_tensor(target, batch)
    elif isinstance(target, list):
        _check_target_list(target, batch)
    elif not (isinstance(target, tuple) and target and all(_is_index(t) for t in target)):
        raise TypeError(f"`target` must be {_TARGET_FORMS}, got {target!r}")
    else:
        _check_not_negative(list(target))


def _index_error(index: Any, dims: tuple[int, ...]) -> str | None:
    """Why ``index`` (a tuple of ints) cannot index the non-batch ``dims``, or None."""
    if len(index) > len(dims):
        return f"{len(index)} index(es) for {len(dims)} output dimension(s) after the batch"
    for i, size in zip(index, dims):
        if isinstance(i, int) and not -size <= i < size:
            return f"index {i} is out of range for an output dimension of size {size}"
    return None


def target_mismatch(target: Any, output_shape: tuple[int, ...]) -> str | None:
    """Why ``target`` cannot select from an output of ``output_shape``, or None if it can.

    Args:
        target: A ``target`` that passed :func:`check_target`.
        output_shape: The shape of the model's output, batch first.

    Returns:
        A sentence naming the problem, or None.

    Examples::

        >>> target_mismatch(7, (2, 3))
        'index 7 is out of range for an output dimension of size 3'
    """
    dims = tuple(output_shape[1:])
    if isinstance(target, torch.Tensor) and target.numel() == 1:
        target = int(target.item())
    if isinstance(target, (int, tuple)):
        return _index_error(target if isinstance(target, tuple) else (target,), dims)
    if isinstance(target, list) and target and isinstance(target[0], tuple):
        errors = (_index_error(t, dims) for t in target)
        return next((e for e in errors if e is not None), None)
    values = target.tolist() if isinstance(target, torch.Tensor) else list(target)
    if len(dims) != 1:
        return f"one index per example needs a 2-D output (B, C), got {tuple(output_shape)}"
    bad = [v for v in values if not -dims[0] <= v < dims[0]]
    return f"index(es) {bad[:5]} out of range for {dims[0]} outputs" if bad else None


# Counts passed through to Captum's methods that must be >= 1 where they are given: Captum
# asserts on n_steps = 0 deep inside, and takes internal_batch_size = 0 as "no batching".
_POSITIVE_COUNTS = ("n_steps", "internal_batch_size", "perturbations_per_eval", "n_samples")


def _baseline_fits(baseline: torch.Tensor, x: torch.Tensor, drawn: bool) -> bool:
    """Captum's rule (its NoiseTunnel's expansion asserts it), the rest broadcastable."""
    if baseline.dim() == 0 or baseline.dim() > x.dim():
        return False
    if drawn:  # a distribution of baselines: any number of them, each shaped like an example
        return tuple(baseline.shape[1:]) == tuple(x.shape[1:])
    if baseline.shape == x.shape:
        return True
    try:
        rest = torch.broadcast_shapes(baseline.shape[1:], x.shape[1:])
    except RuntimeError:
        return False
    return baseline.shape[0] == 1 and tuple(rest) == tuple(x.shape[1:])


def _check_baseline(baseline: Any, x: torch.Tensor, name: str, drawn: bool) -> None:
    if not isinstance(baseline, torch.Tensor):
        if isinstance(baseline, bool) or not isinstance(baseline, numbers.Real):
            raise TypeError(f"`{name}` must be a number or a tensor, got {type(baseline).__name__}")
        return
    if _baseline_fits(baseline, x, drawn):
        return
    shape, rest = tuple(baseline.shape), tuple(x.shape[1:])
    if drawn:
        dims = ", ".join(["N", *map(str, rest)])
        wanted = f"({dims}) (a distribution of N baselines, `draw_baseline_from_distrib`)"
    else:
        wanted = f"{tuple(x.shape)} or {(1, *rest)} (or a number)"
    raise ValueError(
        f"`{name}` of shape {shape} does not fit the input of shape {tuple(x.shape)}: "
        f"give a tensor of shape {wanted}"
    )


def check_baselines(baselines: Any, inputs: tuple[torch.Tensor, ...], drawn: bool = False) -> None:
    """Check that ``baselines`` (as passed to Captum) fit the inputs: one per input tensor, each
    a number, or a tensor shaped like its input or ``(1, ...)`` (broadcast), or with ``drawn``
    (``draw_baseline_from_distrib``) ``(N, ...)`` with the input's dimensions after the batch.

    Raises:
        ValueError: A tuple of the wrong length, or a tensor that does not fit its input.

    Examples::

        >>> check_baselines(torch.zeros(1, 3), (torch.rand(2, 3),))
    """
    if baselines is None or (callable(baselines) and not isinstance(baselines, torch.Tensor)):
        return
    given = baselines if isinstance(baselines, tuple) else (baselines,)
    if len(given) != len(inputs):
        raise ValueError(
            f"`baselines` must hold one baseline per input tensor ({len(inputs)}), got {len(given)}"
        )
    for i, (b, x) in enumerate(zip(given, inputs)):
        _check_baseline(
            b, x, f"baselines[{i}]" if isinstance(baselines, tuple) else "baselines", drawn
        )


def check_passed_through(
    kwargs: dict[str, Any], inputs: tuple[torch.Tensor, ...], drawn: bool = False
) -> None:
    """The cheap, common checks of the arguments passed through to a Captum method.

    Counts (``n_steps``, ``internal_batch_size``, ``perturbations_per_eval``, ``n_samples``)
    must be ints >= 1 when given, and ``baselines`` must fit the inputs
    (:func:`check_baselines`). Anything else is Captum's to check: what it refuses at the first
    call is named then (:func:`captum_smooth.core.targets.explain_inner_failure`).

    Args:
        kwargs: The keyword arguments passed through.
        inputs: The inputs, a tuple of tensors, batch first.
        drawn: ``draw_baseline_from_distrib``: the baselines are a distribution.

    Raises:
        TypeError, ValueError: Naming the argument.

    Examples::

        >>> check_passed_through({"n_steps": 16}, (torch.rand(2, 3),))
    """
    for name in _POSITIVE_COUNTS:
        if kwargs.get(name) is not None:
            check_positive_int(kwargs[name], name)
    check_baselines(kwargs.get("baselines"), inputs, drawn)
