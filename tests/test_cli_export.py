"""CLI: the export verb (ONNX step model through onnxruntime), no-verb help, reduce printing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from s4dss.checkpoint import load_checkpoint
from s4dss.cli import main
from s4dss.data import get_task
from s4dss.export import StepModel
from s4dss.train import model_from_config


@pytest.fixture(scope="module")
def trained(tiny_run):
    return tiny_run


def test_reduce_evaluate_prints_accuracies(trained, tmp_path, capsys):
    out = tmp_path / "r3.pt"
    capsys.readouterr()
    assert (
        main(["reduce", str(trained / "best.pt"), "--rank", "3", "--out", str(out), "--evaluate"])
        == 0
    )
    printed = capsys.readouterr().out.splitlines()
    report = json.loads((tmp_path / "r3.pt.json").read_text())
    header = printed.index(f"{'accuracy':<10}{'before':>10}{'after':>10}")
    for line, split in zip(printed[header + 1 : header + 3], ("val", "test"), strict=True):
        name, before, after = line.split()
        assert name == split
        assert float(before) == pytest.approx(report[f"{split}_before"]["acc"], abs=5e-5)
        assert float(after) == pytest.approx(report[f"{split}_after"]["acc"], abs=5e-5)


def test_export_writes_an_onnx_step_model(trained, tmp_path, capsys):
    reduced = tmp_path / "r3.pt"
    assert main(["reduce", str(trained / "best.pt"), "--rank", "3", "--out", str(reduced)]) == 0
    onnx_path = tmp_path / "r3.onnx"
    capsys.readouterr()
    assert main(["export", str(reduced), "--format", "onnx", "--out", str(onnx_path)]) == 0
    assert "new_state (B, 105)" in capsys.readouterr().out  # 2 layers * 8 * 2 * 3 + 8 + 1
    assert not list(tmp_path.glob("*.tmp"))
    ck = load_checkpoint(reduced, kind="reduced")
    model = model_from_config(ck["model_config"])
    model.load_state_dict(ck["model_state"])
    model.eval()
    task_cfg = dict(ck["config"]["task"])
    task = get_task(task_cfg.pop("name"), **task_cfg)
    x, _, _ = task.collate([task.test[i] for i in range(4)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    step = StepModel(model)
    state = np.zeros((4, step.state_size), dtype=np.float32)
    s_torch = step.initial_state(4)
    with torch.no_grad():
        for t in range(x.shape[1]):
            logits, state = sess.run(None, {"x": x[:, t].numpy(), "state": state})
            ref, s_torch = step(x[:, t], s_torch)
            assert np.abs(logits - ref.numpy()).max() < 1e-5
        assert np.abs(logits - model(x).numpy()).max() < 1e-5


def test_export_errors_are_one_line(trained, tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "error:" in capsys.readouterr().err


def test_no_verb_prints_the_help(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m s4dss")
    for verb in ("demo", "train", "evaluate", "reduce", "export"):
        assert verb in out


def test_digits_smoke_config_sets_its_threads():
    cfg = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "configs" / "digits-smoke.yaml").read_text()
    )
    assert cfg["train"]["num_threads"] == 1
