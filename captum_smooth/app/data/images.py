"""Photos for the demo, benchmarks and tests: scikit-image's bundled samples and user files.

Every image comes back as a float32 RGB tensor with values in ``[0, 1]``, center-cropped to a
square and resized to ``size x size`` (antialiased bilinear), the input convention of
:class:`captum_smooth.app.models.efficientnet_lite.EfficientNetLite0`. scikit-image and Pillow are
imported only when a function needs them, so importing ``captum_smooth`` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["SAMPLE_IMAGE_NAMES", "load_image", "load_sample_images", "to_square_tensor"]

#: Names accepted by :func:`load_sample_images`: photos bundled with scikit-image that load
#: offline. ``"camera"`` is grey (repeated to three channels); ``"motorcycle"`` is the left
#: view of ``skimage.data.stereo_motorcycle``.
SAMPLE_IMAGE_NAMES: tuple[str, ...] = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "motorcycle",
    "rocket",
)


def _check_size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if size < 1:
        raise ValueError(f"size must be a positive int, got {size}")
    return size


def _array_to_tensor(array: np.ndarray) -> Tensor:
    """A numpy image as a float32 tensor, channels first, values scaled to ``[0, 1]``."""
    if array.dtype == np.bool_:
        array = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.unsignedinteger):
        array = array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    else:
        raise TypeError(f"image has unsupported dtype {array.dtype}")
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.permute(2, 0, 1) if tensor.dim() == 3 else tensor


def to_square_tensor(image: np.ndarray | Tensor, size: int = 224) -> Tensor:
    """Center-crop an image to a square and resize it to ``size x size``, values in ``[0, 1]``.

    Args:
        image: ``(H, W)`` grey, ``(H, W, C)`` channels-last (numpy convention) or ``(C, H, W)``
            tensor with C in {1, 3, 4}; unsigned integers are divided by their maximum value
            (255 for uint8), floats are taken to be in ``[0, 1]``, booleans map to 0/1.
            A grey image is repeated to three channels and an alpha channel is dropped.
        size: Side of the output square, in pixels.

    Returns:
        A float32 tensor ``(3, size, size)`` with values in ``[0, 1]``.

    Raises:
        TypeError: If ``image`` is not an array or tensor, or ``size`` is not an int.
        ValueError: If ``image`` has an unsupported shape or ``size`` is not positive.

    Examples::

        >>> import numpy as np
        >>> to_square_tensor(np.zeros((300, 451, 3), dtype=np.uint8), size=64).shape
        torch.Size([3, 64, 64])
    """
    size = _check_size(size)
    if isinstance(image, np.ndarray):
        tensor = _array_to_tensor(image)
    elif isinstance(image, Tensor):
        tensor = image.detach().cpu()
        tensor = tensor.float() / 255.0 if tensor.dtype == torch.uint8 else tensor.float()
    else:
        raise TypeError(f"image must be a numpy array or a tensor, got {type(image).__name__}")
    if tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 3 or tensor.shape[0] not in (1, 3, 4):
        raise ValueError(
            f"image must have shape (H, W), (H, W, C) or (C, H, W) with C in (1, 3, 4), "
            f"got {tuple(image.shape)}"
        )
    if tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    elif tensor.shape[0] == 4:
        tensor = tensor[:3]
    height, width = tensor.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = tensor[:, top : top + side, left : left + side].unsqueeze(0)
    if side != size:
        square = F.interpolate(
            square, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return square[0].clamp(0.0, 1.0).contiguous()


def _skimage_photo(name: str) -> np.ndarray:
    try:
        from skimage import data
    except ImportError as exc:
        raise ImportError(
            "load_sample_images needs scikit-image: pip install scikit-image "
            "(or: pip install 'captum-smooth[demo]')"
        ) from exc
    if name == "motorcycle":
        return data.stereo_motorcycle()[0]
    return getattr(data, name)()


def load_sample_images(
    names: str | Sequence[str] = ("chelsea", "coffee", "rocket"), size: int = 224
) -> tuple[Tensor, list[str]]:
    """Photos bundled with scikit-image (no download), as a batch in ``[0, 1]``.

    With the default ImageNet model (:func:`captum_smooth.app.models.load_efficientnet_lite0`)
    the default photos are classified as: chelsea -> Egyptian cat / tiger cat, coffee ->
    espresso, rocket -> missile.

    Args:
        names: One name or a sequence of names from :data:`SAMPLE_IMAGE_NAMES`.
        size: Side of the square output images, in pixels.

    Returns:
        ``(images, names)``: a float32 tensor ``(N, 3, size, size)`` with values in ``[0, 1]``
        and the list of the N names, in order.

    Raises:
        TypeError: If ``names`` is not a str or a sequence of str, or ``size`` is not an int.
        ValueError: If ``names`` is empty or holds an unknown name, or ``size`` is not positive.
        ImportError: If scikit-image is not installed.

    Examples::

        >>> images, names = load_sample_images(("coffee", "rocket"), size=224)
        >>> images.shape, names
        (torch.Size([2, 3, 224, 224]), ['coffee', 'rocket'])
    """
    size = _check_size(size)
    if isinstance(names, str):
        names = (names,)
    if not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must be a str or a sequence of str, got {names!r}")
    names = list(names)
    if not names:
        raise ValueError("names must not be empty")
    unknown = [n for n in names if n not in SAMPLE_IMAGE_NAMES]
    if unknown:
        raise ValueError(f"names holds unknown images {unknown}; choose from {SAMPLE_IMAGE_NAMES}")
    images = torch.stack([to_square_tensor(_skimage_photo(n), size) for n in names])
    return images, names


def load_image(path: str | os.PathLike[str], size: int = 224) -> Tensor:
    """Read an image file (any format Pillow reads) as an RGB tensor in ``[0, 1]``.

    The EXIF orientation is applied, the image is converted to RGB (grey and palette images
    included, alpha dropped), center-cropped to a square and resized to ``size x size``.

    Args:
        path: Path of the image file.
        size: Side of the square output image, in pixels.

    Returns:
        A float32 tensor ``(3, size, size)`` with values in ``[0, 1]``.

    Raises:
        TypeError: If ``path`` is not a str or path-like, or ``size`` is not an int.
        ValueError: If ``path`` does not exist, is not a file, or is not a readable image
            (the message names the path); or if ``size`` is not positive.
        ImportError: If Pillow is not installed.

    Examples::

        >>> image = load_image("photo.jpg", size=224)  # doctest: +SKIP
        >>> image.shape  # doctest: +SKIP
        torch.Size([3, 224, 224])
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}")
    size = _check_size(size)
    try:
        from PIL import Image, ImageOps
    except ImportError as exc:
        raise ImportError(
            "load_image needs Pillow: pip install pillow (or: pip install 'captum-smooth[demo]')"
        ) from exc
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"path {str(file)!r} does not exist or is not a file")
    try:
        with Image.open(file) as opened:
            rgb = ImageOps.exif_transpose(opened).convert("RGB")
            array = np.asarray(rgb, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"path {str(file)!r} is not a readable image: {exc}") from exc
    return to_square_tensor(array, size)
