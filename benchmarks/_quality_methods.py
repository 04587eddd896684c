"""The method rows of the quality benchmark: which methods, at which budget, and how one runs.

Every row but Captum's own NoiseTunnel reference and the controls is an entry of the method
table (:mod:`captum_smooth.app.methods`, its :class:`~captum_smooth.app.methods.MethodSpec`)
with the overrides written in :func:`method_specs`; FusionGrad's budget is split by the app's
one :func:`~captum_smooth.app.fusion_split.fusion_split` (with :data:`QUALITY_INPUT_DRAWS` input
draws per weight draw); the controls are those of :mod:`captum_smooth.app.controls`.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from captum.attr import Attribution, NoiseTunnel
from torch import Tensor, nn

from captum_smooth.app.controls import BlurredGradient, EdgeMap, RandomMap
from captum_smooth.app.methods import MethodSpec, fusion_split, get_method

__all__ = [
    "BOUNDS",
    "CONFIDENCES",
    "KERNELS",
    "NOISE_LEVEL",
    "QUALITY_INPUT_DRAWS",
    "WEIGHT_STDEV",
    "BoundMethod",
    "Builder",
    "QualityRow",
    "explain",
    "method_specs",
    "timed",
]

NOISE_LEVEL = 0.15  # sigma of every input-noise method, as a share of the [0, 1] range
#: NoiseGrad / FusionGrad multiplicative weight noise: the method table's (the authors' default).
WEIGHT_STDEV: float = get_method("noisegrad").kwargs(1)["weight_stdev"]
#: FusionGrad in these tables: input draws per weight draw (budget / 5 weight draws x 5), where
#: the app splits a fixed budget about sqrt(N) x sqrt(N).
QUALITY_INPUT_DRAWS = 5
BOUNDS = (0.0, 1.0)
KERNELS = ("laplace", "uniform", "student_t", "bump")
CONFIDENCES = (0.9, 0.95, 0.99)

Builder = Callable[[nn.Module, int], tuple[Attribution, dict[str, Any]]]


@dataclass(frozen=True)
class QualityRow:
    """One row of the tables.

    Attributes:
        label: The name in the tables.
        evaluations: Gradient evaluations per image.
        build: ``(model, seed) -> (attribution instance, attribute keyword arguments)``; the
            target is added at call time. None when the row is not run (see ``skipped``).
        kind: ``method`` or ``control``.
        skipped: Why the row is not run, else "".
        spec: Its entry of the method table (:mod:`captum_smooth.app.methods`), None for the
            Captum reference and the controls.
    """

    label: str
    evaluations: int
    build: Builder | None
    kind: str = "method"
    skipped: str = ""
    spec: MethodSpec | None = None

    @property
    def method(self) -> str:
        """The name of its entry in the method table, "" when it has none."""
        return "" if self.spec is None else self.spec.name


def _table_row(
    label: str, name: str, budget: int, seeded: bool = True, **overrides: Any
) -> QualityRow:
    """The method table's ``name`` at ``budget``, with ``overrides`` of its arguments."""
    spec = get_method(name)

    def build(m: nn.Module, s: int) -> tuple[Attribution, dict[str, Any]]:
        seed = {"generator": s} if seeded else {}
        return spec.cls(m), spec.kwargs(budget, **overrides, **seed)

    return QualityRow(label, spec.evaluations(budget), build, spec=spec)


def method_specs(
    budget: int, blur_sigma: float, chunk: int | None = None, ig_rows: int | None = None
) -> list[QualityRow]:
    """Every method and control at ``budget`` gradient evaluations per image.

    The methods are the method table's entries (:func:`captum_smooth.app.methods.get_method`),
    with these overrides of the table's arguments: the chunk sizes below, a seed per run, the
    AdaptGrad confidences of :data:`CONFIDENCES`, FusionGrad's ``budget / 5`` weight x 5 input
    draws (:data:`QUALITY_INPUT_DRAWS`) at sigma :data:`NOISE_LEVEL`, SmoothTaylor at sigma
    :data:`NOISE_LEVEL`, and Integrated Gradients by Gauss-Legendre from a black image.
    Captum's own NoiseTunnel SmoothGrad is the reference row (around the table's ``gradient``
    class).

    Args:
        budget: Gradient evaluations per image (>= 5).
        blur_sigma: Blur of the blurred-gradient control, in pixels.
        chunk: Noisy copies per inner call of Captum's NoiseTunnel and rows per inner call of
            Integrated Gradients (None: all at once, Captum's default). Our methods then use
            ``nt_samples_batch_size="auto"`` (bounded memory); with None they too take every
            copy at once (on the tiny models, where "auto"'s cap of 128 rows per call only
            slows them down).
        ig_rows: ``internal_batch_size`` of Integrated Gradients (rows per forward, at least
            the number of examples; None: all steps at once).

    Returns:
        The specs, methods first, controls last.
    """
    n = budget
    ours = {"nt_samples_batch_size": None if chunk is None else "auto"}
    gradient = get_method("gradient")
    specs: list[QualityRow] = [
        _table_row("Gradient", "gradient", n, seeded=False),
        QualityRow(
            "SmoothGrad (Captum NoiseTunnel)",
            n,
            lambda m, s: (
                NoiseTunnel(gradient.cls(m)),
                {
                    "nt_type": "smoothgrad",
                    "nt_samples": n,
                    "stdevs": NOISE_LEVEL * (BOUNDS[1] - BOUNDS[0]),
                    "nt_samples_batch_size": chunk,
                    **gradient.kwargs(1),
                },
            ),
        ),
    ]
    specs += [
        _table_row(f"AdaptGrad c={c}", "adaptgrad", n, confidence=c, **ours) for c in CONFIDENCES
    ]
    specs.append(_table_row("NoiseGrad", "noisegrad", n, weight_stdev=WEIGHT_STDEV))
    m_draws, n_draws = fusion_split(n, input_draws=QUALITY_INPUT_DRAWS)
    fusion = {"n_weight_samples": m_draws, "nt_samples": n_draws}
    specs.append(
        dataclasses.replace(
            _table_row(
                f"FusionGrad {m_draws}x{n_draws}",
                "fusiongrad",
                n,
                weight_stdev=WEIGHT_STDEV,
                stdevs=NOISE_LEVEL,
                **fusion,
                **ours,
            ),
            evaluations=m_draws * n_draws,
        )
    )
    specs.append(_table_row("SmoothTaylor", "smoothtaylor", n, stdevs=NOISE_LEVEL, **ours))
    ig = {"baselines": 0.0, "method": "gausslegendre", "internal_batch_size": ig_rows}
    specs.append(_table_row("Integrated Gradients", "ig", n, seeded=False, **ig))
    for k in KERNELS:
        name = "smoothgrad-" + k.replace("_", "-")
        specs.append(_table_row(f"SmoothGrad {k}", name, n, noise_level=NOISE_LEVEL, **ours))
    specs += [
        QualityRow(
            f"control: blurred gradient ({blur_sigma:g} px)",
            1,
            lambda m, s: (BlurredGradient(m, blur_sigma), {}),
            kind="control",
        ),
        QualityRow("control: input edge map", 0, lambda m, s: (EdgeMap(m), {}), kind="control"),
        QualityRow("control: random map", 0, lambda m, s: (RandomMap(m, s), {}), kind="control"),
    ]
    return specs


class BoundMethod(Attribution):
    """A method with its keyword arguments bound, so that a metric's own ``generator``
    argument cannot collide with the method's."""

    def __init__(self, method: Attribution, kwargs: dict[str, Any]) -> None:
        super().__init__(method.forward_func)
        self.method, self.kwargs = method, kwargs

    def attribute(self, inputs: Tensor, target: Any = None, **more: Any) -> Tensor:
        out = self.method.attribute(inputs, target=target, **self.kwargs, **more)
        return out[0] if isinstance(out, tuple) else out


def explain(spec: QualityRow, model: nn.Module, x: Tensor, target: Any, seed: int) -> Tensor:
    """The map of ``spec`` (detached); torch's global generator is seeded first (Captum's
    NoiseTunnel draws from it)."""
    assert spec.build is not None
    method, kwargs = spec.build(model, seed)
    torch.manual_seed(seed)
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Input Tensor \d+ did not already")
        out = method.attribute(x, target=target, **kwargs)
    if isinstance(out, tuple):
        out = out[0]
    return out.detach()


def timed(
    spec: QualityRow, model: nn.Module, x: Tensor, target: Any, seed: int
) -> tuple[Tensor, float]:
    """The map of ``spec`` (see :func:`explain`) and the wall time of the call (s)."""
    start = time.perf_counter()
    maps = explain(spec, model, x, target, seed)
    return maps, time.perf_counter() - start
