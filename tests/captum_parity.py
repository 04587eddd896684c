"""How exactly SmoothTunnel reproduces Captum's NoiseTunnel: the bound the parity tests assert.

Measured by running this file (``PYTHONPATH=. python tests/captum_parity.py``, ~2.5 min on
2 cores; docs/guarantees.rst, "Captum's numbers"): 900 pairs (Saliency, InputXGradient and
DeepLift on 10 random MLPs; float32 and float64; each ``nt_type``; 7 samples in chunks of 1, 3,
7, 16 or unset). ``smoothgrad`` in one chunk was equal bit for bit every time; everything else
(``smoothgrad`` in several chunks; ``smoothgrad_sq`` and ``vargrad``, which we stream with
Welford / Chan updates where Captum sums all samples at once) differed at rounding only, never
bit for bit, at most 3.2 x eps x scale. The scale is the largest ``|element|`` of Captum's map
for ``smoothgrad`` and the largest element of Captum's ``smoothgrad_sq`` map (the mean of the
squared samples) for ``smoothgrad_sq`` and ``vargrad``: a variance's rounding error is relative
to the squares it is computed from, not to the (possibly tiny) variance. The tests allow 8.
"""

from __future__ import annotations

import itertools
import warnings

import torch

# The measured worst case was 3.2; 8 leaves room for other models without hiding a real change
# (a wrong sample, a lost chunk or a float32 draw in a float64 sum is orders of magnitude more).
ROUNDING_EPS = 8.0


def bit_for_bit(nt_type: str, nt_samples: int, chunk: int | None) -> bool:
    """Whether SmoothTunnel promises Captum's exact numbers for these settings."""
    return nt_type == "smoothgrad" and (chunk is None or chunk >= nt_samples)


def rounding_in_eps(ours: torch.Tensor, theirs: torch.Tensor, scale: float) -> float:
    """``max |ours - theirs|`` in units of ``eps x scale`` (eps of the tensors' dtype)."""
    return float((ours - theirs).abs().max()) / (torch.finfo(ours.dtype).eps * scale)


def assert_captum_parity(
    ours: torch.Tensor, theirs: torch.Tensor, *, exact: bool, scale: float
) -> None:
    """``torch.equal`` where the promise is bit for bit, else within the rounding bound."""
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    if exact:
        assert torch.equal(ours, theirs), (ours - theirs).abs().max()
        return
    in_eps = rounding_in_eps(ours, theirs, scale)
    assert in_eps <= ROUNDING_EPS, f"|ours - Captum's| = {in_eps:.2f} eps x {scale:.3g}"


def _measure() -> None:  # pragma: no cover - the measurement behind ROUNDING_EPS
    from captum.attr import DeepLift, InputXGradient, NoiseTunnel, Saliency
    from torch import nn

    from captum_smooth import SmoothTunnel

    warnings.simplefilter("ignore")
    methods = [(Saliency, {"abs": False}), (InputXGradient, {}), (DeepLift, {})]
    rows: dict[tuple[str, str, str], list[float]] = {}
    for dtype, nt_type, chunk, (method, extra), seed in itertools.product(
        [torch.float32, torch.float64], ["smoothgrad", "smoothgrad_sq", "vargrad"],
        [None, 1, 3, 7, 16], methods, range(10),
    ):  # fmt: skip
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype).eval()
        x = torch.randn(4, 6, generator=torch.Generator().manual_seed(100 + seed)).to(dtype)
        kw = dict(nt_samples=7, nt_samples_batch_size=chunk, stdevs=0.3, target=1, **extra)
        maps = []
        for tunnel, nt in [(SmoothTunnel, nt_type), (NoiseTunnel, nt_type),
                           (NoiseTunnel, "smoothgrad_sq")]:  # fmt: skip
            torch.manual_seed(seed)
            maps.append(tunnel(method(model)).attribute(x, nt_type=nt, **kw))
        ours, theirs, squares = maps
        scale = float(theirs.abs().max() if nt_type == "smoothgrad" else squares.max())
        layout = "one chunk" if bit_for_bit("smoothgrad", 7, chunk) else "chunks"
        key = (str(dtype), nt_type, layout)
        row = rows.setdefault(key, [0, 0, 0.0, 0.0])
        row[0] += torch.equal(ours, theirs)
        row[1] += 1
        row[2] = max(row[2], float((ours - theirs).abs().max()))
        row[3] = max(row[3], rounding_in_eps(ours, theirs, scale))
    for (dtype, nt_type, layout), (equal, total, diff, in_eps) in rows.items():
        print(f"{dtype:14s} {nt_type:14s} {layout:10s} bit for bit {equal:3.0f}/{total:3.0f}"
              f"  max |diff| {diff:.2e} = {in_eps:.2f} eps x scale")  # fmt: skip


if __name__ == "__main__":
    _measure()
