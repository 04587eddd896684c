"""A ground-truth task: the class of an image is decided by one small known patch.

Every image is ``size x size`` greyscale in ``[0, 1]``: a smooth random texture, one
*class patch* (one of ``n_classes`` binary patterns) and ``n_distractors`` *distractor patches*
(drawn from a separate set of binary patterns shared by all classes), all at random,
non-overlapping places and all with the same contrast. Only the class patch tells the class, so
an explanation of the predicted class should put its relevance there; the distractors make an
input edge map (which sees every patch alike) a fair control instead of a free winner.

Also here: a small CNN that learns the task in seconds (:func:`train_patch_cnn`) and the
localisation scores against the known patch (:func:`relevance_mass`, :func:`relevance_rank`,
:func:`pointing_game`; Arras et al. 2022, Zhang et al. 2018).

Everything is deterministic under its seed: the data come from a numpy ``Generator``, the model
from ``torch.manual_seed`` inside a forked random state.

References:
    Arras, L., Osman, A., Samek, W. "CLEVR-XAI: A benchmark dataset for the ground truth
    evaluation of neural network explanations." Information Fusion 81, 2022 (relevance mass and
    relevance rank accuracy).
    Zhang, J. et al. "Top-down Neural Attention by Excitation Backprop." IJCV 2018 (pointing game).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PatchCNN",
    "PatchData",
    "make_patch_data",
    "patch_patterns",
    "pointing_game",
    "relevance_mass",
    "relevance_rank",
    "train_patch_cnn",
]

_PATTERN_SEED = 12345  # the patterns are part of the task definition, the same for every seed


class PatchData(NamedTuple):
    """Images, labels and where the class-deciding patch is.

    Attributes:
        images: ``(N, 1, size, size)`` float32 in ``[0, 1]``.
        labels: ``(N,)`` int64 class indices.
        masks: ``(N, 1, size, size)`` bool, True on the class patch.
        boxes: ``(N, 2)`` int64, the (row, column) of the class patch's top-left corner.
    """

    images: Tensor
    labels: Tensor
    masks: Tensor
    boxes: Tensor


def patch_patterns(n_classes: int = 4, n_distractor_patterns: int = 4, patch: int = 6) -> Tensor:
    """The binary patterns: the first ``n_classes`` decide the class, the rest are distractors.

    Drawn once from a fixed seed with half the pixels on, and redrawn until every pair differs
    in at least a third of its pixels.

    Returns:
        ``(n_classes + n_distractor_patterns, patch, patch)`` float32 in ``{0, 1}``.
    """
    rng = np.random.default_rng(_PATTERN_SEED)
    n, area = n_classes + n_distractor_patterns, patch * patch
    for _ in range(10_000):
        flat = np.zeros((n, area), dtype=np.float32)
        for i in range(n):
            flat[i, rng.choice(area, size=area // 2, replace=False)] = 1.0
        distance = (flat[:, None, :] != flat[None, :, :]).sum(axis=2)
        if (distance + area * np.eye(n)).min() >= area // 3:
            return torch.from_numpy(flat.reshape(n, patch, patch))
    raise RuntimeError("could not draw distinct patterns")  # pragma: no cover


def _smooth_texture(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Uniform noise blurred by a 3x3 box twice, stretched to ``[0.15, 0.85]`` per image."""
    noise = torch.from_numpy(rng.random((n, 1, size, size), dtype=np.float32))
    box = torch.full((1, 1, 3, 3), 1.0 / 9.0)
    for _ in range(2):
        noise = F.conv2d(F.pad(noise, (1, 1, 1, 1), mode="reflect"), box)
    lo = noise.amin(dim=(2, 3), keepdim=True)
    hi = noise.amax(dim=(2, 3), keepdim=True)
    return (0.15 + 0.7 * (noise - lo) / (hi - lo)).numpy()


def _places(rng: np.random.Generator, count: int, size: int, patch: int) -> list[tuple[int, int]]:
    """``count`` top-left corners of non-overlapping ``patch x patch`` squares (1-pixel gap)."""
    while True:
        corners: list[tuple[int, int]] = []
        for _ in range(200):
            r, c = (int(v) for v in rng.integers(0, size - patch + 1, size=2))
            if all(max(abs(r - r2), abs(c - c2)) > patch for r2, c2 in corners):
                corners.append((r, c))
                if len(corners) == count:
                    return corners


def make_patch_data(
    n: int,
    *,
    size: int = 32,
    patch: int = 6,
    n_classes: int = 4,
    n_distractors: int = 2,
    n_distractor_patterns: int = 4,
    seed: int = 0,
) -> PatchData:
    """Generate ``n`` images of the ground-truth task (balanced classes, shuffled).

    Args:
        n: Number of images.
        size: Side of the images in pixels. Default: 32.
        patch: Side of every patch in pixels. Default: 6.
        n_classes: Number of classes (= class patterns). Default: 4.
        n_distractors: Distractor patches per image. Default: 2.
        n_distractor_patterns: Size of the distractor pattern set. Default: 4.
        seed: Seed of the images (textures, places, labels). Default: 0.

    Returns:
        A :class:`PatchData`; patches are drawn at values 0.0 / 1.0, the texture in [0.15, 0.85].
    """
    if (n_distractors + 1) * (patch + 1) ** 2 > size * size // 2:
        raise ValueError("the patches do not fit: use a larger `size` or fewer/smaller patches")
    rng = np.random.default_rng(seed)
    patterns = patch_patterns(n_classes, n_distractor_patterns, patch).numpy()
    images = _smooth_texture(rng, n, size)
    labels = rng.permutation(np.arange(n) % n_classes)
    masks = np.zeros((n, 1, size, size), dtype=bool)
    boxes = np.zeros((n, 2), dtype=np.int64)
    for i in range(n):
        corners = _places(rng, 1 + n_distractors, size, patch)
        chosen = [int(labels[i])] + [
            n_classes + int(k) for k in rng.integers(0, n_distractor_patterns, n_distractors)
        ]
        for (r, c), k in zip(corners, chosen):
            images[i, 0, r : r + patch, c : c + patch] = patterns[k]
        r, c = corners[0]
        masks[i, 0, r : r + patch, c : c + patch] = True
        boxes[i] = (r, c)
    return PatchData(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels.astype(np.int64)),
        masks=torch.from_numpy(masks),
        boxes=torch.from_numpy(boxes),
    )


class PatchCNN(nn.Module):
    """A small CNN for the patch task: three 3x3 convolutions, global max pooling, a linear head.

    Global max pooling makes it a detector: the class score comes from where a pattern is found.
    """

    def __init__(self, n_classes: int = 4, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(2 * width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(N, n_classes)`` of images ``(N, 1, H, W)``."""
        return self.classifier(self.features(x).amax(dim=(2, 3)))


def train_patch_cnn(
    train: PatchData,
    test: PatchData,
    *,
    seed: int = 0,
    epochs: int = 3,
    batch_size: int = 64,
    lr: float = 3e-3,
    width: int = 8,
) -> tuple[PatchCNN, float]:
    """Train a :class:`PatchCNN` deterministically under ``seed``; return it and its test accuracy.

    Adam, cross-entropy, shuffled batches from a seeded generator; the initial weights come from
    ``torch.manual_seed(seed)`` inside a forked global random state (restored afterwards). CPU
    convolutions and Adam are deterministic for a fixed thread count, so the same seed gives the
    same weights in the same environment (the model has no dropout or BatchNorm).
    """
    n_classes = int(train.labels.max()) + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = PatchCNN(n_classes, width)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    n = len(train.labels)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(model(train.images[batch]), train.labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test.images).argmax(dim=1) == test.labels).float().mean().item()
    return model, accuracy


def _relevance(maps: Tensor) -> Tensor:
    """``(B, H*W)``: the channel sum of ``|maps|`` (``maps`` ``(B, C, H, W)``)."""
    return maps.detach().abs().sum(dim=1).flatten(1).float()


def relevance_mass(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of the total ``|relevance|`` inside the mask, per example (1 = all inside).

    Args:
        maps: ``(B, C, H, W)`` attributions (the channel sum of ``|maps|`` is used).
        masks: ``(B, 1, H, W)`` bool ground truth.

    Returns:
        ``(B,)``; an all-zero map scores 0.
    """
    rel, inside = _relevance(maps), masks.flatten(1)
    total = rel.sum(dim=1)
    return torch.where(total > 0, (rel * inside).sum(dim=1) / total.clamp_min(1e-30), 0.0)


def relevance_rank(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of the ``K`` most relevant positions that lie in the mask, ``K`` = mask size.

    Ties are broken by position (stable sort), so a constant map scores the mask's share of
    the first ``K`` positions in row-major order.
    """
    rel, inside = _relevance(maps), masks.flatten(1)
    k = inside.sum(dim=1)
    order = torch.sort(rel, dim=1, descending=True, stable=True).indices
    ranked_inside = torch.gather(inside, 1, order).float()
    first_k = torch.arange(rel.shape[1]).unsqueeze(0) < k.unsqueeze(1)
    return (ranked_inside * first_k).sum(dim=1) / k.clamp_min(1)


def pointing_game(maps: Tensor, masks: Tensor) -> Tensor:
    """1.0 where the most relevant position (first one on ties) is in the mask, else 0.0."""
    rel, inside = _relevance(maps), masks.flatten(1)
    top = rel.argmax(dim=1, keepdim=True)
    return torch.gather(inside, 1, top).squeeze(1).float()
