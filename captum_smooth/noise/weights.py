r"""Weight noise: explain a model whose weights are drawn around the trained ones.

NoiseGrad (Bykov et al.) replaces the trained weights :math:`\theta` by draws
:math:`\theta_k = \theta \odot \eta_k`, :math:`\eta_k \sim \mathcal{N}(1, s^2)` independently for
every scalar, explains each perturbed model and averages. :class:`WeightNoise` is that noise as a
component of the sampling loop (:class:`~captum_smooth.core.tunnel.SmoothTunnel`): its
:meth:`WeightNoise.session` context manager backs up what it will perturb once, hands out a
:class:`WeightPerturber` whose :meth:`~WeightPerturber.perturb` writes ``backup * eta`` into the
live parameters in place (no model copy per draw), and restores the model bit for bit on exit,
whatever happens (normal exit, exception, ``KeyboardInterrupt``).

What the session restores: the values of the perturbed parameters, every buffer (a model in
train mode updates BatchNorm running statistics during the forward passes) and every other
parameter (a forward may change a frozen or integer parameter in place), the identity of
every Parameter and buffer object held by every submodule (TorchScript modules included),
``requires_grad`` flags, existing ``.grad`` tensors (``None`` stays ``None``; a ``.grad``
tensor is set aside during the session, so backward passes inside it cannot accumulate into
it) and the train/eval flag of every submodule. Every restore step runs even when one fails;
the first error is raised after the last step.

All or nothing: entering (the backup), each :meth:`WeightPerturber.perturb` and the exit (the
restore) are critical sections (:mod:`captum_smooth.noise._signals`): an asynchronous signal
whose Python handler raises (Ctrl-C, SIGTERM, SIGALRM, ...) is handled when the section ends,
with the model whole, never half-way through.

Thread safety: a session holds, from entry to exit, a re-entrant lock of every module of its
model (:func:`model_lock` of each) and of every parameter and buffer object they hold, so
sessions whose models share anything (one model from several threads, a model and a wrapper
around it, two models tied to one embedding) run one after the other and each sees only its own
weights; sessions on models that share nothing run concurrently. Other code that uses the same
model at the same time *outside* a session (a plain forward pass in another thread) is not
protected: it may see perturbed weights unless it holds :func:`model_lock` as well.

Binding: :meth:`WeightNoise.bound_to` ties a noise to one model (:class:`BoundWeightNoise`),
for a sampling loop whose inner method calls a wrapper around that model (a lambda, an
``nn.Sequential``, Captum's LLM forward): the session still perturbs and restores the model.

The parts, one module each (import them from here): the parameter selection
(:mod:`~captum_smooth.noise.weights_selection`), the backup and restore of the model state
(:mod:`~captum_smooth.noise.weights_backup`), the in-place draws
(:mod:`~captum_smooth.noise.weights_perturber`) and the session with its lock
(:mod:`~captum_smooth.noise.weights_session`).
"""

from __future__ import annotations

import contextlib
from typing import Any

from torch import nn

from .weights_perturber import NOISE_TYPES, WeightPerturber, _check_noise_type, check_stdev
from .weights_selection import ParameterFilter, _check_filter, select_parameters
from .weights_session import WeightSession, model_lock

__all__ = [
    "NOISE_TYPES",
    "BoundWeightNoise",
    "ParameterFilter",
    "WeightNoise",
    "WeightPerturber",
    "WeightSession",
    "model_lock",
    "select_parameters",
]


class WeightNoise:
    r"""Gaussian noise on a model's weights, for NoiseGrad and FusionGrad.

    Multiplicative (the NoiseGrad default): :math:`\theta_k = \theta \odot \eta_k`,
    :math:`\eta_k \sim \mathcal{N}(1, s^2)`; additive: :math:`\theta + \mathcal{N}(0, s^2)`;
    independently for every scalar of every selected parameter (a tied parameter is drawn once
    and both uses see the same draw). By default every floating-point parameter with
    ``requires_grad=True`` is selected; buffers such as BatchNorm running statistics are never
    perturbed.

    Used through :meth:`session`, a context manager that backs up the selected parameters once
    (one extra copy of them at most) and all buffers, and restores the model bit for bit on exit
    (see the module documentation for what is restored and for thread safety).

    Reference: Bykov, Hedström, Nakajima, Höhne, "NoiseGrad: Enhancing Explanations by
    Introducing Stochasticity to Model Weights", AAAI 2022.

    Args:
        stdev: The noise scale ``s`` >= 0 (relative for multiplicative noise). Default: 0.2.
        noise_type: ``"multiplicative"`` or ``"additive"``. Default: ``"multiplicative"``.
        parameters: Which parameters: None (all trainable), a regex on the names, an nn.Module
            type or tuple of types, or a predicate ``(name, param) -> bool`` (see
            :func:`select_parameters`). Default: None.
        exclude: Parameters to leave out, same forms (e.g. ``"classifier"``). Default: None.
        trainable_only: Only parameters with ``requires_grad=True``. Default: True.

    Examples::

        >>> from captum.attr import Saliency
        >>> from captum_smooth import SmoothTunnel
        >>> tunnel = SmoothTunnel(Saliency(model))
        >>> attr = tunnel.attribute(images, target=3, nt_samples=1, stdevs=0.0,
        ...                         weight_noise=WeightNoise(0.2, exclude="classifier"),
        ...                         n_weight_samples=10, generator=0)
        >>> with WeightNoise(0.1).session(model) as perturber:
        ...     perturber.perturb(torch.Generator().manual_seed(0))
        ...     noisy_logits = model(images)
        >>> # here the model has its trained weights again, bit for bit
    """

    def __init__(
        self,
        stdev: float = 0.2,
        noise_type: str = "multiplicative",
        parameters: ParameterFilter | None = None,
        exclude: ParameterFilter | None = None,
        trainable_only: bool = True,
    ) -> None:
        self.stdev = check_stdev(stdev)
        self.noise_type = _check_noise_type(noise_type)
        _check_filter(parameters, "parameters")
        _check_filter(exclude, "exclude")
        if not isinstance(trainable_only, bool):
            raise TypeError(f"`trainable_only` must be a bool, got {trainable_only!r}")
        self.parameters = parameters
        self.exclude = exclude
        self.trainable_only = trainable_only

    def __repr__(self) -> str:
        return (
            f"WeightNoise(stdev={self.stdev!r}, noise_type={self.noise_type!r}, "
            f"parameters={self.parameters!r}, exclude={self.exclude!r}, "
            f"trainable_only={self.trainable_only!r})"
        )

    def selected_parameters(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        """The ``(name, parameter)`` pairs this noise perturbs on ``model``."""
        return select_parameters(model, self.parameters, self.exclude, self.trainable_only)

    def session(self, model: nn.Module) -> contextlib.AbstractContextManager[WeightPerturber]:
        """Back up ``model``, hand out a :class:`WeightPerturber`, restore the model on exit.

        The locks of the model's modules and tensors are held throughout (:func:`model_lock`
        of the model among them). Sessions on one model nest (the inner one restores what the
        outer one had drawn). Entering, each draw and the exit are critical sections: an
        asynchronous signal (Ctrl-C, SIGTERM, SIGALRM, ...) that arrives in one is handled as
        soon as the model is whole again, so an exception from its handler never leaves the
        model half backed up, half drawn or half restored.
        The exit runs every restore step even when one fails, then raises the first error.

        Args:
            model: The module whose weights are perturbed (TorchScript modules included).

        Returns:
            A context manager whose ``__enter__`` gives the perturber; the weights stay clean
            until its first ``perturb``.

        Raises:
            TypeError: ``model`` is not an nn.Module.
            ValueError: the filters select no parameter (on entering).

        Examples::

            >>> with WeightNoise(0.1).session(model) as perturber:
            ...     perturber.perturb(torch.Generator().manual_seed(0))
            ...     noisy_logits = model(images)
        """
        return WeightSession(self, _checked_model(model))

    def bound_to(self, model: nn.Module) -> BoundWeightNoise:
        """This noise tied to ``model``, whatever forward function the sampling loop is given.

        The loop opens its weight-noise session on the inner method's ``forward_func``; when
        that is a wrapper around the model (a lambda, an ``nn.Sequential``, Captum's LLM
        forward), the bound noise still perturbs, and restores, ``model`` itself.

        Args:
            model: The module whose weights are perturbed.

        Returns:
            A :class:`BoundWeightNoise` (a ``WeightNoiseLike`` for the loop).

        Raises:
            TypeError: ``model`` is not an nn.Module.

        Examples::

            >>> saliency = Saliency(lambda x: model(x).softmax(-1))
            >>> attr = SmoothTunnel(saliency).attribute(
            ...     images, target=3, nt_samples=1, stdevs=0.0,
            ...     weight_noise=WeightNoise(0.2).bound_to(model), n_weight_samples=10)
        """
        return BoundWeightNoise(self, model)


class BoundWeightNoise:
    """A :class:`WeightNoise` tied to one model: its sessions perturb that model, always.

    Made by :meth:`WeightNoise.bound_to`. :meth:`session` returns the noise's own session
    object, not a generator wrapped around it, so the restore keeps every guarantee of
    :meth:`WeightNoise.session` (a signal cannot skip it).

    Args:
        noise: The weight noise.
        model: The module whose weights are perturbed.

    Attributes:
        noise: The weight noise.
        model: The bound module.

    Examples::

        >>> bound = WeightNoise(0.1).bound_to(model)
        >>> with bound.session(lambda x: model(x).softmax(-1)) as perturber:
        ...     perturber.perturb(torch.Generator().manual_seed(0))  # model's weights drawn
    """

    def __init__(self, noise: WeightNoise, model: nn.Module) -> None:
        if not isinstance(noise, WeightNoise):
            raise TypeError(f"`noise` must be a WeightNoise, got {type(noise).__name__}")
        self.noise = noise
        self.model = _checked_model(model)

    def __repr__(self) -> str:
        return f"BoundWeightNoise(noise={self.noise!r}, model={type(self.model).__name__})"

    def session(self, forward_func: Any) -> contextlib.AbstractContextManager[WeightPerturber]:
        """The noise's session on the bound model; ``forward_func`` is not used.

        Args:
            forward_func: What the loop calls (the model or a wrapper around it); ignored.

        Returns:
            ``self.noise.session(self.model)`` itself: a :class:`WeightSession`.

        Examples::

            >>> with WeightNoise(0.1).bound_to(model).session(wrapper) as perturber:
            ...     perturber.perturb()
        """
        # The session object itself, never a generator around it: a signal arriving in a
        # generator's exit path could skip the restore (see captum_smooth.noise._signals).
        return self.noise.session(self.model)


def _checked_model(model: Any) -> nn.Module:
    """``model``, or a TypeError: weight noise needs the module that holds the weights."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"weight noise needs the model's weights: `model` must be an nn.Module, got "
            f"{type(model).__name__}"
        )
    return model
