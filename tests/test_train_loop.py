"""The training loop with a small stand-in model: learning, determinism, exact resume,
checkpoint validation, metrics and config checks."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from s4dss.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from s4dss.data import get_task
from s4dss.train import TrainConfig, evaluate, train


class StandIn(nn.Module):
    """Embedding -> dropout -> masked mean -> linear: enough to solve the majority task."""

    def __init__(self, vocab_size=4, d=16, n_classes=2, dropout=0.2):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, d)
        self.drop = nn.Dropout(dropout)
        self.hidden = nn.Linear(d, d)
        self.out = nn.Linear(d, n_classes)
        self.config = {"vocab_size": vocab_size, "d": d, "n_classes": n_classes}

    def forward(self, x, lengths=None):
        h = self.drop(self.emb(x))
        mask = (torch.arange(x.shape[1])[None] < lengths[:, None]).float()
        h = (h * mask[..., None]).sum(1) / lengths[:, None]
        return self.out(torch.tanh(self.hidden(h)))


def task(**kw):
    return get_task("majority", **{"n_train": 96, "n_val": 32, "n_test": 32, "length": 12, **kw})


CFG = dict(
    epochs=3, batch_size=16, lr=1e-2, weight_decay=0.0, progress=False, log_every=1, num_threads=1
)


def make_model(seed=0):
    torch.manual_seed(seed)
    return StandIn()


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_learns_better_than_chance(tmp_path):
    t = get_task("majority", n_train=512, n_val=128, n_test=128, length=16)
    model = make_model()
    before = evaluate(model, t.test, t.collate)
    summary = train(model, t, {**CFG, "epochs": 6}, tmp_path)
    assert summary["status"] == "finished"
    assert summary["test"]["acc"] > 0.8 > before["acc"] - 0.2
    assert summary["test"]["n"] == 128
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["step"] == 6 * 32
    assert saved["test_at_best_val"]["n"] == 128 and saved["test_at_best_val"]["acc"] > 0.8


def test_deterministic_given_seed(tmp_path):
    runs = []
    for i, seed in enumerate((0, 0, 1)):
        model = make_model(seed)
        train(model, task(), {**CFG, "seed": seed}, tmp_path / str(i))
        runs.append(weights(model))
    assert same(runs[0], runs[1])
    assert not same(runs[0], runs[2])


@pytest.mark.parametrize("stop_after", [1, 6, 4])  # mid-epoch, end of epoch 1, mid-epoch
def test_interrupt_and_resume_is_bit_identical(tmp_path, stop_after):
    ref = make_model()
    train(ref, task(), CFG, tmp_path / "ref")
    model = make_model()
    s = train(model, task(), {**CFG, "interrupt_after_steps": stop_after}, tmp_path / "run")
    assert s["status"] == "interrupted" and s["step"] == stop_after
    ck = load_checkpoint(tmp_path / "run" / "last.pt", kind="train")
    assert ck["position"]["global_step"] == stop_after
    # a fresh process would start from a freshly initialised model with other RNG states
    torch.manual_seed(1234)
    resumed = make_model(seed=99)
    s = train(resumed, task(), CFG, tmp_path / "run", resume=True)
    assert s["status"] == "finished" and s["step"] == 18
    assert same(weights(ref), weights(resumed))

    # the metrics log is the uninterrupted one plus the interruption/resume markers
    def records(path):
        return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]

    def reproducible(rows):
        keep = ("train", "val", "test")
        return [
            {k: v for k, v in r.items() if not k.endswith("_seconds")}
            for r in rows
            if r["event"] in keep
        ]

    ref_rec = reproducible(records(tmp_path / "ref"))
    run_rec = reproducible(records(tmp_path / "run"))
    assert any("train_seconds" in r for r in records(tmp_path / "ref"))
    assert ref_rec == run_rec


def test_resume_twice_and_plateau_schedule(tmp_path):
    cfg = {**CFG, "schedule": "plateau", "plateau_patience": 0}
    ref = make_model()
    train(ref, task(), cfg, tmp_path / "ref")
    m = make_model()
    train(m, task(), {**cfg, "interrupt_after_steps": 5}, tmp_path / "run")
    train(make_model(), task(), {**cfg, "interrupt_after_steps": 5}, tmp_path / "run", resume=True)
    final = make_model(3)
    train(final, task(), cfg, tmp_path / "run", resume=True)
    assert same(weights(ref), weights(final))


def test_resume_refuses_changed_config(tmp_path):
    train(make_model(), task(), {**CFG, "interrupt_after_steps": 2}, tmp_path)
    with pytest.raises(ValueError, match=r"train\.lr"):
        train(make_model(), task(), {**CFG, "lr": 0.5}, tmp_path, resume=True)


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(make_model(), task(), CFG, tmp_path, resume=True)


def test_truncated_and_wrong_checkpoints_are_refused(tmp_path):
    train(make_model(), task(), {**CFG, "epochs": 1}, tmp_path)
    good = (tmp_path / "last.pt").read_bytes()
    bad = tmp_path / "trunc.pt"
    bad.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(bad)
    bad.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(bad)
    torch.save({"model": torch.zeros(3)}, bad)
    with pytest.raises(CheckpointError, match="not an s4dss checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="expected 'reduced'"):
        load_checkpoint(tmp_path / "last.pt", kind="reduced")
    # a checkpoint of another architecture: the mismatch is named
    other = StandIn(d=8)
    with pytest.raises(CheckpointError, match=r"shape mismatches.*emb\.weight"):
        train(other, task(), {**CFG, "epochs": 1}, tmp_path, resume=True)


def test_atomic_save_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "x.pt"
    payload = {"model_config": {}, "model_state": {}, "config": {}, "reduction": {"rank": 1}}
    save_checkpoint(path, payload, kind="reduced")
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {**payload, "reduction": {"rank": 2}}, kind="reduced")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]  # no temp file left behind


def test_max_steps_and_bad_config(tmp_path):
    s = train(make_model(), task(), {**CFG, "max_steps": 4}, tmp_path)
    assert s["status"] == "finished" and s["step"] == 4
    assert load_checkpoint(tmp_path / "last.pt")["position"]["step_in_epoch"] == 4
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear")


def test_custom_param_groups_are_used(tmp_path):
    seen = {}

    def groups(model, lr, wd):
        seen["args"] = (lr, wd)
        return [
            {"params": list(model.emb.parameters()), "lr": 0.0, "weight_decay": 0.0},
            {"params": [p for n, p in model.named_parameters() if not n.startswith("emb")]},
        ]

    model = make_model()
    emb = model.emb.weight.detach().clone()
    train(model, task(), {**CFG, "epochs": 1}, tmp_path, param_groups=groups)
    assert seen["args"] == (CFG["lr"], CFG["weight_decay"])
    assert torch.equal(model.emb.weight, emb)  # lr 0 group untouched
