"""Choosing NoiseGrad's weight-noise scale from the accuracy the perturbed models keep."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Union

import torch
from torch import Tensor, nn

from .._checks import (
    GeneratorLike,
    check_bool,
    check_positive_int,
    resolve_generator,
    seed_from,
)
from .._progress import progress_bar
from .._warnings import warn
from ..noise.weights import ParameterFilter, WeightNoise, WeightPerturber
from ..noise.weights_perturber import check_stdev

__all__ = ["CalibrationResult", "CalibrationStep", "calibrate_weight_noise"]

Batch = tuple[Tensor, Tensor]
DataLike = Union[Batch, Iterable[Any]]


class CalibrationStep(NamedTuple):
    """One evaluated noise scale: its mean accuracy over the draws and whether it was kept."""

    stdev: float
    accuracy: float
    accepted: bool


@dataclass
class CalibrationResult:
    """What :func:`calibrate_weight_noise` found.

    Attributes:
        stdev: The largest accepted noise scale (0.0 when none was accepted). When
            ``bracketed`` is False it is only the largest scale *tried*: a lower bound.
        accuracy_clean: Accuracy of the unperturbed model on the data.
        accuracy_noisy: Mean accuracy of the perturbed models at ``stdev``.
        history: Every evaluation in order, as :class:`CalibrationStep` tuples.
        threshold: The accuracy a scale had to keep: ``(1 - target_drop) * accuracy_clean``.
        bracketed: Whether a larger scale was tried and failed (``upper``), so that the answer
            lies in ``[stdev, upper)``. False when the search ended (``max_iter`` or
            ``max_stdev``) with every scale tried accepted; a warning says so.
        upper: The smallest failed scale above ``stdev`` (``inf`` when not bracketed).
    """

    stdev: float
    accuracy_clean: float
    accuracy_noisy: float
    history: list[CalibrationStep] = field(default_factory=list)
    threshold: float = math.nan
    bracketed: bool = False
    upper: float = math.inf


def _check_fraction(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a float in (0, 1), got {value!r}")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"`{name}` must lie strictly between 0 and 1, got {value!r}")
    return float(value)


def _check_search_range(max_stdev: Any, initial_stdev: Any) -> tuple[float, float]:
    """``(max_stdev, initial_stdev)`` checked: ``0 < initial_stdev <= max_stdev``."""
    max_stdev = check_stdev(max_stdev, "max_stdev")
    if max_stdev == 0.0:
        raise ValueError("`max_stdev` must be > 0")
    initial_stdev = check_stdev(initial_stdev, "initial_stdev")
    if not 0.0 < initial_stdev <= max_stdev:
        raise ValueError(
            f"`initial_stdev` must lie in (0, max_stdev={max_stdev}], got {initial_stdev}"
        )
    return max_stdev, initial_stdev


def _as_batches(data: Any) -> Iterable[Any]:
    """``(inputs, labels)`` as one batch, or a re-iterable of batches (iterators are listed)."""
    if (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and isinstance(data[0], Tensor)
        and isinstance(data[1], Tensor)
    ):
        return [tuple(data)]
    if isinstance(data, Tensor) or not isinstance(data, Iterable):
        raise TypeError(
            "`data` must be a pair (inputs, labels) of tensors or an iterable of such batches "
            f"(e.g. a DataLoader), got {type(data).__name__}"
        )
    if iter(data) is data:  # a one-shot iterator: it is read several times
        data = list(data)
    return data


def _unpack(batch: Any, device: torch.device) -> Batch:
    if (
        not isinstance(batch, (tuple, list))
        or len(batch) < 2
        or not isinstance(batch[0], Tensor)
        or not isinstance(batch[1], Tensor)
    ):
        raise TypeError(
            "each batch of `data` must be a pair (inputs, labels) of tensors, got "
            f"{type(batch).__name__}"
        )
    x, y = batch[0], batch[1]
    integer = not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool)
    if y.dim() != 1 or not integer or y.shape[0] != x.shape[0]:
        raise ValueError(
            "`data` labels must be an integer tensor (N,) matching the inputs' batch size, got "
            f"labels {tuple(y.shape)} ({y.dtype}) for inputs {tuple(x.shape)}"
        )
    return x.to(device), y.to(device)


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    out = model(x)
    if not isinstance(out, Tensor) or out.dim() != 2:
        raise TypeError(
            "`model` must be a classifier returning logits (N, classes), got "
            f"{type(out).__name__} {tuple(out.shape) if isinstance(out, Tensor) else ''}"
        )
    return out


def _accuracy(model: nn.Module, batches: Iterable[Any], device: torch.device) -> float:
    """Share of examples classified right; a row of non-finite logits counts as wrong.

    A perturbed model whose outputs overflow has classified nothing (``argmax`` of a NaN row
    is an arbitrary class, which could match the label by chance).
    """
    correct, total = 0, 0
    for batch in batches:
        x, y = _unpack(batch, device)
        out = _logits(model, x)
        right = (out.argmax(dim=1) == y) & torch.isfinite(out).all(dim=1)
        correct += int(right.sum())
        total += int(y.shape[0])
    if total == 0:
        raise ValueError("`data` holds no examples")
    return correct / total


def _checked_clean_logits(model: nn.Module, x: Tensor, y: Tensor, index: int) -> Tensor:
    """The clean model's logits on one batch, refusing what would make every accuracy
    meaningless: non-finite inputs or outputs, labels outside the model's classes."""
    if (x.is_floating_point() or x.is_complex()) and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(
            f"`data` inputs hold {bad} NaN or infinite values (batch {index}, shape "
            f"{tuple(x.shape)}): calibration needs finite inputs"
        )
    # The model's own errors (inputs it cannot take, out of memory) are left as they are.
    out = _logits(model, x)
    if not bool(torch.isfinite(out).all()):
        raise ValueError(
            f"`model` returns NaN or infinite logits on `data` (batch {index}) without weight "
            "noise: calibration needs a model whose clean outputs are finite"
        )
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= out.shape[1]):
        raise ValueError(
            f"`data` labels must lie in [0, {out.shape[1]}) (the model's classes), got labels "
            f"from {int(y.min())} to {int(y.max())} (batch {index})"
        )
    return out


def _clean_accuracy(model: nn.Module, batches: Iterable[Any], device: torch.device) -> float:
    """The clean model's accuracy, every batch checked (:func:`_checked_clean_logits`)."""
    correct, total = 0, 0
    for index, batch in enumerate(batches):
        x, y = _unpack(batch, device)
        correct += int((_checked_clean_logits(model, x, y, index).argmax(dim=1) == y).sum())
        total += int(y.shape[0])
    if total == 0:
        raise ValueError("`data` holds no examples")
    if correct == 0:
        raise ValueError("the clean model classifies no example of `data` correctly")
    return correct / total


class _Draws:
    """Common random numbers: every scale is evaluated on the same unit draws.

    With the generator reset to the same state before each scale, draw ``j`` is
    ``theta * (1 + s * z_j)`` with the same ``z_j`` for every ``s``, so the accuracy is a
    smooth, (nearly) monotone function of ``s`` and bisection is well behaved.
    """

    def __init__(self, generator: GeneratorLike, device: torch.device) -> None:
        # None becomes a seed from torch's global state: a generator of our own is needed to
        # go back to the same state for every scale.
        resolved = resolve_generator(seed_from(None) if generator is None else generator, device)
        assert resolved is not None
        self.generator = resolved
        self.state = self.generator.get_state()

    def reset(self) -> torch.Generator:
        self.generator.set_state(self.state)
        return self.generator


def calibrate_weight_noise(
    model: nn.Module,
    data: DataLike,
    target_drop: float = 0.05,
    *,
    n_draws: int = 5,
    max_stdev: float = 2.0,
    initial_stdev: float = 0.1,
    tol: float = 0.05,
    max_iter: int = 12,
    generator: torch.Generator | int | None = None,
    show_progress: bool = True,
    noise_type: str = "multiplicative",
    parameters: ParameterFilter | None = None,
    exclude: ParameterFilter | None = None,
) -> CalibrationResult:
    r"""The largest weight-noise scale whose perturbed models keep ``1 - target_drop`` accuracy.

    The NoiseGrad authors' heuristic: take the largest ``s`` for which models with weights
    ``theta * N(1, s^2)`` lose at most a small relative share of their accuracy on held-out data
    (about 5 %). The accuracy at a scale is the mean over ``n_draws`` weight draws; the search
    doubles ``s`` from ``initial_stdev`` until a scale fails (or ``max_stdev`` passes), then
    bisects between the last accepted and the first failed scale until the bracket is narrower
    than ``tol`` times its upper end, with at most ``max_iter`` noisy evaluations in all. Every
    scale is evaluated on the same unit draws (common random numbers), which makes the search
    reproducible under a seed and the accuracy nearly monotone in ``s``. The model is evaluated
    in eval mode and is bit-identical afterwards (one weight-noise session for the whole search).

    The answer is *bracketed* when a scale above it was tried and failed. When the search ends
    (``max_iter`` or ``max_stdev``) with every scale tried accepted, the result is only the
    largest scale tried, a lower bound: ``bracketed`` is False and a warning says so. A
    perturbed model whose logits are not finite counts as classifying nothing.

    Args:
        model: A classifier returning logits ``(N, classes)``.
        data: Held-out ``(inputs, labels)`` tensors, or an iterable of such batches (a
            DataLoader; a one-shot iterator is read into a list first).
        target_drop: The relative accuracy loss allowed, in (0, 1). Default: 0.05.
        n_draws: Weight draws averaged per scale. Default: 5.
        max_stdev: Upper bound of the search. Default: 2.0.
        initial_stdev: First scale tried, in (0, max_stdev]. Default: 0.1.
        tol: Relative width of the final bracket, in (0, 1). Default: 0.05.
        max_iter: Most noisy evaluations (each is ``n_draws`` passes over ``data``). Default: 12.
        generator: A torch.Generator (its current state is reused for every scale), an int
            seed, or None (a seed drawn from torch's global random state). Default: None.
        show_progress: Show a tqdm progress bar. Default: True.
        noise_type: ``"multiplicative"`` or ``"additive"``. Default: ``"multiplicative"``.
        parameters: Which parameters to perturb, as for
            :class:`~captum_smooth.noise.weights.WeightNoise`. Default: None (all trainable).
        exclude: Parameters to keep clean. Default: None.

    Returns:
        A :class:`CalibrationResult` (``stdev``, ``accuracy_clean``, ``accuracy_noisy``,
        ``history``, ``threshold``, ``bracketed``, ``upper``).

    Raises:
        ValueError: an argument out of range, empty data, non-finite inputs, labels outside
            the model's classes, a model whose clean logits are not finite or with zero
            accuracy.
        TypeError: a model that is not an nn.Module or returns no ``(N, classes)`` logits,
            malformed data.

    Examples::

        >>> result = calibrate_weight_noise(model, (x_test, y_test), target_drop=0.05,
        ...                                 generator=0)
        >>> attr = NoiseGrad(model).attribute(images, target=3, weight_stdev=result.stdev)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    target_drop = _check_fraction(target_drop, "target_drop")
    n_draws = check_positive_int(n_draws, "n_draws")
    max_iter = check_positive_int(max_iter, "max_iter")
    tol = _check_fraction(tol, "tol")
    max_stdev, initial_stdev = _check_search_range(max_stdev, initial_stdev)
    show_progress = check_bool(show_progress, "show_progress")
    noise = WeightNoise(max_stdev, noise_type, parameters, exclude)
    batches = _as_batches(data)
    device = next(p.device for _, p in noise.selected_parameters(model))
    draws = _Draws(generator, device)
    history: list[CalibrationStep] = []

    with (
        torch.no_grad(),
        noise.session(model) as perturber,
        progress_bar(show_progress, total=max_iter + 1, desc="calibrate weight noise") as bar,
    ):
        model.eval()
        accuracy_clean = _clean_accuracy(model, batches, device)
        bar.update(1)
        threshold = (1.0 - target_drop) * accuracy_clean

        def evaluate(s: float) -> bool:
            acc = _mean_noisy_accuracy(model, batches, device, perturber, draws, s, n_draws)
            accepted = acc >= threshold
            history.append(CalibrationStep(s, acc, accepted))
            bar.set_postfix(stdev=f"{s:.4g}", accuracy=f"{acc:.4f}")
            bar.update(1)
            return accepted

        stdev, accuracy_noisy, upper = _largest_accepted_scale(
            evaluate, history, initial_stdev, max_stdev, tol, max_iter, accuracy_clean
        )

    _warn_at_search_bounds(stdev, upper, max_stdev, target_drop, history)
    _warn_if_bracket_wide(stdev, upper, tol, max_iter)
    return CalibrationResult(
        stdev=stdev,
        accuracy_clean=accuracy_clean,
        accuracy_noisy=accuracy_noisy,
        history=history,
        threshold=threshold,
        bracketed=math.isfinite(upper),
        upper=upper,
    )


def _largest_accepted_scale(
    evaluate: Callable[[float], bool],
    history: list[CalibrationStep],
    initial_stdev: float,
    max_stdev: float,
    tol: float,
    max_iter: int,
    accuracy_clean: float,
) -> tuple[float, float, float]:
    """Double the scale from ``initial_stdev`` until one fails, then bisect the bracket.

    Args:
        evaluate: Evaluates a scale, appends its :class:`CalibrationStep` to ``history`` and
            returns whether it was accepted.
        history: The evaluations so far (its length counts them against ``max_iter``).
        initial_stdev: The first scale tried.
        max_stdev: The largest scale tried.
        tol: The relative width of the bracket at which bisection stops.
        max_iter: The most evaluations in ``history``.
        accuracy_clean: The accuracy of scale 0, returned when no scale is accepted.

    Returns:
        ``(scale, accuracy, upper)``: the largest accepted scale (0.0 if none), its accuracy,
        and the smallest failed scale above it (``inf`` when none failed: not bracketed).
    """
    lo, lo_acc, hi = 0.0, accuracy_clean, math.inf
    s = initial_stdev
    while len(history) < max_iter:  # bracket: double until a scale fails
        if not evaluate(s):
            hi = s
            break
        lo, lo_acc = s, history[-1].accuracy
        if s >= max_stdev:
            break
        s = min(2.0 * s, max_stdev)
    while math.isfinite(hi) and len(history) < max_iter and hi - lo > tol * hi:
        mid = 0.5 * (lo + hi)
        if evaluate(mid):
            lo, lo_acc = mid, history[-1].accuracy
        else:
            hi = mid
    return lo, lo_acc, hi


def _warn_at_search_bounds(
    stdev: float,
    upper: float,
    max_stdev: float,
    target_drop: float,
    history: list[CalibrationStep],
) -> None:
    """Warn when the result is not bracketed (a bound of the search) or nothing was accepted."""
    if stdev >= max_stdev:
        warn(
            f"calibrate_weight_noise: even max_stdev={max_stdev} keeps the accuracy; the "
            "result is the bound of the search, not bracketed (bracketed=False): raise "
            "`max_stdev` to look further",
        )
    elif not math.isfinite(upper):
        warn(
            f"calibrate_weight_noise: `max_iter`={len(history)} evaluations ended before any "
            f"scale failed; every scale tried kept the accuracy, so the result {stdev:.4g} is "
            "only a lower bound, not bracketed (bracketed=False): raise `max_iter` or "
            "`initial_stdev` to bracket it",
        )
    elif stdev == 0.0:
        warn(
            f"calibrate_weight_noise: no scale tried kept {1 - target_drop:.0%} of the "
            f"accuracy (smallest tried: {min(h.stdev for h in history):.3g}); returning 0.0",
        )


def _warn_if_bracket_wide(stdev: float, upper: float, tol: float, max_iter: int) -> None:
    """Warn when ``max_iter`` stopped the bisection before the bracket reached ``tol``."""
    if stdev > 0.0 and math.isfinite(upper) and upper - stdev > tol * upper:
        warn(
            f"calibrate_weight_noise: `max_iter`={max_iter} evaluations ended with the answer "
            f"bracketed in [{stdev:.4g}, {upper:.4g}), wider than tol={tol}; the result is "
            "its lower end",
        )


def _mean_noisy_accuracy(
    model: nn.Module,
    batches: Iterable[Any],
    device: torch.device,
    perturber: WeightPerturber,
    draws: _Draws,
    stdev: float,
    n_draws: int,
) -> float:
    generator = draws.reset()
    total = 0.0
    for _ in range(n_draws):
        perturber.perturb(generator, stdev=stdev)
        total += _accuracy(model, batches, device)
    perturber.restore()
    return total / n_draws
