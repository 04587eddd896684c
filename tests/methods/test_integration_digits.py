"""End to end on a real trained model: a CNN on scikit-learn's digits (trained in seconds)."""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients, Saliency

from captum_smooth import AdaptGrad, SmoothGrad, SmoothTunnel
from captum_smooth.metrics import deletion_auc, total_variation

pytest.importorskip("sklearn")

pytestmark = pytest.mark.slow


class _RangeProbe(torch.nn.Module):
    """Counts the noisy input elements that left the valid range [0, 1]."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.outside = 0
        self.total = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.outside += int(((x < 0) | (x > 1)).sum())
        self.total += x.numel()
        return self.model(x)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    from captum_smooth.app.models.digits import load_digits_data, trained_digits_cnn

    model = trained_digits_cnn(seed=0)
    data = load_digits_data(seed=0)
    x, y = data.x_test[:16], data.y_test[:16]
    return model, x, y


def test_adaptgrad_keeps_samples_in_range_where_smoothgrad_does_not(digits) -> None:
    model, x, y = digits
    adapt_probe, smooth_probe = _RangeProbe(model), _RangeProbe(model)
    AdaptGrad(adapt_probe).attribute(
        x, target=y, nt_samples=20, confidence=0.95, bounds=(0.0, 1.0), generator=0
    )
    SmoothGrad(smooth_probe).attribute(
        x, target=y, nt_samples=20, noise_level=0.15, bounds=(0.0, 1.0), generator=0
    )
    adapt_share = adapt_probe.outside / adapt_probe.total
    smooth_share = smooth_probe.outside / smooth_probe.total
    # AdaptGrad: at most 1 - c per coordinate; digits sit on the bounds (0 background) often.
    assert adapt_share <= 0.05 + 0.01
    assert smooth_share > 3 * adapt_share
    assert smooth_share > 0.2  # most background pixels are 0: half their draws leave


def test_smoothing_lowers_total_variation_and_stays_faithful(digits) -> None:
    model, x, y = digits
    vanilla = Saliency(model).attribute(x, target=y)
    adapt = AdaptGrad(model).attribute(x, target=y, nt_samples=30, bounds=(0.0, 1.0), generator=0)
    smooth = SmoothTunnel(Saliency(model)).attribute(
        x, target=y, nt_samples=30, stdevs=0.15, generator=0, nt_samples_batch_size="auto"
    )
    tv_vanilla = total_variation(vanilla).mean()
    assert total_variation(smooth).mean() < tv_vanilla
    # Faithfulness: deleting the pixels AdaptGrad ranks first hurts more than random order.
    random_map = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    ours = deletion_auc(model, x, adapt, y, n_steps=16).mean()
    rand = deletion_auc(model, x, random_map, y, n_steps=16).mean()
    assert ours < rand
    assert bool(torch.isfinite(adapt).all())


def test_integrated_gradients_under_adaptgrad_completeness(digits) -> None:
    model, x, y = digits
    attr, delta = AdaptGrad(model, IntegratedGradients).attribute(
        x[:4],
        target=y[:4],
        nt_samples=4,
        bounds=(0.0, 1.0),
        generator=0,
        baselines=torch.zeros_like(x[:4]),
        n_steps=64,
        return_convergence_delta=True,
    )
    assert attr.shape == x[:4].shape
    assert delta.shape == (4 * 5,)
    # Completeness holds up to the Riemann error: small next to the explained logit change.
    totals = attr.flatten(1).sum(1).abs().max()
    assert float(delta.abs().max()) < 0.02 * float(totals) + 0.01
