"""The command-line tests keep the weight-noise calibration cache out of the user's home."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _calibration_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One folder for the session: a model calibrated once is read from the cache afterwards.
    return tmp_path_factory.mktemp("captum-smooth-cache")


@pytest.fixture(autouse=True)
def _cache_in_tmp(monkeypatch: pytest.MonkeyPatch, _calibration_cache: Path) -> None:
    monkeypatch.setenv("CAPTUM_SMOOTH_CACHE", str(_calibration_cache))
