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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..core import LoopOptions, MonteCarloError, SamplingReport, SmoothTunnel

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


@contextlib.contextmanager
def routed_through(wrapper: Any, call: SmoothedCall) -> Iterator[SmoothedCall]:
    """Within the block, ``wrapper`` (a Captum LLM class) calls ``call`` as its inner method;
    its own method is put back on exit, also on error, and ``wrapper.last_reports`` is set."""
    inner, wrapper.attr_method = wrapper.attr_method, call
    try:
        yield call
    finally:
        wrapper.attr_method = inner
        wrapper.last_reports = call.reports
