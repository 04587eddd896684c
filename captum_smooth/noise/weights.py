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

Thread safety: a session holds a re-entrant lock of its model (:func:`model_lock`) from entry to
exit, so sessions on one model from several threads run one after the other and each sees only
its own weights; sessions on different models run concurrently. Other code that uses the same
model at the same time *outside* a session (a plain forward pass in another thread) is not
protected: it may see perturbed weights unless it holds :func:`model_lock` as well.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import re
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, Union

import torch
from torch import Tensor, nn

from ._signals import GUARD, critical

__all__ = [
    "NOISE_TYPES",
    "BoundWeightNoise",
    "ParameterFilter",
    "WeightNoise",
    "WeightPerturber",
    "model_lock",
    "select_parameters",
]

#: The weight-noise types: ``theta * N(1, s^2)`` or ``theta + N(0, s^2)``.
NOISE_TYPES = ("multiplicative", "additive")

ModuleTypes = Union[type[nn.Module], tuple[type[nn.Module], ...]]
#: How parameters are chosen: a regex on the names, module type(s), or ``(name, param) -> bool``.
ParameterFilter = Union[str, "re.Pattern[str]", ModuleTypes, Callable[[str, nn.Parameter], bool]]


# --------------------------------------------------------------------------------------------
# Locks
# --------------------------------------------------------------------------------------------

_locks: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that weight-noise sessions on ``model`` hold.

    One lock per model object (kept as long as the model lives). Hold it in code that must not
    see perturbed weights while NoiseGrad runs on the same model in another thread.

    Args:
        model: The module.

    Returns:
        Its ``threading.RLock``.

    Examples::

        >>> with model_lock(model):
        ...     logits = model(images)  # never sees a NoiseGrad draw of another thread
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    with _locks_guard:
        lock = _locks.get(model)
        if lock is None:
            lock = threading.RLock()
            _locks[model] = lock
        return lock


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------


def _check_filter(value: Any, name: str) -> Any:
    """Validate a parameter filter; compile regex strings."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return re.compile(value)
        except re.error as err:
            raise ValueError(f"`{name}` is not a valid regular expression: {err}") from err
    if isinstance(value, re.Pattern):
        return value
    if isinstance(value, type):
        value = (value,)
    if isinstance(value, tuple):
        if not value:
            raise ValueError(f"`{name}` is an empty tuple of module types")
        for t in value:
            if not (isinstance(t, type) and issubclass(t, nn.Module)):
                raise TypeError(f"`{name}` as a tuple must hold nn.Module subclasses, got {t!r}")
        return value
    if callable(value):
        return value
    raise TypeError(
        f"`{name}` must be None, a regex string, an nn.Module type or tuple of types, or a "
        f"predicate (name, param) -> bool, got {type(value).__name__}"
    )


def _matches(flt: Any, names: list[str], param: nn.Parameter, in_types: set[int] | None) -> bool:
    if isinstance(flt, re.Pattern):
        return any(flt.search(n) for n in names)
    if isinstance(flt, tuple):
        return in_types is not None and id(param) in in_types
    return any(bool(flt(n, param)) for n in names)


def _ids_in_modules(model: nn.Module, types: Any) -> set[int] | None:
    if not isinstance(types, tuple):
        return None
    return {id(p) for m in model.modules() if isinstance(m, types) for p in m.parameters()}


def select_parameters(
    model: nn.Module,
    parameters: ParameterFilter | None = None,
    exclude: ParameterFilter | None = None,
    trainable_only: bool = True,
) -> list[tuple[str, nn.Parameter]]:
    """The parameters a :class:`WeightNoise` perturbs, each once, in ``named_parameters`` order.

    A parameter shared by several modules (tied weights) is listed once under its first name; a
    filter matches it when it matches any of its names. Only floating-point parameters are
    candidates, and with ``trainable_only`` only those with ``requires_grad=True``. Buffers
    (BatchNorm running statistics) are never parameters.

    Args:
        model: The module.
        parameters: Which ones: None (all candidates), a regex string (``re.search`` on the
            dotted name), an nn.Module type or tuple of types (every parameter inside a module
            of that type, its submodules included), or a predicate ``(name, param) -> bool``.
        exclude: Which ones to leave out, in the same forms (e.g. ``"classifier"`` or
            ``nn.Linear`` for the head).
        trainable_only: Only parameters with ``requires_grad=True``. Default: True.

    Returns:
        ``[(name, parameter), ...]``.

    Raises:
        ValueError: when nothing is selected, or a regex is invalid.
        TypeError: for a filter of another kind, or ``model`` not an nn.Module.

    Examples::

        >>> [n for n, _ in select_parameters(model, exclude="classifier")]
        ['features.conv1.weight', 'features.bn1.weight', 'features.bn1.bias', ...]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    include_f = _check_filter(parameters, "parameters")
    exclude_f = _check_filter(exclude, "exclude")
    aliases: dict[int, tuple[nn.Parameter, list[str]]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in aliases:
            aliases[id(p)][1].append(name)
        else:
            aliases[id(p)] = (p, [name])
    include_ids = _ids_in_modules(model, include_f)
    exclude_ids = _ids_in_modules(model, exclude_f)
    selected = []
    for p, names in aliases.values():
        if not p.is_floating_point() or (trainable_only and not p.requires_grad):
            continue
        if include_f is not None and not _matches(include_f, names, p, include_ids):
            continue
        if exclude_f is not None and _matches(exclude_f, names, p, exclude_ids):
            continue
        selected.append((names[0], p))
    if not selected:
        n_total = len(aliases)
        n_trainable = sum(1 for p, _ in aliases.values() if p.requires_grad)
        hint = (
            " (no parameter has requires_grad=True: pass `trainable_only=False` for a frozen model)"
            if trainable_only and n_total and not n_trainable
            else ""
        )
        raise ValueError(
            f"the weight-noise filter selects no parameter of {type(model).__name__} "
            f"({n_total} parameters, {n_trainable} trainable; parameters={parameters!r}, "
            f"exclude={exclude!r}){hint}"
        )
    return selected


# --------------------------------------------------------------------------------------------
# Snapshot of everything a session could change
# --------------------------------------------------------------------------------------------


def _attempt(errors: list[BaseException], step: Callable[..., Any], *args: Any) -> None:
    """Run one restore step; keep its error and go on (the first error is raised at the end)."""
    try:
        step(*args)
    except BaseException as err:  # every later step must still run
        errors.append(err)


def _put_back_slots(current: Any, saved: dict[str, Any]) -> None:
    """Put a module's ``_parameters`` or ``_buffers`` entries back as they were at entry.

    A plain module holds a dict; a TorchScript module an ``OrderedDictWrapper`` over its C++
    attributes, whose keys are fixed (no ``clear``): its entries are set back one by one.
    """
    if isinstance(current, dict):
        if list(current) != list(saved) or any(current[k] is not v for k, v in saved.items()):
            current.clear()
            current.update(saved)
        return
    for key, value in saved.items():
        if current[key] is not value:
            current[key] = value


def _put_back_flags(param: Tensor, requires_grad: bool, grad: Tensor | None) -> None:
    param.requires_grad_(requires_grad)
    param.grad = grad


class _ModelState:
    """What the model looked like at session entry, and how to put it back bit for bit.

    Taking the snapshot changes nothing; :meth:`set_grads_aside` is the first change.

    Args:
        model: The module.
        perturbed: The parameters the session perturbs (their values are backed up by the
            :class:`WeightPerturber`); every other parameter's value is kept here, with the
            buffers, since a forward may change it in place (a frozen or integer parameter).
    """

    def __init__(self, model: nn.Module, perturbed: list[nn.Parameter]) -> None:
        self.modules = list(model.modules())
        self.training = [m.training for m in self.modules]
        self.param_slots = [dict(m._parameters.items()) for m in self.modules]
        self.buffer_slots = [dict(m._buffers.items()) for m in self.modules]
        params: dict[int, nn.Parameter] = {}
        buffers: dict[int, Tensor] = {}
        for slots, store in ((self.param_slots, params), (self.buffer_slots, buffers)):
            for slot in slots:
                for t in slot.values():
                    if t is not None:
                        store.setdefault(id(t), t)
        self.params = list(params.values())
        self.requires_grad = [p.requires_grad for p in self.params]
        self.grads = [p.grad for p in self.params]
        perturbed_ids = {id(p) for p in perturbed}
        kept = [*buffers.values(), *(p for p in self.params if id(p) not in perturbed_ids)]
        with torch.no_grad():
            self.values = [(t, t.detach().clone()) for t in kept]

    def set_grads_aside(self) -> None:
        """Set existing .grad tensors aside: a backward pass in the session cannot reach them."""
        for p in self.params:
            p.grad = None

    def restore(self, errors: list[BaseException]) -> None:
        """Put everything back; every step runs, errors are appended to ``errors``."""
        for m, slot in zip(self.modules, self.param_slots):
            _attempt(errors, _put_back_slots, m._parameters, slot)
        for m, slot in zip(self.modules, self.buffer_slots):
            _attempt(errors, _put_back_slots, m._buffers, slot)
        with torch.no_grad():
            for t, saved in self.values:
                _attempt(errors, t.copy_, saved)
        for p, flag, grad in zip(self.params, self.requires_grad, self.grads):
            _attempt(errors, _put_back_flags, p, flag, grad)
        for m, flag in zip(self.modules, self.training):
            _attempt(errors, setattr, m, "training", flag)


# --------------------------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------------------------


def _check_stdev(stdev: Any, name: str = "stdev") -> float:
    if isinstance(stdev, bool) or not isinstance(stdev, numbers.Real):
        raise TypeError(f"`{name}` must be a float >= 0, got {stdev!r}")
    value = float(stdev)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be finite and >= 0, got {stdev!r}")
    return value


def _check_noise_type(noise_type: Any) -> str:
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"`noise_type` must be one of {list(NOISE_TYPES)}, got {noise_type!r}")
    return noise_type


#: Large CPU models draw their noise in this many sub-streams, filled in parallel.
_N_STREAMS = 4
#: Below this many scalars (or off the CPU) one stream is drawn in the calling thread.
_PARALLEL_MIN_NUMEL = 1 << 20


def _stream_groups(params: list[Tensor], n_streams: int) -> list[list[int]]:
    """Split parameter indices into ``n_streams`` groups of similar size (largest first).

    Depends on the shapes only, so the split (and the draws) are the same on every machine.
    """
    groups: list[list[int]] = [[] for _ in range(n_streams)]
    sizes = [0] * n_streams
    for i in sorted(range(len(params)), key=lambda i: (-params[i].numel(), i)):
        j = min(range(n_streams), key=lambda j: (sizes[j], j))
        groups[j].append(i)
        sizes[j] += params[i].numel()
    return [sorted(g) for g in groups if g]


class WeightPerturber:
    """Draws noisy weights in place; handed out by :meth:`WeightNoise.session`, valid inside it.

    Each :meth:`perturb` writes ``backup * eta`` (multiplicative) or ``backup + eps``
    (additive) into the live parameters, from the backup taken at session entry: draws never
    compound. The noise is drawn straight into the parameter's storage, so a draw allocates
    nothing.

    Drawing the normals is the cost of a draw (torch's CPU generator is serial: for a ResNet-18
    on 2 cores about 45 ms, close to one forward and backward pass on one image). For models on
    the CPU with at least 2**20 selected scalars, each draw therefore takes 4 seeds from
    ``generator`` and fills 4 fixed groups of parameters from 4 sub-generators, in parallel on
    up to ``torch.get_num_threads()`` threads (about 25 ms on 2 cores), then multiplies in the
    calling thread; the groups depend on the parameter shapes only, so results do not depend on
    the thread count. Smaller models (and other devices) draw every parameter from
    ``generator`` itself, in order.

    Attributes:
        names: The perturbed parameters' names.
        stdev: The noise scale of the next draw (may be changed within the session).
        noise_type: ``"multiplicative"`` or ``"additive"``.
    """

    def __init__(
        self,
        selected: list[tuple[str, nn.Parameter]],
        stdev: float,
        noise_type: str,
    ) -> None:
        self.names = [n for n, _ in selected]
        self._params = [p for _, p in selected]
        with torch.no_grad():
            self._backups = [p.detach().clone() for p in self._params]
        self.stdev = stdev
        self.noise_type = noise_type
        self._active = True
        self._groups: list[list[int]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        on_cpu = all(p.device.type == "cpu" for p in self._params)
        if on_cpu and self.numel >= _PARALLEL_MIN_NUMEL:
            self._groups = _stream_groups(self._params, _N_STREAMS)
            self._stream_gens = [torch.Generator() for _ in self._groups]
            workers = min(len(self._groups), torch.get_num_threads())
            if workers > 1:
                self._pool = ThreadPoolExecutor(workers, thread_name_prefix="weight-noise")

    @property
    def numel(self) -> int:
        """Number of perturbed scalars."""
        return sum(p.numel() for p in self._params)

    def _check_active(self) -> None:
        if not self._active:
            raise RuntimeError("this WeightPerturber's session has ended; open a new session")

    def _fill_noise(self, i: int, mean: float, s: float, generator: torch.Generator | None) -> None:
        """Write this draw's noise (eta or eps) into parameter ``i``'s storage."""
        p = self._params[i]
        if generator is None or generator.device.type == p.device.type:
            p.normal_(mean, s, generator=generator)
        else:  # a generator on another device: draw there, then move
            noise = torch.empty(p.shape, dtype=p.dtype, device=generator.device)
            p.copy_(noise.normal_(mean, s, generator=generator))

    def _apply_noise(self, i: int) -> None:
        """Turn the noise in parameter ``i`` into its noisy weight (``backup * eta``, ``+ eps``)."""
        if self.noise_type == "multiplicative":
            self._params[i].mul_(self._backups[i])
        else:
            self._params[i].add_(self._backups[i])

    @critical
    def perturb(self, generator: torch.Generator | None = None, stdev: float | None = None) -> None:
        """Replace the weights by a fresh noisy draw of the backed-up ones.

        All or nothing for signals: one that arrives during the draw is handled when the draw
        is complete (see :mod:`captum_smooth.noise._signals`).

        Args:
            generator: The random generator (None: torch's global one).
            stdev: Noise scale for this draw; None uses :attr:`stdev`. Default: None.
        """
        self._check_active()
        s = self.stdev if stdev is None else _check_stdev(stdev)
        if s == 0.0:
            self._copy_backups()
        else:
            self._draw(generator, s)
        GUARD.deliver()

    def _draw(self, generator: torch.Generator | None, s: float) -> None:
        mean = 1.0 if self.noise_type == "multiplicative" else 0.0
        with torch.no_grad():
            if self._groups is None:
                for i in range(len(self._params)):
                    self._fill_noise(i, mean, s, generator)
                    self._apply_noise(i)
                return
            device = generator.device if generator is not None else "cpu"
            seeds = torch.randint(
                0, 2**62, (len(self._groups),), generator=generator, device=device
            ).tolist()

            def fill(j: int) -> None:
                # Only the draw runs in the workers: CPU normal_ is serial per generator, so it
                # never enters an OpenMP region there. Element-wise ops would, and give each
                # worker thread its own OpenMP team, which slowed every later forward and
                # backward pass of the process up to 2x (EfficientNet-Lite0: 45 -> 103 ms).
                gen = self._stream_gens[j].manual_seed(seeds[j])
                with torch.no_grad():
                    for i in self._groups[j]:  # type: ignore[index]
                        self._fill_noise(i, mean, s, gen)

            if self._pool is None:
                for j in range(len(self._groups)):
                    fill(j)
            else:
                # The workers are done before anything else touches the weights: perturb is a
                # critical section, so no signal's exception can let a restore race them.
                futures = [self._pool.submit(fill, j) for j in range(len(self._groups))]
                wait(futures)
                for future in futures:
                    future.result()
            # The multiply (or add) runs here, with the process's own intra-op threads.
            for i in range(len(self._params)):
                self._apply_noise(i)

    @critical
    def restore(self) -> None:
        """Write the clean (backed-up) weights back, staying in the session."""
        self._check_active()
        self._copy_backups()
        GUARD.deliver()

    def _copy_backups(self, errors: list[BaseException] | None = None) -> None:
        with torch.no_grad():
            for p, backup in zip(self._params, self._backups):
                if errors is None:
                    p.copy_(backup)
                else:
                    _attempt(errors, p.copy_, backup)

    def _close(self, errors: list[BaseException]) -> None:
        """End the session's perturber: stop the workers, write the clean weights back."""
        if self._pool is not None:
            _attempt(errors, self._pool.shutdown, True)
            self._pool = None
        if self._active:
            self._active = False
            self._copy_backups(errors)
            self._backups = []


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
        self.stdev = _check_stdev(stdev)
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

    def bound_to(self, model: nn.Module) -> BoundWeightNoise:
        """This noise bound to ``model``, whatever forward function the loop is given."""
        return BoundWeightNoise(self, model)

    def session(self, model: nn.Module) -> contextlib.AbstractContextManager[WeightPerturber]:
        """Back up ``model``, hand out a :class:`WeightPerturber`, restore the model on exit.

        The model's lock (:func:`model_lock`) is held throughout. Sessions on one model nest
        (the inner one restores what the outer one had drawn). Entering, each draw and the
        exit are critical sections: an asynchronous signal (Ctrl-C, SIGTERM, SIGALRM, ...)
        that arrives in one is handled as soon as the model is whole again, so an exception
        from its handler never leaves the model half backed up, half drawn or half restored.
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
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"weight noise needs the model's weights: `model` must be an nn.Module, got "
                f"{type(model).__name__}"
            )
        return _Session(self, model)


#: How often a session waiting for another thread's session on the same model looks for signals.
_LOCK_POLL_S = 0.05


class BoundWeightNoise:
    """A :class:`WeightNoise` bound to one model: its session perturbs that model, whatever
    forward function (a wrapper, Captum's LLM forward) the inner method calls.

    Args:
        noise: The weight noise.
        model: The model whose weights it perturbs.
    """

    def __init__(self, noise: WeightNoise, model: nn.Module) -> None:
        self.noise = noise
        self.model = model

    def __repr__(self) -> str:
        return f"{self.noise!r}.bound_to({type(self.model).__name__})"

    def session(self, forward_func: Any) -> contextlib.AbstractContextManager[WeightPerturber]:
        # The session itself, not a generator around it: a signal arriving in a generator's
        # exit path could skip the restore (see captum_smooth.noise._signals).
        return self.noise.session(self.model)


class _Session:
    """The context manager of :meth:`WeightNoise.session` (see there).

    A class, not a generator: its ``__enter__`` and ``__exit__`` are critical from their first
    bytecode, where a generator's ``finally`` could be skipped by a signal arriving before it.
    """

    def __init__(self, noise: WeightNoise, model: nn.Module) -> None:
        self._noise = noise
        self._model = model
        self._lock = model_lock(model)
        self._locked = False
        self._held = False
        self._state: _ModelState | None = None
        self._perturber: WeightPerturber | None = None

    @critical
    def __enter__(self) -> WeightPerturber:
        if self._held:
            raise RuntimeError("this weight-noise session is already open; open a new one")
        selected = self._noise.selected_parameters(self._model)  # nothing changed yet
        GUARD.hold()
        self._held = True
        try:
            self._acquire()
            self._state = _ModelState(self._model, [p for _, p in selected])
            self._perturber = WeightPerturber(selected, self._noise.stdev, self._noise.noise_type)
            self._state.set_grads_aside()  # the first change to the model
            GUARD.deliver()  # signals that came during the backup
        except BaseException as err:
            self.__exit__(type(err), err, err.__traceback__)
            raise
        return self._perturber

    def _acquire(self) -> None:
        """Take the model's lock; while waiting for it, signals are handled (nothing changed)."""
        while not self._lock.acquire(timeout=_LOCK_POLL_S):
            GUARD.deliver()
        self._locked = True

    @critical
    def __exit__(self, *exc_info: Any) -> None:
        errors: list[BaseException] = []
        if self._perturber is not None:
            self._perturber._close(errors)
        if self._state is not None:
            self._state.restore(errors)
        self._perturber = self._state = None
        if self._locked:
            self._locked = False
            _attempt(errors, self._lock.release)
        if self._held:
            self._held = False
            _attempt(errors, GUARD.release)
        try:
            GUARD.deliver()  # the model is whole: the signals held back are handled now
        finally:
            if errors:
                raise errors[0]
