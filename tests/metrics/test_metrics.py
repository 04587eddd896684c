"""Tests of captum_smooth.metrics: hand-computed cases, properties, Captum and Quantus agreement."""

from __future__ import annotations

import inspect
import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from captum.attr import Attribution, Saliency
from captum.metrics import infidelity, sensitivity_max
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter
from torch import Tensor, nn

from captum_smooth import SmoothGrad
from captum_smooth.metrics import (
    aupc,
    complexity,
    deletion_auc,
    infidelity_of,
    insertion_auc,
    patch_numpy_for_quantus,
    quantus_explain_func,
    sensitivity_max_of,
    sparseness,
    total_variation,
)

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

# --------------------------------------------------------------------------------------------
# helpers


def _checkerboard(h: int, w: int) -> Tensor:
    return ((torch.arange(h).reshape(h, 1) + torch.arange(w)) % 2).float()


class _LinearLogit(nn.Module):
    """Two logits: [x . w, 0]. Records the training flag and the rows of every call."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.reshape(-1).clone())
        self.calls: list[tuple[bool, int]] = []
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.calls.append((self.training, x.shape[0]))
        self.seen.append(x.detach().clone())
        logit = x.flatten(1) @ self.weight
        return torch.stack([logit, torch.zeros_like(logit)], dim=1)


def _small_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))


def _small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    )


# --------------------------------------------------------------------------------------------
# total_variation


def _tv_reference(level: np.ndarray, n_scales: int, percentile: float = 99.0) -> float:
    """The documented definition, written independently with numpy/scipy (one 2-D map)."""
    curve = []
    for s in range(n_scales):
        if s > 0:
            level = gaussian_filter(level, sigma=2.0 / 3.0, mode="nearest", truncate=4.0)[::2, ::2]
        q = np.percentile(level, percentile)
        q = q if q > 0 else level.max()
        normed = np.clip(level / q, 0, 1) if q > 0 else np.zeros_like(level)
        dx = np.abs(np.diff(normed, axis=1)).mean()
        dy = np.abs(np.diff(normed, axis=0)).mean()
        curve.append(0.5 * (dx + dy))
    if n_scales == 1:
        return curve[0]
    return float(np.trapezoid(curve, np.linspace(0, 1, n_scales)))


def test_tv_checkerboard_is_one_and_constant_is_zero() -> None:
    board = _checkerboard(8, 8)
    assert total_variation(board.reshape(1, 8, 8)).tolist() == [1.0]
    # (B, C, H, W): sum of |.| over channels, signs do not matter.
    maps = torch.stack([board, -board, 2 * board]).unsqueeze(0)
    assert total_variation(maps, n_scales=1).tolist() == [1.0]
    assert total_variation(torch.full((2, 3, 16, 16), 3.5)).tolist() == [0.0, 0.0]
    assert total_variation(torch.zeros(2, 16, 16), n_scales=3).tolist() == [0.0, 0.0]
    assert total_variation(torch.zeros(1, 16, 16), subtract_min=True).tolist() == [0.0]


def test_tv_hand_computed_step() -> None:
    # [[0, 1, 1], [0, 1, 1]]: horizontal diffs 1, 0, 1, 0 -> 0.5; vertical 0 -> TV = 0.25.
    m = torch.tensor([[[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]])
    assert total_variation(m).item() == pytest.approx(0.25)


def test_tv_percentile_clips_outlier() -> None:
    # 10x10 ones with 100 in the corner: the 99th percentile is 1 + 0.01 * 99 = 1.99, so the
    # ones become 1/1.99 and the corner clips to 1: 2 of the 180 differences are 1 - 1/1.99.
    m = torch.ones(1, 10, 10)
    m[0, 0, 0] = 100.0
    diff = 1.0 - 1.0 / 1.99
    assert total_variation(m).item() == pytest.approx(0.5 * (diff / 90 + diff / 90), rel=1e-5)
    # percentile=100 normalises by the max: the ones become 0.01.
    assert total_variation(m, percentile=100.0).item() == pytest.approx(0.99 / 90, rel=1e-5)


def test_tv_sparse_map_falls_back_to_max() -> None:
    # One non-zero pixel in 16x16: the 99th percentile is 0, so the max normalises.
    m = torch.zeros(1, 16, 16)
    m[0, 5, 5] = 7.0
    assert total_variation(m, n_scales=1).item() == pytest.approx(0.5 * (2 / 240 + 2 / 240))


def test_tv_matches_independent_reference() -> None:
    g = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 2, 32, 24, generator=g)
    maps[1] = torch.randn(1, 1, 32, 24, generator=g).abs() ** 3  # heavy tail
    ours = total_variation(maps.double(), n_scales=4)
    reduced = maps.double().abs().sum(1).numpy()
    ref = [_tv_reference(reduced[i], 4) for i in range(3)]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-10)


def test_tv_number_of_scales() -> None:
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(2, 16, 16, generator=g)
    # min_size=8: levels 16 and 8 -> 2 scales; 8x8 maps -> 1 scale.
    assert torch.equal(total_variation(maps), total_variation(maps, n_scales=2))
    assert torch.equal(
        total_variation(maps[:, :8, :8]), total_variation(maps[:, :8, :8], n_scales=1)
    )
    assert torch.equal(total_variation(maps, min_size=2), total_variation(maps, n_scales=4))
    with pytest.raises(ValueError, match="n_scales"):
        total_variation(maps, n_scales=5)  # 16, 8, 4, 2 fit, 1 does not


def test_tv_noise_is_rougher_than_smooth_map() -> None:
    g = torch.Generator().manual_seed(2)
    noise = torch.rand(1, 64, 64, generator=g)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob = torch.exp(-((yy - 32) ** 2 + (xx - 30) ** 2) / 200.0).reshape(1, 64, 64)
    scores = total_variation(torch.cat([noise, blob]))
    assert scores[0] > 2 * scores[1]


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    scale=st.floats(1e-3, 1e3),
    h=st.integers(2, 16),
    w=st.integers(2, 16),
)
def test_tv_properties(seed: int, scale: float, h: int, w: int) -> None:
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(2, 3, h, w, generator=g, dtype=torch.float64)
    tv = total_variation(maps, min_size=2)
    assert ((tv >= 0) & (tv <= 1)).all()
    torch.testing.assert_close(total_variation(-scale * maps, min_size=2), tv)
    # Each example is scored on its own.
    torch.testing.assert_close(total_variation(maps[1:], min_size=2), tv[1:])


def test_tv_bad_input() -> None:
    with pytest.raises(ValueError, match="maps"):
        total_variation(torch.rand(2, 16))
    with pytest.raises(ValueError, match="maps"):
        total_variation(torch.rand(1, 1, 1, 3, 3))
    with pytest.raises(ValueError, match="maps"):
        total_variation(torch.rand(2, 1, 16))
    bad = torch.rand(1, 8, 8)
    bad[0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="maps"):
        total_variation(bad)
    with pytest.raises(ValueError, match="percentile"):
        total_variation(torch.rand(1, 8, 8), percentile=0.0)
    with pytest.raises(TypeError, match="maps"):
        total_variation(np.ones((1, 8, 8)))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# sparseness and complexity


def test_sparseness_hand_computed() -> None:
    n = 50
    one_hot = torch.zeros(1, 2, 5, 5)
    one_hot[0, 1, 3, 2] = -4.0
    maps = torch.stack(
        [
            torch.tensor([1.0, 2.0, 3.0, 4.0]),  # sum (2i-5) a_i = 10, n * sum = 40
            torch.tensor([0.0, 0.0, 0.0, 3.0]),
            torch.tensor([-2.0, 2.0, 2.0, -2.0]),
            torch.zeros(4),
        ]
    )
    assert sparseness(maps).tolist() == pytest.approx([0.25, 0.75, 0.0, 0.0])
    assert sparseness(one_hot).item() == pytest.approx((n - 1) / n)


def test_complexity_hand_computed() -> None:
    maps = torch.stack(
        [
            torch.tensor([1.0, -1.0, 2.0, 0.0]),  # p = 1/4, 1/4, 1/2, 0
            torch.tensor([0.0, 5.0, 0.0, 0.0]),
            torch.full((4,), -0.3),
            torch.zeros(4),
        ]
    )
    expected = [1.5 * math.log(2), 0.0, math.log(4), math.log(4)]
    assert complexity(maps).tolist() == pytest.approx(expected)
    assert complexity(torch.ones(2, 3, 4, 5)).tolist() == pytest.approx([math.log(60)] * 2)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(1e-3, 1e3), n=st.integers(2, 40))
def test_concentration_properties(seed: int, scale: float, n: int) -> None:
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(3, n, generator=g, dtype=torch.float64)
    s, c = sparseness(maps), complexity(maps)
    assert ((s >= 0) & (s <= (n - 1) / n + 1e-12)).all()
    assert ((c >= -1e-12) & (c <= math.log(n) + 1e-12)).all()
    torch.testing.assert_close(sparseness(-scale * maps), s)
    torch.testing.assert_close(complexity(-scale * maps), c)
    # Invariant to the order of the features.
    perm = torch.randperm(n, generator=g)
    torch.testing.assert_close(sparseness(maps[:, perm]), s)
    torch.testing.assert_close(complexity(maps[:, perm]), c)


def test_concentration_bad_input() -> None:
    for fn in (sparseness, complexity):
        with pytest.raises(ValueError, match="maps"):
            fn(torch.ones(4))
        with pytest.raises(ValueError, match="maps"):
            fn(torch.tensor([[1.0, float("nan")]]))
        with pytest.raises(ValueError, match="maps"):
            fn(torch.tensor([[1.0, float("inf")]]))


# --------------------------------------------------------------------------------------------
# deletion / insertion


def _linear_case() -> tuple[_LinearLogit, Tensor, Tensor]:
    w = torch.arange(16.0).reshape(1, 1, 4, 4)  # x = ones: contributions 0..15
    return _LinearLogit(w), torch.ones(1, 1, 4, 4), w


def test_deletion_insertion_hand_computed_logit() -> None:
    model, x, w = _linear_case()
    # Perfect map, 4 steps of 4 pixels: f = 120, 66, 28, 6, 0 (deleted) / 0, 54, 92, 114, 120.
    dele = deletion_auc(model, x, w, target=0, n_steps=4, output="logit")
    ins = insertion_auc(model, x, w, target=0, n_steps=4, output="logit")
    assert dele.item() == pytest.approx(0.25 * (120 / 2 + 66 + 28 + 6 + 0 / 2))
    assert ins.item() == pytest.approx(0.25 * (0 / 2 + 54 + 92 + 114 + 120 / 2))
    # A constant map: ties go row-major, lowest index (smallest weight) first.
    flat = torch.ones(1, 4, 4)
    assert deletion_auc(model, x, flat, 0, n_steps=4, output="logit").item() == pytest.approx(
        0.25 * (60 + 114 + 92 + 54 + 0)
    )
    # One pixel per step: trapezoid of (15 - k)(16 - k) / 2 over k = 0..16, dx = 1/16.
    f = [(15 - k) * (16 - k) / 2 for k in range(17)]
    expected = (sum(f) - (f[0] + f[-1]) / 2) / 16
    assert deletion_auc(model, x, w, 0, n_steps=16, output="logit").item() == pytest.approx(
        expected
    )
    # n_steps above the number of pixels is capped.
    assert deletion_auc(model, x, w, 0, n_steps=1000, output="logit").item() == pytest.approx(
        expected
    )


def test_deletion_prob_and_baseline() -> None:
    w = torch.tensor([[0.5, -1.0], [2.0, 0.0]]).reshape(1, 1, 2, 2)
    model = _LinearLogit(w)
    x = torch.ones(1, 1, 2, 2)
    # Map ranks: 2.0 (idx 2), 0.5 (idx 0), 0.0 (idx 3), -1.0 (idx 1). Baseline 0.25.
    # Logits after 0..4 deletions (sum of w*x, deleted pixels at 0.25):
    logits = [1.5, 1.5 - 2 * 0.75, 1.5 - 2.5 * 0.75, 1.5 - 2.5 * 0.75, 1.5 - 1.5 * 0.75]
    sig = [1 / (1 + math.exp(-v)) for v in logits]  # softmax of [v, 0]
    expected = 0.25 * (sig[0] / 2 + sig[1] + sig[2] + sig[3] + sig[4] / 2)
    got = deletion_auc(model, x, w, target=0, n_steps=4, baseline=0.25)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # The same baseline as a tensor, and as a callable.
    full = torch.full_like(x, 0.25)
    assert deletion_auc(model, x, w, 0, n_steps=4, baseline=full).item() == pytest.approx(expected)
    assert deletion_auc(
        model, x, w, 0, n_steps=4, baseline=lambda t: t * 0.25
    ).item() == pytest.approx(expected)
    # (B, 1, H, W) and (B, H, W) maps rank the same positions.
    assert deletion_auc(model, x, w[:, 0], 0, n_steps=4, baseline=0.25).item() == pytest.approx(
        expected
    )


def test_deletion_batching_targets_and_mode() -> None:
    g = torch.Generator().manual_seed(3)
    model = _LinearLogit(torch.randn(2 * 3 * 3, generator=g))
    x = torch.randn(3, 2, 3, 3, generator=g)
    maps = torch.randn(3, 2, 3, 3, generator=g)
    model.train()
    ref = deletion_auc(model, x, maps, target=[0, 1, 0], n_steps=9, batch_size=1000)
    assert model.training  # mode left as it was
    assert all(training for training, _ in model.calls)  # and used as it was
    model.calls.clear()
    chunked = deletion_auc(model, x, maps, torch.tensor([0, 1, 0]), n_steps=9, batch_size=4)
    torch.testing.assert_close(chunked, ref)
    assert max(rows for _, rows in model.calls) <= 4
    assert sum(rows for _, rows in model.calls) == 3 * 10
    # Each example scored on its own: batch of one with an int target.
    torch.testing.assert_close(deletion_auc(model, x[1:2], maps[1:2], 1, n_steps=9), ref[1:2])
    assert model.weight.grad is None


def test_deletion_feature_inputs() -> None:
    # (B, D) inputs: every feature is a position.
    model = _LinearLogit(torch.tensor([1.0, 2.0, 3.0]))
    x = torch.ones(1, 3)
    got = insertion_auc(model, x, torch.tensor([[1.0, 2.0, 3.0]]), 0, n_steps=3, output="logit")
    assert got.item() == pytest.approx((0 / 2 + 3 + 5 + 6 / 2) / 3)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), output=st.sampled_from(["prob", "logit"]))
def test_perfect_map_beats_any_map_on_linear_model(seed: int, output: str) -> None:
    g = torch.Generator().manual_seed(seed)
    model = _LinearLogit(torch.randn(25, generator=g))
    x = torch.randn(2, 1, 5, 5, generator=g)
    perfect = x * model.weight.detach().reshape(1, 1, 5, 5)  # exact contributions
    other = torch.randn(2, 1, 5, 5, generator=g)
    kw = {"n_steps": 25, "output": output}
    ins_p, ins_o = (
        insertion_auc(model, x, perfect, 0, **kw),
        insertion_auc(model, x, other, 0, **kw),
    )
    del_p, del_o = deletion_auc(model, x, perfect, 0, **kw), deletion_auc(model, x, other, 0, **kw)
    assert (ins_p >= ins_o - 1e-5).all()
    assert (del_p <= del_o + 1e-5).all()


def test_deletion_bad_input() -> None:
    model, x, w = _linear_case()
    with pytest.raises(ValueError, match="maps"):
        deletion_auc(model, x, torch.ones(1, 4, 5), 0)
    with pytest.raises(ValueError, match="maps"):
        deletion_auc(model, x, torch.ones(2, 1, 4, 4), 0)
    with pytest.raises(ValueError, match="maps"):
        deletion_auc(model, x, torch.full((1, 4, 4), float("nan")), 0)
    with pytest.raises(ValueError, match="target"):
        deletion_auc(model, x, w, [0, 1])
    with pytest.raises(ValueError, match="target"):
        deletion_auc(model, x, w, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="output"):
        insertion_auc(model, x, w, 0, output="softmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="baseline"):
        insertion_auc(model, x, w, 0, baseline=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="n_steps"):
        insertion_auc(model, x, w, 0, n_steps=0)


@pytest.mark.parametrize(
    ("metric", "word"), [(deletion_auc, "deletion"), (insertion_auc, "insertion")]
)
def test_deletion_and_insertion_keep_their_names_signature_and_docs(metric: Any, word: str) -> None:
    # One definition makes both: each still reads as its own documented function.
    assert metric.__name__ == f"{word}_auc"
    assert (metric.__doc__ or "").startswith(f"Area under the {word} curve")
    params = inspect.signature(metric).parameters
    assert list(params) == [
        "model", "inputs", "maps", "target", "baseline", "n_steps", "batch_size", "output",
    ]  # fmt: skip
    assert [params[n].default for n in ("baseline", "n_steps", "batch_size", "output")] == [
        0.0, 100, 64, "prob",
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------
# aupc


def test_aupc_hand_computed() -> None:
    # 2x2 windows on 4x4: region relevances TL 4, TR 8, BL 12, BR 0 (weights 1, 2, 3, 0).
    w = torch.tensor([[1.0, 1, 2, 2], [1, 1, 2, 2], [3, 3, 0, 0], [3, 3, 0, 0]]).reshape(1, 1, 4, 4)
    model = _LinearLogit(w)
    x = torch.ones(1, 1, 4, 4)
    # MoRF: BL, TR, TL, BR -> f = 24, 12, 4, 0, 0; AUPC = mean(f0 - f_k) over k = 0..4.
    got = aupc(model, x, w, 0, window=2, baseline=0.0)
    assert got.item() == pytest.approx((0 + 12 + 20 + 24 + 24) / 5)
    assert aupc(model, x, w, 0, window=(2, 2), n_steps=2, baseline=0.0).item() == pytest.approx(
        (0 + 12 + 20) / 3
    )
    # A (2, 4) window: top half (relevance 12) then bottom half (12, tie -> top first).
    assert aupc(model, x, w, 0, window=(2, 4), baseline=0.0).item() == pytest.approx(
        (0 + 12 + 24) / 3
    )


def test_aupc_partial_tiles_and_noise() -> None:
    g = torch.Generator().manual_seed(4)
    model = _LinearLogit(torch.randn(25, generator=g))
    x = torch.rand(2, 1, 5, 5, generator=g) * 2 - 1
    maps = torch.randn(2, 1, 5, 5, generator=g)
    a = aupc(model, x, maps, 0, window=2, generator=torch.Generator().manual_seed(7))
    b = aupc(model, x, maps, 0, window=2, generator=torch.Generator().manual_seed(7))
    c = aupc(model, x, maps, 0, window=2, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)
    # 3x3 = 9 regions (cropped at the border): 10 rows per example.
    model.seen.clear()
    aupc(model, x, maps, 0, window=2, value_range=(5.0, 6.0), generator=torch.Generator())
    seen = torch.cat(model.seen)
    assert seen.shape[0] == 2 * 10
    # Every pixel is either the original one or noise drawn in value_range; all noise at the end.
    original = x.repeat_interleave(10, dim=0)
    is_noise = (seen >= 5.0) & (seen <= 6.0)
    assert ((seen == original) | is_noise).all()
    assert is_noise[9::10].all() and not is_noise[0::10].any()


def test_aupc_window_errors() -> None:
    model, x, w = _linear_case()
    with pytest.raises(ValueError, match="window"):
        aupc(model, x, w, 0, window=5)
    with pytest.raises(ValueError, match="window"):
        aupc(model, x, w, 0, window=(2, 5))
    with pytest.raises(ValueError, match="window"):
        aupc(model, x, w, 0, window=0)
    with pytest.raises(TypeError, match="window"):
        aupc(model, x, w, 0, window=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inputs"):
        aupc(model, x.reshape(1, 16), w.reshape(1, 16), 0, window=2)
    with pytest.raises(ValueError, match="maps"):
        aupc(model, x, torch.ones(1, 1, 4, 3), 0, window=2)


# --------------------------------------------------------------------------------------------
# Captum wrappers


def test_infidelity_of_matches_captum() -> None:
    model = _small_net()
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(5))
    target = torch.tensor([0, 2, 1, 2])
    ours = infidelity_of(
        Saliency(model), x, target=target, perturb_generator=torch.Generator().manual_seed(11)
    )

    g = torch.Generator().manual_seed(11)

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        noise = torch.randn(inputs.shape, generator=g) * 0.003
        return noise, inputs - noise

    attributions = Saliency(model).attribute(x, target=target)
    direct = infidelity(model, perturb, x, attributions, target=target, n_perturb_samples=10)
    assert ours.shape == (4,)
    torch.testing.assert_close(ours, direct.reshape(-1))
    # A custom perturbation and attribute kwargs go through.
    torch.manual_seed(0)
    custom = infidelity_of(Saliency(model), x, target=target, perturb_func=perturb, abs=False)
    assert custom.shape == (4,) and torch.isfinite(custom).all()


def test_sensitivity_max_of_matches_captum() -> None:
    model = _small_net(1)
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(6))
    torch.manual_seed(3)
    ours = sensitivity_max_of(Saliency(model), x, target=1, n_perturb_samples=5)
    torch.manual_seed(3)
    direct = sensitivity_max(Saliency(model).attribute, x, target=1, n_perturb_samples=5)
    assert ours.shape == (3,)
    torch.testing.assert_close(ours, direct)
    seeded = [
        sensitivity_max_of(
            Saliency(model), x, target=1, perturb_generator=torch.Generator().manual_seed(2)
        )
        for _ in range(2)
    ]
    torch.testing.assert_close(seeded[0], seeded[1])


def test_generator_goes_to_our_methods_for_common_random_numbers() -> None:
    model = _small_net(1)
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(6))
    smooth = SmoothGrad(model)

    def score(**kwargs: Any) -> Tensor:
        return sensitivity_max_of(
            smooth,
            x,
            target=1,
            n_perturb_samples=4,
            perturb_generator=torch.Generator().manual_seed(2),
            nt_samples=8,
            **kwargs,
        )

    # The same seed for the method: the same noise on every perturbed input, and the score
    # reproduces; another seed changes it.
    torch.testing.assert_close(score(generator=0), score(generator=0))
    assert not torch.equal(score(generator=0), score(generator=1))
    fid = [
        infidelity_of(
            smooth,
            x,
            target=1,
            perturb_generator=torch.Generator().manual_seed(3),
            nt_samples=8,
            generator=seed,
        )
        for seed in (0, 0, 1)
    ]
    torch.testing.assert_close(fid[0], fid[1])
    assert not torch.equal(fid[0], fid[2])


class _RawGradient(Attribution):
    """A gradient method that relies on grad mode being on (as a naive implementation would)."""

    def attribute(self, inputs: Tensor | tuple[Tensor], target: int = 0) -> Tensor | tuple[Tensor]:
        if isinstance(inputs, tuple):
            return (self.attribute(inputs[0], target),)  # type: ignore[return-value]
        inputs = inputs.detach().requires_grad_(True)
        out = self.forward_func(inputs)[:, target].sum()
        return torch.autograd.grad(out, inputs)[0]


def test_sensitivity_max_of_enables_grad() -> None:
    model = _small_net(2)
    x = torch.randn(2, 8, generator=torch.Generator().manual_seed(7))
    with pytest.raises(RuntimeError, match="grad"):
        sensitivity_max(_RawGradient(model).attribute, x, target=0)
    torch.manual_seed(0)
    ours = sensitivity_max_of(_RawGradient(model), x, target=0)
    torch.manual_seed(0)
    ref = sensitivity_max_of(Saliency(model), x, target=0, abs=False)
    torch.testing.assert_close(ours, ref)


def test_wrappers_bad_method() -> None:
    with pytest.raises(TypeError, match="method"):
        infidelity_of(object(), torch.ones(1, 8))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="method"):
        sensitivity_max_of(_small_net, torch.ones(1, 8))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Quantus adapter


def test_explain_func_without_quantus() -> None:
    model = _small_cnn()
    x = np.random.default_rng(0).normal(size=(3, 1, 8, 8)).astype(np.float32)
    y = np.array([0, 2, 1])
    direct = Saliency(model).attribute(torch.from_numpy(x), target=torch.from_numpy(y)).numpy()
    from_class = quantus_explain_func(Saliency)(model, x, y)
    assert isinstance(from_class, np.ndarray) and from_class.shape == x.shape
    np.testing.assert_allclose(from_class, direct)
    # An instance is used as is; call-time kwargs override construction-time ones.
    explain = quantus_explain_func(Saliency(model), abs=True)
    np.testing.assert_allclose(explain(model, x, y, abs=True), direct)
    assert (explain(model, x, y, abs=False) < 0).any()
    with pytest.warns(UserWarning, match="forward_func") as record:
        explain(_small_cnn(1), x, y)
    assert record[0].filename == __file__  # the caller of explain_func: Quantus, or here
    with pytest.raises(TypeError, match="method"):
        quantus_explain_func(3)  # type: ignore[arg-type]


def test_patch_numpy_for_quantus_is_idempotent() -> None:
    patch_numpy_for_quantus()
    assert np.trapz is np.trapezoid or np.trapz(np.array([1.0, 1.0])) == 1.0  # type: ignore[attr-defined]
    assert math.isnan(np.NaN)  # type: ignore[attr-defined]
    assert patch_numpy_for_quantus() == []


@pytest.mark.filterwarnings("ignore")
def test_quantus_sparseness_and_complexity_agree() -> None:
    quantus = pytest.importorskip("quantus")
    patch_numpy_for_quantus()
    model = _small_cnn().eval()
    x = np.random.default_rng(1).normal(size=(4, 1, 8, 8)).astype(np.float32)
    y = np.array([0, 1, 2, 1])
    explain = quantus_explain_func(Saliency)
    ours_maps = torch.from_numpy(explain(model, x, y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        q_sparse = quantus.Sparseness(disable_warnings=True)(
            model, x, y, explain_func=explain, device="cpu"
        )
        q_complex = quantus.Complexity(disable_warnings=True)(
            model, x, y, explain_func=explain, device="cpu"
        )
    np.testing.assert_allclose(sparseness(ours_maps).numpy(), q_sparse, atol=1e-4)
    np.testing.assert_allclose(complexity(ours_maps).numpy(), q_complex, atol=1e-4)


@pytest.mark.filterwarnings("ignore")
def test_deletion_agrees_with_quantus_pixel_flipping() -> None:
    quantus = pytest.importorskip("quantus")
    patch_numpy_for_quantus()  # PixelFlipping's AUC calls np.trapz
    model = _small_cnn(3).eval()
    x = np.random.default_rng(2).normal(size=(3, 1, 8, 8)).astype(np.float32)
    y = np.array([2, 0, 1])
    explain = quantus_explain_func(Saliency)
    kwargs = {"features_in_step": 8, "perturb_baseline": 0.0, "disable_warnings": True}
    curves = quantus.PixelFlipping(**kwargs)(model, x, y, explain_func=explain, device="cpu")
    aucs = quantus.PixelFlipping(return_auc_per_sample=True, **kwargs)(
        model, x, y, explain_func=explain, device="cpu"
    )
    np.testing.assert_allclose(aucs, np.trapezoid(curves, dx=1.0, axis=1), rtol=1e-6)
    # Quantus' curve starts after the first step: prepend the intact input's probability.
    with torch.no_grad():
        p0 = torch.softmax(model(torch.from_numpy(x)), 1)[torch.arange(3), torch.from_numpy(y)]
    expected = np.trapezoid(np.concatenate([p0.numpy()[:, None], curves], 1), dx=1 / 8, axis=1)
    maps = torch.from_numpy(explain(model, x, y))
    ours = deletion_auc(model, torch.from_numpy(x), maps, torch.from_numpy(y), n_steps=8)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5)
