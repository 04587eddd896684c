"""Explanation quality at equal gradient budgets, with controls, on three tasks.

Run: ``python -m benchmarks.bench_quality`` (``--quick`` for a smaller check).

Tasks (each a markdown table; mean ± std over 3 model seeds unless said otherwise):

* **Ground truth** (:mod:`benchmarks._patch_data`): 32 x 32 images whose class is decided by one
  6 x 6 patch among two distractor patches; a small CNN per seed. Localisation against the known
  patch: relevance mass, relevance rank accuracy, pointing game; also sparseness and total
  variation.
* **Digits** (:mod:`captum_smooth.app.models.digits`, scikit-learn's real 8 x 8 digits, a
  trained CNN per seed): deletion / insertion AUC, Gini sparseness, total variation,
  max-sensitivity and the model-randomisation sanity check (Adebayo et al. 2018: Spearman rank
  correlation between the map of the trained model and the map of a model with freshly
  initialised weights; *lower* means the map depends more on the model; input-only maps score 1).
* **EfficientNet-Lite0** (ImageNet weights) on the bundled photos: total variation, sparseness,
  deletion / insertion AUC. One pretrained model, so the spread is over the photos.

Methods at one budget of gradient evaluations per image (50; 15 on EfficientNet-Lite0): the
plain gradient (1), Captum's SmoothGrad (``NoiseTunnel(Saliency)``), AdaptGrad at c = 0.9 /
0.95 / 0.99 (N - 1 noisy + the clean gradient), NoiseGrad (N weight draws), FusionGrad
(N/5 weight x 5 input draws), SmoothTaylor (N roots), Integrated Gradients (N steps from the
black image), SmoothGrad with the laplace / uniform / student_t / bump kernels at the same sigma,
and the three controls of :mod:`captum_smooth.app.controls` (blurred gradient, input edge map,
random map). Every method row is an entry of the method table (:mod:`captum_smooth.app.methods`:
its class and arguments at the budget, with the overrides written in :func:`method_specs`).
Gradients are signed (``abs=False``) and every map is scored by magnitude (``|map|``, summed
over channels); input noise is sigma = 0.15 of the [0, 1] range for every method that
draws it. Every seed is fixed (model init, data, noise), so the scores reproduce exactly; wall
times are measured once per call.

The code: the method rows and how one runs in :mod:`benchmarks._quality_methods`, the tasks and
their sizes in :mod:`benchmarks._quality_tasks`, the extra scores in
:mod:`benchmarks._quality_scores`, the tables, verdicts and claims in
:mod:`benchmarks._quality_report`, the figure in :mod:`benchmarks._quality_plots`; this module
runs the tasks and puts the report together.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from torch import Tensor

from benchmarks._harness import environment, run_standalone
from benchmarks._quality_methods import NOISE_LEVEL, WEIGHT_STDEV, QualityRow, method_specs
from benchmarks._quality_plots import plot_maps
from benchmarks._quality_report import Table, Verdict, claims, compare, render_table
from benchmarks._quality_scores import spearman_rows
from benchmarks._quality_tasks import FULL, QUICK, Config, digits_task, patch_task, photos_task

__all__ = [
    "FULL",
    "QUICK",
    "Config",
    "QualityRow",
    "Table",
    "Verdict",
    "claims",
    "digits_task",
    "method_specs",
    "patch_task",
    "photos_task",
    "run",
    "spearman_rows",
]

# The names the smoke tests (tests/test_benchmarks_smoke.py) read from this module.
_render = render_table
_compare = compare


def run(quick: bool = False, config: Config | None = None) -> dict[str, Any]:
    """Run every task; return the tables (numbers and markdown), the claims and the plots.

    Args:
        quick: Use the small :data:`QUICK` sizes.
        config: Explicit sizes (overrides ``quick``; the smoke test uses tiny ones).
    """
    cfg = config or (QUICK if quick else FULL)
    tables: dict[str, Table] = {}
    specs: dict[str, list[QualityRow]] = {}
    patch_maps: dict[str, Tensor] = {}
    photo_maps: dict[str, Tensor] = {}
    seconds: dict[str, float] = {}
    tasks = {
        "patch": lambda: patch_task(cfg, patch_maps if cfg.plots else None),
        "digits": lambda: digits_task(cfg),
        "photos": lambda: photos_task(cfg, photo_maps if cfg.plots else None),
    }
    for key in cfg.tasks:
        start = time.perf_counter()
        tables[key], specs[key] = tasks[key]()
        seconds[key] = time.perf_counter() - start
    plots = plot_maps(patch_maps, photo_maps) if cfg.plots else []
    sections = [render_table(tables[k], specs[k]) for k in tables]
    intro = (
        f"Equal budgets: {cfg.budget} gradient evaluations per image "
        f"({cfg.photo_budget} on EfficientNet-Lite0); model seeds {list(cfg.seeds)}; input "
        f"noise sigma {NOISE_LEVEL} of the [0, 1] range for every input-noise method; weight "
        f"noise N(1, {WEIGHT_STDEV}²); gradients signed, scored by |map|. ↑ / ↓: higher / lower "
        "is better. Task times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
    )
    markdown = intro + "\n\n" + "\n\n".join(sections) + "\n\n" + claims(tables, specs)
    figures = {
        key: {label: {m: table.stat(label, m) for m, _ in table.metrics} for label in table.values}
        for key, table in tables.items()
    }
    return {
        "figures": figures,
        "times_s_per_image": {
            key: {label: statistics.fmean(t) for label, t in table.times.items()}
            for key, table in tables.items()
        },
        "task_seconds": seconds,
        "seeds": list(cfg.seeds),
        "environment": environment(),
        "markdown": markdown,
        "plots": plots,
    }


def main() -> None:
    run_standalone(run, __doc__)


if __name__ == "__main__":
    main()
