"""How exactly SmoothTunnel reproduces Captum's NoiseTunnel: the bound the parity tests assert.

Measured (docs/guarantees.rst, "Captum's numbers"): over 1,080 pairs (Saliency, InputXGradient
and DeepLift on random MLPs, float32 and float64, 7 samples, chunks of 1, 3, 7, 16 and none),
``smoothgrad`` in one chunk was equal bit for bit every time; everything else (``smoothgrad``
in several chunks; ``smoothgrad_sq`` and ``vargrad``, which we stream with Welford / Chan
updates where Captum sums all samples at once) differed at rounding only, at most
3.3 x eps x scale. The scale is the largest ``|element|`` of Captum's map for ``smoothgrad``
and the largest element of Captum's ``smoothgrad_sq`` map (the mean of the squared samples)
for ``smoothgrad_sq`` and ``vargrad``: a variance's rounding error is relative to the squares
it is computed from, not to the (possibly tiny) variance. The tests allow 8 x eps x scale.
"""

from __future__ import annotations

import torch

# The measured worst case was 3.3; 8 leaves room for other models without hiding a real change
# (a wrong sample, a lost chunk or a float32 draw in a float64 sum is orders of magnitude more).
ROUNDING_EPS = 8.0


def bit_for_bit(nt_type: str, nt_samples: int, chunk: int | None) -> bool:
    """Whether SmoothTunnel promises Captum's exact numbers for these settings."""
    return nt_type == "smoothgrad" and (chunk is None or chunk >= nt_samples)


def assert_captum_parity(
    ours: torch.Tensor, theirs: torch.Tensor, *, exact: bool, scale: float
) -> None:
    """``torch.equal`` where the promise is bit for bit, else within the rounding bound."""
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    if exact:
        assert torch.equal(ours, theirs), (ours - theirs).abs().max()
        return
    bound = ROUNDING_EPS * torch.finfo(ours.dtype).eps * scale
    diff = float((ours - theirs).abs().max())
    assert diff <= bound, f"|ours - Captum's| = {diff:.3g} > {bound:.3g} (8 eps x {scale:.3g})"
