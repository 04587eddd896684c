"""Pictures of attributions with Captum's own drawing code, off screen.

Captum's :func:`captum.attr.visualization.visualize_image_attr` wants channels-last numpy
arrays ``(H, W, C)`` and silently misreads the channels-first tensors that attribution methods
return; :func:`to_hwc` converts them. :func:`comparison_grid` draws one row per image (the
photo, then one heat map per method) on a matplotlib ``Figure`` created without pyplot, so no
screen or GUI backend is ever needed (the PNG is written with the Agg canvas).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor

__all__ = ["comparison_grid", "to_hwc"]

ArrayLike = Union[Tensor, np.ndarray]


def _as_numpy(value: object) -> np.ndarray:
    """``value`` as a float32 array; anything but a tensor or an array is a TypeError (so the
    argument is ``object``: callers pass what they were given and this checks it)."""
    if isinstance(value, Tensor):
        return value.detach().to("cpu", torch.float32).numpy()
    if isinstance(value, np.ndarray):
        return value.astype(np.float32, copy=False)
    raise TypeError(
        f"expected a tensor, a numpy array or a tuple/list of them, got {type(value).__name__}"
    )


def to_hwc(
    attribution: ArrayLike | Sequence[ArrayLike], batched: bool | None = None
) -> np.ndarray | list[Any]:
    """Turn channels-first attributions into the ``(H, W, C)`` arrays Captum's plots expect.

    * ``(C, H, W)`` -> one ``(H, W, C)`` array; ``(H, W)`` -> ``(H, W, 1)``;
    * ``(B, C, H, W)`` (a batch) -> a list of ``B`` arrays ``(H, W, C)``;
    * a tuple or list (Captum returns a tuple for tuple inputs): a single element is unwrapped,
      several give a list with one converted entry each.

    Args:
        attribution: A tensor or numpy array, channels first, or a tuple/list of them.
        batched: Whether a 3-D value is a batch ``(B, H, W)`` of single-channel maps rather than
            one ``(C, H, W)`` map. Default None: 4-D is a batch, 3-D is one map.

    Returns:
        A float32 numpy array ``(H, W, C)`` (detached, on the CPU) or a list of them.

    Raises:
        TypeError: If the value is not a tensor, an array or a sequence of them.
        ValueError: For an empty sequence or a value with fewer than 2 or more than 4
            dimensions.

    Examples::

        >>> to_hwc(torch.zeros(3, 8, 5)).shape
        (8, 5, 3)
        >>> [a.shape for a in to_hwc(torch.zeros(2, 3, 8, 5))]
        [(8, 5, 3), (8, 5, 3)]
    """
    if isinstance(attribution, (tuple, list)):
        if not attribution:
            raise ValueError("attribution is an empty sequence")
        if len(attribution) == 1:
            return to_hwc(attribution[0], batched)
        return [to_hwc(item, batched) for item in attribution]
    array = _as_numpy(attribution)
    if array.ndim == 2:
        return array[:, :, None].copy()
    if array.ndim == 3:
        if batched:
            return [m[:, :, None].copy() for m in array]
        return np.ascontiguousarray(np.transpose(array, (1, 2, 0)))
    if array.ndim == 4:
        return [np.ascontiguousarray(np.transpose(a, (1, 2, 0))) for a in array]
    raise ValueError(
        f"attribution must have 2 (H, W), 3 (C, H, W) or 4 (B, C, H, W) dimensions, "
        f"got shape {tuple(array.shape)}"
    )


def _images_hwc(images: ArrayLike | Sequence[ArrayLike]) -> list[np.ndarray]:
    if isinstance(images, (Tensor, np.ndarray)) and images.ndim == 3:
        images = [images]
    converted = to_hwc(images, batched=False)
    result = converted if isinstance(converted, list) else [converted]
    for image in result:
        if not isinstance(image, np.ndarray) or image.shape[2] not in (1, 3):
            raise ValueError("images must have 1 or 3 channels")
    return [np.clip(image, 0.0, 1.0) for image in result]


def _has_signal(attribution: np.ndarray, sign: str) -> bool:
    """Whether the channel-summed map has a non-zero value of the sign Captum will show."""
    summed = attribution.sum(axis=2) if attribution.ndim == 3 else attribution
    if sign == "positive":
        return bool((summed > 0).any())
    if sign == "negative":
        return bool((summed < 0).any())
    return bool((summed != 0).any())


def _draw(
    axis: Any,
    figure: Any,
    attribution: np.ndarray | None,
    image: np.ndarray,
    method: str,
    sign: str,
    cmap: Any,
    title: str | None,
) -> None:
    from captum.attr import visualization as viz

    if attribution is None:
        viz_method, attribution = "original_image", np.ones(image.shape[:2], np.float32)
    else:
        viz_method = method
        if not np.isfinite(attribution).all():
            attribution = np.nan_to_num(attribution, nan=0.0, posinf=0.0, neginf=0.0)
    image_arg = image if image.shape[2] == 3 else image[:, :, 0]
    if viz_method != "original_image" and not _has_signal(attribution, sign):
        # Captum cannot normalise a map with nothing of the requested sign (it asserts):
        # draw the empty map the same way it would, and say so.
        axis.imshow(np.zeros(image.shape[:2], np.float32), cmap=cmap or "Blues", vmin=0, vmax=1)
        axis.text(
            0.5, 0.5, "all zero", ha="center", va="center", fontsize=7, transform=axis.transAxes
        )
        if title:
            axis.set_title(title, fontsize=8)
        axis.set_axis_off()
        return
    with warnings.catch_warnings():
        # An all-zero map makes Captum warn about normalising by ~0; it draws an empty map.
        warnings.simplefilter("ignore")
        viz.visualize_image_attr(
            attribution,
            image_arg if viz_method != "heat_map" else None,
            method=viz_method,
            sign=sign,
            plt_fig_axis=(figure, axis),
            cmap=cmap,
            use_pyplot=False,
        )
    if title:
        axis.set_title(title, fontsize=8)
    axis.set_axis_off()


def _colormap(sign: str, cmap: Any) -> Any:
    """The colormap Captum uses for ``sign`` (when ``cmap`` is None), for the colour bar."""
    if cmap is not None:
        return cmap
    if sign == "all":
        from matplotlib.colors import LinearSegmentedColormap

        return LinearSegmentedColormap.from_list("RdWhGn", ["red", "white", "green"])
    return {"positive": "Greens", "negative": "Reds"}.get(sign, "Blues")


def _colour_bar(figure: Any, sign: str, cmap: Any) -> None:
    """One bar for the whole grid: every map is scaled by Captum to its own 98th percentile."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    low = -1.0 if sign == "all" else 0.0
    mappable = ScalarMappable(Normalize(low, 1.0), _colormap(sign, cmap))
    axis = figure.add_axes((0.955, 0.15, 0.012, 0.6))
    bar = figure.colorbar(mappable, cax=axis)
    what = "signed attribution" if sign == "all" else "|attribution|"
    bar.set_label(f"{what} / its 98th percentile (per map)", fontsize=6)
    bar.ax.tick_params(labelsize=6)


def _check_columns(
    attributions: Mapping[str, ArrayLike], image_list: list[np.ndarray]
) -> dict[str, list[np.ndarray]]:
    if not isinstance(attributions, Mapping):
        raise TypeError("attributions must be a mapping {method name: (B, C, H, W) tensor}")
    n_rows = len(image_list)
    columns: dict[str, list[np.ndarray]] = {}
    for name, value in attributions.items():
        maps = to_hwc(value, batched=False)
        if not isinstance(maps, list):
            maps = [maps]
        if len(maps) != n_rows:
            raise ValueError(f"attributions[{name!r}] holds {len(maps)} maps for {n_rows} images")
        for m, image in zip(maps, image_list):
            if m.shape[:2] != image.shape[:2]:
                raise ValueError(
                    f"attributions[{name!r}] has maps of size {m.shape[:2]}, "
                    f"the images are {image.shape[:2]}"
                )
        columns[name] = maps
    return columns


def _check_captions(
    captions: Mapping[str, Sequence[str]] | None, n_rows: int
) -> dict[str, Sequence[str]]:
    for name, texts in (captions or {}).items():
        if len(texts) != n_rows:
            raise ValueError(f"captions[{name!r}] has {len(texts)} entries for {n_rows} images")
    return dict(captions or {})


def comparison_grid(
    images: ArrayLike | Sequence[ArrayLike],
    attributions: Mapping[str, ArrayLike],
    titles: Mapping[str, str] | None = None,
    row_labels: Sequence[str] | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    method: str = "heat_map",
    sign: str = "absolute_value",
    cmap: Any = None,
    cell_size: float = 2.0,
    dpi: int = 100,
    captions: Mapping[str, Sequence[str]] | None = None,
    colorbar: bool = False,
) -> Any:
    """Draw a grid: one row per image, the image then one Captum heat map per method.

    Each heat map is drawn by ``captum.attr.visualization.visualize_image_attr`` (channels
    summed, outliers clipped at the 98th percentile, as Captum does) from the ``(H, W, C)``
    arrays of :func:`to_hwc`.

    Args:
        images: ``(B, C, H, W)`` images with values in ``[0, 1]`` (C = 1 or 3), or a sequence
            of ``(C, H, W)`` images.
        attributions: ``{method name: (B, C, H, W) attributions}``, one column each, in order.
        titles: Column titles by method name (default: the names). Shown on the first row.
        row_labels: One title per image for the first column (e.g. the class explained).
        path: Where to save the PNG (None: not saved).
        method: Captum visualisation method: ``heat_map``, ``blended_heat_map``,
            ``masked_image`` or ``alpha_scaling``. Default: ``heat_map``.
        sign: ``absolute_value``, ``positive``, ``negative`` or ``all``. Default:
            ``absolute_value``.
        cmap: A matplotlib colormap (default: Captum's for the sign).
        cell_size: Side of one cell in inches. Default: 2.0.
        dpi: Resolution; the PNG is ``round(cols * cell_size * dpi)`` by
            ``round(rows * cell_size * dpi)`` pixels. Default: 100.
        captions: ``{method name: one text per image}`` printed under each map (e.g. the
            samples used and the Monte-Carlo error). Default: None.
        colorbar: Draw one colour bar at the right (inside the same size): Captum scales every
            map to its own 98th percentile, so one bar reads for all. Default: False.

    Returns:
        The ``matplotlib.figure.Figure``.

    Raises:
        ValueError: If the attributions do not match the images in number or size, or a
            label or caption list has the wrong length.

    Examples::

        >>> fig = comparison_grid(images, {"SmoothGrad": sg_maps}, path="grid.png")
        ... # doctest: +SKIP
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    image_list = _images_hwc(images)
    n_rows = len(image_list)
    columns = _check_columns(attributions, image_list)
    if row_labels is not None and len(row_labels) != n_rows:
        raise ValueError(f"row_labels has {len(row_labels)} entries for {n_rows} images")
    texts = _check_captions(captions, n_rows)
    titles = dict(titles or {})
    n_cols = 1 + len(columns)
    figure = Figure(figsize=(n_cols * cell_size, n_rows * cell_size), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.subplots(n_rows, n_cols, squeeze=False)
    for row, image in enumerate(image_list):
        label = row_labels[row] if row_labels is not None else None
        _draw(axes[row][0], figure, None, image, method, sign, cmap, label)
        for col, (name, maps) in enumerate(columns.items(), start=1):
            title = titles.get(name, name) if row == 0 else None
            _draw(axes[row][col], figure, maps[row], image, method, sign, cmap, title)
            if name in texts and texts[name][row]:
                axes[row][col].text(
                    0.5,
                    -0.03,
                    texts[name][row],
                    ha="center",
                    va="top",
                    fontsize=6,
                    transform=axes[row][col].transAxes,
                )
    right = 0.94 if colorbar else 0.99
    figure.subplots_adjust(left=0.01, right=right, bottom=0.04, top=0.9, wspace=0.04, hspace=0.35)
    if n_rows > 1:
        figure.subplots_adjust(top=1 - 0.3 / n_rows)
    if colorbar:
        _colour_bar(figure, sign, cmap)
    if path is not None:
        figure.savefig(os.fspath(path), format="png", dpi=dpi)
    return figure
