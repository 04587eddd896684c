"""The quality benchmark's figure: one example of every method's ``|map|`` per task."""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import Tensor

__all__ = ["RESULTS_DIR", "plot_maps"]

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _shrink_png(path: str) -> None:
    """Re-save a PNG with a 256-colour palette (noisy maps barely compress otherwise)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(256)
    small.save(path, optimize=True)


def plot_maps(patch_maps: dict[str, Tensor], photo_maps: dict[str, Tensor]) -> list[str]:
    """One example of every method's |map| per task, as PNG files under results/."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(RESULTS_DIR, exist_ok=True)
    paths = []
    outputs = (("quality_patch_maps.png", patch_maps), ("quality_photo_maps.png", photo_maps))
    for name, maps in outputs:
        if not maps:
            continue
        labels = [k for k in maps if not k.startswith("__")]
        panels = ["__input__"] + (["__mask__"] if "__mask__" in maps else []) + labels
        cols = 6
        rows = math.ceil(len(panels) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows))
        for ax in np.ravel(axes):
            ax.axis("off")
        for ax, key in zip(np.ravel(axes), panels):
            image = maps[key].detach().float()
            if key == "__input__":
                ax.imshow(image.numpy(), cmap="gray" if image.dim() == 2 else None)
                ax.set_title("input", fontsize=8)
            elif key == "__mask__":
                ax.imshow(image.numpy(), cmap="gray")
                ax.set_title("class patch", fontsize=8)
            else:
                shown = image.abs()
                top = torch.quantile(shown.flatten(), 0.99).item() or 1.0
                ax.imshow((shown / top).clamp(0, 1).numpy(), cmap="magma")
                ax.set_title(key.replace("control: ", "ctrl: ")[:28], fontsize=7)
        fig.tight_layout()
        path = os.path.join(RESULTS_DIR, name)
        fig.savefig(path, dpi=70)
        plt.close(fig)
        _shrink_png(path)
        paths.append(path)
    return paths
