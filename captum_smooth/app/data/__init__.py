"""Offline data: the ImageNet class names and photos bundled with scikit-image."""

from .images import SAMPLE_IMAGE_NAMES, load_image, load_sample_images

__all__ = ["SAMPLE_IMAGE_NAMES", "load_image", "load_sample_images"]
