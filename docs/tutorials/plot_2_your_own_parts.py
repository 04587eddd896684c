"""
Your own kernel, sigma rule and reducer
=======================================

Every smoothing method of captum-smooth is one estimator,

.. math:: E(x) = \\mathrm{reduce}_k\\; A\\big(x + \\sigma(x)\\, t_k\\big),

with three parts you can replace: the **kernel** the noise ``t_k`` is drawn from, the **sigma
rule** ``sigma(x)`` that scales it, and the **reducer** that turns the ``k`` sampled
attributions into one map. This tutorial writes one of each, registers the kernel and the
reducer by name, and uses all three on the embedded EfficientNet-Lite0 (one photo, 16 samples
per map).
"""

# %%
# The model and the photo, and a plain SmoothGrad map for comparison.

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import Saliency

from captum_smooth import (
    Kernel,
    SigmaRule,
    SmoothGrad,
    SmoothTunnel,
    StreamingMoments,
    get_kernel,
    kernel_names,
    reducer_names,
    register_kernel,
    register_reducer,
)
from captum_smooth.app.data.images import load_sample_images
from captum_smooth.app.models import load_efficientnet_lite0

model = load_efficientnet_lite0().eval()
image, _ = load_sample_images("chelsea", size=224)
with torch.no_grad():
    target = int(model(image).argmax())

plain = SmoothGrad(model).attribute(
    image, target=target, nt_samples=16, noise_level=0.15, bounds=(0.0, 1.0), generator=0
)

# %%
# 1. A kernel
# -----------
# A kernel draws i.i.d. noise with **zero mean and unit standard deviation** (the loop multiplies
# it by sigma, so sigma means the same for every kernel). Subclass
# :class:`~captum_smooth.Kernel`, set ``name`` and ``support`` (the largest ``|t|`` it can draw,
# ``math.inf`` if unbounded), implement ``sample`` drawing *only* from the ``generator`` it is
# given (that is what makes a seed reproduce a map), and register the class.
#
# Ours is the Rademacher kernel: each element is ``+1`` or ``-1`` with equal probability, the
# noise of the corners of a cube rather than of a ball.


@register_kernel("rademacher")
class RademacherKernel(Kernel):
    name = "rademacher"
    support = 1.0

    def sample(self, shape, *, generator=None, device=None, dtype=None):
        coin = torch.randint(0, 2, tuple(shape), generator=generator, device=device)
        return (2 * coin - 1).to(dtype or torch.get_default_dtype())


print("kernels:", kernel_names())
draws = {name: get_kernel(name).sample((100_000,), generator=torch.Generator().manual_seed(0))
         for name in ("gaussian", "laplace", "rademacher")}  # fmt: skip
for name, t in draws.items():
    print(f"{name:>10}: mean {t.mean().item():+.4f}, std {t.std().item():.4f}")

fig, axes = plt.subplots(1, 3, figsize=(9, 2.4), constrained_layout=True)
for ax, (name, t) in zip(axes, draws.items()):
    ax.hist(t.numpy(), bins=np.linspace(-4, 4, 81), density=True, color="tab:blue")
    ax.set_title(f"{name} (std {t.std().item():.2f})", fontsize=9)
    ax.set_xlabel("t")
plt.show()

# %%
# The histograms (each on its own vertical scale) show three densities with the same standard
# deviation (printed above: 1.00 each): the Gaussian bell, the Laplace kernel's sharper peak
# and heavier tails, and ours, two spikes at -1 and +1, every value at distance exactly one
# standard deviation. Registered, the name works wherever a built-in kernel's does:
# ``kernel="rademacher"`` in every method, and ``captum-smooth explain --kernel rademacher`` in a
# process that imported it.
#
# 2. A sigma rule
# ---------------
# A sigma rule maps the clean batch ``(B, ...)`` to the noise's standard deviation, one per
# element or anything that broadcasts to the batch. There is no registry for them: the object
# itself is passed as ``stdevs``. Ours scales the noise to the image's local texture: sigma is
# a share of the standard deviation of the pixel values in a 7 x 7 window around each pixel,
# so flat areas (background, fur in shadow) get little noise and textured ones (whiskers,
# eyes, edges) get more.


class LocalContrastSigma(SigmaRule):
    def __init__(self, share: float = 1.0, window: int = 7) -> None:
        self.share = share
        self.window = window

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        pad = self.window // 2
        mean = F.avg_pool2d(inputs, self.window, stride=1, padding=pad, count_include_pad=False)
        square = F.avg_pool2d(inputs**2, self.window, 1, pad, count_include_pad=False)
        return self.share * (square - mean**2).clamp_min(0).sqrt()


rule = LocalContrastSigma(share=1.0)
print(rule)
sigma = rule(image)
print(f"sigma: mean {sigma.mean().item():.3f}, largest {sigma.max().item():.3f}")
gen = torch.Generator().manual_seed(0)
noisy_flat = (image + 0.15 * torch.randn(image.shape, generator=gen)).clamp(0, 1)
noisy_local = (image + sigma * torch.randn(image.shape, generator=gen)).clamp(0, 1)

fig, axes = plt.subplots(1, 4, figsize=(10, 2.8), constrained_layout=True)
panels = [
    (image[0].permute(1, 2, 0), "photo"),
    (sigma[0].mean(0), "sigma of LocalContrastSigma"),
    (noisy_flat[0].permute(1, 2, 0), "noise of sigma 0.15 everywhere"),
    (noisy_local[0].permute(1, 2, 0), "noise of LocalContrastSigma"),
]
for ax, (picture, title) in zip(axes, panels):
    ax.imshow(picture.numpy(), cmap="magma")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

# %%
# The second panel is the sigma the rule gives each pixel (bright = more noise): high along
# the whiskers, the eyes' rims and the ears' edges, near zero on the smooth patches of fur and
# on the blurred background. The last two panels are one noisy copy each: SmoothGrad's uniform
# sigma of 0.15 covers the whole photo in grain, ours leaves flat areas clean and roughens only
# the texture. (Its mean is about a third of 0.15, so maps made with it are less smoothed.)
#
# 3. A reducer
# ------------
# A reducer is made per call by a factory, ``factory(batch_size)``, and is fed the sampled
# attributions chunk by chunk: ``update(attributions, k, rows)`` gets a tuple of tensors
# holding ``k`` samples of each example being sampled (example-major), ``result()`` returns one
# row per example. A ``standard_error()`` method (optional) lets ``return_error`` and
# ``tolerance`` work with it; ``count`` and ``n_dropped`` (optional) feed ``last_report``.
#
# Ours asks a different question than the mean: **how often is a pixel among the most
# important ones?** For each noisy copy it marks the 5 % of elements with the largest
# ``|attribution|`` (1 for those, 0 for the rest), and the result is the share of copies in
# which each element was marked: 1 for an element that is always in the top 5 %, 0 for one that
# never is. That share is a mean, so :class:`~captum_smooth.StreamingMoments` (the streaming
# mean and variance the built-in reducers use) gives its value and its standard error without
# keeping the samples.


@register_reducer("top_share")
class TopShare:
    share = 0.05  # the top 5 % of each sample
    draw_average = True  # the mean of all samples is the mean of the weight draws' means

    def __init__(self, batch_size: int) -> None:
        self.moments = StreamingMoments(batch_size)

    def update(self, attributions, k, rows=None):
        marked = []
        for a in attributions:
            flat = a.detach().abs().flatten(1)  # one row per sample
            rank = flat.shape[1] - max(1, int(self.share * flat.shape[1])) + 1
            threshold = flat.kthvalue(rank, dim=1, keepdim=True).values
            marked.append((flat >= threshold).to(a.dtype).view_as(a))
        self.moments.update(tuple(marked), k, rows=rows)

    def result(self):
        return self.moments.reduce("smoothgrad")

    def standard_error(self):
        return self.moments.standard_error("smoothgrad")

    @property
    def count(self):
        return self.moments.count

    @property
    def n_dropped(self):
        return self.moments.n_dropped


print("reducers:", reducer_names())

# %%
# 4. All three, by name
# ---------------------
# The kernel and the reducer are used by their names, the sigma rule as an object; they
# combine with each other and with every other option (here the default Saliency, the
# magnitude of the gradient, as in SmoothGrad's maps).

tunnel = SmoothTunnel(Saliency(model))
common = {"target": target, "nt_samples": 16, "generator": 0}
with_kernel = tunnel.attribute(image, stdevs=0.15, kernel="rademacher", **common)
with_sigma = tunnel.attribute(image, stdevs=LocalContrastSigma(1.0), **common)
top_share, error = tunnel.attribute(
    image, stdevs=0.15, nt_type="top_share", return_error=True, **common
)
print(tunnel.last_report)


def heat(attr):
    m = attr.detach().abs().sum(0).numpy()
    return np.clip(m / max(np.percentile(m, 99), 1e-12), 0, 1)


fig, axes = plt.subplots(1, 4, figsize=(10, 2.9), constrained_layout=True)
panels = [
    (heat(plain[0]), "gray", (0, 1), "SmoothGrad (gaussian)"),
    (heat(with_kernel[0]), "gray", (0, 1), 'kernel="rademacher"'),
    (heat(with_sigma[0]), "gray", (0, 1), "stdevs=LocalContrastSigma(1.0)"),
    (top_share[0].amax(0).numpy(), "magma", (0, 1), 'nt_type="top_share"'),
]
for ax, (picture, cmap, (lo, hi), title) in zip(axes, panels):
    shown = ax.imshow(picture, cmap=cmap, vmin=lo, vmax=hi)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.colorbar(shown, ax=axes[3], shrink=0.8)
plt.show()

# %%
# The first two maps are the same estimator with two kernels of the same variance: the
# Rademacher map is as smooth as the Gaussian one and lights up the same regions, the cat's face
# and eyes (smoothing depends mostly on the noise's scale, the kernel's shape is a second-order
# effect). The local-contrast map is sharper and closer to the raw gradient: its noise is
# smaller on average and absent on flat areas, so it smooths less. The last panel is the top
# share (the largest of the three colour channels' shares; the colour bar is the share of the
# 16 copies): no pixel is in the top 5 % of every copy, the brightest about three in four, and
# they sit on the face, the same regions as the mean's map. Outside the face most pixels were
# never or rarely marked (black). Its standard error came with it (``return_error=True``): the
# error of a share of 16 copies is at most ``0.5 / sqrt(15) = 0.13`` per element, and the
# relative error in the report is that error relative to the whole map.

print(f"largest share: {top_share.max().item():.2f}")
print(f"largest standard error of the share: {error.standard_error.max().item():.3f}")
