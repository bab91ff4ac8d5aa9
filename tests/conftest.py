"""Shared test configuration: hypothesis profiles and the SLICOT benchmark folder."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# CI: reproducible examples (derandomize), no per-example deadline (numerical work varies).
settings.register_profile(
    "ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")

SLICOT_DIR = Path(
    os.environ.get(
        "SYSRED_SLICOT_DIR", Path(__file__).resolve().parents[2] / "shared" / "slicot-benchmarks"
    )
)


@pytest.fixture(scope="session")
def slicot_dir():
    if not SLICOT_DIR.is_dir():
        pytest.skip(f"SLICOT benchmark folder not found at {SLICOT_DIR} (set SYSRED_SLICOT_DIR)")
    return SLICOT_DIR
