"""Every method against Captum at an equal number of gradient evaluations, and against the floor.

Run: ``python -m benchmarks.bench_methods`` (``--quick`` for a smaller check).

For the ResNet-18-sized CNN (random weights, seed 0) and the embedded EfficientNet-Lite0, at
224 x 224 (112 with ``--quick``), batches of 1 and 8 images, every method spends the same number
of gradient evaluations per image (10 at batch 1, 4 at batch 8, to keep the run short):

* the reference: Captum's ``NoiseTunnel(Saliency)`` SmoothGrad at its default (every noisy copy
  in one batch);
* the floor: that many plain ``Saliency`` calls on the batch (what any smoothing costs at least
  without batching the copies);
* our presets at their defaults (``nt_samples_batch_size="auto"``): SmoothGrad, SmoothGrad with
  a Laplace kernel, AdaptGrad (without the clean term, so the count is equal), NoiseGrad,
  FusionGrad (M x N = the budget), SmoothTaylor. The classes (and the Laplace kernel) are the
  method table's (:mod:`captum_smooth.app.methods`); the arguments are not: this module times
  the presets at their own defaults, where the table sets a chunk of 8 copies, AdaptGrad's clean
  term, a sqrt(N) x sqrt(N) FusionGrad and other sigmas.

All candidates of one (model, batch) are timed interleaved in this process (A B C ..., then
reversed), median of the repeats, after one small warm-up call each. Ratios < 1 are faster
than Captum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from captum.attr import NoiseTunnel, Saliency
from torch import nn

from benchmarks._harness import environment, markdown_table, run_standalone, time_interleaved
from captum_smooth.app.methods import fusion_split, get_method

__all__ = ["run"]

_BOUNDS = (0.0, 1.0)


def _models() -> dict[str, nn.Module]:
    from captum_smooth.app.models.efficientnet_lite import load_efficientnet_lite0
    from captum_smooth.app.models.resnet import resnet18_like

    return {
        "ResNet-18-sized": resnet18_like(seed=0).eval(),
        "EfficientNet-Lite0": load_efficientnet_lite0().eval(),
    }


def _images(batch: int, size: int) -> torch.Tensor:
    """The bundled photos, cycled to ``batch`` images (content barely matters for speed)."""
    from captum_smooth.app.data.images import load_sample_images

    photos, _ = load_sample_images(("chelsea", "coffee", "rocket"), size)
    return photos[torch.arange(batch) % photos.shape[0]].contiguous()


def _preset(name: str, model: nn.Module, **arguments: Any) -> Callable[[torch.Tensor], Any]:
    """A call of the method table's ``name`` on ``model``: the table's class and fixed arguments
    (a kernel), with this benchmark's own ``arguments`` and otherwise the class's defaults, not
    the table's budget arguments (its chunk of 8 copies, its AdaptGrad clean term, its FusionGrad
    split and sigmas): this benchmark times the presets as a user calls them. The method is
    built inside the call, as a user would."""
    spec = get_method(name)
    kwargs = {**spec.fixed, **arguments}
    return lambda x: spec.cls(model).attribute(x, target=0, **kwargs)


def _candidates(model: nn.Module, n: int) -> dict[str, Callable[[torch.Tensor], Any]]:
    """Name -> call(images) spending ``n`` gradient evaluations per image."""
    sal = Saliency(model)
    captum_nt = NoiseTunnel(sal)
    # Two weight draws of n / 2 input draws (an odd n, as the one-call warm-up's, one of n).
    m_fusion, n_fusion = fusion_split(n, input_draws=n // 2 if n % 2 == 0 else n)

    def floor(x: torch.Tensor) -> torch.Tensor:
        total = torch.zeros_like(x)
        for _ in range(n):
            total += sal.attribute(x.clone().requires_grad_(), target=0)
        return total / n

    return {
        "Captum NoiseTunnel SmoothGrad (default batch)": lambda x: captum_nt.attribute(
            x, nt_samples=n, stdevs=0.15, target=0
        ),
        "floor: n plain gradients": floor,
        "SmoothGrad": _preset("smoothgrad", model, nt_samples=n, bounds=_BOUNDS, generator=0),
        "SmoothGrad laplace": _preset(
            "smoothgrad-laplace", model, nt_samples=n, bounds=_BOUNDS, generator=0
        ),
        "AdaptGrad c=0.95": _preset(
            "adaptgrad", model, nt_samples=n, bounds=_BOUNDS, include_clean=False, generator=0
        ),
        "NoiseGrad": _preset("noisegrad", model, n_weight_samples=n, generator=0),
        "FusionGrad (M=2 x N=n/2)": _preset(
            "fusiongrad", model, n_weight_samples=m_fusion, nt_samples=n_fusion, generator=0
        ),
        "SmoothTaylor": _preset("smoothtaylor", model, nt_samples=n, generator=0),
    }


_INPUT_NOISE = ("SmoothGrad", "SmoothGrad laplace", "AdaptGrad c=0.95", "SmoothTaylor")


def _reading(times: dict[str, dict[str, float]], reference: str, floor: str) -> str:
    """What the table says, per configuration, from the numbers themselves."""
    lines = []
    for config, measured in times.items():
        ours = [measured[name] / measured[floor] for name in _INPUT_NOISE]
        ours_vs_captum = [measured[name] / measured[reference] for name in _INPUT_NOISE]
        weight = [
            t / measured[floor]
            for name, t in measured.items()
            if name.startswith(("NoiseGrad", "FusionGrad"))
        ]
        captum_vs_floor = measured[reference] / measured[floor]
        lines.append(
            f"- {config}: Captum's one big batch costs {captum_vs_floor:.2f}x "
            f"the floor; our input-noise presets {min(ours):.2f}-{max(ours):.2f}x the floor "
            f"({min(ours_vs_captum):.2f}-{max(ours_vs_captum):.2f}x Captum); weight noise "
            f"{min(weight):.2f}-{max(weight):.2f}x the floor (a fixed cost per weight draw, "
            "see bench_noisegrad)."
        )
    return "\n".join(lines) + "\n"


def run(quick: bool = False) -> dict[str, Any]:
    """Measure everything; return the figures and a markdown report."""
    size = 112 if quick else 224
    configs = [(1, 10), (8, 4)] if not quick else [(1, 4), (4, 2)]
    repeats = 2
    models = _models()
    times: dict[str, dict[str, float]] = {}
    names: list[str] = []
    for model_name, model in models.items():
        for batch, n in configs:
            images = _images(batch, size)
            calls = _candidates(model, n)
            names = list(calls)
            warm = images[:1]
            for call in _candidates(model, 1).values():
                call(warm)  # one small call each: lazy initialisation, thread pools
            measured = time_interleaved(
                {name: (lambda c=call, x=images: c(x)) for name, call in calls.items()},
                repeats=repeats,
                warmup=0,
            )
            times[f"{model_name}, batch {batch} ({n} evals/image)"] = measured
            model.zero_grad(set_to_none=True)

    reference, floor = names[0], names[1]
    header = ["method"] + list(times)
    rows = []
    for name in names:
        row: list[Any] = [name]
        for measured in times.values():
            t = measured[name]
            vs_captum, vs_floor = t / measured[reference], t / measured[floor]
            row.append(f"{t:.2f} s ({vs_captum:.2f}x Captum, {vs_floor:.2f}x floor)")
        rows.append(row)
    figures = {
        config: {name: measured[name] / measured[reference] for name in measured}
        for config, measured in times.items()
    }
    report = (
        f"{size}x{size} images (the bundled photos, cycled), target 0, input noise 0.15 of the "
        "[0, 1] range, weight noise s = 0.2, SmoothTaylor sigma 0.5; median of "
        f"{repeats} interleaved repeats. Each cell: wall time (ratio to Captum's NoiseTunnel "
        "SmoothGrad at its default, ratio to the floor of n plain gradients).\n\n"
        + markdown_table(header, rows)
        + "\n\n"
        + _reading(times, reference, floor)
    )
    return {
        "figures": figures,
        "times": times,
        "environment": environment(),
        "markdown": report,
    }


def main() -> None:
    run_standalone(run, __doc__)


if __name__ == "__main__":
    main()
