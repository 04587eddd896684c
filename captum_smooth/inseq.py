"""captum-smooth's smoothing inside inseq: ``import captum_smooth.inseq`` registers the methods.

`inseq <https://github.com/inseq-team/inseq>`_ attributes generated text with Captum methods run
at the token embeddings. Importing this module registers, in inseq's own registry (listed by
``inseq.list_feature_attribution_methods()`` and loaded by name with ``inseq.load_model`` or
``model.attribute(..., method=...)``):

* ``smoothgrad``: inseq's ``saliency`` averaged over Gaussian noise on the embeddings
  (:class:`~captum_smooth.methods.SmoothGrad` around Captum's Saliency). Sigma defaults to
  ``noise_level=0.01`` of each example's embedding range (AllenNLP's SmoothGrad convention;
  images use 0.15, far too much for embeddings); ``stdevs=`` sets an absolute sigma or a sigma
  rule instead;
* ``noisegrad``: ``saliency`` averaged over ``n_weight_samples`` copies of the model with noisy
  weights (:class:`~captum_smooth.methods.NoiseGrad`); the embeddings are not noised, the
  weights are restored bit for bit after each call;
* ``fusiongrad``: both (:class:`~captum_smooth.methods.FusionGrad`): ``n_weight_samples`` weight
  draws times ``nt_samples`` embedding draws, input sigma ``RangeShareSigma(0.01)`` by default;
* ``smooth_<name>`` for each of inseq's gradient methods that attribute at the embeddings
  (``smooth_saliency``, ``smooth_input_x_gradient``, ``smooth_integrated_gradients``,
  ``smooth_gradient_shap``, ``smooth_deeplift``, ``smooth_sequential_integrated_gradients``):
  that method's own Captum attribution, built as inseq builds it, inside SmoothGrad. A gradient
  method registered later (by a user or a plugin) is smoothed with :func:`smooth_method`.
  (inseq 0.7.1's own ``sequential_integrated_gradients`` fails under transformers 5 on our test
  models, "One of the differentiated Tensors does not require grad", and so does its smoothed
  version: it is registered for the versions where inseq's method works, and left untested.)

Each registered method keeps inseq's class (a subclass of the method it smooths: hooks, baselines
and output formats are inseq's) and replaces only its Captum ``self.method`` with one of our
presets around it: every gradient goes through :class:`~captum_smooth.SmoothTunnel`. Keyword
arguments of ``model.attribute`` reach it as they reach inseq's methods: the loop's options
(``nt_samples``, ``nt_samples_batch_size``, ``stdevs``, ``noise_level``, ``bounds``, ``kernel``,
``generator`` (a seed or a ``torch.Generator``), ``include_clean``, ``nt_type``/``reducer``,
``n_weight_samples``, ``weight_stdev``, ``exclude``, ...) and the inner Captum method's own
(``abs`` for saliency, ``n_steps`` for integrated gradients, ...)::

    import inseq
    import captum_smooth.inseq  # registers the methods

    model = inseq.load_model("gpt2", "smoothgrad")
    out = model.attribute("Hello world", nt_samples=20, generator=0)
    out.show()

Not registered:

* ``adaptgrad``: AdaptGrad's sigma is the distance of each element to the nearer bound of a
  valid input range (pixels in [0, 1]). Token embeddings have no such range: the valid inputs are
  the vocabulary's discrete points, and any box around them (each example's min/max, or the
  vocabulary's per-dimension hull) leaves typical elements about three embedding standard
  deviations from a bound, so AdaptGrad's sigma (~0.5 of that distance at c = 0.95) would exceed
  the spread of the embeddings themselves: the noise would erase the token, not keep the sample
  valid. An adaptive sigma remains reachable explicitly: ``stdevs=AdaptiveSigma(c, bounds)``;
* layer methods (``layer_*``) and ``discretized_integrated_gradients``: they receive token ids,
  not embeddings (no noise can be added to an id);
* ``return_error=True``: inseq's step outputs have no slot for a per-element Monte-Carlo error;
  it is refused with a message (use :class:`~captum_smooth.SmoothLLMGradientAttribution` for it).

Per generation step inseq calls the method once. An integer ``generator`` seeds step ``k`` of a
call with ``derive_seed(generator, k)``: independent noise per step, the same result for the
same seed; a ``torch.Generator``'s draws continue across steps (and calls).

Requires inseq: ``pip install "captum-smooth[inseq]"``. The tested set (``make setup``,
``ci/constraints.txt``) is ``pip install --no-deps inseq==0.7.1`` plus its small runtime needs
(jaxtyping, treescope, ``typeguard<=2.13.3``, rich, matplotlib): inseq's wheel also declares
CUDA 11 libraries (under a ``sys_platform == "Linux"`` marker, which Python's ``"linux"`` does not
match) and web-security pins (aiohttp, authlib, tornado, ...) that it does not import. With the
CUDA build of torchvision from PyPI next to a CPU torch, import torchvision through
``captum_smooth.app.models._torchvision.import_torchvision()`` first (transformers imports it).
The rest of captum-smooth never imports this module.
"""

from __future__ import annotations

from typing import Any, cast

try:
    from inseq.attr.feat.gradient_attribution import (
        GradientAttributionRegistry,
        SaliencyAttribution,
    )
    from inseq.utils import extract_signature_args
except ImportError as error:  # pragma: no cover - exercised only without inseq
    raise ImportError(
        "captum_smooth.inseq needs inseq: pip install 'captum-smooth[inseq]' (the tested set: "
        "pip install --no-deps inseq==0.7.1 jaxtyping wadler-lindig treescope "
        "'typeguard<=2.13.3', with rich and matplotlib)"
    ) from error

from .core.plan import LoopOptions
from .core.random_state import derive_seed
from .methods import FusionGrad, NoiseGrad, SmoothGrad
from .methods._preset import SmoothingPreset
from .noise import RangeShareSigma

__all__ = [
    "EMBEDDING_NOISE_LEVEL",
    "SMOOTHED_METHODS",
    "FusionGradAttribution",
    "NoiseGradAttribution",
    "SmoothGradAttribution",
    "smooth_method",
]

#: Default sigma as a share of each example's embedding range (AllenNLP's SmoothGrad: 1 %).
EMBEDDING_NOISE_LEVEL = 0.01

_LOOP_OPTIONS = frozenset(LoopOptions.names())

# Not smoothable: they attribute token ids (no noise can be added to an id).
_ID_METHODS = frozenset({"discretized_integrated_gradients"})


def _routed(router: Any, key: str) -> bool:
    """Whether the preset's router has a word on ``key`` (a pointer, or a loop option)."""
    return key in router.pointers or key in _LOOP_OPTIONS


class _SmoothedAttribution:
    """What every registered method adds to the inseq class it smooths (first in the bases).

    After inseq's ``__init__`` has built its Captum method, that method is wrapped in
    :attr:`preset`; the keyword arguments inseq hands to it are the preset's (loop options) and
    the inner method's own; the defaults for embeddings are filled in per call.
    """

    #: The captum-smooth preset wrapped around inseq's Captum method.
    preset: type[SmoothingPreset] = SmoothGrad
    #: Defaults filled in per call unless given: ``name -> value``.
    call_defaults: dict[str, Any] = {}
    # Provided by inseq's class.
    method: Any
    attribution_model: Any
    attribute_batch_ids: bool
    ignore_extra_args: list[str]

    def __init__(self, attribution_model: Any, **kwargs: Any) -> None:
        super().__init__(attribution_model, **kwargs)  # type: ignore[call-arg]
        name = getattr(self, "method_name", type(self).__name__)
        if self.attribute_batch_ids:
            raise ValueError(
                f"{name}: the inner method attributes token ids, not embeddings; "
                "captum-smooth adds noise to embeddings only"
            )
        self.inner_method = self.method
        self.method = self.preset(self.preset_model(), self.inner_method)
        self._step = 0

    def preset_model(self) -> Any:
        """What the preset is built on (its weights for NoiseGrad): the wrapped model."""
        return self.attribution_model

    def get_attribution_args(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """The preset's keywords (loop options), the inner Captum method's own keywords, and the
        loop options the preset refuses (``nt_samples`` or ``kernel`` for NoiseGrad): passed on
        so that the preset's error says what to use instead, not dropped by inseq."""
        own, rest = extract_signature_args(
            kwargs, self.method.attribute, self.ignore_extra_args, return_remaining=True
        )
        inner, rest = extract_signature_args(
            rest, self.inner_method.attribute, self.ignore_extra_args, return_remaining=True
        )
        # The router refuses them with its one error (ValueError naming the option).
        router = self.method.router
        refused = {key: rest.pop(key) for key in list(rest) if _routed(router, key)}
        return {**own, **inner, **refused}, rest

    def attribute_step(
        self, attribute_fn_main_args: dict[str, Any], attribution_args: dict[str, Any] | None = None
    ) -> Any:
        args = dict(attribution_args or {})
        if args.get("return_error"):
            raise ValueError(
                "return_error=True is not supported inside inseq (its step outputs have no slot "
                "for a Monte-Carlo error); use captum_smooth.SmoothLLMGradientAttribution"
            )
        for key, value in self.defaults(args).items():
            args.setdefault(key, value)
        seed = args.get("generator")
        if isinstance(seed, int) and not isinstance(seed, bool):
            # One seed per generation step, derived from the user's: independent noise per
            # step, the same run for the same seed.
            args["generator"] = derive_seed(seed, self._step)
        self._step += 1
        return super().attribute_step(attribute_fn_main_args, args)  # type: ignore[misc]

    def prepare_and_attribute(self, *args: Any, **kwargs: Any) -> Any:
        """inseq's attribution of a call; the step count restarts (see :meth:`attribute_step`)."""
        self._step = 0
        return super().prepare_and_attribute(*args, **kwargs)  # type: ignore[misc]

    def defaults(self, args: dict[str, Any]) -> dict[str, Any]:
        """Per-call defaults given the user's arguments ``args``."""
        return dict(self.call_defaults)


class _EmbeddingSmoothGrad(_SmoothedAttribution):
    """SmoothGrad at the embeddings: ``noise_level`` 0.01 unless ``stdevs`` is given."""

    def defaults(self, args: dict[str, Any]) -> dict[str, Any]:
        return {} if "stdevs" in args else {"noise_level": EMBEDDING_NOISE_LEVEL}


class SmoothGradAttribution(_EmbeddingSmoothGrad, SaliencyAttribution):
    """``smoothgrad``: inseq's saliency through SmoothGrad (noise on the embeddings)."""

    method_name = "smoothgrad"
    preset = SmoothGrad


class NoiseGradAttribution(_SmoothedAttribution, SaliencyAttribution):
    """``noisegrad``: inseq's saliency through NoiseGrad (noise on the weights)."""

    method_name = "noisegrad"
    preset = NoiseGrad

    def preset_model(self) -> Any:
        # The transformers model: its weights are perturbed (inseq's wrapper is never in eval).
        return getattr(self.attribution_model, "model", self.attribution_model)


class FusionGradAttribution(NoiseGradAttribution):
    """``fusiongrad``: inseq's saliency through FusionGrad (weights and embeddings)."""

    method_name = "fusiongrad"
    preset = FusionGrad

    def defaults(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"stdevs": RangeShareSigma(EMBEDDING_NOISE_LEVEL)}


#: ``smooth_<name>`` -> the registered class, one per smoothable inseq gradient method.
SMOOTHED_METHODS: dict[str, type] = {}


def smooth_method(inseq_class: Any) -> type:
    """Register ``smooth_<method_name>``: the inseq gradient method ``inseq_class`` in SmoothGrad.

    The new class subclasses ``inseq_class`` (inseq finds it in its registry) and wraps the
    Captum method it builds. Calling it again for the same class returns the registered one.

    Args:
        inseq_class: A subclass of inseq's ``GradientAttributionRegistry`` attributing at the
            embeddings (not a layer method).

    Returns:
        The registered class.
    """
    if not (isinstance(inseq_class, type) and issubclass(inseq_class, GradientAttributionRegistry)):
        raise TypeError(f"expected an inseq gradient attribution class, got {inseq_class!r}")
    name = f"smooth_{cast(Any, inseq_class).method_name}"
    if name not in SMOOTHED_METHODS:
        SMOOTHED_METHODS[name] = type(
            f"Smooth{inseq_class.__name__}",
            (_EmbeddingSmoothGrad, inseq_class),
            {"method_name": name, "__module__": __name__, "__doc__": f"``{name}``."},
        )
    return SMOOTHED_METHODS[name]


def _smoothable(cls: type) -> bool:
    name = getattr(cls, "method_name", "")
    return not (
        issubclass(cls, _SmoothedAttribution) or name.startswith("layer_") or name in _ID_METHODS
    )


for _cls in sorted(
    GradientAttributionRegistry.available_classes().values(), key=lambda c: c.method_name
):
    if _smoothable(_cls):
        smooth_method(_cls)
