"""The CLI verbs train / evaluate / reduce, kill-and-resume in a real subprocess, clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from s4dss.checkpoint import load_checkpoint
from s4dss.cli import main

ROOT = Path(__file__).resolve().parents[1]

# a tiny S4 model on the easy majority task; one thread so runs are bit-reproducible
CONFIG = {
    "task": {"name": "majority", "n_train": 160, "n_val": 32, "n_test": 32, "length": 16},
    "model": {"name": "s4", "d_model": 8, "n_layers": 1, "d_state": 4, "dropout": 0.1},
    "train": {
        "epochs": 3,
        "batch_size": 8,
        "lr": 1e-2,
        "progress": False,
        "log_every": 1,
        "num_threads": 1,
        "seed": 0,
    },
}


def write_config(path: Path, **sections) -> Path:
    cfg = {k: {**CONFIG[k], **sections.get(k, {})} for k in CONFIG}
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "s4dss", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def records(run_dir: Path):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    # wall-clock "*_seconds" fields are the only non-reproducible entries
    return [
        {k: v for k, v in r.items() if not k.endswith("_seconds")}
        for r in map(json.loads, lines)
        if r["event"] in ("train", "val", "test")
    ]


def same_state(a: Path, b: Path) -> bool:
    sa = load_checkpoint(a)["model_state"]
    sb = load_checkpoint(b)["model_state"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run, in-process."""
    d = tmp_path_factory.mktemp("ref")
    cfg = write_config(d / "cfg.yaml")
    assert main(["train", "--config", str(cfg), "--run-dir", str(d / "run")]) == 0
    return d / "run"


def test_train_writes_run_dir(reference, capsys):
    saved = yaml.safe_load((reference / "config.yaml").read_text())
    assert saved["model"]["d_state"] == 4 and saved["run"]["dir"] == str(reference)
    assert saved["train"]["grad_clip"] == 1.0  # defaults are resolved into the saved copy
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 60
    assert summary["test"]["acc"] > 0.5
    assert main(["evaluate", str(reference / "last.pt"), "--split", "test"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["acc"] == summary["test"]["acc"] and out["n"] == 32


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_subprocess_resumes_to_identical_weights(tmp_path, reference, sig):
    cfg = write_config(tmp_path / "cfg.yaml")
    run = tmp_path / "run"
    proc = run_cli(["train", "--config", str(cfg), "--run-dir", str(run)])
    # wait (no time limit on the result) until the first epoch checkpoint exists, then kill
    while not (run / "last.pt").exists() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate()
    # the run may rarely have finished before the signal landed; then resume is a no-op
    # (a SIGINT landing during the final test evaluation, after the loop, is a plain
    # KeyboardInterrupt; the last checkpoint is then the complete final epoch)
    expected = (0, 130 if sig == signal.SIGINT else -sig)
    assert proc.returncode in expected or "KeyboardInterrupt" in err, err
    print("killed with return code", proc.returncode)
    if sig == signal.SIGINT and proc.returncode == 130:
        ck = load_checkpoint(run / "last.pt")
        assert ck["position"]["global_step"] >= 20  # saved where it stopped, not an old epoch
    assert not list(run.glob("*.tmp")) or sig == signal.SIGKILL
    resumed = run_cli(["train", "--run-dir", str(run), "--resume"])
    out, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1])["status"] == "finished"
    assert same_state(reference / "last.pt", run / "last.pt")
    # the log has no duplicated steps from the killed tail
    assert records(reference) == records(run)


def test_reduce_evaluate_and_init_from(tmp_path, reference, capsys):
    out = tmp_path / "r2.pt"
    assert (
        main(["reduce", str(reference / "best.pt"), "--rank", "2", "--out", str(out), "--evaluate"])
        == 0
    )
    report = json.loads((tmp_path / "r2.pt.json").read_text())
    assert report["layers"][0]["n"] == 4 and report["layers"][0]["order"] == 2
    assert report["params_after"] < report["params_before"]
    assert 0 <= report["test_after"]["acc"] <= 1
    ck = load_checkpoint(out, kind="reduced")
    assert ck["model_config"]["d_state"] == [2]
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["acc"] == report["test_after"]["acc"]
    # main training from the reduced parameters
    cfg = write_config(tmp_path / "cfg.yaml", train={"epochs": 1})
    run = tmp_path / "retrain"
    assert main(["train", "--config", str(cfg), "--run-dir", str(run), f"run.init_from={out}"]) == 0
    assert load_checkpoint(run / "last.pt")["model_config"]["d_state"] == [2]


def test_overrides_and_clear_errors(tmp_path, reference, capsys):
    cfg = write_config(tmp_path / "cfg.yaml")
    assert main(["train", "--config", str(cfg), "--run-dir", str(reference)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert (
        main(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "x"), "train.lrr=1"]) == 2
    )
    assert "unknown key train.lrr" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(tmp_path / "none"), "--resume"]) == 2
    assert "config" in capsys.readouterr().err
    bad = tmp_path / "trunc.pt"
    bad.write_bytes((reference / "last.pt").read_bytes()[:1000])
    assert main(["evaluate", str(bad)]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    assert main(["reduce", str(reference / "last.pt"), "--out", str(tmp_path / "o.pt")]) == 2
    assert "--rank" in capsys.readouterr().err
    assert (
        main(["reduce", str(reference / "last.pt"), "--rank", "9", "--out", str(tmp_path / "o.pt")])
        == 2
    )
    assert "rank 9 out of range" in capsys.readouterr().err
    assert main(["train", "--run-dir", str(reference), "--resume", "train.lr=0.5"]) == 2
    assert "train.lr" in capsys.readouterr().err
    assert yaml.safe_load((reference / "config.yaml").read_text())["train"]["lr"] == 0.01
    assert (
        main(
            [
                "train",
                "--config",
                str(cfg),
                "--run-dir",
                str(tmp_path / "y"),
                "train.schedule=linear",
            ]
        )
        == 2
    )
    assert "schedule" in capsys.readouterr().err
    assert (
        main(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "y"), "model.d_sate=3"])
        == 2
    )
    assert "d_sate" in capsys.readouterr().err
    assert (
        main(["train", "--config", str(cfg), "--run-dir", str(tmp_path / "y"), "task.name=listopz"])
        == 2
    )
    assert "known tasks" in capsys.readouterr().err
    # a run dir moved elsewhere still resumes (run.dir may differ from the saved one)
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(reference, moved)
    assert main(["train", "--run-dir", str(moved), "--resume"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] == "finished"
    # overrides reach the run: two epochs, a different lr, recorded in the saved config
    run = tmp_path / "ov"
    assert (
        main(
            [
                "train",
                "--config",
                str(cfg),
                "--run-dir",
                str(run),
                "train.epochs=1",
                "train.lr=3e-3",
                "model.d_model=4",
            ]
        )
        == 0
    )
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["lr"] == 0.003 and saved["model"]["d_model"] == 4
    assert load_checkpoint(run / "last.pt")["model_config"]["d_model"] == 4


def test_demo_verb_still_registered():
    with pytest.raises(SystemExit) as e:
        main(["demo", "--help"])
    assert e.value.code == 0


def test_shipped_configs_parse():
    from s4dss.config import load_config

    for path in sorted((ROOT / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg["task"]["name"] and cfg["run"]["dir"], path
