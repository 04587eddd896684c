"""Metrics for attribution maps, batched in torch, one value per example.

* Visual noise: :func:`total_variation` (multi-scale, SmoothTaylor).
* Concentration: :func:`sparseness` (Gini, Chalasani 2020), :func:`complexity` (entropy,
  Bhatt 2020).
* Faithfulness: :func:`deletion_auc`, :func:`insertion_auc` (Petsiuk 2018), :func:`aupc`
  (region perturbation, Samek 2017), :func:`infidelity_of` (Yeh 2019, via Captum).
* Robustness: :func:`sensitivity_max_of` (Yeh 2019, via Captum).
* Quantus interoperability: :func:`quantus_explain_func`, :func:`patch_numpy_for_quantus`.
"""

from .captum_metrics import infidelity_of, sensitivity_max_of
from .concentration import complexity, sparseness
from .deletion import deletion_auc, insertion_auc
from .quantus import as_quantus_explain_func, patch_numpy_for_quantus, quantus_explain_func
from .region_perturbation import aupc
from .smoothness import total_variation

__all__ = [
    "as_quantus_explain_func",
    "aupc",
    "complexity",
    "deletion_auc",
    "infidelity_of",
    "insertion_auc",
    "patch_numpy_for_quantus",
    "quantus_explain_func",
    "sensitivity_max_of",
    "sparseness",
    "total_variation",
]
