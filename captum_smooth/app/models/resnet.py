"""A ResNet-18-sized CNN in plain torch, with seeded random weights, for benchmarks.

The speed and memory references of the project are measured on ResNet-18 with random weights
(one 224 x 224 image). :func:`resnet18_like` builds that network without torchvision: BasicBlock
residual units in four stages of two blocks (64, 128, 256, 512 channels), BatchNorm, a 7 x 7
stem with max-pooling, global average pooling and a linear head ``fc`` -- 11,689,512 parameters
with 1000 classes. Module and parameter names follow torchvision's ``resnet18`` (``conv1``,
``bn1``, ``layer1`` .. ``layer4``, ``downsample``, ``fc``), so its state dicts are
interchangeable with torchvision's, and the initialisation follows torchvision's scheme
(Kaiming-normal convolutions, BatchNorm weight 1 and bias 0, default linear layer).

The weights are random (no training): use the model for timing, memory and plumbing, not for
attribution quality.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "ResNet18Like", "resnet18_like"]

_NUM_CLASSES = 1000
_STAGE_CHANNELS = (64, 128, 256, 512)
_BLOCKS_PER_STAGE = 2


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """ResNet basic residual block: two 3 x 3 convolutions with BatchNorm and a skip connection.

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, where the shortcut is the identity,
    or a strided 1 x 1 convolution with BatchNorm (``downsample``) when the stride or the channel
    count changes. Each ReLU is its own module (``relu1``, ``relu2``; torchvision reuses one) and
    none is in-place, so hooks and Captum's DeepLift see every activation separately.

    Args:
        in_channels: Channels of the input.
        out_channels: Channels of the output.
        stride: Stride of the first convolution (and of the shortcut). Default: 1.

    Examples::

        >>> import torch
        >>> BasicBlock(64, 128, stride=2)(torch.rand(1, 64, 56, 56)).shape
        torch.Size([1, 128, 28, 28])
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = _conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: Feature map ``(N, in_channels, H, W)``.

        Returns:
            Feature map ``(N, out_channels, H / stride, W / stride)``.

        Examples::

            >>> import torch
            >>> BasicBlock(8, 8)(torch.rand(1, 8, 4, 4)).shape
            torch.Size([1, 8, 4, 4])
        """
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class ResNet18Like(nn.Module):
    """ResNet-18 architecture (torchvision layout and parameter names), randomly initialised.

    Construction uses the global random generator; :func:`resnet18_like` seeds it.

    Args:
        num_classes: Number of output logits. Default: 1000.

    Examples::

        >>> import torch
        >>> model = ResNet18Like(num_classes=10).eval()
        >>> model(torch.rand(1, 3, 64, 64)).shape
        torch.Size([1, 10])
    """

    def __init__(self, num_classes: int = _NUM_CLASSES) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        stem = _STAGE_CHANNELS[0]
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels = stem
        stages: list[nn.Sequential] = []
        for i, channels in enumerate(_STAGE_CHANNELS):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(in_channels, channels, stride)]
            blocks += [BasicBlock(channels, channels) for _ in range(_BLOCKS_PER_STAGE - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of RGB images.

        Args:
            x: Images ``(N, 3, H, W)``; 224 x 224 is the reference size.

        Returns:
            Logits of shape ``(N, num_classes)``.

        Examples::

            >>> import torch
            >>> ResNet18Like().eval()(torch.rand(1, 3, 224, 224)).shape
            torch.Size([1, 1000])
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"x must have shape (N, 3, H, W), got {tuple(x.shape)}")
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.fc(torch.flatten(self.avgpool(h), 1))


def resnet18_like(num_classes: int = _NUM_CLASSES, seed: int = 0) -> ResNet18Like:
    """A ResNet-18-sized network with random weights drawn under ``seed``, in eval mode.

    The global random state is saved and restored around the initialisation, so calling this
    does not disturb the caller's random stream; the same seed gives identical weights.

    Args:
        num_classes: Number of output logits. Default: 1000 (11,689,512 parameters).
        seed: Seed of the weight initialisation, in ``[0, 2**64)``. Default: 0.

    Returns:
        The model in eval mode on the CPU (BatchNorm uses its initial running statistics,
        mean 0 and variance 1).

    Raises:
        TypeError: If ``seed`` is not an int.
        ValueError: If ``num_classes`` is not a positive int or ``seed`` is negative.

    Examples::

        >>> import torch
        >>> model = resnet18_like(seed=0)
        >>> sum(p.numel() for p in model.parameters())
        11689512
        >>> model(torch.rand(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResNet18Like(num_classes=num_classes)
    return model.eval()
