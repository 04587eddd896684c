r"""SmoothTaylor: Taylor attributions averaged over noisy roots, bridging IG and SmoothGrad.

A first-order Taylor expansion of ``f`` at a root ``z`` gives ``f(x) ~= f(z) + (x - z) . grad
f(z)``; its terms ``(x - z) * grad f(z)`` attribute ``f(x) - f(z)`` to the features. SmoothTaylor
averages them over roots drawn around the input::

    R(x) = mean_k (x - z_k) * grad f(z_k),        z_k = x + sigma * t_k,  t_k ~ kernel

In the loop of :mod:`captum_smooth.core.tunnel` this is the inner gradient with the per-sample
transform :class:`TaylorTransform` (``(x - z_k) * A(z_k)``). For a linear ``f`` the attributions
sum exactly to ``f(x) - mean_k f(z_k)`` over the sampled roots; in expectation
``R = -sigma^2 diag(Hessian)`` of the smoothed score (``-sigma^2 a_i`` for
``f = 1/2 sum a_i x_i^2``), for any zero-mean kernel of standard deviation sigma.
"""

from __future__ import annotations

from typing import Any

from captum._utils.common import _format_output, _format_tensor_into_tuples, _is_tuple
from captum.attr import LayerAttribution, Saliency
from torch import Tensor

from .._checks import seed_from
from ..core.expansion import select_examples, select_kwargs
from ..noise.sigma import PerExampleSigma
from ._preset import COMMON_OPTIONS, SmoothingPreset
from .adaptive_noising import AdaptiveNoising, AdaptiveResult

__all__ = ["SmoothTaylor", "TaylorTransform", "adaptive_smooth_taylor"]

# Options of the loop that the search cannot honour: it returns the maps only, at the cost its
# schedule sets (not sampling to a tolerance).
_NOT_WITH_ADAPTIVE = frozenset({"return_error", "tolerance", "min_samples", "max_samples"})


class TaylorTransform:
    r"""The SmoothTaylor per-sample transform: ``(x - z_k) * A(z_k)`` for every noisy root.

    A ``sample_transform`` of :meth:`SmoothTunnel.attribute
    <captum_smooth.core.tunnel.SmoothTunnel.attribute>`: with the signed gradient as inner
    method, the tunnel's mean is the SmoothTaylor attribution. The roots are the tunnel's noisy
    inputs, so any kernel and sigma rule applies. It needs the noise on the inputs (not at a
    layer: ``noise_layer`` would leave ``x - z_k = 0``) and attributions shaped like the inputs
    (not layer or neuron methods).

    Reference: Goh, Lapuschkin, Weber, Samek, Binder, "Understanding Integrated Gradients with
    SmoothTaylor for Deep Neural Network Attribution", ICPR 2020.

    Examples::

        >>> tunnel = SmoothTunnel(Saliency(model))
        >>> attr = tunnel.attribute(images, nt_samples=50, stdevs=0.3, target=3, abs=False,
        ...                         sample_transform=TaylorTransform(), generator=0)
    """

    def __call__(
        self,
        clean: tuple[Tensor, ...],
        noisy: tuple[Tensor, ...],
        attributions: tuple[Tensor, ...],
        k: int,
    ) -> tuple[Tensor, ...]:
        """Multiply each chunk's attributions by ``x - z``.

        Args:
            clean: The clean inputs ``(B, ...)``.
            noisy: The roots ``(B * k, ...)``, example-major.
            attributions: The inner method's attributions of the roots, shaped like them.
            k: Roots per example in this chunk.

        Returns:
            The Taylor terms ``(x - z) * A(z)``, one tensor per input.

        Raises:
            ValueError: When the attributions are not shaped like the inputs.
            TypeError: For an input that is not floating point (no noise was added to it).
        """
        if len(attributions) != len(noisy):
            raise ValueError(
                f"TaylorTransform needs one attribution per input tensor, got "
                f"{len(attributions)} for {len(noisy)} inputs (layer or neuron methods are not "
                "supported: the Taylor term multiplies by x - z of the inputs)"
            )
        out = []
        for i, (x, z, a) in enumerate(zip(clean, noisy, attributions)):
            if not z.is_floating_point():
                raise TypeError(
                    f"TaylorTransform: input {i} has dtype {z.dtype}; the roots must be "
                    "floating-point inputs with noise added to them (not at a layer)"
                )
            if a.shape != z.shape:
                raise ValueError(
                    f"TaylorTransform: the attribution of input {i} has shape "
                    f"{tuple(a.shape)}, the input {tuple(z.shape)}; the inner method must "
                    "attribute to the inputs (layer and neuron methods are not supported)"
                )
            b, rest = x.shape[0], tuple(x.shape[1:])
            if z.shape[0] != b * k:
                raise ValueError(
                    f"TaylorTransform: {z.shape[0]} roots for {b} examples of {k} copies"
                )
            diff = x.detach().unsqueeze(1) - z.detach().view((b, k, *rest))
            out.append(diff.view((b * k, *rest)).to(a.dtype) * a)
        return tuple(out)

    def __repr__(self) -> str:
        return "TaylorTransform()"


class SmoothTaylor(SmoothingPreset):
    r"""SmoothTaylor: the mean of ``(x - z_k) * grad f(z_k)`` over noisy roots ``z_k``.

    The roots are ``z_k = x + sigma * t_k`` with ``t_k`` from any kernel of the loop (Gaussian by
    default) and ``sigma`` a float, a ``PerExampleSigma`` (one per example), a sigma rule (e.g.
    :class:`~captum_smooth.noise.sigma.RangeShareSigma` for a share of the input range) or a
    tuple of these per input. The inner method defaults to the signed gradient
    (:class:`captum.attr.Saliency` with ``abs=False``; pass ``abs=True`` to override). Where
    Integrated Gradients integrates along a path from one baseline, SmoothTaylor averages
    first-order Taylor terms from many roots around the input.

    With ``adaptive=AdaptiveNoising(...)``, sigma is searched per example to minimise an
    objective (the authors' adaptive noising, see
    :class:`~captum_smooth.methods.adaptive_noising.AdaptiveNoising`); :meth:`attribute` still
    returns the attributions only, and the choice is in :attr:`last_sigma` and
    :attr:`last_adaptive`.

    Reference: Goh, Lapuschkin, Weber, Samek, Binder, "Understanding Integrated Gradients with
    SmoothTaylor for Deep Neural Network Attribution", ICPR 2020. https://arxiv.org/abs/2004.10484

    Args:
        forward_func: The model or forward function.
        attribution_method: None (signed Saliency), or a Captum attribution class or instance
            whose attributions are shaped like the inputs.

    Examples::

        >>> st = SmoothTaylor(model)
        >>> attr = st.attribute(images, target=3, nt_samples=150, stdevs=0.5, generator=0)
        >>> attr = st.attribute(images, target=3, nt_samples=50, generator=0,
        ...                     adaptive=AdaptiveNoising("total_variation"))
        >>> st.last_sigma
    """

    display_name = "SmoothTaylor"
    summary = "SmoothTaylor attributions, at a fixed sigma or with adaptive noising."
    loop_defaults = {
        "nt_samples": 150,
        "stdevs": 0.5,
        "kernel": "gaussian",
        "nt_samples_batch_size": "auto",
        **COMMON_OPTIONS,
    }
    parameters = {
        "adaptive": (
            None,
            "An :class:`AdaptiveNoising` to search sigma per example (``stdevs`` is then not "
            "used: the search starts at its own ``sigma0``), or None.",
        ),
    }

    def __init__(self, forward_func: Any, attribution_method: Any = None) -> None:
        super().__init__(forward_func, attribution_method)
        if isinstance(self.attribution_method, LayerAttribution):
            raise ValueError(
                f"SmoothTaylor cannot smooth {type(self.attribution_method).__name__}: the Taylor "
                "term multiplies by x - z, so the inner method must attribute to the inputs "
                "(layer methods are not supported)"
            )
        self.transform = TaylorTransform()
        self.last_adaptive: AdaptiveResult | None = None

    @property
    def last_sigma(self) -> Tensor | None:
        """The noise level chosen per example by the last adaptive call, ``(B,)``, else None."""
        return None if self.last_adaptive is None else self.last_adaptive.sigma

    def configure(
        self, inputs: Tensor | tuple[Tensor, ...], params: dict[str, Any], given: set[str]
    ) -> dict[str, Any]:
        return {"sample_transform": self.transform}

    def inner_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        # The Taylor term needs the signed gradient.
        if isinstance(self.attribution_method, Saliency) and "abs" not in kwargs:
            return {**kwargs, "abs": False}
        return kwargs

    def _attribute(self, inputs: Any, target: Any, kwargs: dict[str, Any]) -> Any:
        adaptive = kwargs.pop("adaptive", None)
        self.last_adaptive = None
        if adaptive is None:
            return super()._attribute(inputs, target, kwargs)
        if not isinstance(adaptive, AdaptiveNoising):
            raise TypeError(
                f"`adaptive` must be an AdaptiveNoising or None, got {type(adaptive).__name__}"
            )
        result = self._adaptive(inputs, target, adaptive, kwargs)
        self.last_adaptive = result
        return result.attributions

    def _adaptive(
        self,
        inputs: Tensor | tuple[Tensor, ...],
        target: Any,
        noising: AdaptiveNoising,
        kwargs: dict[str, Any],
    ) -> AdaptiveResult:
        """Adaptive noising: each evaluation is a SmoothTaylor call on the rows still searching.

        Every evaluation goes through :meth:`attribute` (the preset's one path) with one sigma
        per example (``stdevs=PerExampleSigma(sigma)``) and the search's common random numbers
        as the kernel; the search's own options (seed, kernel, progress bar) are taken out here.
        """
        _, loop, inner, _ = self._route(kwargs)
        _check_adaptive_options(loop, inner)
        is_tuple = _is_tuple(inputs)
        inputs_t = _floating_inputs(inputs)
        batch = inputs_t[0].shape[0]
        seed = seed_from(loop.pop("generator", None))
        show_progress = loop.pop("show_progress", False)
        crn = noising.noise_kernel(loop.pop("kernel", self.loop_defaults["kernel"]), seed)
        loss = noising.loss_fn(self.forward_func, inputs_t, is_tuple, target, seed)

        def _evaluate(rows: Tensor, sigma: Tensor) -> tuple[tuple[Tensor, ...], Tensor]:
            crn.restart(rows, n_inputs=len(inputs_t))
            sub = tuple(x[rows.to(x.device)] for x in inputs_t)
            out = self.attribute(
                sub if is_tuple else sub[0],
                select_examples(target, rows, batch),
                stdevs=PerExampleSigma(sigma),
                kernel=crn,
                **loop,
                **select_kwargs(inner, rows, batch),
            )
            maps = _format_tensor_into_tuples(out)
            return maps, loss(maps, rows)

        maps, result = noising.search(
            _evaluate, noising.start(inputs_t), show_progress=show_progress
        )
        result.attributions = _format_output(is_tuple, maps)
        return result


def _check_adaptive_options(loop: dict[str, Any], inner: dict[str, Any]) -> None:
    """Refuse the options the search cannot honour, naming the first one."""
    if inner.get("return_convergence_delta"):
        raise ValueError("`return_convergence_delta` is not supported with `adaptive`")
    unsupported = sorted(loop.keys() & _NOT_WITH_ADAPTIVE)
    if unsupported:
        raise ValueError(f"`{unsupported[0]}` is not supported with `adaptive`")
    if "stdevs" in loop:
        raise ValueError(
            "`stdevs` has no effect with `adaptive` (the search starts at the "
            "AdaptiveNoising's `sigma0`): give one of them"
        )


def _floating_inputs(inputs: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """The inputs as a tuple; each must be floating point (every one of them gets noise)."""
    inputs_t = _format_tensor_into_tuples(inputs)
    for i, x in enumerate(inputs_t):
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"`inputs[{i}]` must be a floating-point tensor")
    return inputs_t


def adaptive_smooth_taylor(
    forward_func: Any,
    inputs: Tensor | tuple[Tensor, ...],
    target: Any = None,
    noising: AdaptiveNoising | None = None,
    *,
    attribution_method: Any = None,
    nt_samples: int = 150,
    generator: Any = None,
    **kwargs: Any,
) -> AdaptiveResult:
    r"""SmoothTaylor with adaptive noising, returning the attributions and the chosen sigma.

    The functional form of ``SmoothTaylor(forward_func).attribute(..., adaptive=noising)``.

    Args:
        forward_func: The model or forward function.
        inputs: A tensor or a tuple of tensors, batch first.
        target: Output index, as in Captum.
        noising: The search configuration. Default: ``AdaptiveNoising()`` (total variation,
            the authors' schedule).
        attribution_method: The inner method (None: signed Saliency).
        nt_samples: Roots per example at every evaluation. Default: 150.
        generator: An int seed, a torch.Generator or None (global random state).
        **kwargs: Other arguments of :meth:`SmoothTaylor.attribute` (``kernel``,
            ``nt_samples_batch_size``, ``show_progress``, inner-method arguments).

    Returns:
        An :class:`AdaptiveResult`: ``attributions``, ``sigma`` and ``objective`` per example,
        the start, the cost and the history.

    Examples::

        >>> res = adaptive_smooth_taylor(model, images, target=labels, nt_samples=50,
        ...                              noising=AdaptiveNoising("aupc",
        ...                                                      objective_kwargs={"window": 2}),
        ...                              generator=0)
        >>> res.sigma, res.objective, res.relative_cost
    """
    method = SmoothTaylor(forward_func, attribution_method)
    method.attribute(
        inputs,
        target=target,
        nt_samples=nt_samples,
        generator=generator,
        adaptive=noising if noising is not None else AdaptiveNoising(),
        **kwargs,
    )
    result = method.last_adaptive
    if result is None:  # pragma: no cover - attribute() always sets it with `adaptive`
        raise RuntimeError("adaptive noising returned no result")
    return result
