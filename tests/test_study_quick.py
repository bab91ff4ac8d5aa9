"""The study's quick preset end to end from the command line, and parallel workers (slow)."""

from __future__ import annotations

import copy
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.study import runner  # noqa: E402

pytestmark = pytest.mark.slow


def _rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["arm"]: {k: v for k, v in r.items() if k not in runner.TIME_FIELDS} for r in rows}


def _cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.study", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip


def test_quick_preset_from_the_command_line(tmp_path):
    out = tmp_path / "quick"
    res = _cli("--preset", "quick", "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    with open(out / "arms.csv", newline="") as f:
        table = list(csv.DictReader(f))
    rows = _rows(out / "results.csv")
    assert set(rows) == {a["arm"] for a in table if a["runnable"] == "yes"}
    assert all(r["status"] == "ok" for r in rows.values())
    md = (out / "results.md").read_text()
    for heading in ("## digits256", "## osuleaf", "Claims (a) and (b)", "Claim (c)", "Claim (d)",
                    "Issue 11's methods"):  # fmt: skip
        assert heading in md
    # every issue-11 arm ran on the real API (none skipped), and is compared in the report
    groups = {r["group"] for r in rows.values()}
    assert {"intrain", "regpre", "regbt0", "regbt", "budget0", "budget", "shared0", "shared",
            "spa0", "spa", "hippo-shared"} <= groups  # fmt: skip
    assert all(a["runnable"] == "yes" for a in table)
    assert "intrain vs bt" in md and "shared vs hippo-shared" in md
    for png in ("pareto_digits256.png", "pareto_osuleaf.png", "correlation.png"):
        assert (out / png).stat().st_size > 10_000
    # a second call with --resume has nothing left to do and changes nothing
    before = (out / "results.csv").read_text()
    res = _cli("--preset", "quick", "--out", str(out), "--resume", "--no-progress")
    assert res.returncode == 0 and "0 arms executed" in res.stdout
    assert (out / "results.csv").read_text() == before


def test_parallel_workers_give_the_serial_results(tmp_path):
    preset = {
        "threads": 1,
        "protocol": dict(
            seeds=[0, 1], ranks=[2], corr_rank=2, pre_epochs=2, main_epochs=1, corr_epochs=[1],
            scratch_budgets=["main", "flops"],
        ),
        "tasks": {
            "majority": {
                "task": dict(name="majority", n_train=64, n_val=32, n_test=32, length=12),
                "model": dict(d_model=6, n_layers=1, d_state=4, kernel_dtype="float32"),
                "train": dict(batch_size=32, lr=1e-2, weight_decay=0.0),
            }
        },
    }  # fmt: skip
    runner.run(copy.deepcopy(preset), tmp_path / "serial", progress=False)
    runner.run(copy.deepcopy(preset), tmp_path / "parallel", progress=False, jobs=2)
    assert _rows(tmp_path / "parallel" / "results.csv") == _rows(
        tmp_path / "serial" / "results.csv"
    )


def test_sigterm_stops_the_workers_and_resume_completes(tmp_path):
    """``kill`` of a background study with workers: they stop at a checkpoint (none is left
    running), and ``--resume`` finishes with the uninterrupted results."""
    import json
    import signal
    import time

    preset = {
        "threads": 1,
        "protocol": dict(
            seeds=[0, 1], ranks=[2], corr_rank=2, pre_epochs=30, main_epochs=2, corr_epochs=[],
            scratch_budgets=["main"],
        ),
        "tasks": {
            "majority": {
                "task": dict(name="majority", n_train=256, n_val=32, n_test=32, length=32),
                "model": dict(d_model=8, n_layers=1, d_state=8, kernel_dtype="float32"),
                "train": dict(batch_size=16, lr=1e-2, weight_decay=0.0),
            }
        },
    }  # fmt: skip
    code = (
        "import json, sys; from benchmarks.study import runner; "
        "p = json.loads(sys.argv[1]); "
        "runner.run(p, sys.argv[2], jobs=2, progress=False, resume=len(sys.argv) > 3)"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    args = [sys.executable, "-c", code, json.dumps(preset), str(tmp_path / "cut")]
    proc = subprocess.Popen(args, cwd=ROOT, env=env)
    runs = tmp_path / "cut" / "runs" / "majority" / "pre"
    deadline = time.time() + 600
    while time.time() < deadline:  # both pre-training runs have checkpoints: stop the study
        if all((runs / f"s{s}" / "last.pt").is_file() for s in (0, 1)):
            break
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) != 0
    # no worker goes on training: the checkpoints stay as they are
    before = {p: p.stat().st_mtime_ns for p in runs.glob("s*/last.pt")}
    time.sleep(3)
    assert {p: p.stat().st_mtime_ns for p in runs.glob("s*/last.pt")} == before
    assert subprocess.run([*args, "resume"], cwd=ROOT, env=env).returncode == 0
    runner.run(copy.deepcopy(preset), tmp_path / "ref", progress=False)
    assert _rows(tmp_path / "cut" / "results.csv") == _rows(tmp_path / "ref" / "results.csv")
