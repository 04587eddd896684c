"""The Quantus adapter applies the numpy compatibility itself: PixelFlipping runs as it is."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# A fresh interpreter: no earlier test has patched numpy. Nothing but the adapter is called.
_SCRIPT = textwrap.dedent(
    """
    import warnings
    import numpy as np
    import torch
    from captum.attr import Saliency
    import quantus
    from captum_smooth.metrics import quantus_explain_func

    missing_before = not hasattr(np, "trapz")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 3),
    ).eval()
    x = np.random.default_rng(0).normal(size=(2, 1, 8, 8)).astype(np.float32)
    y = np.array([0, 2])
    explain = quantus_explain_func(Saliency)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = quantus.PixelFlipping(features_in_step=16, disable_warnings=True,
                                       return_auc_per_sample=True)(
            model, x, y, explain_func=explain, device="cpu"
        )
    print(missing_before, len(scores), all(np.isfinite(scores)))
    """
)


@pytest.mark.slow  # a fresh interpreter importing Quantus (pandas, opencv, ...): ~15-30 s
def test_pixel_flipping_runs_without_patching_numpy_by_hand() -> None:
    pytest.importorskip("quantus")
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    missing_before, n_scores, finite = result.stdout.split()[-3:]
    # On numpy >= 2.4 np.trapz is gone: PixelFlipping's AUC needs the adapter's alias.
    assert (n_scores, finite) == ("2", "True"), result.stdout
    assert missing_before in ("True", "False")
