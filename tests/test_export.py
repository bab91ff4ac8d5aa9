"""s4dss.export: the flat real step mode, its ONNX export, and onnxruntime against torch."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from s4dss import S4Model, reduce
from s4dss.export import StepModel, export_onnx

torch.set_num_threads(1)


def _session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("pool", ["mean", "last"])
@pytest.mark.parametrize("vocab", [False, True])
def test_flat_step_matches_convolution_mode(pool, vocab):
    torch.manual_seed(0)
    kw = dict(vocab_size=7) if vocab else dict(d_input=3)
    model = S4Model(d_output=4, d_model=6, n_layers=2, d_state=5, pool=pool, prenorm=vocab, **kw)
    x = torch.randint(0, 7, (2, 30)) if vocab else torch.randn(2, 30, 3)
    step = StepModel(model.eval())
    assert step.state_size == 2 * 6 * 2 * 5 + 6 + 1
    state = step.initial_state(2)
    with torch.no_grad():
        for t in range(30):
            logits, state = step(x[:, t], state)
            assert (logits - model(x[:, : t + 1])).abs().max() < 1e-5
    assert state[:, -1].eq(30).all()  # the token count


def test_onnx_step_runs_in_onnxruntime_like_torch(tmp_path):
    # a reduced model (orders differ per layer), token input, mean pooling
    torch.manual_seed(1)
    model = S4Model(d_output=3, vocab_size=9, d_model=8, n_layers=2, d_state=8).eval()
    model = reduce(model, rank=3, L=50).eval()
    path = export_onnx(model, tmp_path / "step.onnx")
    proto = onnx.load(str(path))
    layout = json.loads({p.key: p.value for p in proto.metadata_props}["s4dss_state"])
    step = StepModel(model)
    assert layout["size"] == step.state_size == 2 * 8 * 6 + 8 + 1
    assert [entry["shape"] for entry in layout["layers"]] == [[8, 6], [8, 6]]
    sess = _session(path)
    assert [i.name for i in sess.get_inputs()] == ["x", "state"]
    x = torch.randint(0, 9, (3, 50))
    with torch.no_grad():
        conv = model(x).numpy()
        for B in (3, 1):  # the batch dimension is dynamic
            xs = x[:B]
            s_torch, s_ort = step.initial_state(B), step.initial_state(B).numpy()
            for t in range(50):
                l_torch, s_torch = step(xs[:, t], s_torch)
                l_ort, s_ort = sess.run(None, {"x": xs[:, t].numpy(), "state": s_ort})
                assert np.abs(l_ort - l_torch.numpy()).max() < 1e-5
                assert np.abs(s_ort - s_torch.numpy()).max() < 1e-5
            assert np.abs(l_ort - conv[:B]).max() < 1e-5


def test_step_model_refuses_what_it_cannot_run():
    with pytest.raises(TypeError, match="S4Model"):
        StepModel(torch.nn.Linear(2, 2))
    model = S4Model(d_output=2, d_input=1, d_model=4, n_layers=1, d_state=2, mode="softmax")
    with pytest.raises(ValueError, match="softmax"):
        StepModel(model)
    StepModel(model, L=20)  # fine with the length its kernel is normalised over
