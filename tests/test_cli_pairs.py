"""AAN-style pair task end to end: train a two-tower model, evaluate it, reduce it."""

from __future__ import annotations

import json

import numpy as np
import torch
import yaml

from s4dss.checkpoint import load_checkpoint
from s4dss.cli import main
from s4dss.data import get_task
from s4dss.train import PairClassifier, build_model, model_from_config


def write_aan(folder, n, seed):
    """new_aan_pairs TSVs; label 1 when both texts start with the same letter (learnable)."""
    rng = np.random.default_rng(seed)
    for name in ("train", "eval", "test"):
        lines = []
        for i in range(n):
            a, b = rng.choice(list("abcd"), size=2)
            t1 = a + "".join(rng.choice(list("xyz "), size=int(rng.integers(0, 12))))
            t2 = b + "".join(rng.choice(list("xyz "), size=int(rng.integers(0, 12))))
            lines.append(f"{float(a == b)}\tdoc{i}a\tdoc{i}b\t{t1}\t{t2}")
        (folder / f"new_aan_pairs.{name}.tsv").write_text("\n".join(lines) + "\n")


def test_pair_model_shapes_and_rebuild(tmp_path):
    write_aan(tmp_path, 6, 0)
    task = get_task("aan", data_dir=tmp_path, max_length=8)
    torch.manual_seed(0)
    model = build_model({"name": "s4", "d_model": 8, "n_layers": 1, "d_state": 4}, task)
    assert isinstance(model, PairClassifier)
    x, y, lengths = task.collate([task.train[i] for i in range(4)])
    out = model(x, lengths)
    assert out.shape == (4, 2)
    clone = model_from_config(model.config)
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone(x, lengths), out)
    # the second document matters
    x2 = x.clone()
    x2[:, 1] = x[:, 0]
    assert not torch.allclose(model(x2, lengths), out)


def test_pair_task_train_evaluate_reduce(tmp_path, capsys):
    data = tmp_path / "aan"
    data.mkdir()
    write_aan(data, 24, 1)
    cfg = {
        "task": {"name": "aan", "data_dir": str(data), "max_length": 16},
        "model": {"name": "s4", "d_model": 8, "n_layers": 1, "d_state": 4},
        "train": {"epochs": 2, "batch_size": 8, "progress": False, "num_threads": 1},
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "cfg.yaml"), "--run-dir", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run / "last.pt")]) == 0
    assert json.loads(capsys.readouterr().out.strip())["n"] == 24
    out = tmp_path / "r2.pt"
    assert main(["reduce", str(run / "last.pt"), "--rank", "2", "--out", str(out)]) == 0
    ck = load_checkpoint(out, kind="reduced")
    assert ck["model_config"]["kind"] == "pair" and ck["model_config"]["d_state"] == [2]
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    assert 0 <= json.loads(capsys.readouterr().out.strip())["acc"] <= 1
