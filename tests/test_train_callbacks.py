"""The training loop's callback API and its epoch numbering (one convention everywhere)."""

from __future__ import annotations

import json
import re

import torch
from torch import nn

from s4dss.callbacks import Callback
from s4dss.checkpoint import load_checkpoint
from s4dss.data import get_task
from s4dss.train import Trainer, train

CFG = dict(
    epochs=3, batch_size=16, lr=1e-2, weight_decay=0.0, progress=False, log_every=1, num_threads=1
)


class Tiny(nn.Module):
    def __init__(self, d=8):
        super().__init__()
        self.emb = nn.Embedding(4, d)
        self.body = nn.Linear(d, d)
        self.out = nn.Linear(d, 2)
        self.config = {"d": d}

    def forward(self, x, lengths=None):
        return self.out(torch.tanh(self.body(self.emb(x).mean(1))))


def task():
    return get_task("majority", n_train=96, n_val=32, n_test=32, length=12)


def model(seed=0):
    torch.manual_seed(seed)
    return Tiny()


def records(run_dir, event=None):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if event is None or r["event"] == event]


class Recorder(Callback):
    """Logs the events it sees, adds a loss term, and keeps a counter across resumes."""

    def __init__(self, weight=0.0):
        self.events, self.weight, self.steps_seen = [], weight, 0

    def on_train_start(self, loop):
        self.events.append(("train_start", loop.epoch_number, loop.global_step))

    def on_epoch_start(self, loop):
        self.events.append(("epoch_start", loop.epoch_number, loop.global_step))

    def extra_loss(self, loop):
        if not self.weight:
            return None
        penalty = sum((p**2).sum() for p in loop.model.body.parameters())
        loop.log_step(penalty=float(penalty.detach()))
        return self.weight * penalty

    def on_step_end(self, loop, out):
        self.steps_seen += 1

    def on_epoch_end(self, loop, val):
        self.events.append(("epoch_end", loop.epoch_number, loop.global_step, val["acc"]))

    def on_checkpoint(self, loop, path):
        self.events.append(("checkpoint", path.name, loop.global_step))

    def on_train_end(self, loop, summary):
        summary["steps_seen"] = self.steps_seen

    def state_dict(self):
        return {"steps_seen": self.steps_seen}

    def load_state_dict(self, state):
        self.steps_seen = state["steps_seen"]


def test_events_arrive_in_order_with_one_based_epochs(tmp_path):
    rec = Recorder()
    summary = train(model(), task(), CFG, tmp_path, callbacks=[rec])
    kinds = [e[0] for e in rec.events]
    assert kinds[0] == "train_start" and kinds.count("epoch_start") == 3
    ends = [e for e in rec.events if e[0] == "epoch_end"]
    assert [(e[1], e[2]) for e in ends] == [(1, 6), (2, 12), (3, 18)]
    # last.pt after each epoch end (and best.pt when improved), after the callback's epoch end
    i = kinds.index("epoch_end")
    assert rec.events[i + 1][:2] == ("checkpoint", "last.pt")
    assert summary["steps_seen"] == 18  # on_train_end may add to the summary
    assert json.loads((tmp_path / "summary.json").read_text())["steps_seen"] == 18


def test_epoch_numbers_agree_in_bar_metrics_and_summary(tmp_path, capsys):
    summary = train(model(), task(), {**CFG, "epochs": 2, "progress": True}, tmp_path)
    bar = capsys.readouterr().err
    assert set(re.findall(r"epoch (\d)/2", bar)) == {"1", "2"}
    train_epochs = [r["epoch"] for r in records(tmp_path, "train")]
    assert train_epochs == [1] * 6 + [2] * 6
    vals = records(tmp_path, "val")
    assert [r["epoch"] for r in vals] == [1, 2]
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["epoch"] == saved["epochs_completed"] == 2 == summary["epoch"]
    best = max(vals, key=lambda r: r["acc"])  # first maximum, as the loop keeps it
    assert saved["best"] == {"val_acc": best["acc"], "epoch": best["epoch"]}
    assert load_checkpoint(tmp_path / "best.pt")["best"]["epoch"] == best["epoch"]


def test_epoch_numbers_of_a_run_stopped_mid_epoch(tmp_path):
    s = train(model(), task(), {**CFG, "interrupt_after_steps": 8}, tmp_path)
    assert s["status"] == "interrupted" and s["step"] == 8
    assert (s["epoch"], s["epochs_completed"]) == (2, 1)  # in epoch 2, one epoch done
    assert records(tmp_path, "interrupted")[0]["epoch"] == 2
    assert records(tmp_path, "train")[-1]["epoch"] == 2
    s = train(model(), task(), CFG, tmp_path, resume=True)
    assert records(tmp_path, "resume")[0]["epoch"] == 2
    assert (s["epoch"], s["epochs_completed"]) == (3, 3)


def test_extra_loss_and_callback_state_survive_resume(tmp_path):
    ref_cb = Recorder(weight=0.05)
    ref = model()
    train(ref, task(), CFG, tmp_path / "ref", callbacks=[ref_cb])
    plain = model()
    train(plain, task(), CFG, tmp_path / "plain")
    assert not torch.equal(ref.body.weight, plain.body.weight)  # the term changed training
    assert "penalty" in records(tmp_path / "ref", "train")[0]
    assert "penalty" not in records(tmp_path / "plain", "train")[0]

    stop = {**CFG, "interrupt_after_steps": 7}
    train(model(), task(), stop, tmp_path / "run", callbacks=[Recorder(weight=0.05)])
    ck = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ck["callbacks"] == {"Recorder": {"steps_seen": 7}}
    resumed_cb = Recorder(weight=0.05)
    resumed = model(seed=5)
    s = train(resumed, task(), CFG, tmp_path / "run", resume=True, callbacks=[resumed_cb])
    assert s["steps_seen"] == 18 == ref_cb.steps_seen  # restored 7, then 11 more
    a, b = ref.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_replace_modules_keeps_optimizer_state_and_schedule(tmp_path):
    loop = Trainer(model(), task(), {**CFG, "warmup_steps": 2}, tmp_path)
    loop.fit()
    lrs = [g["lr"] for g in loop.opt.param_groups]
    steps = loop.sched.last_epoch
    out_state = {k: v.clone() for k, v in loop.opt.state[loop.model.out.weight].items()}
    body_state = loop.opt.state[loop.model.body.weight]
    assert body_state  # AdamW moments exist
    same_values = nn.Linear(8, 8)
    same_values.weight.data.copy_(loop.model.body.weight.detach())
    info = loop.replace_modules({"body": same_values}, fresh=["out.bias"])
    # unchanged tensors and copies with identical values keep their moments
    assert set(info["kept"]) == {"emb.weight", "out.weight", "body.weight"}
    assert set(info["fresh"]) == {"body.bias", "out.bias"}  # new values / asked for
    assert [g["lr"] for g in loop.opt.param_groups] == lrs
    assert loop.sched.last_epoch == steps  # the schedule continues, not restarts
    kept = loop.opt.state[loop.model.out.weight]
    assert all(torch.equal(kept[k], out_state[k]) for k in out_state)
    assert loop.model.body.bias not in loop.opt.state  # fresh: moments start at zero
    assert torch.equal(loop.opt.state[loop.model.body.weight]["exp_avg"], body_state["exp_avg"])
    assert len(loop.opt.param_groups[0]["params"]) == 5
