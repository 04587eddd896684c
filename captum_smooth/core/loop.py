"""The chunk loop: for each weight draw, chunks of noisy copies through the inner method.

One call, given its :class:`~captum_smooth.core.plan.SamplingPlan`::

    for each weight draw (one without weight noise):
        perturb the weights (restored bit for bit when the session ends)
        [the clean copy, with include_clean]
        for each chunk of k noisy copies of the examples still sampling:
            attributions = transform(inner(noisy copies))
            reducer.update(attributions, k, rows)
            [drop the examples whose Monte-Carlo error reached the tolerance]
    result = reducer.result()

Memory is bounded by one chunk: the reducer streams its statistics.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from captum._utils.common import _format_tensor_into_tuples, _is_tuple
from torch import Tensor

from .._progress import progress_bar
from .._warnings import warn
from .counter_noise import CounterStream
from .error_model import ErrorTracking, MonteCarloError
from .expansion import expand_kwargs, select_examples, select_kwargs
from .hook_guard import HookGuard, NoGrad
from .layer_noise import LayerNoise
from .noising import draw_noise, evaluate_sigma, noisy_copies
from .plan import SamplingPlan
from .random_state import seeded_global_states
from .reducers import CountingReducer, Reducer
from .targets import INNER_FAILURES, explain_inner_failure

__all__ = ["LoopResult", "SamplingLoop", "SamplingReport", "call_inner"]


def _short(t: Tensor) -> str:
    values = t.tolist()
    return f"{values[:8]}{'...' if len(values) > 8 else ''}"


@dataclass
class SamplingReport:
    """What the last call of the loop did, per example where it differs between examples.

    Attributes:
        n_samples: Valid samples averaged per example (clean term included), ``(B,)``.
        n_dropped_nan: Samples dropped because their attribution held a NaN, ``(B,)``.
        chunk_size: Noisy copies of each example per inner call.
        n_inner_calls: Calls of the inner attribution method.
        n_weight_samples: Weight draws (1 without weight noise).
        error: The Monte-Carlo error (always for the mean with i.i.d. samples; otherwise
            when ``return_error`` or ``tolerance`` was given).
        tolerance_not_reached: With ``tolerance``, the indices of the examples whose relative
            error is still above it after ``max_samples`` (a
            :class:`~captum_smooth.core.stopping.ToleranceNotReachedWarning` says so); None
            without ``tolerance``.
    """

    n_samples: Tensor
    n_dropped_nan: Tensor
    chunk_size: int
    n_inner_calls: int
    n_weight_samples: int
    error: MonteCarloError | None = None
    tolerance_not_reached: Tensor | None = None

    def __repr__(self) -> str:
        unreached = (
            ""
            if self.tolerance_not_reached is None
            else f", tolerance_not_reached={_short(self.tolerance_not_reached)}"
        )
        return (
            f"SamplingReport(n_samples={_short(self.n_samples)}, "
            f"n_dropped_nan={_short(self.n_dropped_nan)}, chunk_size={self.chunk_size}, "
            f"n_inner_calls={self.n_inner_calls}, n_weight_samples={self.n_weight_samples}, "
            f"error={self.error!r}{unreached})"
        )


@dataclass
class LoopResult:
    """What the loop hands back to the tunnel, before Captum's output formatting."""

    attributions: tuple[Tensor, ...]
    is_tuple: bool
    deltas: list[Tensor]
    error: MonteCarloError | None
    report: SamplingReport


def call_inner(
    method: Any, noisy: tuple[Tensor, ...], kwargs: dict[str, Any], as_tuple: bool, want_delta: bool
) -> tuple[tuple[Tensor, ...], bool, Tensor | None]:
    """Run the inner method on one chunk: ``(attributions, is_tuple, delta)``.

    Captum's own nesting convention: the undecorated function is called, so that the usage
    logger does not fire per chunk. A user's undecorated method is called as it is.
    """
    wrapped = getattr(type(method).attribute, "__wrapped__", None)
    arg = noisy if as_tuple else noisy[0]
    out = wrapped(method, arg, **kwargs) if wrapped is not None else method.attribute(arg, **kwargs)
    delta = None
    if want_delta:
        out, delta = out
    return _format_tensor_into_tuples(out), _is_tuple(out), delta


def _counter_stream(plan: SamplingPlan) -> CounterStream | None:
    """The counter-based input noise of a call with a generator (same seed, same map).

    None without a generator (torch's global stream, Captum's order) and for a kernel that
    indexes its own draws (common random numbers: ``restart``).
    """
    if plan.generator is None or callable(getattr(plan.kernel, "restart", None)):
        return None
    return CounterStream(plan.generator, plan.batch)


def _check_mirror(perturber: Any, plan: SamplingPlan) -> None:
    """Refuse antithetic weight noise from a component that cannot mirror its draws."""
    if plan.pairing.weights and not callable(getattr(perturber, "mirror", None)):
        raise TypeError(
            f'`sampling="antithetic"` with weight noise needs a perturber with a `mirror()` '
            f"method (as WeightNoise's), got {type(perturber).__name__}"
        )


class _NoLayerNoise(contextlib.nullcontext):
    """Noise on the inputs: nothing to arm at a layer."""

    def arm(self, batch_size: int, samples_per_example: int) -> None:
        return None

    def disarm(self) -> None:
        return None

    def method_for(self, method: Any, inputs: tuple[Tensor, ...]) -> Any:
        return method

    def check(self) -> None:
        return None


class SamplingLoop:
    """One call of the loop over a plan (see the module docstring).

    Args:
        tunnel: The :class:`~captum_smooth.core.tunnel.SmoothTunnel` (its inner method, name).
        plan: The checked plan of the call.
    """

    def __init__(self, tunnel: Any, plan: SamplingPlan) -> None:
        self.method = tunnel.attribution_method
        self.requires_grad = bool(tunnel.is_gradient_method)
        self.plan = plan
        self.tracking = ErrorTracking(
            plan.reducer,
            plan.batch,
            weight_draws=plan.has_weight_draws,
            wanted=plan.error_wanted,
            pairing=plan.pairing,
            include_clean=plan.include_clean,
        )
        self.reducer: Reducer = self.tracking.reducer
        self.fed = torch.zeros(plan.batch, dtype=torch.long)
        self.active: Tensor | None = None  # None: every example is still sampling
        self.deltas: list[Tensor] = []
        self.n_calls = 0
        self.is_attr_tuple = plan.is_tuple
        self.stream = _counter_stream(plan)
        self._expanded: dict[int, dict[str, Any]] = {}
        self.layer: Any = (
            LayerNoise(
                plan.noise_layer,
                self._draw_at_layer,
                self.method,
                to_layer_input=bool(plan.kwargs.get("attribute_to_layer_input", False)),
            )
            if plan.noise_layer is not None
            else _NoLayerNoise()
        )
        n_chunks = -(-plan.stop.max_input_samples // plan.chunk) + int(plan.include_clean)
        self.progress = progress_bar(
            plan.show_progress,
            total=plan.stop.max_weight_draws * n_chunks,
            desc=tunnel.get_name(),
            leave=False,
        )

    # ----------------------------------------------------------------------------- the loop

    def run(self) -> LoopResult:
        """Sample every weight draw (until every example stops) and reduce."""
        model = self.method.forward_func
        try:
            with (
                # Hooks registered during the call go if it is interrupted (Ctrl-C in Captum).
                HookGuard(self.method, self.plan.noise_layer, self.plan.weight_noise),
                NoGrad(),  # torch.no_grad() whose exit a Ctrl-C cannot skip
                seeded_global_states(self.plan.generator),  # inner methods' own draws
                self.plan.weight_noise.session(model) as perturber,
                self.layer,
            ):
                _check_mirror(perturber, self.plan)
                for draw in range(self.plan.stop.max_weight_draws):
                    self._weight_draw(perturber, draw)
                    if self._all_stopped():
                        break
        finally:
            self.progress.close()
        return self._finish()

    def _weight_draw(self, perturber: Any, draw: int) -> None:
        plan = self.plan
        if plan.pairing.is_mirror_draw(draw):
            perturber.mirror()
        else:
            perturber.perturb(plan.generator)
        draw_reducer = self.tracking.new_draw()
        if plan.include_clean:
            self.layer.disarm()
            self._chunk(1, draw_reducer, noised=False)
        self._input_samples(draw_reducer)
        self.tracking.end_draw(draw_reducer, self.active)
        # Examples stop only after whole pairs of draws (the pair is the independent sample).
        ready = draw + 1 >= plan.stop.min_samples and plan.pairing.pair_complete(draw)
        if plan.stop.per_weight_draw and ready:
            self._drop_converged()

    def _input_samples(self, draw_reducer: Reducer | None) -> None:
        stop, done = self.plan.stop, 0
        while done < stop.max_input_samples:
            k = min(self.plan.chunk, stop.max_input_samples - done)
            self.layer.arm(self._n_active(), k)
            self._chunk(k, draw_reducer, noised=True)
            done += k
            if stop.per_input_sample and done >= stop.min_samples:
                self._drop_converged()
                if self._all_stopped():
                    return

    def _chunk(self, k: int, draw_reducer: Reducer | None, *, noised: bool) -> None:
        """Attribute ``k`` copies of each example still sampling and feed the reducers."""
        plan, rows = self.plan, self.active
        inputs, kwargs, sigmas = self._subset()
        paired = noised and plan.pairing.inputs
        noisy = noisy_copies(
            inputs,
            k,
            sigmas if noised else None,
            plan.kernel,
            plan.generator,
            requires_grad=self.requires_grad,
            antithetic=paired,
            stream=self.stream,
            rows=rows,
        )
        expanded = self._expand(inputs, kwargs, k)
        attrs, self.is_attr_tuple, delta = self._call_inner(noisy, expanded)
        self.layer.check()
        if noised and self.stream is not None:
            self.stream.advance(k // 2 if paired else k)
        self.n_calls += 1
        if plan.transform is not None:
            attrs = tuple(plan.transform(inputs, noisy, attrs, k))
        for reducer in (self.reducer, draw_reducer):
            if reducer is not None:
                reducer.update(attrs, k, rows=rows)
        self.tracking.update(attrs, k, rows, noised=noised)
        self._count_fed(k, rows)
        if plan.want_delta and delta is not None:
            self.deltas.append(delta)
        self.progress.update(1)

    # ----------------------------------------------------------------------------- the parts

    def _call_inner(self, noisy: tuple[Tensor, ...], expanded: dict[str, Any]) -> tuple:
        plan = self.plan
        try:
            return call_inner(
                self.layer.method_for(self.method, noisy),
                noisy,
                expanded,
                plan.is_tuple,
                plan.want_delta,
            )
        except INNER_FAILURES as err:
            if self.n_calls == 0:  # a bad argument passed through fails the first call: say which
                explain_inner_failure(self.method, plan.inputs, plan.kwargs, err)
            raise

    def _draw_at_layer(self, clean: Tensor, k: int) -> Tensor:
        sigma = evaluate_sigma(self.plan.layer_sigma, clean)  # type: ignore[arg-type]
        return draw_noise(
            self.plan.kernel,
            clean,
            sigma,
            k,
            self.plan.generator,
            antithetic=self.plan.pairing.inputs,
            stream=self.stream,
            rows=self.active,
        )

    def _subset(self) -> tuple[tuple[Tensor, ...], dict[str, Any], Any]:
        """The inputs, kwargs and sigmas of the examples still sampling."""
        plan, rows = self.plan, self.active
        if rows is None:
            return plan.inputs, plan.kwargs, plan.sigmas
        # Baselines drawn from a distribution are not per example.
        shared = ("baselines",) if plan.draw_baselines else ()
        kwargs = select_kwargs(plan.kwargs, rows, plan.batch, shared)
        sigmas = plan.sigmas
        if sigmas is not None:
            sigmas = tuple(select_examples(s, rows, plan.batch) for s in sigmas)
        return tuple(x[rows.to(x.device)] for x in plan.inputs), kwargs, sigmas

    def _expand(self, inputs: tuple[Tensor, ...], kwargs: dict[str, Any], k: int) -> dict:
        """The inner kwargs for ``k`` copies per example (cached while every example samples)."""
        plan = self.plan
        if plan.draw_baselines:
            return expand_kwargs(kwargs, inputs, k, True, plan.generator)
        if self.active is not None:
            return expand_kwargs(kwargs, inputs, k, False, None)
        if k not in self._expanded:
            self._expanded[k] = expand_kwargs(kwargs, inputs, k, False, None)
        return self._expanded[k]

    def _count_fed(self, k: int, rows: Tensor | None) -> None:
        if rows is None:
            self.fed += k
        else:
            self.fed.index_add_(0, rows.cpu(), torch.full((rows.numel(),), k, dtype=torch.long))

    def _n_active(self) -> int:
        return self.plan.batch if self.active is None else int(self.active.numel())

    def _all_stopped(self) -> bool:
        return self.active is not None and self.active.numel() == 0

    def _drop_converged(self) -> None:
        rel = self.tracking.relative_error(self.reducer)
        self.active = self.plan.stop.still_active(self.active, rel, self.plan.batch)

    # ----------------------------------------------------------------------------- the end

    def _counts(self) -> tuple[Tensor, Tensor]:
        """Valid and NaN-dropped samples per example (from the reducer when it counts them)."""
        count: Tensor | None = None
        dropped: Tensor | None = None
        if isinstance(self.reducer, CountingReducer):
            count, dropped = self.reducer.count, self.reducer.n_dropped
        if count is None:  # a reducer that does not count: every sample fed was used
            count = self.fed
        if dropped is None:
            dropped = torch.zeros_like(count)
        return count, dropped

    def _finish(self) -> LoopResult:
        if self.n_calls == 0:
            raise RuntimeError("the smoothing loop ran no sample")
        attributions = tuple(self.reducer.result())
        count, dropped = self._counts()
        error = (
            self.tracking.error(self.reducer, count, self.is_attr_tuple)
            if self.tracking.wanted
            else None
        )
        report = SamplingReport(
            n_samples=count.clone(),
            n_dropped_nan=dropped.clone(),
            chunk_size=self.plan.chunk,
            n_inner_calls=self.n_calls,
            n_weight_samples=self.plan.n_weight_samples,
            error=error,
            tolerance_not_reached=(
                self.plan.stop.not_reached(error.relative_error) if error is not None else None
            ),
        )
        n_dropped = int(dropped.sum())
        if n_dropped:
            warn(
                f"{n_dropped} noisy sample(s) gave an attribution containing NaN and were "
                f"dropped (per example: {dropped.tolist()}); see `last_report`",
                RuntimeWarning,
            )
        return LoopResult(attributions, self.is_attr_tuple, self.deltas, error, report)
