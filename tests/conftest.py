"""Test-wide settings."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_global_rng() -> None:
    # Tests that rely on torch's global random state start from the same place.
    torch.manual_seed(0)
