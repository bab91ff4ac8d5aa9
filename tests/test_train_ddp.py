"""Data-parallel training: 2 gloo processes under torchrun equal one process on the same
global batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from s4dss.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]

CONFIG = {
    "task": {"name": "majority", "n_train": 64, "n_val": 16, "n_test": 16, "length": 16},
    # no dropout: ranks draw from different RNG streams, a single process from one
    "model": {"name": "s4", "d_model": 8, "n_layers": 2, "d_state": 4, "dropout": 0.0},
    "train": {
        "epochs": 2,
        "batch_size": 16,
        "lr": 1e-2,
        "progress": False,
        "log_every": 1,
        "num_threads": 1,
        "seed": 0,
        "max_steps": 6,
    },
}


def launch(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)


def log(run_dir: Path, event: str) -> list[dict]:
    rows = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return [r for r in rows if r["event"] == event]


def test_two_process_ddp_equals_single_process(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    single = launch(
        [
            sys.executable,
            "-m",
            "s4dss",
            "train",
            "--config",
            str(cfg),
            "--run-dir",
            str(tmp_path / "single"),
        ]
    )
    assert single.returncode == 0, single.stderr
    ddp = launch(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "s4dss",
            "train",
            "--config",
            str(cfg),
            "--run-dir",
            str(tmp_path / "ddp"),
        ]
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert log(tmp_path / "single", "start")[0]["world_size"] == 1
    assert log(tmp_path / "ddp", "start")[0]["world_size"] == 2
    a = load_checkpoint(tmp_path / "single" / "last.pt")
    b = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert a["position"] == b["position"] and a["position"]["global_step"] == 6
    for k, v in a["model_state"].items():
        torch.testing.assert_close(b["model_state"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    # every step's global-batch loss agrees, and the losses moved: the weights really changed
    la = [r["loss"] for r in log(tmp_path / "single", "train")]
    lb = [r["loss"] for r in log(tmp_path / "ddp", "train")]
    assert len(la) == len(lb) == 6
    torch.testing.assert_close(torch.tensor(lb), torch.tensor(la), rtol=1e-6, atol=1e-7)
    assert max(la) - min(la) > 1e-3
    # sharded evaluation sums over both ranks
    sa = json.loads((tmp_path / "single" / "summary.json").read_text())
    sb = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert sb["test"]["n"] == 16 and sa["test"]["acc"] == sb["test"]["acc"]
    assert abs(sa["test"]["loss"] - sb["test"]["loss"]) < 1e-5
