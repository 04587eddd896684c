"""to_hwc and comparison_grid: Captum's channels-last convention, valid PNGs, no screen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captum_smooth.app.visualization import comparison_grid, to_hwc


def test_to_hwc_chw_tensor_moves_channels_last() -> None:
    chw = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    hwc = to_hwc(chw)
    assert isinstance(hwc, np.ndarray) and hwc.shape == (3, 4, 2) and hwc.dtype == np.float32
    for c in range(2):
        np.testing.assert_array_equal(hwc[:, :, c], chw[c].numpy())


def test_to_hwc_hw_and_numpy_and_grad() -> None:
    assert to_hwc(torch.zeros(5, 6)).shape == (5, 6, 1)
    assert to_hwc(np.zeros((3, 5, 6))).shape == (5, 6, 3)
    grad = torch.ones(3, 2, 2, requires_grad=True) * 2
    assert to_hwc(grad).shape == (2, 2, 3)  # detached, no error


def test_to_hwc_batches_and_tuples() -> None:
    batch = torch.rand(4, 3, 5, 6)
    maps = to_hwc(batch)
    assert isinstance(maps, list) and len(maps) == 4
    np.testing.assert_array_equal(maps[2], batch[2].permute(1, 2, 0).numpy())
    single = to_hwc((batch,))  # Captum's tuple output for tuple inputs
    assert isinstance(single, list) and len(single) == 4
    pair = to_hwc((torch.rand(3, 5, 6), torch.rand(1, 5, 6)))
    assert [p.shape for p in pair] == [(5, 6, 3), (5, 6, 1)]
    grey_batch = to_hwc(torch.rand(2, 5, 6), batched=True)
    assert [m.shape for m in grey_batch] == [(5, 6, 1), (5, 6, 1)]


@pytest.mark.parametrize("bad", [torch.zeros(3), torch.zeros(1, 1, 1, 2, 2), ()])
def test_to_hwc_refuses_bad_shapes(bad: object) -> None:
    with pytest.raises(ValueError):
        to_hwc(bad)


def test_to_hwc_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="tensor"):
        to_hwc("map")


def test_grid_is_a_png_of_the_expected_size(tmp_path: Path) -> None:
    images = torch.rand(3, 3, 20, 30)
    maps = {"A": torch.randn(3, 3, 20, 30), "B": torch.randn(3, 1, 20, 30)}
    path = tmp_path / "grid.png"
    figure = comparison_grid(
        images, maps, titles={"A": "method A"}, row_labels=["x", "y", "z"], path=path
    )
    assert figure.axes and len(figure.axes) == 3 * 3
    with Image.open(path) as png:
        assert png.format == "PNG"
        assert png.size == (3 * 200, 3 * 200)
    assert figure.axes[1].get_title() == "method A"
    assert figure.axes[2].get_title() == "B"
    assert figure.axes[0].get_title() == "x"
    small = comparison_grid(images[:1], {"A": maps["A"][:1]}, path=tmp_path / "s.png", dpi=50)
    assert small is not None
    with Image.open(tmp_path / "s.png") as png:
        assert png.size == (2 * 100, 1 * 100)


def test_grid_draws_rows_the_right_way_up(tmp_path: Path) -> None:
    # A CHW map lit in its top rows only: drawn from the (H, W, C) array it must stay on top
    # (drawing the CHW array as it is would misread the axes).
    attribution = torch.zeros(1, 3, 40, 60)
    attribution[:, :, :10] = 1.0
    path = tmp_path / "one.png"
    comparison_grid(torch.full((1, 3, 40, 60), 0.5), {"m": attribution}, path=path)
    with Image.open(path) as png:
        pixels = np.asarray(png.convert("L"), dtype=np.float32)
    cell = pixels[:, 200:]  # the heat-map column
    rows = np.where((cell < 200).any(axis=1))[0]  # dark (high attribution) rows
    assert rows.size > 0
    top, bottom = rows.min(), rows.max()
    assert bottom - top < 60  # a band a quarter of the map high, not the whole cell
    assert top < 100  # in the upper half of the cell


def test_grid_survives_all_zero_and_nan_maps(tmp_path: Path) -> None:
    images = torch.rand(2, 3, 8, 8)
    nan_map = torch.randn(2, 3, 8, 8)
    nan_map[0, 0, 0, 0] = float("nan")
    figure = comparison_grid(
        images, {"zero": torch.zeros(2, 3, 8, 8), "nan": nan_map}, path=tmp_path / "z.png"
    )
    assert (tmp_path / "z.png").stat().st_size > 0
    assert any("all zero" in t.get_text() for ax in figure.axes for t in ax.texts)


def test_grid_refuses_mismatched_attributions() -> None:
    images = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="holds 1 maps for 2 images"):
        comparison_grid(images, {"a": torch.rand(1, 3, 8, 8)})
    with pytest.raises(ValueError, match="size"):
        comparison_grid(images, {"a": torch.rand(2, 3, 4, 8)})
    with pytest.raises(ValueError, match="row_labels"):
        comparison_grid(images, {"a": torch.rand(2, 3, 8, 8)}, row_labels=["one"])
    with pytest.raises(TypeError, match="mapping"):
        comparison_grid(images, [torch.rand(2, 3, 8, 8)])


def test_grid_other_captum_styles(tmp_path: Path) -> None:
    images = torch.rand(1, 3, 8, 8)
    for style in ("blended_heat_map", "alpha_scaling", "masked_image"):
        comparison_grid(
            images, {"a": torch.rand(1, 3, 8, 8)}, path=tmp_path / f"{style}.png", method=style
        )
        assert (tmp_path / f"{style}.png").stat().st_size > 0
