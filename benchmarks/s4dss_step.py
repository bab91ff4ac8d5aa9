#!/usr/bin/env python
"""Step (recurrent) inference latency per token: eager torch vs the exported ONNX step.

Model: ``S4Model(d_input=1, d_output=10, d_model=256, n_layers=6, d_state=64)`` with
train-like ``W`` (as in ``s4dss_speed.py``), and its ``s4dss.reduce`` to ``r = 16`` and
``r = 4``. For each, per token (one ``step`` call of the whole model: encoder, 6 layers,
pooling, decoder):

* ``eager complex``: :meth:`S4Model.step` with complex states (the step mode before real
  arithmetic existed);
* ``eager real``: the same with real ``[Re s, Im s]`` states (``initial_state(B, real=True)``);
* ``onnxruntime``: the model exported by :func:`s4dss.export.export_onnx` (what
  ``python -m s4dss export`` writes), run by onnxruntime's CPU provider with one intra-op and
  one inter-op thread, full graph optimisation, inputs/outputs as numpy arrays.

One torch thread, BLAS pinned to one thread. Each figure: median over ``--repeats`` runs of
``--tokens`` consecutive steps (after a warm-up run), divided by the number of tokens.
Ratios: the eager complex step of the N = 64 model / the row's time (same run).

Usage::

    python benchmarks/s4dss_step.py           # a few minutes; writes
                                              # benchmarks/results/s4dss_step.txt
    python benchmarks/s4dss_step.py --quick   # small model, writes nothing
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_info import Tee  # noqa: E402
from s4dss_speed import train_like_model  # noqa: E402

import s4dss  # noqa: E402
from s4dss.export import StepModel, export_onnx  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "s4dss_step.txt"


def eager_time(model, x, real: bool, repeats: int) -> float:
    """Seconds per token of ``model.step`` over the tokens of ``x`` ``(B, T, 1)``."""
    B, T = x.shape[:2]

    def run():
        state = model.initial_state(B, real=real)
        with torch.no_grad():
            for t in range(T):
                _, state = model.step(x[:, t], state)

    return _median(run, repeats) / T


def ort_session(path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_time(sess, step: StepModel, x, repeats: int) -> float:
    """Seconds per token of the exported step over the tokens of ``x``."""
    B, T = x.shape[:2]
    xs = [np.ascontiguousarray(x[:, t].numpy()) for t in range(T)]
    state0 = step.initial_state(B).numpy()

    def run():
        state = state0
        for t in range(T):
            _, state = sess.run(None, {"x": xs[t], "state": state})

    return _median(run, repeats) / T


def _median(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def check_equal(model, sess, step, x) -> float:
    """Max |logits| difference of the ONNX step against the convolution mode."""
    B, T = x.shape[:2]
    state = step.initial_state(B).numpy()
    for t in range(T):
        logits, state = sess.run(None, {"x": x[:, t].numpy(), "state": state})
    with torch.no_grad():
        ref = model(x).numpy()
    return float(np.abs(logits - ref).max())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tokens", type=int, default=100, help="tokens per timed run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batches", default="1,64")
    p.add_argument("--ranks", default="16,4")
    args = p.parse_args(argv)
    H, N, layers = 256, 64, 6
    if args.quick:
        H, N, layers, args.tokens, args.repeats = 32, 8, 2, 10, 1
        args.ranks = "4,2"
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass
    import onnxruntime

    log = Tee()
    log(
        f"step latency per token; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"
        ", 1 thread each"
    )
    base = train_like_model(H, N, layers)
    models = {f"N = {N}": base}
    for r in (int(v) for v in args.ranks.split(",")):
        models[f"r = {r}"] = s4dss.reduce(base, rank=r, L=1024).eval()
    batches = [int(v) for v in args.batches.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            model.setup_step()
            path = export_onnx(model, Path(tmp) / "step.onnx")
            step = StepModel(model)
            sess = ort_session(path)
            gap = check_equal(model, sess, step, torch.randn(2, 64, 1))
            for B in batches:
                torch.manual_seed(B)
                x = torch.randn(B, args.tokens, 1)
                t = {
                    "eager complex": eager_time(model, x, False, args.repeats),
                    "eager real": eager_time(model, x, True, args.repeats),
                    "onnxruntime": ort_time(sess, step, x, args.repeats),
                }
                rows.append((name, B, t, gap, step.state_size))
            log(f"  {name} done (ONNX vs convolution mode, 64 tokens: max |dlogits| {gap:.1e})")
    log("")
    log(
        f"Per-token latency in microseconds (median), {layers} layers, H = {H}; ratio = eager "
        f"complex step of the N = {N} model at the same batch / this"
    )
    head = (
        f"{'model':<9}{'B':>4}{'state':>8}{'eager complex':>15}{'eager real':>12}"
        f"{'onnxruntime':>13}{'ratio eager-c':>15}{'ratio eager-r':>15}{'ratio ORT':>11}"
    )
    log(head)
    log("-" * len(head))
    ref = {B: t["eager complex"] for name, B, t, _, _ in rows if name == f"N = {N}"}
    for name, B, t, _, size in rows:
        us = {k: v * 1e6 for k, v in t.items()}
        log(
            f"{name:<9}{B:>4}{size:>8}{us['eager complex']:>15.0f}{us['eager real']:>12.0f}"
            f"{us['onnxruntime']:>13.0f}{ref[B] / t['eager complex']:>15.2f}"
            f"{ref[B] / t['eager real']:>15.2f}{ref[B] / t['onnxruntime']:>11.2f}"
        )
    log("(state: floats per sequence in the flat real state)")
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("\n".join(log.lines) + "\n")
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
