"""The weight-noise scale of NoiseGrad and FusionGrad, calibrated for the model at hand.

The NoiseGrad authors' heuristic: take the largest multiplicative noise ``s`` whose perturbed
models keep about 95 % of the clean accuracy
(:func:`~captum_smooth.methods.calibration.calibrate_weight_noise`). Labelled data for an
arbitrary model is not at hand offline, so the accuracy is measured against a proxy: agreement
with the clean model's own predictions on the photos bundled with scikit-image and on
augmentations of them (flips, crops, brightness), at the image size of the run. The clean model
agrees with itself everywhere, so ``s`` is the largest scale at which the perturbed models keep
at least 95 % of those predictions. The output says so.

A calibration takes seconds to a minute on a CPU; its result is cached per model fingerprint (a
SHA-256 of the model's state: names, dtypes, shapes and bytes of every parameter and buffer)
and image size, in ``$CAPTUM_SMOOTH_CACHE`` or the user's cache folder
(``$XDG_CACHE_HOME/captum-smooth``, default ``~/.cache/captum-smooth``), file
``weight-noise.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
#: Augmented copies per bundled photo (the photo itself included).
COPIES = 6
#: What the accuracy is measured against (printed and reported).
PROXY = (
    "no labelled data offline: accuracy is the agreement with the clean model's own "
    "predictions on scikit-image's bundled photos and their augmentations"
)
#: Changes whenever the proxy data or the search settings change (part of the cache key).
_VERSION = f"v2-copies{COPIES}-draws{N_DRAWS}-iter{MAX_ITER}-from{INITIAL_STDEV}-drop{TARGET_DROP}"


@dataclass
class WeightNoiseChoice:
    """The scale chosen and how.

    Attributes:
        stdev: The weight-noise scale ``s`` (``theta * N(1, s^2)``).
        agreement: Mean agreement of the perturbed models at ``stdev`` with the clean model.
        threshold: The agreement a scale had to keep (``1 - TARGET_DROP``).
        n_images: Proxy images (photos times augmentations).
        fingerprint: The model fingerprint (:func:`model_fingerprint`).
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
        return (
            f"weight noise of NoiseGrad/FusionGrad: s = {self.stdev:.3g} ({source}), the largest "
            f"s keeping {1 - TARGET_DROP:.0%} of the clean accuracy (the NoiseGrad authors' "
            f"heuristic); {PROXY} ({self.n_images} images): {self.agreement:.3f} at s"
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


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, entry: dict[str, Any]) -> bool:
    """Add ``entry`` under ``key`` atomically; False when the cache cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache(path)
        data[key] = entry
        handle, tmp = tempfile.mkstemp(prefix=".weight-noise.", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=1)
        os.replace(tmp, path)
    except OSError:
        return False
    return True


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
    entry = _read_cache(path).get(key)
    if isinstance(entry, dict):
        try:
            choice = WeightNoiseChoice(**entry)
        except TypeError:
            choice = None
        if choice is not None:
            choice.cached, choice.cache_file = True, str(path)
            return choice
    choice = _calibrate(model, size, seed, progress)
    choice.fingerprint = fingerprint
    stored = {k: v for k, v in asdict(choice).items() if k not in ("cached", "cache_file")}
    if _write_cache(path, key, stored):
        choice.cache_file = str(path)
    else:
        choice.warnings.append(f"could not write the calibration cache {path}")
    return choice
