"""Shared fixtures: where the real datasets are, and a per-session cache copied from them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def shared_datasets() -> Path:
    """../shared/datasets, or skip the test with the reason."""
    if not (SHARED_DATASETS / "FashionMNIST" / "raw").is_dir():
        pytest.skip("../shared/datasets not found beside the repository: real-data tests need it")
    return SHARED_DATASETS


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    """Keep a developer's ACTLAB_* settings out of every test."""
    for name in ("ACTLAB_DATA", "ACTLAB_CACHE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> Path:
    """One writable dataset cache for the whole test session (never the user's cache)."""
    return tmp_path_factory.mktemp("actlab-data-cache")


@pytest.fixture(scope="session")
def fashion_cpu(data_cache):
    """Real FashionMNIST splits on the CPU, loaded once per session."""
    from actlab.engine.data import load_dataset

    return load_dataset("fashion-mnist", device="cpu", seed=42, source=shared_datasets(), cache_dir=data_cache,
                        fallback="none")


@pytest.fixture(scope="session")
def digits_cpu():
    from actlab.engine.data import load_dataset

    return load_dataset("digits", device="cpu", seed=42)
