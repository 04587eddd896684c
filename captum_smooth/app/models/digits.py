"""A small CNN for scikit-learn's handwritten digits, trained in seconds on a CPU.

scikit-learn ships ``load_digits``: 1797 real 8 x 8 greyscale digits (UCI optical recognition
data set, pixel values ``0..16``), available offline. :class:`DigitsCNN` is a ~38k-parameter
network with convolutions, BatchNorm, ReLU, dropout and a linear head named ``classifier``; it
reaches about 99 % test accuracy after a few seconds of training on two CPU cores, which makes it
a real trained model for tests, calibration and benchmarks.

Input convention: images of shape ``(N, 1, 8, 8)`` with pixel values divided by 16, so the data
lie in ``[0, 1]`` (``0`` is a blank image); the output is the ``(N, 10)`` class logits.

Training is deterministic for a given seed in a given environment (same torch build and thread
count): the initial weights, dropout masks and batch order come from the seed, the global random
state is saved and restored around training, and deterministic algorithms are enforced while it
runs. scikit-learn is imported lazily, only when the data are loaded.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DigitsCNN",
    "DigitsData",
    "load_digits_data",
    "train_digits_cnn",
    "trained_digits_cnn",
]

_NUM_CLASSES = 10
_IMAGE_SIZE = 8
_PIXEL_MAX = 16.0
_DEFAULT_EPOCHS = 15
_BATCH_SIZE = 64
_MAX_LR = 1e-2
_WEIGHT_DECAY = 1e-4
_DROPOUT = 0.25
_CACHE_SIZE = 8
_INSTALL_HINT = "pip install scikit-learn  (or: pip install 'captum-smooth[test]')"


def _conv_bn_relu(in_channels: int, out_channels: int, index: int) -> list[tuple[str, nn.Module]]:
    return [
        (f"conv{index}", nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)),
        (f"bn{index}", nn.BatchNorm2d(out_channels)),
        (f"relu{index}", nn.ReLU()),
    ]


class DigitsCNN(nn.Module):
    """Small CNN for 8 x 8 digit images in ``[0, 1]`` (37,738 parameters with 10 classes).

    Layout: ``features`` (``conv1`` 1->32, ``bn1``, ``relu1``, ``conv2`` 32->64, ``bn2``,
    ``relu2``, ``pool`` 2x2 max-pooling, ``conv3`` 64->32, ``bn3``, ``relu3``; 3 x 3 bias-free
    convolutions), then global average pooling, ``dropout`` and the linear head ``classifier``.
    ReLUs are not in-place, so hooks on any layer see unmodified outputs.

    Args:
        num_classes: Number of output logits. Default: 10.
        dropout: Dropout probability before the classifier (active in train mode only).
            Default: 0.25.

    Examples::

        >>> import torch
        >>> model = DigitsCNN().eval()
        >>> model(torch.rand(4, 1, 8, 8)).shape
        torch.Size([4, 10])
        >>> sum(p.numel() for p in model.parameters())
        37738
    """

    def __init__(self, num_classes: int = _NUM_CLASSES, dropout: float = _DROPOUT) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)):
            raise TypeError(f"dropout must be a float, got {type(dropout).__name__}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.features = nn.Sequential(
            OrderedDict(
                [
                    *_conv_bn_relu(1, 32, 1),
                    *_conv_bn_relu(32, 64, 2),
                    ("pool", nn.MaxPool2d(2)),
                    *_conv_bn_relu(64, 32, 3),
                ]
            )
        )
        self.dropout = nn.Dropout(float(dropout))
        self.classifier = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of digit images.

        Args:
            x: Images of shape ``(N, 1, H, W)`` with values in ``[0, 1]``; the model is trained
                on ``8 x 8``.

        Returns:
            Logits of shape ``(N, num_classes)``.

        Examples::

            >>> import torch
            >>> DigitsCNN().eval()(torch.zeros(1, 1, 8, 8)).shape
            torch.Size([1, 10])
        """
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"x must have shape (N, 1, H, W), got {tuple(x.shape)}")
        h = self.features(x).mean(dim=(2, 3))
        return self.classifier(self.dropout(h))


class DigitsData(NamedTuple):
    """A train/test split of the scikit-learn digits as tensors.

    Images are ``float32`` of shape ``(N, 1, 8, 8)`` in ``[0, 1]``; labels are ``int64`` of
    shape ``(N,)`` with values ``0..9``.

    Examples::

        >>> data = load_digits_data()  # doctest: +SKIP
        >>> data.x_train.shape, data.x_test.shape  # doctest: +SKIP
        (torch.Size([1347, 1, 8, 8]), torch.Size([450, 1, 8, 8]))
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits as ``(images in [0, 1], labels)`` numpy arrays (read once)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "The digits data set ships with scikit-learn, which is not installed. Install it "
            f"with: {_INSTALL_HINT}"
        ) from exc
    bunch = load_digits()
    images = (bunch.data / _PIXEL_MAX).astype("float32")
    images = images.reshape(-1, 1, _IMAGE_SIZE, _IMAGE_SIZE)
    return images, bunch.target.astype("int64")


def load_digits_data(seed: int = 0, test_size: float = 0.25) -> DigitsData:
    """Stratified, deterministic train/test split of scikit-learn's 1797 digits.

    Args:
        seed: Seed of the split (``random_state`` of ``train_test_split``), in ``[0, 2**32)``.
            Default: 0.
        test_size: Fraction of the images in the test set, in ``(0, 1)``. Default: 0.25
            (1347 training and 450 test images).

    Returns:
        A :class:`DigitsData` of fresh tensors (safe to modify): images ``(N, 1, 8, 8)`` in
        ``[0, 1]`` and ``int64`` labels; every class keeps its share in both parts.

    Raises:
        TypeError: If ``seed`` is not an int or ``test_size`` not a float.
        ValueError: If ``seed`` or ``test_size`` is out of range.
        ImportError: If scikit-learn is not installed (the message gives the pip command).

    Examples::

        >>> data = load_digits_data(seed=0)  # doctest: +SKIP
        >>> float(data.x_train.min()), float(data.x_train.max())  # doctest: +SKIP
        (0.0, 1.0)
        >>> data.y_test.bincount().tolist()  # doctest: +SKIP
        [44, 46, 44, 46, 45, 45, 45, 45, 43, 45]
    """
    _check_seed(seed)
    if isinstance(test_size, bool) or not isinstance(test_size, (int, float)):
        raise TypeError(f"test_size must be a float, got {type(test_size).__name__}")
    if not 0.0 < float(test_size) < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size!r}")
    images, labels = _digits_arrays()
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(
        range(len(labels)), test_size=float(test_size), stratify=labels, random_state=seed
    )
    return DigitsData(
        x_train=torch.from_numpy(images[train_idx]),
        y_train=torch.from_numpy(labels[train_idx]),
        x_test=torch.from_numpy(images[test_idx]),
        y_test=torch.from_numpy(labels[test_idx]),
    )


@contextlib.contextmanager
def _seeded_deterministic(seed: int) -> Iterator[None]:
    """Seed the global CPU generator and enforce deterministic algorithms, then restore both."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _check_data(data: DigitsData) -> None:
    if not isinstance(data, DigitsData):
        raise TypeError(f"data must be a DigitsData or None, got {type(data).__name__}")
    for name in ("x_train", "x_test"):
        x = getattr(data, name)
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"data.{name} must be a tensor of shape (N, 1, H, W)")
    for name in ("y_train", "y_test"):
        y = getattr(data, name)
        if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.dtype != torch.int64:
            raise ValueError(f"data.{name} must be an int64 tensor of shape (N,)")
        if y.numel() and not 0 <= int(y.min()) <= int(y.max()) < _NUM_CLASSES:
            raise ValueError(f"data.{name} must hold labels in [0, {_NUM_CLASSES})")
    if len(data.x_train) != len(data.y_train) or len(data.x_test) != len(data.y_test):
        raise ValueError("data images and labels must have the same length")
    if len(data.x_train) == 0 or len(data.x_test) == 0:
        raise ValueError("data must have non-empty train and test parts")


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (model(x).argmax(dim=1) == y).float().mean().item()


def train_digits_cnn(
    seed: int = 0, epochs: int = _DEFAULT_EPOCHS, data: DigitsData | None = None
) -> tuple[DigitsCNN, float]:
    """Train a :class:`DigitsCNN` on the digits, deterministically under ``seed``.

    Adam (weight decay 1e-4) with a one-cycle learning-rate schedule peaking at 1e-2, batches of
    64, cross-entropy. The seed fixes the initial weights, the dropout masks and the batch order;
    the global random state and the deterministic-algorithms setting are restored afterwards, and
    the global thread settings are left alone. Two runs with the same seed and data give identical
    state dicts in the same environment (torch build, thread count).

    Args:
        seed: Seed of the model initialisation and training, in ``[0, 2**32)``. Default: 0.
        epochs: Number of passes over the training set. Default: 15 (about 99 % test accuracy
            in 2-4 s on two CPU cores).
        data: The split to train and evaluate on. Default: ``load_digits_data()`` (the split of
            seed 0, the same for every model seed, so models of several seeds share one test
            set).

    Returns:
        ``(model, test_accuracy)``: the trained model in eval mode on the CPU, and its accuracy
        on ``data.x_test`` as a float in ``[0, 1]``.

    Raises:
        TypeError: If ``seed`` or ``epochs`` is not an int or ``data`` not a :class:`DigitsData`.
        ValueError: If an argument is out of range or ``data`` is malformed.
        ImportError: If ``data`` is None and scikit-learn is not installed.

    Examples::

        >>> model, accuracy = train_digits_cnn(seed=0)  # doctest: +SKIP
        >>> accuracy > 0.95  # doctest: +SKIP
        True
    """
    _check_seed(seed)
    if isinstance(epochs, bool) or not isinstance(epochs, int):
        raise TypeError(f"epochs must be an int, got {type(epochs).__name__}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if data is None:
        data = load_digits_data()
    _check_data(data)
    x_train = data.x_train.detach().to("cpu", torch.float32)
    y_train = data.y_train.detach().to("cpu")
    n = len(x_train)
    steps_per_epoch = -(-n // _BATCH_SIZE)
    with _seeded_deterministic(seed):
        model = DigitsCNN()
        optimizer = torch.optim.Adam(model.parameters(), lr=_MAX_LR, weight_decay=_WEIGHT_DECAY)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=_MAX_LR, total_steps=epochs * steps_per_epoch
        )
        generator = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, _BATCH_SIZE):
                batch = order[start : start + _BATCH_SIZE]
                if len(batch) < 2:  # BatchNorm needs more than one value per channel.
                    continue
                loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
        model.eval()
        accuracy = _accuracy(model, data.x_test.detach().to("cpu", torch.float32), data.y_test)
    return model, accuracy


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _cached_model(seed: int) -> DigitsCNN:
    model, _ = train_digits_cnn(seed=seed)
    return model


def trained_digits_cnn(seed: int = 0) -> DigitsCNN:
    """A trained :class:`DigitsCNN`, trained once per seed and process and then copied.

    Trains with the defaults of :func:`train_digits_cnn` on the first call for a seed and keeps
    the result in a process-local cache (up to 8 seeds); every call returns a deep copy, so
    callers may modify, retrain or perturb it without affecting later calls.

    Args:
        seed: Seed of the model initialisation and training, in ``[0, 2**32)``. Default: 0.

    Returns:
        An independent copy of the trained model, in eval mode on the CPU.

    Raises:
        TypeError: If ``seed`` is not an int.
        ValueError: If ``seed`` is out of range.
        ImportError: If scikit-learn is not installed.

    Examples::

        >>> model = trained_digits_cnn(seed=0)  # doctest: +SKIP
        >>> model is trained_digits_cnn(seed=0)  # doctest: +SKIP
        False
    """
    _check_seed(seed)
    return copy.deepcopy(_cached_model(seed))
