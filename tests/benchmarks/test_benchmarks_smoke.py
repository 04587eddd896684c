"""Smoke tests of the benchmark command: ground-truth data, controls, quality pieces, runner."""

from __future__ import annotations

import dataclasses
import math
import sys
import types

import pytest
import torch
from captum.attr import Saliency

pytest.importorskip("sklearn")

from benchmarks import __main__ as runner
from benchmarks import bench_quality as quality
from benchmarks._patch_data import (
    make_patch_data,
    patch_patterns,
    pointing_game,
    relevance_mass,
    relevance_rank,
)
from captum_smooth.app.controls import (
    BlurredGradient,
    EdgeMap,
    RandomMap,
    gaussian_blur,
    sobel_magnitude,
)


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 3),
    ).eval()


# ------------------------------------------------------------------------- ground-truth data


def test_class_patch_is_where_the_mask_says() -> None:
    data = make_patch_data(40, size=32, patch=6, n_classes=4, n_distractors=2, seed=3)
    patterns = patch_patterns(4, 4, 6)
    assert data.images.shape == (40, 1, 32, 32)
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    assert torch.bincount(data.labels, minlength=4).tolist() == [10, 10, 10, 10]
    for i in range(40):
        r, c = data.boxes[i].tolist()
        assert data.masks[i].sum() == 36
        assert data.masks[i, 0, r : r + 6, c : c + 6].all()
        inside = data.images[i, 0, r : r + 6, c : c + 6]
        assert torch.equal(inside, patterns[data.labels[i]])


def test_distractors_are_outside_the_mask_and_not_class_patterns() -> None:
    data = make_patch_data(20, seed=5)
    patterns = patch_patterns()
    for i in range(20):
        # Binary pixels outside the class patch belong to the distractor patches only.
        binary = ((data.images[i, 0] == 0) | (data.images[i, 0] == 1)) & ~data.masks[i, 0]
        assert binary.sum() == 2 * 6 * 6
        image = data.images[i, 0]
        for r in range(32 - 5):
            for c in range(32 - 5):
                if data.masks[i, 0, r : r + 6, c : c + 6].any():
                    continue
                window = image[r : r + 6, c : c + 6]
                for k in range(4):  # no class pattern outside the class patch
                    assert not torch.equal(window, patterns[k])


def test_patch_data_is_deterministic() -> None:
    a, b = make_patch_data(8, seed=1), make_patch_data(8, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a.images, make_patch_data(8, seed=2).images)


def test_patterns_are_distinct() -> None:
    p = patch_patterns(4, 4, 6).flatten(1)
    distance = (p[:, None] != p[None]).sum(-1) + 36 * torch.eye(8, dtype=torch.long)
    assert distance.min() >= 12


def test_localisation_scores_on_known_maps() -> None:
    data = make_patch_data(6, seed=0)
    perfect = data.masks.float()
    assert torch.allclose(relevance_mass(perfect, data.masks), torch.ones(6))
    assert torch.allclose(relevance_rank(perfect, data.masks), torch.ones(6))
    assert torch.equal(pointing_game(perfect, data.masks), torch.ones(6))
    uniform = torch.ones_like(perfect)
    assert torch.allclose(relevance_mass(uniform, data.masks), torch.full((6,), 36 / 1024))
    outside = 1.0 - perfect
    assert torch.equal(relevance_mass(outside, data.masks), torch.zeros(6))
    assert torch.equal(pointing_game(outside, data.masks), torch.zeros(6))
    # Signs do not matter: relevance is |map|.
    assert torch.allclose(relevance_mass(-perfect, data.masks), torch.ones(6))


# ---------------------------------------------------------------------------------- controls


def test_edge_map_is_sobel_of_the_input_and_ignores_the_model() -> None:
    x = torch.zeros(2, 1, 8, 8)
    x[:, :, :, 4:] = 1.0  # a vertical step
    a = EdgeMap(_tiny_model()).attribute(x, target=0)
    b = EdgeMap(lambda t: t.sum(dim=(1, 2, 3)).unsqueeze(1)).attribute(x, target=1)
    assert torch.equal(a, b)
    assert a.shape == x.shape
    assert torch.all(a[..., :, [0, 1, 2, 5, 6, 7]] == 0)
    assert torch.all(a[..., :, [3, 4]] == 4)  # Sobel: 1 + 2 + 1 across the step
    assert torch.equal(sobel_magnitude(torch.ones(1, 3, 5, 5)), torch.zeros(1, 3, 5, 5))


def test_random_map_is_fixed_by_its_seed_only() -> None:
    model = _tiny_model()
    x1, x2 = torch.rand(3, 1, 8, 8), torch.rand(5, 1, 8, 8)
    m1 = RandomMap(model, seed=7).attribute(x1, target=0)
    m2 = RandomMap(_tiny_model(), seed=7).attribute(x2, target=2)
    assert m1.shape == x1.shape and m2.shape == x2.shape
    assert torch.equal(m1[0], m1[2]) and torch.equal(m1[0], m2[4])
    assert not torch.equal(m1, RandomMap(model, seed=8).attribute(x1, target=0))
    assert m1.min() >= 0.0 and m1.max() < 1.0


def test_blurred_gradient_is_the_blurred_signed_gradient() -> None:
    model = _tiny_model()
    x = torch.rand(2, 1, 8, 8)
    grad = Saliency(model).attribute(x.clone(), target=1, abs=False)
    got = BlurredGradient(model, sigma=1.0).attribute(x, target=1)
    assert torch.allclose(got, gaussian_blur(grad, 1.0))
    assert (got < 0).any()  # signed
    assert torch.allclose(BlurredGradient(model, sigma=0.0).attribute(x, target=1), grad)


def test_gaussian_blur_keeps_constants_and_mass() -> None:
    const = torch.full((1, 3, 9, 9), 0.7)
    assert torch.allclose(gaussian_blur(const, 2.0), const)
    spike = torch.zeros(1, 1, 21, 21)
    spike[0, 0, 10, 10] = 1.0
    blurred = gaussian_blur(spike, 1.5)
    assert math.isclose(blurred.sum().item(), 1.0, rel_tol=1e-5)
    assert blurred[0, 0, 10, 10] < 1.0 and blurred[0, 0, 10, 11] > 0


def test_spearman_matches_scipy_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (4, 1, 6, 6), generator=g).float()
    b = torch.rand(4, 1, 6, 6, generator=g)
    got = quality.spearman_rows(a, b)
    for i in range(4):
        want = stats.spearmanr(a[i].flatten().numpy(), b[i].flatten().numpy())[0]
        assert math.isclose(got[i].item(), want, abs_tol=1e-6)
    assert math.isclose(quality.spearman_rows(a, a)[0].item(), 1.0, abs_tol=1e-6)


# ------------------------------------------------------------------------ quality, tiny sizes

TINY = dataclasses.replace(
    quality.QUICK,
    seeds=(0, 1),
    budget=5,
    patch_train=300,
    patch_eval=6,
    patch_epochs=1,
    digits_eval=6,
    digits_epochs=1,
    sensitivity_eval=2,
    sensitivity_perturbations=2,
    randomisation_eval=4,
    methods=(
        "Gradient",
        "SmoothGrad (Captum NoiseTunnel)",
        "AdaptGrad c=0.95",
        "control: input edge map",
        "control: random map",
    ),
    tasks=("patch", "digits"),
    plots=False,
)


def test_equal_budgets_and_every_control_listed() -> None:
    specs = quality.method_specs(50, blur_sigma=1.0)
    budgets = {s.label: s.evaluations for s in specs}
    assert budgets["Gradient"] == 1
    assert budgets["SmoothGrad (Captum NoiseTunnel)"] == 50
    assert budgets["AdaptGrad c=0.95"] == 50
    assert budgets["Integrated Gradients"] == 50
    assert budgets.get("FusionGrad 10x5", 50) == 50
    controls = [s.label for s in specs if s.kind == "control"]
    assert len(controls) == 3
    assert any("blurred" in c for c in controls)
    assert any("edge" in c for c in controls)
    assert any("random" in c for c in controls)
    for s in specs:
        assert s.skipped or s.build is not None


def test_quality_run_tiny_is_reproducible() -> None:
    first = quality.run(config=TINY)
    second = quality.run(config=TINY)
    assert first["figures"] == second["figures"]
    md = first["markdown"]
    for label in TINY.methods:
        assert label in md
    assert "Paper claims" in md and "control" in md
    patch = first["figures"]["patch"]
    # The random control's relevance mass is the patch's share of the image (in expectation).
    mass, _ = patch["control: random map"]["relevance mass"]
    assert abs(mass - 36 / 1024) < 0.03
    digits = first["figures"]["digits"]
    # Input-only controls cannot change with the model; the random map is input-independent.
    assert digits["control: input edge map"]["randomisation rank corr."][0] == pytest.approx(1.0)
    assert digits["control: random map"]["max-sensitivity"][0] == 0.0


def test_skipped_method_is_reported_not_run() -> None:
    table = quality.Table("t", [("m", "higher")])
    spec = quality.QualityRow("Missing", 50, None, skipped="module has not landed")
    text = quality._render(table, [spec])
    assert "Missing" in text and "skipped" in text


# ---------------------------------------------------------------------------------- runner


def test_runner_discovers_the_modules() -> None:
    names = runner.discover()
    assert "quality" in names and "scaling" in names


def test_runner_reports_a_failing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = types.ModuleType("benchmarks.bench_broken")

    def run(quick: bool = False) -> dict:
        raise RuntimeError("boom")

    broken.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks.bench_broken", broken)
    good = types.ModuleType("benchmarks.bench_good")
    good.run = lambda quick=False: {"markdown": "| a |\n|---|\n| 1 |", "seeds": [0]}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "benchmarks.bench_good", good)
    outcomes = [runner.run_module("broken", True), runner.run_module("good", True)]
    assert not outcomes[0].ok and "boom" in outcomes[0].error
    assert outcomes[1].ok
    text = runner.render(outcomes, True, 1.0, "python -m benchmarks --quick")
    assert "FAILED" in text and "boom" in text and "| 1 |" in text
    assert "torch threads" in text


def test_runner_rejects_unknown_names() -> None:
    with pytest.raises(SystemExit):
        runner.main(["--only", "no_such_benchmark"])


def test_isolated_run_reports_a_missing_module() -> None:
    outcome = runner.run_isolated("no_such_benchmark", quick=True, timeout=120)
    assert not outcome.ok
    assert "no_such_benchmark" in outcome.error


def test_paired_verdicts_follow_the_metric_direction() -> None:
    table = quality.Table("t", [("up", "higher"), ("down", "lower")])
    for a, b in ((1.0, 0.5), (2.0, 1.6), (3.0, 2.7)):  # a - b consistently > 0
        table.add("A", {"up": a, "down": a}, 0.0)
        table.add("B", {"up": b, "down": b}, 0.0)
    assert quality._compare(table, "up", "A", "B").verdict == "better"
    assert quality._compare(table, "down", "A", "B").verdict == "worse"
    table.add("C", {"up": 1.0, "down": 1.0}, 0.0)
    for v in (2.5, 3.4):
        table.add("C", {"up": v, "down": v}, 0.0)
    # A - C = (0, -0.5, -0.4): mean -0.3, std 0.27 -> "worse" on "up"; C - A the mirror.
    assert quality._compare(table, "up", "C", "A").verdict == "better"
    same = quality._compare(table, "up", "A", "A")
    assert same.verdict == "tie" and same.diff == (0.0, 0.0)


# ------------------------------------------------------------------------- timing harness


def test_paired_ratio_cancels_drift_in_machine_speed(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import _harness

    clock = [0.0]
    speed = [1.0]  # the machine slows by 10 % after every call

    def call(cost: float) -> None:
        clock[0] += cost * speed[0]
        speed[0] *= 1.1

    monkeypatch.setattr(_harness.time, "perf_counter", lambda: clock[0])
    timing = _harness.paired_ratio(lambda: call(1.1), lambda: call(1.0), repeats=6, warmup=1)
    # A runs first in even pairs (slower B: ratio 1.1 / 1.1), second in odd ones (1.1 * 1.1):
    # single pairs straddle the true 1.1; consecutive pairs together recover it exactly.
    assert timing.ratio == pytest.approx(1.1)
    assert timing.ratio_low == pytest.approx(1.0)
    assert timing.ratio_high == pytest.approx(1.21)
    assert timing.a > timing.b
    # The ratio of two medians keeps the drift: the machine slowed between A's and B's runs.
    speed[0] = 1.0
    times = _harness.time_interleaved({"a": lambda: call(1.1), "b": lambda: call(1.0)}, repeats=6)
    assert abs(times["a"] / times["b"] - 1.1) > 0.004
