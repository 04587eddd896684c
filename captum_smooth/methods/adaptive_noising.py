"""Adaptive noising: a per-example search of the noise level that minimises an objective.

The search is the one of the SmoothTaylor authors (Goh et al., ICPR 2020, "adaptive noising"):
start at ``sigma_0`` (default: the mean absolute input value of the example), try
``sigma + step``; if the objective does not improve, try ``|sigma - step|``; if neither improves,
shrink the step (``step *= decay``) and count a failure; stop after ``patience`` consecutive
failures or ``max_iter`` iterations, and keep the best noise level seen.

It runs for a whole batch at once: each phase evaluates every still-searching example in one
call of the smoothed method, with one sigma per example (``stdevs=PerExampleSigma(sigma)``). The
evaluations use common random numbers (:class:`~captum_smooth.noise.CommonRandomNumbers`, from
:meth:`AdaptiveNoising.noise_kernel`): every (example, sample) pair has its own seed, derived
from the search's seed (:func:`~captum_smooth.core.random_state.derive_seed`), and draws the same
standardised noise ``t_k`` at every evaluation, so that objective differences between two noise
levels come from sigma and not from a new noise draw (the roots are ``x + sigma * t_k`` with the
same ``t_k`` at every sigma). An example's draws depend neither on which other examples are
still searching nor on the chunk sizes.

The search itself (:meth:`AdaptiveNoising.search`) knows nothing about the method: it takes a
function ``evaluate(rows, sigma) -> (maps, loss)``. :class:`~captum_smooth.methods.SmoothTaylor`
plugs SmoothTaylor into it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import Tensor

from .._checks import check_positive_int, check_real
from .._progress import progress_bar
from ..core.expansion import select_examples
from ..core.random_state import derive_seed
from ..metrics import aupc, deletion_auc, insertion_auc, total_variation
from ..noise.crn import CommonRandomNumbers
from ..noise.kernels import Kernel

__all__ = ["OBJECTIVES", "AdaptiveNoising", "AdaptiveResult", "Evaluation"]

#: Built-in objectives and their direction: +1 is minimised, -1 maximised.
OBJECTIVES: dict[str, int] = {
    "total_variation": 1,
    "aupc": -1,
    "deletion_auc": 1,
    "insertion_auc": -1,
}

#: ``objective(maps, inputs, target) -> (B,)`` values, minimised. ``maps`` and ``inputs`` come
#: as the inputs were given (a tensor, or a tuple), restricted to the examples evaluated.
ObjectiveFn = Callable[[Any, Any, Any], Tensor]
ObjectiveSpec = Union[str, ObjectiveFn]

#: ``loss(maps, rows) -> (len(rows),)``: the objective to minimise of the maps of ``rows``.
LossFn = Callable[[tuple[Tensor, ...], Tensor], Tensor]

#: ``evaluate(rows, sigma) -> (maps, loss)``: the maps (a tuple, one tensor per input, rows in
#: the order of ``rows``) and the loss to minimise ``(len(rows),)`` of the examples ``rows`` at
#: noise levels ``sigma`` ``(len(rows),)``.
EvaluateFn = Callable[[Tensor, Tensor], tuple[tuple[Tensor, ...], Tensor]]

#: The streams below the search's seed (:func:`~captum_smooth.core.random_state.derive_seed`):
#: the noise of the evaluations (a :class:`~captum_smooth.noise.CommonRandomNumbers` seed), and
#: the AUPC perturbation drawn once per example.
_NOISE_STREAM = 0
_FILL_STREAM = 1


@dataclass
class Evaluation:
    """One batched evaluation of the search.

    Attributes:
        rows: Indices of the examples evaluated, ``(n,)``.
        sigma: Their noise levels, ``(n,)``.
        objective: The objective at those noise levels (in the metric's own direction; AUPC is
            not negated), ``(n,)``.
        accepted: Whether each became the example's new best, ``(n,)`` (all True for the start).
    """

    rows: Tensor
    sigma: Tensor
    objective: Tensor
    accepted: Tensor


@dataclass
class AdaptiveResult:
    """What adaptive noising chose, per example.

    Attributes:
        attributions: The attributions at the chosen noise level (a tensor or a tuple, as the
            inputs).
        sigma: The chosen noise level per example, ``(B,)``.
        objective: The objective at ``sigma`` (metric's own direction), ``(B,)``.
        sigma0: The starting noise level per example, ``(B,)``.
        start_objective: The objective at ``sigma0``, ``(B,)``.
        n_evaluations: Evaluations of the smoothed method per example (start included),
            ``(B,)``: the cost in units of one call at a fixed sigma.
        n_iterations: Iterations run (the longest-searching example's).
        n_calls: Batched calls of the smoothed method.
        history: Every batched evaluation, in order.
    """

    attributions: Any
    sigma: Tensor
    objective: Tensor
    sigma0: Tensor
    start_objective: Tensor
    n_evaluations: Tensor
    n_iterations: int
    n_calls: int
    history: list[Evaluation] = field(default_factory=list)

    @property
    def relative_cost(self) -> float:
        """Mean evaluations per example: the cost as a multiple of one fixed-sigma call."""
        return float(self.n_evaluations.float().mean())


def _check_finite(value: Any, name: str) -> float:
    """``value`` as a float if it is a finite real number (TypeError / ValueError if not)."""
    value = check_real(value, name)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite, got {value!r}")
    return value


@dataclass
class AdaptiveNoising:
    r"""The configuration of adaptive noising (the SmoothTaylor authors' schedule by default).

    Per example, starting from ``sigma_0``, each iteration tries ``sigma + step``, then (if the
    objective did not improve) ``|sigma - step|``; a candidate is accepted when it is strictly
    better than the best so far. When neither is, ``step *= decay`` and a failure is counted.
    The search stops after ``patience`` consecutive failures, ``max_iter`` iterations or
    ``max_evaluations`` evaluations (the start included), and returns the best level seen, so
    the result is never worse than ``sigma_0`` under the objective. A candidate of exactly 0 is
    not evaluated (a zero-noise SmoothTaylor map is all zeros) and counts as no improvement.

    Evaluations use common random numbers (see :mod:`captum_smooth.methods.adaptive_noising`).

    Reference: Goh, Lapuschkin, Weber, Samek, Binder, "Understanding Integrated Gradients with
    SmoothTaylor for Deep Neural Network Attribution", ICPR 2020 (adaptive noising).

    Args:
        objective: What to minimise: ``"total_variation"`` (multi-scale TV of the map, lower is
            smoother; :func:`captum_smooth.metrics.total_variation`), ``"aupc"`` (region
            perturbation AUPC, maximised; :func:`captum_smooth.metrics.aupc`),
            ``"deletion_auc"`` (minimised) or ``"insertion_auc"`` (maximised), or a callable
            ``objective(maps, inputs, target) -> (B,)`` values to minimise (return the negative
            to maximise). Built-in objectives need one image input ``(B, C, H, W)``. Default:
            ``"total_variation"``.
        objective_kwargs: Keyword arguments of the metric (e.g. ``{"n_scales": 3}`` or
            ``{"window": 4}``). For ``aupc`` without a ``baseline``, the uniform perturbation is
            drawn once per example from the search's seed (within ``value_range`` if given) and
            reused at every evaluation. Default: none.
        sigma0: The starting noise level: None (the example's mean ``|x|`` over all elements of
            all inputs, the authors' choice), a float, or a tensor ``(B,)``. An example whose
            start is 0 (a blank input) starts at ``step``. Default: None.
        step: The first step, > 0. Default: 0.1.
        decay: Step factor after a failed iteration, in (0, 1). Default: 0.9.
        patience: Consecutive failed iterations before an example stops, >= 1. Default: 3.
        max_iter: Iterations at most (each one evaluates up to two candidates), >= 0.
            Default: 20.
        max_evaluations: Evaluations per example at most, the start included, >= 1, or None
            (up to ``1 + 2 * max_iter``). Default: None.

    Examples::

        >>> noising = AdaptiveNoising("total_variation", objective_kwargs={"n_scales": 3})
        >>> st = SmoothTaylor(model)
        >>> attr = st.attribute(images, target=3, nt_samples=50, adaptive=noising, generator=0)
        >>> st.last_sigma  # the noise level chosen per example
    """

    objective: ObjectiveSpec = "total_variation"
    objective_kwargs: Mapping[str, Any] | None = None
    sigma0: float | Tensor | None = None
    step: float = 0.1
    decay: float = 0.9
    patience: int = 3
    max_iter: int = 20
    max_evaluations: int | None = None

    def __post_init__(self) -> None:
        self._check_objective()
        self.step = _check_finite(self.step, "step")
        if self.step <= 0:
            raise ValueError(f"`step` must be > 0, got {self.step}")
        self.decay = _check_finite(self.decay, "decay")
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"`decay` must be in (0, 1), got {self.decay}")
        self.patience = check_positive_int(self.patience, "patience", 1)
        self.max_iter = check_positive_int(self.max_iter, "max_iter", 0)
        if self.max_evaluations is not None:
            self.max_evaluations = check_positive_int(self.max_evaluations, "max_evaluations", 1)
        if self.sigma0 is not None:
            self.sigma0 = _check_sigma0(self.sigma0)

    def _check_objective(self) -> None:
        if isinstance(self.objective, str):
            if self.objective not in OBJECTIVES:
                raise ValueError(
                    f"Unknown `objective` {self.objective!r}; use one of {list(OBJECTIVES)} or "
                    "a callable (maps, inputs, target) -> (B,) values to minimise"
                )
        elif not callable(self.objective):
            raise TypeError(
                f"`objective` must be a name or a callable, got {type(self.objective).__name__}"
            )
        if self.objective_kwargs is not None and not isinstance(self.objective_kwargs, Mapping):
            raise TypeError(
                f"`objective_kwargs` must be a mapping, got {type(self.objective_kwargs).__name__}"
            )
        if self.objective_kwargs and "generator" in self.objective_kwargs:
            raise ValueError(
                "`objective_kwargs` must not hold `generator`: the search draws the metric's "
                "randomness from its own seed (common random numbers)"
            )

    @property
    def direction(self) -> int:
        """+1 when the objective is minimised, -1 when maximised (AUPC, insertion)."""
        return OBJECTIVES[self.objective] if isinstance(self.objective, str) else 1

    def noise_kernel(self, kernel: str | Kernel | type[Kernel], seed: int) -> CommonRandomNumbers:
        """The kernel of the evaluations: ``kernel``'s draws as common random numbers.

        Args:
            kernel: The kernel the user chose (a name, class or object).
            seed: The search's seed; the noise is its own stream below it, apart from the
                objective's randomness (:meth:`loss_fn`).

        Returns:
            A :class:`~captum_smooth.noise.CommonRandomNumbers`, to :meth:`restart
            <captum_smooth.noise.CommonRandomNumbers.restart>` before each evaluation.
        """
        return CommonRandomNumbers(kernel, derive_seed(seed, _NOISE_STREAM))

    def loss_fn(
        self,
        model: Callable[..., Tensor],
        inputs: tuple[Tensor, ...],
        is_tuple: bool,
        target: Any,
        seed: int,
    ) -> LossFn:
        """The loss (objective times its direction) of maps of a subset of the examples.

        Args:
            model: The forward function (for the perturbation objectives).
            inputs: The clean inputs of the full batch, as a tuple.
            is_tuple: Whether the user gave a tuple (how a callable objective sees them).
            target: The target of the full batch, as given to the attribution method.
            seed: The search's seed (the AUPC perturbation is drawn from it).

        Returns:
            ``loss(maps, rows) -> (len(rows),)`` to minimise.
        """
        batch = inputs[0].shape[0]
        kwargs = dict(self.objective_kwargs or {})
        direction = float(self.direction)
        user = self.objective
        if callable(user):

            def _user(maps: tuple[Tensor, ...], rows: Tensor) -> Tensor:
                sub = tuple(x[rows.to(x.device)] for x in inputs)
                value = user(
                    maps if is_tuple else maps[0],
                    sub if is_tuple else sub[0],
                    select_examples(target, rows, batch),
                )
                return _check_loss(value, rows.numel())

            return _user
        if len(inputs) != 1 or inputs[0].dim() != 4:
            raise ValueError(
                f"`objective` {user!r} needs one image input (B, C, H, W), got shapes "
                f"{[tuple(x.shape) for x in inputs]}; pass a callable objective instead"
            )
        clean = inputs[0].detach()
        if user == "total_variation":
            return lambda maps, rows: direction * total_variation(maps[0], **kwargs)
        metrics: dict[str, Callable[..., Tensor]] = {
            "aupc": aupc,
            "deletion_auc": deletion_auc,
            "insertion_auc": insertion_auc,
        }
        metric = metrics[user]
        fill: Tensor | None = None
        if user == "aupc" and kwargs.get("baseline") is None:
            kwargs.pop("baseline", None)
            fill = _uniform_fill(clean, kwargs.pop("value_range", None), seed)

        def _perturbation(maps: tuple[Tensor, ...], rows: Tensor) -> Tensor:
            extra = dict(kwargs)
            if fill is not None:
                extra["baseline"] = fill[rows.to(fill.device)]
            sub_target = select_examples(target, rows, batch)
            value = metric(model, clean[rows.to(clean.device)], maps[0], sub_target, **extra)
            return direction * value

        return _perturbation

    def start(self, inputs: tuple[Tensor, ...]) -> Tensor:
        """The starting noise level per example ``(B,)`` for clean ``inputs`` (a tuple)."""
        batch = inputs[0].shape[0]
        device = inputs[0].device
        if self.sigma0 is None:
            total = torch.stack(
                [x.detach().abs().reshape(batch, -1).double().sum(1) for x in inputs]
            ).sum(0)
            count = sum(max(1, math.prod(x.shape[1:])) for x in inputs)
            sigma = (total / count).float()
        elif isinstance(self.sigma0, Tensor):
            sigma = self.sigma0.detach().float().to(device).reshape(-1)
            if sigma.numel() == 1:
                sigma = sigma.expand(batch).clone()
            elif sigma.numel() != batch:
                raise ValueError(
                    f"`sigma0` has {sigma.numel()} values for a batch of {batch} examples"
                )
        else:
            sigma = torch.full((batch,), float(self.sigma0), device=device)
        return torch.where(sigma > 0, sigma, torch.full_like(sigma, self.step))

    def search(
        self, evaluate: EvaluateFn, sigma0: Tensor, *, show_progress: bool = False
    ) -> tuple[tuple[Tensor, ...], AdaptiveResult]:
        """Run the search for every example at once.

        Args:
            evaluate: ``evaluate(rows, sigma) -> (maps, loss)`` for the examples ``rows`` at
                noise levels ``sigma`` (``loss`` is minimised; the objective's direction is
                already applied).
            sigma0: The starting level per example, ``(B,)``, > 0.
            show_progress: Show a progress bar over the iterations.

        Returns:
            ``(maps, result)``: the best maps as a tuple of full-batch tensors, and the
            :class:`AdaptiveResult` (whose ``attributions`` is left for the caller to format).
        """
        direction = float(self.direction)
        budget = self.max_evaluations if self.max_evaluations is not None else math.inf
        state = _SearchState(evaluate, sigma0, direction)
        n_iterations = self._iterate(state, budget, show_progress)
        result = AdaptiveResult(
            attributions=None,
            sigma=state.sigma,
            objective=direction * state.best,
            sigma0=sigma0.clone(),
            start_objective=state.history[0].objective,
            n_evaluations=state.n_evals,
            n_iterations=n_iterations,
            n_calls=state.n_calls,
            history=state.history,
        )
        return tuple(state.best_maps), result

    def _iterate(self, state: _SearchState, budget: float, show_progress: bool) -> int:
        """Run the search's iterations on ``state``; return how many ran.

        Each iteration tries ``sigma + step`` for every example still searching, then
        ``|sigma - step|`` where that did not improve; an example whose step failed shrinks it
        by ``decay`` and stops after ``patience`` failures in a row or at ``budget``
        evaluations.
        """
        batch, device = state.sigma.shape[0], state.sigma.device
        step = torch.full((batch,), self.step, dtype=state.sigma.dtype, device=device)
        failures = torch.zeros(batch, dtype=torch.long, device=device)
        done = state.n_evals >= budget
        n_iterations = 0
        progress = progress_bar(show_progress, total=self.max_iter, desc="Adaptive noising")
        try:
            for _ in range(self.max_iter):
                rows = state.all_rows[~done]
                if rows.numel() == 0:
                    break
                n_iterations += 1
                improved = torch.zeros(rows.numel(), dtype=torch.bool, device=device)
                improved |= state.try_levels(rows, state.sigma[rows] + step[rows])
                # Down: where up did not improve, budget remains and |sigma - step| is new.
                down = (state.sigma[rows] - step[rows]).abs()
                wanted = (
                    ~improved
                    & (state.n_evals[rows] < budget)
                    & (down > 0)
                    & (down != state.sigma[rows])
                )
                if bool(wanted.any()):
                    improved[wanted] |= state.try_levels(rows[wanted], down[wanted])
                failed = rows[~improved]
                step[failed] *= self.decay
                failures[failed] += 1
                failures[rows[improved]] = 0
                done |= (failures >= self.patience) | (state.n_evals >= budget)
                progress.update(1)
                progress.set_postfix(searching=int((~done).sum()))
        finally:
            progress.close()
        return n_iterations


class _SearchState:
    """Per example, the best noise level, loss and maps found so far; and every evaluation.

    Creating it evaluates every example at its starting level.

    Args:
        evaluate: ``evaluate(rows, sigma) -> (maps, loss)``, as for
            :meth:`AdaptiveNoising.search`.
        sigma0: The starting level per example, ``(B,)``.
        direction: The objective's direction (+1 minimised, -1 maximised): the history keeps
            the objective in the metric's own direction.
    """

    def __init__(self, evaluate: EvaluateFn, sigma0: Tensor, direction: float) -> None:
        batch, device = sigma0.shape[0], sigma0.device
        self.evaluate = evaluate
        self.direction = direction
        self.all_rows = torch.arange(batch, device=device)
        maps, loss = evaluate(self.all_rows, sigma0)
        self.best_maps = [m.detach().clone() for m in maps]
        self.best = loss.detach().to(device, torch.float64).clone()
        self.sigma = sigma0.clone()
        self.n_evals = torch.ones(batch, dtype=torch.long, device=device)
        start = Evaluation(
            self.all_rows, sigma0.clone(), direction * self.best, _all_true(batch, device)
        )
        self.history = [start]
        self.n_calls = 1

    def try_levels(self, rows: Tensor, candidate: Tensor) -> Tensor:
        """Evaluate ``candidate`` for ``rows``; accept improvements; return them (bool)."""
        cand_maps, cand_loss = self.evaluate(rows, candidate)
        cand_loss = cand_loss.detach().to(self.sigma.device, torch.float64)
        self.n_calls += 1
        self.n_evals[rows] += 1
        old = self.best[rows]
        # a NaN best is beaten by any number
        better = (cand_loss < old) | (torch.isnan(old) & ~torch.isnan(cand_loss))
        self.history.append(Evaluation(rows, candidate.clone(), self.direction * cand_loss, better))
        won = rows[better]
        if won.numel():
            self.best[won] = cand_loss[better]
            self.sigma[won] = candidate[better]
            for target_map, cand in zip(self.best_maps, cand_maps):
                target_map[won] = cand[better].to(target_map.dtype)
        return better


def _check_sigma0(sigma0: float | Tensor) -> float | Tensor:
    """``sigma0`` checked: a tensor (kept as it is) or a float, finite and >= 0."""
    if isinstance(sigma0, Tensor):
        if sigma0.dim() > 1 or not bool(torch.isfinite(sigma0).all()) or bool((sigma0 < 0).any()):
            raise ValueError("`sigma0` as a tensor must be (B,) or a scalar, finite, >= 0")
        return sigma0
    value = _check_finite(sigma0, "sigma0")
    if value < 0:
        raise ValueError(f"`sigma0` must be >= 0, got {value}")
    return value


def _check_loss(value: Any, n: int) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"`objective` must return a tensor, got {type(value).__name__}")
    if value.shape != (n,):
        raise ValueError(
            f"`objective` must return one value per example, shape ({n},), got {tuple(value.shape)}"
        )
    return value.detach()


def _uniform_fill(clean: Tensor, value_range: Any, seed: int) -> Tensor:
    """One uniform perturbation per example (in its own ``[min, max]`` or ``value_range``)."""
    batch = clean.shape[0]
    # One CPU stream per example: an example's perturbation does not depend on the batch.
    gens = [torch.Generator().manual_seed(derive_seed(seed, _FILL_STREAM, r)) for r in range(batch)]
    u = torch.stack([torch.rand(clean.shape[1:], generator=g) for g in gens])
    u = u.to(device=clean.device, dtype=clean.dtype)
    shape = (batch,) + (1,) * (clean.dim() - 1)
    lo: Tensor | float
    hi: Tensor | float
    if value_range is None:
        flat = clean.reshape(batch, -1)
        lo, hi = flat.min(1).values.reshape(shape), flat.max(1).values.reshape(shape)
    else:
        if len(value_range) != 2 or not value_range[0] <= value_range[1]:
            raise ValueError(f"`value_range` must be a pair (low, high), got {value_range!r}")
        lo, hi = float(value_range[0]), float(value_range[1])
    return lo + (hi - lo) * u


def _all_true(n: int, device: torch.device) -> Tensor:
    return torch.ones(n, dtype=torch.bool, device=device)
