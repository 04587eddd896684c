"""One call of a Captum LLM wrapper's inner method, routed through the sampling loop.

Captum's LLM classes call their inner method once per target token (or trial) as
``attr_method.attribute(inputs, additional_forward_args=(inp, target_tokens, ...), **kwargs)``.
NoiseTunnel's expansion would repeat the target token ids per noisy copy (Captum's
``GradientForwardFunc`` already expands them to the batch itself), a silent error. Here the
additional arguments are bound into the forward function instead, so the loop never expands
them, and the call goes through :meth:`SmoothTunnel.run` with the loop's options.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..core import LoopOptions, MonteCarloError, SamplingReport, SmoothTunnel
from ..core.hook_guard import HookGuard

__all__ = ["BoundForward", "SmoothedCall", "routed_through"]


class BoundForward(nn.Module):
    """``forward(*inputs) = forward_func(*inputs, *bound_args)``; the model stays a submodule when
    ``forward_func`` is a module (Captum's ``GradientForwardFunc``)."""

    def __init__(self, forward_func: Callable[..., Any], bound_args: tuple[Any, ...]) -> None:
        super().__init__()
        self.forward_func = forward_func
        self.bound_args = bound_args

    def forward(self, *inputs: Any) -> Any:
        return self.forward_func(*inputs, *self.bound_args)


@dataclass
class SmoothedCall:
    """Stands in for the inner method during one call of a Captum LLM wrapper.

    Args:
        method: The wrapper's inner method (its forward function is Captum's LLM forward).
        options: The loop's options for every call.

    Attributes:
        reports: The :class:`SamplingReport` of each call, in order.
        errors: The :class:`MonteCarloError` of each call (with ``return_error``).
    """

    method: Any
    options: LoopOptions
    reports: list[SamplingReport] = field(default_factory=list)
    errors: list[MonteCarloError] = field(default_factory=list)

    def attribute(
        self, inputs: Tensor, additional_forward_args: tuple[Any, ...] = (), **kwargs: Any
    ) -> Tensor:
        """One call of the loop with ``additional_forward_args`` bound into the forward."""
        method = copy.copy(self.method)
        method.forward_func = BoundForward(self.method.forward_func, additional_forward_args)
        tunnel = SmoothTunnel(method)
        out = tunnel.run(inputs, self.options, kwargs)
        if self.options.return_error:
            out, error = out
            self.errors.append(error)
        if tunnel.last_report is not None:
            self.reports.append(tunnel.last_report)
        return out


class _Routed(HookGuard):
    """:func:`routed_through`'s context manager: the swap and its undoing are guarded, and
    hooks registered on the wrapper's model during an interrupted call are removed (the
    embedding noise of FusionGrad registers its hook outside the loop's own guard)."""

    def __init__(self, wrapper: Any, call: SmoothedCall) -> None:
        super().__init__(getattr(wrapper, "model", None), call.method)
        self._wrapper = wrapper
        self._call = call
        self._inner: Any = None
        self._swapped = False

    def _enter(self) -> SmoothedCall:
        super()._enter()
        self._inner, self._wrapper.attr_method = self._wrapper.attr_method, self._call
        self._swapped = True
        return self._call

    def _exit(self, errors: list[BaseException], failed: bool) -> None:
        if self._swapped:
            self._swapped = False
            self._wrapper.attr_method = self._inner
            self._wrapper.last_reports = self._call.reports
        super()._exit(errors, failed)


def routed_through(
    wrapper: Any, call: SmoothedCall
) -> contextlib.AbstractContextManager[SmoothedCall]:
    """Within the block, ``wrapper`` (a Captum LLM class) calls ``call`` as its inner method;
    its own method is put back on exit, also on error or Ctrl-C, ``wrapper.last_reports`` is
    set, and hooks the interrupted block left on the wrapper's model are removed
    (:class:`~captum_smooth.core.hook_guard.HookGuard`)."""
    return _Routed(wrapper, call)
