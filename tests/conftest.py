"""Shared test configuration: hypothesis profiles, the SLICOT benchmark folder, and one tiny
model trained through the CLI (for the tests of the verbs that read a checkpoint)."""

import os
from pathlib import Path

import pytest
import yaml
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


#: The smallest training run through ``python -m s4dss train``: a 2-layer model on a synthetic
#: task, one epoch; the CLI tests of ``reduce`` and ``export`` read its checkpoints.
TINY_RUN = {
    "task": {"name": "majority", "n_train": 96, "n_val": 32, "n_test": 32, "length": 16},
    "model": {"name": "s4", "d_model": 8, "n_layers": 2, "d_state": 6},
    "train": {"epochs": 1, "batch_size": 16, "progress": False, "num_threads": 1, "seed": 0},
}


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The run directory of :data:`TINY_RUN` (``best.pt``, ``last.pt``, ...), trained once."""
    from s4dss.cli import main

    d = tmp_path_factory.mktemp("tiny-run")
    (d / "cfg.yaml").write_text(yaml.safe_dump(TINY_RUN))
    assert main(["train", "--config", str(d / "cfg.yaml"), "--run-dir", str(d / "run")]) == 0
    return d / "run"
