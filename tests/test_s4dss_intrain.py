"""In-training reduction: orders, records, optimizer/schedule continuation, checkpoints, and
bit-identical resume across a reduction (in process and after SIGKILL of the CLI)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import s4dss
import sysred
from s4dss.callbacks import Callback
from s4dss.checkpoint import load_checkpoint
from s4dss.cli import main
from s4dss.data import get_task
from s4dss.intrain import ReduceConfig, energy_order, relative_tail
from s4dss.train import build_model, model_from_config, train

ROOT = Path(__file__).resolve().parents[1]
SPEC = {"name": "s4", "d_model": 8, "n_layers": 2, "d_state": 8, "dropout": 0.1}
CFG = dict(epochs=3, batch_size=16, lr=1e-2, progress=False, log_every=1, num_threads=1)


def task():
    return get_task("majority", n_train=96, n_val=32, n_test=32, length=16)


def fresh(seed=0):
    torch.manual_seed(seed)
    return build_model(SPEC, task())


def records(run_dir, event):
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["event"] == event]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs: 8 -> 6 -> 4 states after epochs 1 and 2, and the same without."""
    d = tmp_path_factory.mktemp("intrain")
    out = {}
    for name, extra in (("reduced", {"reduce": {"at_epochs": [1, 2], "rank": [6, 4]}}),
                        ("plain", {})):  # fmt: skip
        model = fresh()
        summary = train(model, task(), {**CFG, **extra}, d / name)
        out[name] = (d / name, model, summary)
    return out


def test_config_section_is_checked():
    ok = ReduceConfig.from_dict({"every": 2, "fraction": 0.5, "min_rank": 4})
    assert ok.amount == "fraction"
    for bad, msg in [
        ({"rank": 4}, "at_epochs"),
        ({"at_epochs": [2], "every": 1, "rank": 4}, "exactly one of at_epochs"),
        ({"at_epochs": [2]}, "exactly one of"),
        ({"at_epochs": [2], "rank": 4, "energy": 0.9}, "exactly one of"),
        ({"at_epochs": [3, 2], "rank": 4}, "increasing"),
        ({"at_epochs": [1, 2], "rank": [4]}, "one entry per rank"),
        ({"every": 1, "rank": [4]}, "needs at_epochs"),
        ({"every": 1, "fraction": 1.5}, "fraction"),
        ({"every": 1, "energy": 1.0}, "energy"),
        ({"every": 1, "tol": -1}, "tol"),
        ({"every": 1, "rank": 2, "min_rank": 4}, "min_rank"),
        ({"every": 1, "rank": 2, "method": "spa?"}, "method"),
        ({"every": 1, "rank": 2, "options": {"rank": 3}}, "must not repeat"),
        ({"every": 1, "rank": 2, "evry": 3}, "unknown keys"),
    ]:
        with pytest.raises(ValueError, match=msg):
            ReduceConfig.from_dict(bad)
    with pytest.raises(ValueError, match="beyond train.epochs"):
        ReduceConfig.from_dict({"at_epochs": [4], "rank": 2}, epochs=3)


def test_subkey_overrides_merge_into_the_file_section(tmp_path):
    from s4dss.config import ConfigError, load_config

    path = tmp_path / "c.yaml"
    path.write_text("task: {name: digits}\ntrain: {reduce: {at_epochs: [2], rank: 8}}\n")
    cfg = load_config(path, ["train.reduce.rank=4", "train.hsv_reg.weight=0.5"])
    assert cfg["train"]["reduce"] == {"at_epochs": [2], "rank": 4}
    assert cfg["train"]["hsv_reg"] == {"weight": 0.5}
    assert load_config(path, ["train.reduce=null"])["train"]["reduce"] is None
    with pytest.raises(ConfigError, match="not a mapping"):
        load_config(path, ["train.lr.x=1"])
    with pytest.raises(ConfigError, match="unknown key train.reduse"):
        load_config(path, ["train.reduse.rank=1"])


def test_energy_order_and_tail():
    hsv = np.array([[4.0, 2.0, 1.0, 1.0], [8.0, 0.0, 0.0, 0.0]])
    assert energy_order(hsv, 0.75) == 2  # row 0 needs 2 (6/8), row 1 needs 1
    assert energy_order(hsv, 0.5) == 1 and energy_order(hsv, 0.99) == 4
    assert relative_tail(hsv, 2) == pytest.approx(0.25)


def test_reduction_record_model_and_schedule(reference):
    run, model, summary = reference["reduced"]
    recs = records(run, "reduce")
    assert [(r["epoch"], r["orders_before"], r["orders_after"]) for r in recs] == [
        (1, [8, 8], [6, 6]),
        (2, [6, 6], [4, 4]),
    ]
    steps_per_epoch = 6
    assert [r["step"] for r in recs] == [steps_per_epoch, 2 * steps_per_epoch]
    for r in recs:
        assert set(r["val_before"]) == set(r["val_after"]) == {"loss", "acc"}
        assert r["params_after"] < r["params_before"] or r["epoch"] == 1
        for layer in r["layers"]:
            # measured kernel error over L taps <= H2 <= Hinf <= the BT bound
            assert 0 < layer["kernel_error_max"] <= layer["bound_max"]
            assert 0 < layer["rel_kernel_error_mean"] <= layer["rel_kernel_error_max"]
        fresh_names = set(r["optimizer"]["fresh"])
        assert "layers.0.kernel.W" in fresh_names and "layers.0.kernel.log_dt" not in fresh_names
        assert "decoder.weight" not in fresh_names and "layers.1.output_linear.weight" not in (
            fresh_names
        )
    assert summary["orders"] == [4, 4] and len(summary["reductions"]) == 2
    assert model.config["d_state"] == [4, 4] and model.config["lambda_per_channel"]
    # the checkpoint rebuilds the reduced architecture
    ck = load_checkpoint(run / "last.pt")
    assert ck["model_config"]["d_state"] == [4, 4]
    rebuilt = model_from_config(ck["model_config"])
    rebuilt.load_state_dict(ck["model_state"])
    assert same(rebuilt.state_dict(), model.state_dict())
    # best.pt holds the reduced model after the last reduction
    assert load_checkpoint(run / "best.pt")["model_config"]["d_state"] == [4, 4]
    # the learning rates follow the plain run's schedule step by step: continued, not restarted
    lr = [r["lr"] for r in records(run, "train")]
    assert lr == [r["lr"] for r in records(reference["plain"][0], "train")]


def test_reduced_layers_match_s4dss_reduce(tmp_path):
    # the first reduction is exactly s4dss.reduce of the model at that moment
    model = fresh()
    before = {}

    class Snapshot(Callback):
        def on_epoch_train_end(self, loop):
            before["model"] = __import__("copy").deepcopy(loop.model)

    cfg = {**CFG, "epochs": 1, "reduce": {"at_epochs": [1], "rank": 5}}
    train(model, task(), cfg, tmp_path, callbacks=[Snapshot()])
    expected = s4dss.reduce(before["model"], rank=5, L=16)
    for (_, a), (_, b) in zip(s4dss.dss_layers(model), s4dss.dss_layers(expected), strict=True):
        assert same(a.state_dict(), b.state_dict())


class KillAfterReduction(Callback):
    """Dies (like a crash) right after last.pt of the epoch with the given reduction is saved."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_checkpoint(self, loop, path):
        if path.name == "last.pt" and loop.epoch == self.epoch:
            raise SystemExit("killed")


@pytest.mark.parametrize("kill_at", [1, 2])
def test_resume_across_a_reduction_is_bit_identical(tmp_path, reference, kill_at):
    ref_dir, ref_model, ref_summary = reference["reduced"]
    cfg = {**CFG, "reduce": {"at_epochs": [1, 2], "rank": [6, 4]}}
    with pytest.raises(SystemExit):
        train(fresh(), task(), cfg, tmp_path, callbacks=[KillAfterReduction(kill_at)])
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["model_config"]["d_state"] == [[6, 6], [4, 4]][kill_at - 1]
    assert ck["callbacks"]["InTrainingReduction"]["done"] == kill_at
    # a new process: a freshly built full-size model, other RNG state
    torch.manual_seed(77)
    resumed = fresh(seed=5)
    summary = train(resumed, task(), cfg, tmp_path, resume=True)
    assert same(resumed.state_dict(), ref_model.state_dict())
    assert (
        summary["test"] == ref_summary["test"]
        and summary["reductions"] == (ref_summary["reductions"])
    )

    def reproducible(run):
        keep = ("train", "val", "test", "reduce")
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows
                if r["event"] in keep]  # fmt: skip

    assert reproducible(tmp_path) == reproducible(ref_dir)


def test_resume_one_step_after_a_reduction(tmp_path, reference):
    cfg = {**CFG, "reduce": {"at_epochs": [1, 2], "rank": [6, 4]}}
    s = train(fresh(), task(), {**cfg, "interrupt_after_steps": 7}, tmp_path)
    assert s["status"] == "interrupted"
    resumed = fresh(seed=3)
    train(resumed, task(), cfg, tmp_path, resume=True)
    assert same(resumed.state_dict(), reference["reduced"][1].state_dict())


def test_energy_fraction_gate_and_per_layer_orders(tmp_path):
    # energy: per-layer orders from the HSVs at that moment
    model = fresh()
    seen = {}

    class Hsv(Callback):  # runs after the reduction's on_epoch_end: look before validation
        def on_epoch_train_end(self, loop):
            if loop.epoch_number == 1:
                seen["hsv"] = [
                    sysred.hankel_singular_values(s4dss.to_system(lay, 16))
                    for _, lay in s4dss.dss_layers(loop.model)
                ]

    cfg = {**CFG, "epochs": 1, "reduce": {"every": 1, "energy": 0.8, "min_rank": 2}}
    train(model, task(), cfg, tmp_path / "energy", callbacks=[Hsv()])
    expected = [max(2, energy_order(h, 0.8)) for h in seen["hsv"]]
    assert [lay.N for _, lay in s4dss.dss_layers(model)] == expected
    rec = records(tmp_path / "energy", "reduce")[0]
    assert all(layer["tail_max"] <= 0.2 + 1e-9 for layer in rec["layers"])
    # unreduced layers of a reduced model become per-channel (one lambda_per_channel flag)
    assert all(lay.kernel.per_channel for _, lay in s4dss.dss_layers(model))
    rebuilt = model_from_config(model.config)
    rebuilt.load_state_dict(model.state_dict())

    # fraction per interval down to min_rank: 8 -> 4 -> 3 (min_rank) -> no change
    model = fresh()
    cfg = {**CFG, "reduce": {"every": 1, "fraction": 0.5, "min_rank": 3}}
    summary = train(model, task(), cfg, tmp_path / "fraction")
    assert [r["orders_after"] for r in summary["reductions"]] == [[4, 4], [3, 3]]
    assert records(tmp_path / "fraction", "reduce")[-1]["skipped"].startswith("no layer")

    # a gate no layer passes: nothing is reduced, the skip is recorded
    model = fresh()
    cfg = {**CFG, "epochs": 1, "reduce": {"at_epochs": [1], "rank": 1, "max_tail": 1e-6}}
    summary = train(model, task(), cfg, tmp_path / "gate")
    assert summary["orders"] == [8, 8] and summary["reductions"] == []
    assert "max_tail" in records(tmp_path / "gate", "reduce")[0]["skipped"]


def test_reduction_needs_s4model_layers(tmp_path):
    class Bare(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(4, 8)
            self.dss = s4dss.DSS(8, 4)
            self.out = torch.nn.Linear(8, 2)

        def forward(self, x, lengths=None):
            return self.out(self.dss(self.emb(x).transpose(1, 2)).mean(-1))

    cfg = {**CFG, "epochs": 1, "reduce": {"at_epochs": [1], "rank": 2}}
    with pytest.raises(ValueError, match="inside an s4dss.S4Model"):
        train(Bare(), task(), cfg, tmp_path)


# ---------------------------------------------------------------------------- the CLI


CLI_CONFIG = {
    "task": {"name": "majority", "n_train": 96, "n_val": 16, "n_test": 16, "length": 16},
    "model": {"name": "s4", "d_model": 8, "n_layers": 2, "d_state": 8, "dropout": 0.1},
    "train": {"epochs": 2, "batch_size": 8, "lr": 1e-2, "progress": False, "num_threads": 1},
}


def run_cli(args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "s4dss", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _reduced_checkpoint(path: Path) -> bool:
    try:
        return load_checkpoint(path)["model_config"]["d_state"] == [4, 4]
    except Exception:  # not written yet (atomic replace: never half-written)
        return False


def test_cli_sigkill_right_after_a_reduction_resumes_identically(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(CLI_CONFIG))
    over = ["train.reduce.at_epochs=[1]", "train.reduce.rank=4"]
    ref = tmp_path / "ref"
    assert main(["train", "--config", str(cfg), "--run-dir", str(ref), *over]) == 0
    assert yaml.safe_load((ref / "config.yaml").read_text())["train"]["reduce"] == {
        "at_epochs": [1], "rank": 4
    }  # fmt: skip
    run = tmp_path / "run"
    proc = run_cli(["train", "--config", str(cfg), "--run-dir", str(run), *over])
    # kill -9 as soon as the checkpoint written right after the reduction exists
    while not _reduced_checkpoint(run / "last.pt") and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode in (-signal.SIGKILL, 0)  # (rarely finished before the signal)
    print("killed with return code", proc.returncode)
    resumed = run_cli(["train", "--run-dir", str(run), "--resume"])
    out, err = resumed.communicate()
    assert resumed.returncode == 0, err
    a = load_checkpoint(ref / "last.pt")
    b = load_checkpoint(run / "last.pt")
    assert a["model_config"] == b["model_config"] and b["model_config"]["d_state"] == [4, 4]
    assert same(a["model_state"], b["model_state"])
    assert json.loads(out.strip().splitlines()[-1])["reductions"][0]["orders_after"] == [4, 4]


def test_a_refused_reduction_is_skipped_and_retried(tmp_path, monkeypatch):
    real, calls = s4dss.reduce, []

    def refuse_once(*args, **kw):
        calls.append(kw["rank"])
        if len(calls) == 1:
            raise sysred.HSVTieError("tied HSVs at the cut (test)")
        return real(*args, **kw)

    monkeypatch.setattr(s4dss, "reduce", refuse_once)
    summary = train(fresh(), task(), {**CFG, "reduce": {"at_epochs": [1], "rank": 4}}, tmp_path)
    skipped = [r for r in records(tmp_path, "reduce") if "skipped" in r]
    assert skipped[0]["epoch"] == 1 and "tied HSVs" in skipped[0]["skipped"]
    assert [r["epoch"] for r in summary["reductions"]] == [2]  # retried at the next epoch end
    assert summary["orders"] == [4, 4]
