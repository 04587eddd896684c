"""A named method is a configuration of the one loop: what it fixes, what it lets you set.

A preset states in one place, as class attributes:

* ``loop_defaults``: the loop options a user may set, with the preset's defaults;
* ``parameters``: the preset's own arguments (``noise_level``, ``confidence``, ...), with their
  defaults and a line of documentation each;
* ``pointers``: loop options the preset does not take but a user may reach for (Captum's
  ``stdevs``), each with a one-line pointer to the preset's own argument;
* :meth:`SmoothingPreset.configure`: the loop options it fixes, computed from its arguments.

Every preset shares one ``attribute`` path (generated with the preset's signature and
docstring): arguments are routed explicitly to the preset, the loop or the inner method; the
inner method receives ``target`` only when the user gave one; a loop option the preset does not
take is an error naming the preset and the option.
"""

from __future__ import annotations

from typing import Any, ClassVar

from captum.attr import Saliency
from captum.attr._utils.attribution import Attribution
from captum.log import log_usage
from torch import Tensor, nn

from ..core.loop import SamplingReport
from ..core.router import COMMON_OPTIONS, INPUT_NOISE_OPTIONS, Router
from ..core.tunnel import SmoothTunnel

__all__ = ["COMMON_OPTIONS", "INPUT_NOISE_OPTIONS", "SmoothingPreset"]


def _build_inner(forward_func: Any, attribution_method: Any) -> Attribution:
    """The inner method: Saliency by default, a class built on ``forward_func``, or an instance."""
    if attribution_method is None:
        return Saliency(forward_func)
    if isinstance(attribution_method, type):
        if not issubclass(attribution_method, Attribution):
            raise TypeError(
                "`attribution_method` must be a Captum Attribution class or instance, "
                f"got {attribution_method.__name__}"
            )
        return attribution_method(forward_func)
    if not isinstance(attribution_method, Attribution):
        raise TypeError(
            "`attribution_method` must be a Captum Attribution class or instance, "
            f"got {type(attribution_method).__name__}"
        )
    return attribution_method


class SmoothingPreset(Attribution):
    """Base of the named methods: a configuration of :class:`SmoothTunnel` around an inner method.

    A preset is constructible from the model alone (Captum Insights builds methods as
    ``cls(model)``); the inner method defaults to :class:`captum.attr.Saliency` (whose own
    default ``abs=True`` applies: pass ``abs=False`` for signed gradients).

    Args:
        forward_func: The model or forward function.
        attribution_method: ``None`` (Saliency), a Captum attribution class (built as
            ``cls(forward_func)``), or an instance (layer and neuron methods included).
    """

    #: The name Captum (and Insights) shows for the method.
    display_name: ClassVar[str] = "Smoothing preset"
    #: The first line of ``attribute``'s docstring.
    summary: ClassVar[str] = "Smooth the inner attribution."
    #: Loop options a user may set, with this preset's defaults.
    loop_defaults: ClassVar[dict[str, Any]] = dict(COMMON_OPTIONS)
    #: The preset's own arguments: ``name -> (default, documentation)``.
    parameters: ClassVar[dict[str, tuple[Any, str]]] = {}
    #: Loop options this preset does not take, with a pointer to what to use instead.
    pointers: ClassVar[dict[str, str]] = {}
    #: The one routing of the preset's keywords, made from the three tables above.
    router: ClassVar[Router]

    def __init__(self, forward_func: Any, attribution_method: Any = None) -> None:
        inner = _build_inner(forward_func, attribution_method)
        super().__init__(forward_func)
        self.attribution_method = inner
        self.tunnel = SmoothTunnel(inner)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Every preset gets the one shared ``attribute``, with its own signature and docs.
        cls.router = Router(cls.display_name, cls.loop_defaults, cls.parameters, cls.pointers)
        if "attribute" not in cls.__dict__:
            cls.attribute = _make_attribute(cls)

    @classmethod
    def get_name(cls) -> str:
        return cls.display_name

    @property
    def multiplies_by_inputs(self) -> bool:
        return self.attribution_method.multiplies_by_inputs

    def has_convergence_delta(self) -> bool:
        return self.attribution_method.has_convergence_delta()

    @property
    def last_report(self) -> SamplingReport | None:
        """What the last call sampled (see :class:`~captum_smooth.core.loop.SamplingReport`)."""
        return self.tunnel.last_report

    @property
    def model(self) -> nn.Module:
        """The model, for presets that need its weights."""
        if not isinstance(self.forward_func, nn.Module):
            raise TypeError(
                f"{self.get_name()} needs the model's weights: `forward_func` must be an "
                f"nn.Module, got {type(self.forward_func).__name__}"
            )
        return self.forward_func

    # ------------------------------------------------------------------ what a preset states

    def configure(
        self, inputs: Tensor | tuple[Tensor, ...], params: dict[str, Any], given: set[str]
    ) -> dict[str, Any]:
        """The loop options this preset fixes, from its own arguments.

        Args:
            inputs: The user's inputs.
            params: The preset's arguments, defaults filled in.
            given: The names of the arguments the user gave.

        Returns:
            Loop options (names of :class:`~captum_smooth.core.plan.LoopOptions`).
        """
        return {}

    def inner_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """The inner method's keyword arguments (a preset may add defaults)."""
        return kwargs

    # ------------------------------------------------------------------ the one attribute path

    def _route(self, kwargs: dict[str, Any]) -> tuple[dict, dict, dict, set[str]]:
        """The preset's arguments, the loop options the user gave, the inner method's keywords
        and the names given (see :meth:`Router.route`)."""
        routed = self.router.route(kwargs)
        given_loop = {key: value for key, value in routed.loop.items() if key in routed.given}
        return routed.params, given_loop, routed.inner, routed.given

    def _attribute(self, inputs: Any, target: Any, kwargs: dict[str, Any]) -> Any:
        routed = self.router.route(kwargs)
        if target is not None:
            routed.inner["target"] = target
        options = routed.options(self.configure(inputs, routed.params, routed.given))
        return self.tunnel.run(inputs, options, self.inner_kwargs(routed.inner))


_DOC = """{summary}

        Args:
            inputs: A tensor or a tuple of tensors, batch first, as for the inner method.
            target: Output index (int, tuple, list or tensor per example), as in Captum; given
                to the inner method only when not None (neuron methods take none). Default: None.
{options}
            **kwargs: Passed to the inner method (``abs=False`` for Saliency, ``baselines``,
                ``additional_forward_args``, ``neuron_selector``, ...).

        Returns:
            Attributions shaped like the inner method's (a tensor or a tuple, as the inputs),
            then the convergence deltas where asked for, then the Monte-Carlo error with
            ``return_error=True``.

        Raises:
            ValueError: A loop option the method does not take, or a bad value (named).
        """


def _make_attribute(cls: type[SmoothingPreset]) -> Any:
    def attribute(self: SmoothingPreset, inputs: Any, target: Any = None, **kwargs: Any) -> Any:
        return self._attribute(inputs, target, kwargs)

    attribute.__doc__ = _DOC.replace("{summary}", cls.summary)
    attribute.__qualname__ = f"{cls.__name__}.attribute"
    return log_usage()(cls.router.document(attribute))
