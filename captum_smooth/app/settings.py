"""The options of one ``explain`` or ``demo`` run (:class:`Settings`) and the gradient budget
they ask for (:class:`Budget`): a fixed count, or a cap with a tolerance."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..methods._preset import SmoothingPreset
from .errors import CLIError
from .methods import MethodSpec

__all__ = [
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_TOLERANCE",
    "DETERMINISTIC_STEPS",
    "MAX_SIZE",
    "MIN_SIZE",
    "Budget",
    "Settings",
    "budget",
    "check_size",
    "is_smoothing",
    "sampling_of",
]

#: Without ``--samples``, each smoothing method samples until its map's relative Monte-Carlo
#: error is at most this...
DEFAULT_TOLERANCE = 0.2
#: ...or until this many gradient evaluations per image (the cap, ``--max-samples``).
DEFAULT_MAX_SAMPLES = 128
#: Steps of the deterministic methods (Integrated Gradients) when the others sample to a
#: tolerance: a Riemann sum has no Monte-Carlo error to sample against.
DETERMINISTIC_STEPS = 32
#: The image sides ``--size`` takes: below 8 pixels the models have nothing to see; above 4096
#: one image alone is 200 MB, and the methods hold dozens of noisy copies of it at once.
MIN_SIZE, MAX_SIZE = 8, 4096


def check_size(size: int) -> None:
    """Refuse an image side outside :data:`MIN_SIZE`..:data:`MAX_SIZE` (``--size``).

    Raises:
        CLIError: ``size`` out of range.
    """
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise CLIError(f"--size must be in {MIN_SIZE}..{MAX_SIZE} pixels, got {size}")


@dataclass
class Settings:
    """The options of one ``explain`` or ``demo`` run."""

    command: str
    images: list[str]
    model: str | None
    methods: list[str] | None
    target: str | None
    samples: int | None
    seed: int
    kernel: str | None
    out: Path
    size: int
    auc_steps: int
    controls: bool
    progress: bool
    style: str
    tolerance: float | None = None
    max_samples: int | None = None
    sign: bool = False
    weight_noise: float | None = None
    #: ``--sampling`` (None: ``"iid"``; the demo: each method's :attr:`MethodSpec.sampling`).
    sampling: str | None = None
    #: A line printed on stderr once the options are checked (the demo's note on its methods):
    #: bad input is one line on stderr, alone.
    intro: str | None = None


def sampling_of(settings: Settings, spec: MethodSpec) -> str:
    """The sampling ``spec`` runs with: ``--sampling``, else the demo's per-method choice (the
    antithetic benchmark's verdict, :attr:`MethodSpec.sampling`), else ``"iid"``."""
    if settings.sampling is not None:
        return settings.sampling
    return spec.sampling if settings.command == "demo" else "iid"


def is_smoothing(spec: MethodSpec) -> bool:
    """Whether ``spec`` samples (and so has a Monte-Carlo error and takes a tolerance)."""
    return issubclass(spec.cls, SmoothingPreset)


@dataclass(frozen=True)
class Budget:
    """Gradient evaluations per image: a fixed count, or a cap with a tolerance.

    Attributes:
        samples: The fixed count (``--samples``), or the cap under a tolerance.
        tolerance: The relative Monte-Carlo error each smoothing map samples to, or None.
    """

    samples: int
    tolerance: float | None

    def of(self, spec: MethodSpec) -> int:
        """The budget of ``spec``: deterministic methods take a fixed step count."""
        if self.tolerance is not None and not is_smoothing(spec):
            return min(self.samples, DETERMINISTIC_STEPS)
        return self.samples

    def tolerance_of(self, spec: MethodSpec) -> float | None:
        """The tolerance of ``spec`` (None for the methods that do not sample)."""
        return self.tolerance if is_smoothing(spec) else None


def budget(settings: Settings) -> Budget:
    """The budget the options ask for (``--samples``, ``--tolerance``, ``--max-samples``).

    ``--samples N`` fixes the count; otherwise each smoothing method samples to ``--tolerance``
    (default :data:`DEFAULT_TOLERANCE`) under the cap ``--max-samples`` (default
    :data:`DEFAULT_MAX_SAMPLES`).

    Raises:
        CLIError: ``--samples`` with ``--tolerance`` or ``--max-samples`` (which one rules
            would be ambiguous).
    """
    if settings.samples is not None:
        for option, value in (
            ("--tolerance", settings.tolerance),
            ("--max-samples", settings.max_samples),
        ):
            if value is not None:
                raise CLIError(
                    f"--samples {settings.samples} fixes the sample count and {option} {value} "
                    "is for sampling to a tolerance: give one of them (--tolerance T "
                    "--max-samples N samples until the error is T, at most N gradients)"
                )
        return Budget(settings.samples, None)
    return Budget(
        DEFAULT_MAX_SAMPLES if settings.max_samples is None else settings.max_samples,
        DEFAULT_TOLERANCE if settings.tolerance is None else settings.tolerance,
    )
