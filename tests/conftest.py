"""Shared fixtures: paths to the read-only real data in ../shared (relative to the repo root)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO / ".." / "shared" / "data").resolve()

os.environ.setdefault("NIPYPE_NO_ET", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".cache" / "numba"))
os.environ.setdefault("MPLCONFIGDIR", str(REPO / ".cache" / "matplotlib"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared test data not found at {SHARED}: tests need ../shared/data beside the repo")
    return SHARED


@pytest.fixture(scope="session")
def ixi_dir(shared_data) -> Path:
    """Ten real IXI T1w scans (2 mm, native sagittal orientation) as a BIDS dataset."""
    return shared_data / "ds-ixi10"


@pytest.fixture(scope="session")
def bids_examples(shared_data) -> Path:
    """BIDS example layouts whose images are empty placeholders (indexing/error tests only)."""
    return shared_data / "bids-examples"


@pytest.fixture(scope="session")
def nilearn_data(shared_data) -> Path:
    """nilearn cache holding AAL for SPM8."""
    return shared_data / "nilearn_data"
