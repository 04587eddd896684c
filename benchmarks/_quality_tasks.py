"""The quality benchmark's tasks: sizes, data, models, and the scores each task takes.

* :func:`patch_task`: localisation against the known class patch (:mod:`benchmarks._patch_data`),
  one trained CNN per seed;
* :func:`digits_task`: faithfulness, concentration, noise, robustness and the
  model-randomisation check on scikit-learn's digits, one trained CNN per seed;
* :func:`photos_task`: noise, concentration and faithfulness on EfficientNet-Lite0 and the
  bundled photos.

Each returns its :class:`~benchmarks._quality_report.Table` and the method rows it ran.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from benchmarks._patch_data import (
    make_patch_data,
    pointing_game,
    relevance_mass,
    relevance_rank,
    train_patch_cnn,
)
from benchmarks._quality_methods import (
    BoundMethod,
    QualityRow,
    explain,
    method_specs,
    timed,
)
from benchmarks._quality_report import Table
from benchmarks._quality_scores import (
    SENSITIVITY_RADIUS,
    clamped_uniform_perturbation,
    spearman_rows,
    tv,
)
from captum_smooth.app.controls import gaussian_blur
from captum_smooth.metrics import deletion_auc, insertion_auc, sensitivity_max_of, sparseness

__all__ = ["FULL", "QUICK", "Config", "digits_task", "patch_task", "photos_task"]


@dataclass(frozen=True)
class Config:
    """Sizes of one run (the full run and ``--quick`` differ only here)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    budget: int = 50
    patch_train: int = 1500
    patch_eval: int = 32
    patch_epochs: int = 3
    digits_eval: int = 64
    digits_epochs: int = 15  # the default of train_digits_cnn
    digits_steps: int = 32  # deletion / insertion steps (2 of the 64 pixels per step)
    sensitivity_eval: int = 8
    sensitivity_perturbations: int = 8
    randomisation_eval: int = 32
    photo_names: tuple[str, ...] = ("chelsea", "coffee", "rocket")
    photo_budget: int = 15
    photo_steps: int = 12
    photo_chunk: int = 8
    methods: tuple[str, ...] | None = None  # labels to run (None: all); for tests
    tasks: tuple[str, ...] = ("patch", "digits", "photos")
    plots: bool = True


FULL = Config()
QUICK = Config(
    seeds=(0, 1, 2),
    budget=10,
    patch_train=1000,
    patch_eval=24,
    patch_epochs=3,
    digits_eval=32,
    digits_epochs=8,
    digits_steps=16,
    sensitivity_eval=4,
    sensitivity_perturbations=4,
    randomisation_eval=16,
    photo_names=("chelsea",),
    photo_budget=5,
    photo_steps=8,
)


def _selected(specs: list[QualityRow], cfg: Config) -> list[QualityRow]:
    if cfg.methods is None:
        return specs
    return [s for s in specs if s.label in cfg.methods]


def patch_task(cfg: Config, example_maps: dict[str, Tensor] | None = None) -> tuple[Table, list]:
    """Localisation on the ground-truth patch task, one trained CNN per seed."""
    # Chunks of copies ran faster than one batch here (on the digits, one batch is faster).
    specs = _selected(method_specs(cfg.budget, blur_sigma=1.0, chunk=8, ig_rows=256), cfg)
    table = Table(
        "Ground truth: the class-deciding patch (32x32, 6x6 patch, 2 distractors)",
        [
            ("relevance mass", "higher"),
            ("rank accuracy", "higher"),
            ("pointing game", "higher"),
            ("sparseness", "higher"),
            ("total variation", "lower"),
        ],
        spread=f"std over {len(cfg.seeds)} model seeds {list(cfg.seeds)}",
    )
    train = make_patch_data(cfg.patch_train, seed=1000)
    test = make_patch_data(cfg.patch_eval, seed=2000)
    accuracies = []
    for seed in cfg.seeds:
        model, acc = train_patch_cnn(train, test, seed=seed, epochs=cfg.patch_epochs)
        accuracies.append(acc)
        for spec in specs:
            if spec.skipped:
                continue
            maps, seconds = timed(spec, model, test.images, test.labels, seed)
            table.add(
                spec.label,
                {
                    "relevance mass": relevance_mass(maps, test.masks).mean().item(),
                    "rank accuracy": relevance_rank(maps, test.masks).mean().item(),
                    "pointing game": pointing_game(maps, test.masks).mean().item(),
                    "sparseness": sparseness(maps).mean().item(),
                    "total variation": tv(maps, n_scales=3).mean().item(),
                },
                seconds / len(test.labels),
            )
            if example_maps is not None and seed == cfg.seeds[0]:
                example_maps[spec.label] = maps[0, 0]
    if example_maps is not None:
        example_maps["__input__"] = test.images[0, 0]
        example_maps["__mask__"] = test.masks[0, 0].float()
    share = 36 / (32 * 32)
    table.notes += [
        f"{len(test.labels)} test images explained for their label; test accuracy per seed "
        + ", ".join(f"{a:.3f}" for a in accuracies)
        + f" ({cfg.patch_train} training images, {cfg.patch_epochs} epochs).",
        f"The patch covers {share:.3f} of the image: a uniform map scores a relevance mass of "
        f"{share:.3f}; an explanation that also lights the two distractors (as the edge map "
        "does) about 1/3.",
        "Relevance mass: share of |map| inside the patch; rank accuracy: share of the 36 "
        "highest-|map| pixels inside it; pointing game: the maximum inside it. Total "
        "variation: 3 scales, 99th percentile, sigma 2/3.",
    ]
    return table, specs


def _randomised_digits_cnn(seed: int) -> nn.Module:
    """A freshly initialised (untrained) DigitsCNN, drawn under its own seed."""
    from captum_smooth.app.models.digits import DigitsCNN

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(10_000 + seed)
        model = DigitsCNN()
    return model.eval()


def digits_task(cfg: Config) -> tuple[Table, list]:
    """Faithfulness, concentration, noise, robustness and sanity on the digits CNN."""
    from captum_smooth.app.models.digits import load_digits_data, train_digits_cnn

    specs = _selected(method_specs(cfg.budget, blur_sigma=1.0), cfg)
    table = Table(
        "Digits: scikit-learn 8x8 digits, trained CNN",
        [
            ("deletion AUC", "lower"),
            ("insertion AUC", "higher"),
            ("sparseness", "higher"),
            ("total variation", "lower"),
            ("max-sensitivity", "lower"),
            ("randomisation rank corr.", "lower"),
        ],
        spread=f"std over {len(cfg.seeds)} model seeds {list(cfg.seeds)}",
    )
    data = load_digits_data(seed=0)
    x, y = data.x_test[: cfg.digits_eval], data.y_test[: cfg.digits_eval]
    accuracies = []
    for seed in cfg.seeds:
        model, acc = train_digits_cnn(seed=seed, epochs=cfg.digits_epochs, data=data)
        accuracies.append(acc)
        random_model = _randomised_digits_cnn(seed)
        for spec in specs:
            if spec.skipped:
                continue
            maps, seconds = timed(spec, model, x, y, seed)
            magnitude = maps.abs()
            scores = {
                "deletion AUC": deletion_auc(
                    model,
                    x,
                    magnitude,
                    y,
                    baseline=0.0,
                    n_steps=cfg.digits_steps,
                    batch_size=4096,
                    output="prob",
                ),
                "insertion AUC": insertion_auc(
                    model,
                    x,
                    magnitude,
                    y,
                    baseline=0.0,
                    n_steps=cfg.digits_steps,
                    batch_size=4096,
                    output="prob",
                ),
                "sparseness": sparseness(maps),
                "total variation": tv(maps, n_scales=2),
            }
            method, kwargs = spec.build(model, seed)  # type: ignore[misc]
            xs, ys = x[: cfg.sensitivity_eval], y[: cfg.sensitivity_eval]
            torch.manual_seed(seed)
            scores["max-sensitivity"] = sensitivity_max_of(
                BoundMethod(method, kwargs),
                xs,
                target=ys,
                perturb_radius=SENSITIVITY_RADIUS,
                n_perturb_samples=cfg.sensitivity_perturbations,
                perturb_func=clamped_uniform_perturbation(seed),
                norm_ord="fro",
                max_examples_per_batch=None,
            )
            xr, yr = x[: cfg.randomisation_eval], y[: cfg.randomisation_eval]
            random_maps = explain(spec, random_model, xr, yr, seed)
            rho = spearman_rows(maps[: cfg.randomisation_eval], random_maps)
            scores["randomisation rank corr."] = torch.nanmean(rho)
            table.add(
                spec.label,
                {k: float(v.float().mean()) for k, v in scores.items()},
                seconds / len(y),
            )
    table.notes += [
        f"First {len(y)} images of the fixed test split (seed 0), explained for their label; "
        "test accuracy per seed " + ", ".join(f"{a:.3f}" for a in accuracies) + ".",
        "Deletion / insertion: pixels ranked by |map|, replaced by / inserted into 0 (the "
        f"background), {cfg.digits_steps} steps, softmax probability; {cfg.digits_epochs} "
        "training epochs. Total variation: 2 scales, 99th "
        "percentile, sigma 2/3.",
        f"Max-sensitivity: {cfg.sensitivity_perturbations} uniform perturbations of L-inf "
        f"radius {SENSITIVITY_RADIUS} clamped to [0, 1], on {cfg.sensitivity_eval} images, "
        "Frobenius norm, the method's noise seeded identically on every call (common random "
        "numbers).",
        f"Randomisation: Spearman correlation of |map| (channel sum) between the trained model "
        f"and a freshly initialised one, {cfg.randomisation_eval} images; lower = the map "
        "depends more on the model. It penalises smoothing (a smooth map keeps the input's "
        "shape whatever the weights), so read it next to the controls: the input-only edge "
        "map and the fixed random map score 1 by construction.",
    ]
    return table, specs


def photos_task(cfg: Config, example_maps: dict[str, Tensor] | None = None) -> tuple[Table, list]:
    """Noise, concentration and faithfulness on EfficientNet-Lite0 and the bundled photos."""
    from captum_smooth.app.data.images import load_sample_images
    from captum_smooth.app.models.efficientnet_lite import load_efficientnet_lite0

    specs = _selected(
        method_specs(
            cfg.photo_budget, blur_sigma=4.0, chunk=cfg.photo_chunk, ig_rows=2 * cfg.photo_chunk
        ),
        cfg,
    )
    table = Table(
        f"EfficientNet-Lite0 (ImageNet weights) on {len(cfg.photo_names)} bundled photos",
        [
            ("total variation", "lower"),
            ("sparseness", "higher"),
            ("deletion AUC", "lower"),
            ("insertion AUC", "higher"),
        ],
        spread=f"std over the {len(cfg.photo_names)} photos (one pretrained model)",
    )
    model = load_efficientnet_lite0()
    images, names = load_sample_images(cfg.photo_names, size=224)
    with torch.no_grad():
        target = model(images).argmax(dim=1)
    blurred = gaussian_blur(images, 8.0)
    seed = cfg.seeds[0]
    for spec in specs:
        if spec.skipped:
            continue
        maps, seconds = timed(spec, model, images, target, seed)
        magnitude = maps.abs()
        per_photo = {
            "total variation": tv(maps, n_scales=5),
            "sparseness": sparseness(maps),
            "deletion AUC": deletion_auc(
                model,
                images,
                magnitude,
                target,
                baseline=0.0,
                n_steps=cfg.photo_steps,
                batch_size=16,
                output="prob",
            ),
            "insertion AUC": insertion_auc(
                model,
                images,
                magnitude,
                target,
                baseline=blurred,
                n_steps=cfg.photo_steps,
                batch_size=16,
                output="prob",
            ),
        }
        for i in range(len(names)):
            table.add(spec.label, {k: v[i].item() for k, v in per_photo.items()}, 0.0)
        table.times[spec.label] = [seconds / len(names)]
        if example_maps is not None:
            # 2x2 average pooled (112 x 112): keeps the PNG small.
            pooled = torch.nn.functional.avg_pool2d(maps[:1].abs().sum(dim=1, keepdim=True), 2)
            example_maps[spec.label] = pooled[0, 0]
    if example_maps is not None:
        example_maps["__input__"] = images[0].permute(1, 2, 0)
    table.notes += [
        f"Photos {', '.join(names)} (224x224), explained for the predicted class; noise seed "
        f"{seed}; {cfg.photo_budget} gradient evaluations per image (fewer than on the small "
        "models, to keep the full run inside its time budget on 2 cores).",
        f"Deletion: pixels ranked by |map| set to 0; insertion: from the image blurred by a "
        f"Gaussian of 8 px; {cfg.photo_steps} steps, softmax probability. Total variation: 5 "
        "scales, 99th percentile, sigma 2/3. Blurred-gradient control: 4 px.",
    ]
    return table, specs
