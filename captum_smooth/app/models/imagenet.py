"""The 1000 ImageNet-1k class names, in the index order of the classifier outputs.

The names are carried as the data file ``captum_smooth/data/imagenet_classes.txt`` (one name a
line), taken from torchvision's ``_IMAGENET_CATEGORIES`` list (the ILSVRC-2012 synsets in
sorted order, with the two duplicated names made unique: ``"crane"`` / ``"crane bird"``,
``"maillot"`` / ``"maillot tank suit"``).
"""

from __future__ import annotations

import functools
from importlib import resources

__all__ = ["imagenet_class_index", "imagenet_classes"]

_NUM_CLASSES = 1000


@functools.lru_cache(maxsize=1)
def _read_classes() -> tuple[str, ...]:
    text = (
        resources.files("captum_smooth.app.data")
        .joinpath("imagenet_classes.txt")
        .read_text("utf-8")
    )
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != _NUM_CLASSES:
        raise RuntimeError(
            f"imagenet_classes.txt holds {len(names)} names, expected {_NUM_CLASSES}; "
            "the installation is damaged"
        )
    return names


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names; entry ``i`` names output logit ``i``.

    Returns:
        A new list of 1000 unique names (safe to modify).

    Examples::

        >>> names = imagenet_classes()
        >>> len(names), names[285], names[967]
        (1000, 'Egyptian cat', 'espresso')
    """
    return list(_read_classes())


def imagenet_class_index(name: str) -> int:
    """Index of an ImageNet class given its exact name.

    Args:
        name: A class name as listed by :func:`imagenet_classes` (case-sensitive).

    Returns:
        The class index in ``[0, 1000)``.

    Raises:
        TypeError: If ``name`` is not a str.
        ValueError: If ``name`` is not an ImageNet class name.

    Examples::

        >>> imagenet_class_index("espresso")
        967
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    try:
        return _read_classes().index(name)
    except ValueError:
        raise ValueError(f"name {name!r} is not an ImageNet class name") from None
