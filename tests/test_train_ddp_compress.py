"""Data-parallel training with the HSV regulariser and an in-training reduction: 2 gloo
processes equal one process (the reduction re-wraps DDP, every rank reduces identically)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from s4dss.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]

CONFIG = {
    "task": {"name": "majority", "n_train": 64, "n_val": 16, "n_test": 16, "length": 16},
    "model": {"name": "s4", "d_model": 8, "n_layers": 2, "d_state": 4, "dropout": 0.0},
    "train": {
        "epochs": 3,
        "batch_size": 16,
        "lr": 1e-2,
        "progress": False,
        "num_threads": 1,
        "reduce": {"at_epochs": [1], "rank": 2},
        "hsv_reg": {"weight": 0.1, "order": 2},
    },
}


def launch(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)


@pytest.mark.slow  # two torchrun workers plus a single run: ~30-50 s on a shared 2-core machine
def test_ddp_with_regulariser_and_reduction_equals_single_process(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    train = ["-m", "s4dss", "train", "--config", str(cfg), "--run-dir"]
    single = launch([sys.executable, *train, str(tmp_path / "single")])
    assert single.returncode == 0, single.stderr
    ddp = launch(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         *train, str(tmp_path / "ddp")]
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = load_checkpoint(tmp_path / "single" / "last.pt")
    b = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert a["model_config"]["d_state"] == b["model_config"]["d_state"] == [2, 2]
    assert a["position"] == b["position"] and a["position"]["global_step"] == 12
    for k, v in a["model_state"].items():
        torch.testing.assert_close(b["model_state"][k], v, rtol=1e-5, atol=1e-6, msg=k)
