"""The weight-noise scale of NoiseGrad and FusionGrad, calibrated for the model at hand.

The NoiseGrad authors' heuristic: take the largest multiplicative noise ``s`` whose perturbed
models keep about 95 % of the clean accuracy
(:func:`~captum_smooth.methods.calibration.calibrate_weight_noise`). Labelled data for an
arbitrary model is not at hand offline, so the accuracy is measured against a proxy: agreement
with the clean model's own predictions on the photos bundled with scikit-image and on
augmentations of them (flips, crops, brightness), at the image size of the run. The clean model
agrees with itself everywhere, so ``s`` is the largest scale at which the perturbed models keep
at least 95 % of those predictions. The output says so.

When the search ends before any scale failed (a model robust to weight noise), ``s`` is only
the largest scale tried, a lower bound: the choice says ``bracketed=False`` and the text "at
least s".

A calibration takes seconds to a minute on a CPU; its result is cached per model fingerprint (a
SHA-256 of the model's state: names, dtypes, shapes and bytes of every parameter and buffer)
and image size, in ``$CAPTUM_SMOOTH_CACHE`` or the user's cache folder
(``$XDG_CACHE_HOME/captum-smooth``, default ``~/.cache/captum-smooth``), file
``weight-noise.json``. An entry is used only if every field has its type and range (else it is
recalibrated, with a warning naming the file). Writes are serialized across processes by an
exclusive ``flock`` on ``weight-noise.json.lock`` beside it (read, add, write back under the
lock) and replace the file atomically; a failed write leaves no temporary file. A file that is
not a JSON object is kept aside as ``weight-noise.json.corrupt`` before a new one is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

try:  # POSIX; elsewhere writes are atomic but not serialized across processes
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

import torch
from torch import Tensor, nn

__all__ = [
    "PROXY",
    "TARGET_DROP",
    "WeightNoiseChoice",
    "cache_dir",
    "calibrated_weight_noise",
    "model_fingerprint",
    "proxy_images",
]

#: The relative share of the (proxy) accuracy a perturbed model may lose.
TARGET_DROP = 0.05
#: Weight draws averaged per tried scale, the most scales tried and the first one: a search of
#: 36 images x (1 + 2 x 6) forward passes, ~40 s of one CPU core for EfficientNet-Lite0 at 224.
N_DRAWS = 2
MAX_ITER = 6
INITIAL_STDEV = 0.01
#: The largest scale the search may return (calibrate_weight_noise's ``max_stdev``).
MAX_STDEV = 2.0
#: Augmented copies per bundled photo (the photo itself included).
COPIES = 6
#: What the accuracy is measured against (printed and reported).
PROXY = (
    "no labelled data offline: accuracy is the agreement with the clean model's own "
    "predictions on scikit-image's bundled photos and their augmentations"
)
#: Changes whenever the proxy data or the search settings change (part of the cache key).
_VERSION = f"v3-copies{COPIES}-draws{N_DRAWS}-iter{MAX_ITER}-from{INITIAL_STDEV}-drop{TARGET_DROP}"


@dataclass
class WeightNoiseChoice:
    """The scale chosen and how.

    Attributes:
        stdev: The weight-noise scale ``s`` (``theta * N(1, s^2)``).
        agreement: Mean agreement of the perturbed models at ``stdev`` with the clean model.
        threshold: The agreement a scale had to keep (``1 - TARGET_DROP``).
        n_images: Proxy images (photos times augmentations).
        fingerprint: The model fingerprint (:func:`model_fingerprint`).
        bracketed: Whether a larger scale was tried and failed; False when every scale tried
            kept the agreement, so that ``stdev`` is only a lower bound.
        cached: Whether the result was read from the cache.
        cache_file: The cache file (None when none could be written).
        history: ``(s, agreement)`` of every scale tried.
        warnings: What the user must know (no scale kept the agreement, ...).
    """

    stdev: float
    agreement: float
    threshold: float
    n_images: int
    fingerprint: str
    bracketed: bool
    cached: bool = False
    cache_file: str | None = None
    history: list[tuple[float, float]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report's entry (JSON friendly), with how ``s`` was chosen."""
        return {**asdict(self), "chosen_by": "calibration", "proxy": PROXY}

    def describe(self) -> str:
        """One paragraph for the terminal."""
        source = f"cached in {self.cache_file}" if self.cached else "calibrated now"
        keeping = f"keeping {1 - TARGET_DROP:.0%} of the clean accuracy"
        chosen = (
            f"the largest s {keeping}"
            if self.bracketed
            else f"at least s {keeping}: every scale tried kept it, s is the largest tried, a "
            "lower bound"
        )
        return (
            f"weight noise of NoiseGrad/FusionGrad: s = {self.stdev:.3g} ({source}), {chosen} "
            f"(the NoiseGrad authors' heuristic); {PROXY} ({self.n_images} images): "
            f"{self.agreement:.3f} at s"
        )


def cache_dir() -> Path:
    """``$CAPTUM_SMOOTH_CACHE``, else ``$XDG_CACHE_HOME/captum-smooth``, else ``~/.cache/...``."""
    own = os.environ.get("CAPTUM_SMOOTH_CACHE")
    if own:
        return Path(own)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "captum-smooth"


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's state: every entry's name, dtype, shape and bytes.

    Examples::

        >>> model_fingerprint(nn.Linear(2, 2)) == model_fingerprint(nn.Linear(2, 2))
        False
    """
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def proxy_images(size: int, seed: int = 0) -> Tensor:
    """The bundled photos and :data:`COPIES` - 1 augmentations of each, ``(N, 3, size, size)``.

    Augmentations (seeded): a horizontal flip, two crops of 60-90 % of the side resized back,
    a darker and a brighter copy (x 0.75, x 1.25, clipped to [0, 1]).
    """
    from .data.images import SAMPLE_IMAGE_NAMES, load_sample_images

    photos, _ = load_sample_images(SAMPLE_IMAGE_NAMES, size=size)
    generator = torch.Generator().manual_seed(seed)
    copies = [photos, photos.flip(-1)]
    for _ in range(2):
        copies.append(_random_crops(photos, generator))
    copies += [(photos * 0.75).clamp(0, 1), (photos * 1.25).clamp(0, 1)]
    return torch.cat(copies[:COPIES])


def _random_crops(photos: Tensor, generator: torch.Generator) -> Tensor:
    size = photos.shape[-1]
    crops = []
    for photo in photos:
        side = int(size * (0.6 + 0.3 * float(torch.rand((), generator=generator))))
        top, left = (int(torch.randint(0, size - side + 1, (), generator=generator)) for _ in "tl")
        crop = photo[None, :, top : top + side, left : left + side]
        crops.append(torch.nn.functional.interpolate(crop, size=(size, size), mode="bilinear"))
    return torch.cat(crops)


def _read_cache(path: Path) -> tuple[dict[str, Any], str | None]:
    """The cache's entries, and why its content is not a JSON object (None when absent or read).

    Raises:
        OSError: The file exists but cannot be read (a folder, no permission).
    """
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        return {}, None
    except ValueError as err:  # not JSON, not UTF-8
        return {}, f"{type(err).__name__}: {err}"
    if not isinstance(data, dict):
        return {}, f"a JSON {type(data).__name__}, not an object"
    return data, None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path.lock``: one process at a time reads and writes ``path``.

    The lock file stays (removing it would let two processes lock two different files).
    """
    handle = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock


def _replace_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    Whatever fails (the disk full, ``path`` a folder, an interrupt), the temporary file is
    removed and the error raised: ``path`` is either the old file or the new one.
    """
    handle, tmp = tempfile.mkstemp(prefix=".weight-noise.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_cache(path: Path, key: str, entry: dict[str, Any]) -> tuple[bool, list[str]]:
    """Add ``entry`` under ``key``: read, add and write back under :func:`_locked`.

    Returns:
        Whether it was written, and what the user must know (why not, or that a corrupt file
        was kept aside).
    """
    notes = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            data, unreadable = _read_cache(path)
            if unreadable is not None:
                aside = path.with_name(path.name + ".corrupt")
                os.replace(path, aside)
                notes.append(
                    f"the calibration cache {path} could not be read ({unreadable}): kept "
                    f"aside as {aside}, a new one written"
                )
            data[key] = entry
            _replace_atomically(path, data)
    except OSError as err:
        return False, [*notes, f"could not write the calibration cache {path}: {err}"]
    return True, notes


def _is_number(value: Any, low: float, high: float) -> bool:
    """A JSON number (not a bool), finite, in ``[low, high]``."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high
    )


def _is_history(value: Any) -> bool:
    """``[[s, agreement], ...]``: 1 to MAX_ITER pairs, ``0 < s <= MAX_STDEV``, agreement in
    [0, 1]."""
    return (
        isinstance(value, list)
        and 1 <= len(value) <= MAX_ITER
        and all(
            isinstance(step, list)
            and len(step) == 2
            and _is_number(step[0], 0.0, MAX_STDEV)
            and step[0] > 0
            and _is_number(step[1], 0.0, 1.0)
            for step in value
        )
    )


#: A cached entry's fields, each with what its value must be (type and range).
_ENTRY_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "stdev": (f"a number in [0, {MAX_STDEV}]", lambda v: _is_number(v, 0.0, MAX_STDEV)),
    "agreement": ("a number in [0, 1]", lambda v: _is_number(v, 0.0, 1.0)),
    "threshold": ("a number in (0, 1]", lambda v: _is_number(v, 0.0, 1.0) and v > 0),
    "n_images": ("an int > 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0),
    "fingerprint": ("a string", lambda v: isinstance(v, str)),
    "bracketed": ("true or false", lambda v: isinstance(v, bool)),
    "history": (f"1 to {MAX_ITER} pairs [s, agreement]", _is_history),
    "warnings": (
        "a list of strings",
        lambda v: isinstance(v, list) and all(isinstance(w, str) for w in v),
    ),
}


def _entry_problem(entry: Any, fingerprint: str) -> str | None:
    """Why a cached entry cannot be used (None when it can): type, range and consistency."""
    if not isinstance(entry, dict):
        return f"a JSON {type(entry).__name__}, not an object"
    names = set(_ENTRY_FIELDS)
    if set(entry) != names:
        missing, unknown = sorted(names - set(entry)), sorted(set(entry) - names)
        return f"fields missing {missing}, unknown {unknown}"
    for name, (what, valid) in _ENTRY_FIELDS.items():
        if not valid(entry[name]):
            return f"`{name}` is {str(json.dumps(entry[name]))[:40]}, not {what}"
    if entry["fingerprint"] != fingerprint:
        return "`fingerprint` is another model's"
    if entry["agreement"] < entry["threshold"]:
        return "`agreement` is below `threshold`"
    if entry["stdev"] > 0 and entry["stdev"] not in [s for s, _ in entry["history"]]:
        return "`stdev` is not a scale of its `history`"
    return None


def _cached_choice(path: Path, key: str, fingerprint: str) -> tuple[WeightNoiseChoice | None, str]:
    """The cached choice under ``key`` (None when absent or bad), and why a present one is bad."""
    try:
        data, _ = _read_cache(path)  # a corrupt or unreadable file is reported when written
    except OSError:
        return None, ""
    if key not in data:
        return None, ""
    problem = _entry_problem(data[key], fingerprint)
    if problem is not None:
        return None, (
            f"the calibration cache {path} held a bad entry for this model ({problem}): "
            "ignored, recalibrated and replaced"
        )
    entry = {**data[key], "history": [(s, a) for s, a in data[key]["history"]]}
    return WeightNoiseChoice(**entry, cached=True, cache_file=str(path)), ""


def _calibrate(model: nn.Module, size: int, seed: int, progress: bool) -> WeightNoiseChoice:
    from ..methods.calibration import calibrate_weight_noise

    images = proxy_images(size, seed)
    with torch.no_grad():
        labels = torch.cat([model(chunk).argmax(dim=1) for chunk in images.split(16)])
    batches = list(zip(images.split(16), labels.split(16)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = calibrate_weight_noise(
            model,
            batches,
            TARGET_DROP,
            n_draws=N_DRAWS,
            max_iter=MAX_ITER,
            tol=0.1,
            initial_stdev=INITIAL_STDEV,
            max_stdev=MAX_STDEV,
            generator=seed,
            show_progress=progress,
        )
    notes = [str(w.message) for w in caught if "calibrate_weight_noise" in str(w.message)]
    return WeightNoiseChoice(
        stdev=round(result.stdev, 6),
        agreement=round(result.accuracy_noisy, 6),
        threshold=round(result.threshold, 6),
        n_images=len(images),
        fingerprint="",
        bracketed=result.bracketed,
        history=[(round(h.stdev, 6), round(h.accuracy, 6)) for h in result.history],
        warnings=notes,
    )


def calibrated_weight_noise(
    model: nn.Module, size: int, seed: int = 0, *, progress: bool = False
) -> WeightNoiseChoice:
    """The weight-noise scale for ``model`` at image side ``size``: from the cache, or found now.

    Args:
        model: The classifier (images in ``[0, 1]``); bit-identical afterwards.
        size: The image side of the run (the proxy images are made at that size).
        seed: Seed of the augmentations and of the weight draws of the search.
        progress: Show the search's progress bar.

    Returns:
        A :class:`WeightNoiseChoice` (``cached`` says where it came from).

    Examples::

        >>> choice = calibrated_weight_noise(load_efficientnet_lite0(), 224)  # doctest: +SKIP
        >>> print(choice.describe())  # doctest: +SKIP
    """
    fingerprint = model_fingerprint(model)
    key = f"{fingerprint}|size{size}|seed{seed}|{_VERSION}"
    path = cache_dir() / "weight-noise.json"
    cached, bad_entry = _cached_choice(path, key, fingerprint)
    if cached is not None:
        return cached
    choice = _calibrate(model, size, seed, progress)
    choice.fingerprint = fingerprint
    stored = {k: v for k, v in asdict(choice).items() if k in _ENTRY_FIELDS}
    written, notes = _write_cache(path, key, stored)
    if written:
        choice.cache_file = str(path)
    # Notes about this run, not stored with the entry.
    choice.warnings += ([bad_entry] if bad_entry else []) + notes
    return choice
