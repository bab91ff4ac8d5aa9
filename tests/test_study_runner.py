"""benchmarks/study: the arm table, the runner's resume, the CSV (tiny in-memory task)."""

from __future__ import annotations

import copy
import csv
import dataclasses
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.study import arms as arms_mod  # noqa: E402
from benchmarks.study import runner  # noqa: E402
from benchmarks.study.arms import Arm, Reduction, build_arms, missing  # noqa: E402
from s4dss import flops  # noqa: E402

TINY = {
    "threads": 1,
    "protocol": dict(
        seeds=[0, 1], ranks=[2], corr_rank=2, pre_epochs=2, main_epochs=1, corr_epochs=[1],
        scratch_budgets=["main", "flops", "wall"], wall_ratio={2: 1.5},
    ),
    "tasks": {
        "majority": {
            "task": dict(name="majority", n_train=64, n_val=32, n_test=32, length=12, seed=0),
            "model": dict(d_model=6, n_layers=1, d_state=4, prenorm=True,
                          kernel_dtype="float32"),
            "train": dict(batch_size=32, lr=1e-2, weight_decay=0.0, schedule="cosine"),
        }
    },
}  # fmt: skip
# the resume tests: one seed is enough (every arm kind, a snapshot, a parent chain)
SMALL = copy.deepcopy(TINY)
SMALL["protocol"]["seeds"] = [0]
SIZES = {"majority": dict(seq_len=12, n_train=64, n_val=32, n_classes=2, vocab_size=4)}


def _rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["arm"]: {k: v for k, v in r.items() if k not in runner.TIME_FIELDS} for r in rows}


# ----------------------------------------------------------------------------- the table


def test_arm_table_is_complete_and_ordered():
    table = build_arms(TINY, SIZES)
    ids = [a.id for a in table]
    assert len(ids) == len(set(ids))
    groups = {(a.group, a.seed) for a in table}
    for s in (0, 1):
        for g in ("pre", "cont", "bt0", "bt", "modal0", "modal", "hippo", "hippo-flops",
                  "hippo-wall", "corr"):  # fmt: skip
            assert (g, s) in groups
    pos = {a.id: i for i, a in enumerate(table)}
    assert all(a.parent is None or pos[a.parent] < pos[a.id] for a in table)
    by = {a.id: a for a in table}
    pre = by["majority/pre/s0"]
    assert pre.epochs == 2 and pre.snapshots == (1,) and pre.r is None
    bt = by["majority/bt-r2/s0"]
    assert bt.parent == pre.id and bt.reduction == Reduction("bt", 2) and bt.epochs == 1
    assert by["majority/corr-e1-r2/s0"].parent_epoch == 1
    assert by["majority/corr-e1-r2/s0"].stage == "pre@1" and bt.stage == "pre@2"
    # budgets: main epochs; equal FLOPs to pre-training at N + main training at r; wall ratio
    assert by["majority/hippo-r2/s0"].epochs == 1
    spec = TINY["tasks"]["majority"]
    ratio = arms_mod.epoch_flops(spec, SIZES["majority"], None) / arms_mod.epoch_flops(
        spec, SIZES["majority"], 2
    )
    assert ratio > 1
    assert by["majority/hippo-flops-r2/s0"].epochs == 1 + -(-2 * ratio // 1)
    assert by["majority/hippo-wall-r2/s0"].epochs == 1 + 3  # ceil(2 * 1.5)
    # the protocol can leave out the arms that continue the full model
    no_cont = copy.deepcopy(TINY)
    no_cont["protocol"]["cont"] = False
    assert {a.group for a in build_arms(no_cont, SIZES)} == {a.group for a in table} - {"cont"}
    # the arm-level FLOP helper is s4dss.flops on the task's model
    cfg = dict(spec["model"], d_output=2, vocab_size=4)
    assert arms_mod.epoch_flops(spec, SIZES["majority"], None) == flops.epoch_flops(
        cfg, 12, 64, 32, 32
    )


def test_issue11_arms_wait_for_their_api(monkeypatch):
    preset = dict(copy.deepcopy(TINY), issue11=True)
    table = build_arms(preset, SIZES)
    groups = {a.group for a in table}
    assert {"intrain", "regpre", "regbt0", "regbt", "budget0", "budget", "shared0", "shared",
            "spa0", "spa", "hippo-shared"} <= groups  # fmt: skip
    why = {a.group: missing(a) for a in table}
    # phase-1 guesses: budget= has landed; the others are wired on the study2 branch
    assert why["budget"] is None and "shared_poles=" in why["shared"]
    assert why["bt"] is None and why["hippo-shared"] is None
    # once the API exists, the same entries run unchanged
    import importlib

    red = importlib.import_module("s4dss.reduce")  # s4dss.reduce is also the function
    train_mod = importlib.import_module("s4dss.train")

    def fake_reduce(model, rank=None, budget=None, shared_poles=False, method="bt", L=1024):
        raise AssertionError("not called")

    monkeypatch.setattr(red, "reduce", fake_reduce)
    monkeypatch.setattr(red, "METHODS", ("bt", "modal", "spa"))
    Fake = dataclasses.make_dataclass(
        "TrainConfig", [("hsv_reg", float, 0.0), ("hsv_reg_rank", int, 0), ("reduce_at", tuple, ())]
    )
    monkeypatch.setattr(train_mod, "TrainConfig", Fake)
    assert all(missing(a) is None for a in table)


def test_plan_skips_children_of_unrunnable_arms(tmp_path):
    preset = dict(copy.deepcopy(TINY), issue11=True)
    arms, skipped = runner.plan(preset, tmp_path)
    regbt = next(a for a in arms if a.group == "regbt")
    assert regbt.id in skipped  # its own requirement, and its parent's
    assert not any(a.id in skipped for a in arms if a.group in ("pre", "bt", "hippo"))


# ----------------------------------------------------------------------------- the CSV


def test_results_csv_drops_a_torn_line(tmp_path):
    f = runner.ResultsCSV(tmp_path / "results.csv")
    f.append({"arm": "a", "status": "ok", "test_acc": 0.5})
    f.append({"arm": "b", "status": "ok", "test_acc": 0.7})
    with open(f.path, "a") as fh:
        fh.write("c,majority,bt,0")  # a crash in the middle of a line
    assert [r["arm"] for r in f.read()] == ["a", "b"]
    f.append({"arm": "a", "status": "ok", "test_acc": 0.6})  # glued to the torn line...
    rows = f.read()
    assert "c" not in [r["arm"] for r in rows]  # ...which then has too many fields
    f.repair()
    text = f.path.read_text()
    assert text.count("\n") == len(f.read()) + 1 and "c,majority" not in text


# ----------------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    executed = runner.run(SMALL, out, progress=False)
    return out, executed


def test_straight_run_outputs(reference):
    out, executed = reference
    rows = _rows(out / "results.csv")
    assert set(rows) == set(executed) == {a.id for a in build_arms(SMALL, SIZES)}
    assert all(r["status"] == "ok" for r in rows.values()), rows
    pre, bt = rows["majority/pre/s0"], rows["majority/bt-r2/s0"]
    # compute accounting: a child is charged its parent; a snapshot child part of it
    assert float(bt["total_flops"]) == pytest.approx(
        float(pre["total_flops"]) + float(bt["train_flops"])
    )
    corr = rows["majority/corr-e1-r2/s0"]
    assert float(corr["total_flops"]) == pytest.approx(
        float(pre["epoch_flops"]) + float(corr["train_flops"])
    )
    assert int(bt["state_size"]) == 6 * 2 and int(pre["state_size"]) == 6 * 4
    assert float(bt["step_flops"]) == flops.step_flops(
        dict(SMALL["tasks"]["majority"]["model"], d_state=[2], vocab_size=4, d_output=2)
    )
    # a reduced arm's source is the parent's best checkpoint: its accuracy is the parent's
    assert float(rows["majority/bt0-r2/s0"]["source_test_acc"]) == float(pre["test_acc"])
    assert float(rows["majority/bt0-r2/s0"]["kernel_rel_err"]) >= 0
    assert (out / "arms.csv").is_file() and (out / "preset.json").is_file()
    assert (out / "runs" / "majority" / "pre" / "s0" / "snapshots" / "epoch1.pt").is_file()


def test_resume_after_one_arm_gives_the_same_csv(reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "study"
    first = runner.run(SMALL, out, progress=False, max_arms=1)
    assert first == ["majority/pre/s0"]
    with pytest.raises(SystemExit, match="--resume"):
        runner.run(SMALL, out, progress=False)
    rest = runner.run(SMALL, out, progress=False, resume=True)
    assert "majority/pre/s0" not in rest
    assert _rows(out / "results.csv") == _rows(ref / "results.csv")


def test_resume_inside_an_arm_gives_the_same_csv(reference, tmp_path):
    ref, _ = reference
    out = tmp_path / "study"
    # pre/s0 stops after 1 step (before its snapshot at step 2), hippo after 1 of its 2 steps
    with pytest.raises(KeyboardInterrupt):
        runner.run(SMALL, out, progress=False, interrupt={"majority/pre/s0": 1})
    assert not (out / "results.csv").is_file() or not _rows(out / "results.csv")
    with pytest.raises(KeyboardInterrupt):
        runner.run(SMALL, out, progress=False, resume=True, interrupt={"majority/hippo-r2/s0": 1})
    runner.run(SMALL, out, progress=False, resume=True)
    assert _rows(out / "results.csv") == _rows(ref / "results.csv")


def test_resume_refuses_another_preset(reference, tmp_path):
    out = tmp_path / "study"
    runner.run(SMALL, out, progress=False, max_arms=1)
    other = copy.deepcopy(SMALL)
    other["protocol"]["main_epochs"] = 2
    with pytest.raises(SystemExit, match="another preset"):
        runner.run(other, out, progress=False, resume=True)


def test_failed_reduction_is_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    import sysred

    def refuse(*a, **k):
        raise sysred.SysredError("refused for the test")

    monkeypatch.setattr(runner, "reduce_model", refuse)
    preset = copy.deepcopy(SMALL)
    preset["protocol"].update(seeds=[0], corr_epochs=[], scratch_budgets=["main"])
    runner.run(preset, tmp_path, progress=False)
    rows = _rows(tmp_path / "results.csv")
    assert rows["majority/bt-r2/s0"]["status"] == "failed"
    assert "refused for the test" in rows["majority/bt-r2/s0"]["note"]
    assert rows["majority/hippo-r2/s0"]["status"] == "ok"


def test_arm_records_are_frozen():
    a = Arm("t/x/s0", "t", "x", 0, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.epochs = 2


@pytest.mark.parametrize("stop", [1, 2, 3])
def test_snapshot_survives_an_interrupt_before_at_or_after_it(tmp_path, stop):
    """One pre-training run with a snapshot after epoch 1 (2 steps per epoch), stopped after
    ``stop`` steps and resumed: snapshot and final weights equal an uninterrupted run's."""
    import torch

    from benchmarks.study import common
    from s4dss.data import get_task
    from s4dss.train import TrainConfig, seed_everything

    task = get_task("majority", n_train=64, n_val=16, n_test=16, length=8)
    spec = dict(d_model=4, n_layers=1, d_state=3, kernel_dtype="float32")
    cfg = TrainConfig(epochs=2, batch_size=32, lr=1e-2, progress=False)

    def fresh():
        seed_everything(0)
        return common.build_model(spec, task)

    runner._train(fresh(), task, cfg, tmp_path / "ref", (1,), None)
    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        runner._train(fresh(), task, cfg, out, (1,), stop)
    assert (out / "snapshots" / "epoch1.pt").is_file() == (stop >= 2)
    runner._train(fresh(), task, cfg, out, (1,), None)
    for name in ("snapshots/epoch1.pt", "last.pt"):
        a = common.load_checkpoint_model(tmp_path / "ref" / name).state_dict()
        b = common.load_checkpoint_model(out / name).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
    # a run already past a snapshot it lacks cannot make it: a clear error, not a wrong file
    (out / "snapshots" / "epoch1.pt").unlink()
    with pytest.raises(RuntimeError, match="past the snapshot"):
        runner._train(fresh(), task, cfg, out, (1,), None)
