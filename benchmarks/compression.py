"""Compression that pays? Budgets, shared poles and singular perturbation on one trained model.

Trains (once; the checkpoints are reused) a 2-layer S4/DSS model (H = 64, N = 64, shared
poles, the S4Model default) on the built-in ``digits`` task with one torch thread, then reduces
it without retraining and reports, per arm, the kernel errors (relative L2 over the L = 64 taps
of each layer's map ``K + D delta``, over all channels), the test accuracy and the parameters:

1. uniform ranks vs a global state budget at the same total (N/4 and N/8 states per layer on
   average), both normalisations of :mod:`s4dss.budget`; also on a 4-layer model;
2. shared-pole vs per-channel reduction at r = N/2, N/4, N/8;
3. singular perturbation vs balanced truncation at the same r.

Plus a sweep over r (PNG): test accuracy and kernel error against the parameter count.

Usage::

    python benchmarks/compression.py                 # trains into runs/compression-digits* once
    python benchmarks/compression.py --retrain       # train again
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_info import Tee, sysred_version  # noqa: E402

import s4dss  # noqa: E402
from s4dss.budget import NORMALISATIONS, layer_score  # noqa: E402
from s4dss.checkpoint import load_checkpoint, load_model_state  # noqa: E402
from s4dss.cli import main as cli  # noqa: E402
from s4dss.data import get_task  # noqa: E402
from s4dss.plans import make_plan  # noqa: E402
from s4dss.reduce import dss_layers  # noqa: E402
from s4dss.train import evaluate, model_from_config  # noqa: E402

RUNS = HERE.parent / "runs"
CONFIG = {
    "task": {"name": "digits"},
    "model": {"name": "s4", "d_model": 64, "n_layers": 2, "d_state": 64, "prenorm": True},
    "train": {
        "epochs": 10,
        "batch_size": 32,
        "lr": 1e-2,
        "weight_decay": 0.01,
        "schedule": "cosine",
        "seed": 0,
        "num_threads": 1,
        "progress": False,
    },
}
#: the budget comparison also on a deeper model, whose layers differ more than two do
DEEP = {**CONFIG, "model": {**CONFIG["model"], "n_layers": 4}}


def run_dir(cfg) -> Path:
    layers = cfg["model"]["n_layers"]
    return RUNS / ("compression-digits" if layers == 2 else f"compression-digits-{layers}l")


def trained_model(cfg, retrain: bool):
    """The checkpoint under runs/ (trained here once, then reused)."""
    run = run_dir(cfg)
    best = run / "best.pt"
    if retrain or not best.exists():
        run.mkdir(parents=True, exist_ok=True)
        path = run.parent / f"{run.name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        args = ["train", "--config", str(path), "--run-dir", str(run)]
        if (run / "last.pt").exists() and not retrain:
            args.append("--resume")
        if retrain and (run / "last.pt").exists():
            (run / "last.pt").unlink()
        t0 = time.perf_counter()
        assert cli(args) == 0
        print(f"trained {run.name} in {time.perf_counter() - t0:.0f} s")
    ck = load_checkpoint(best)
    model = model_from_config(ck["model_config"])
    load_model_state(model, ck["model_state"], source=str(best))
    return model.eval()


def layer_errors(report) -> list[float]:
    """Relative L2 error of each layer's map over all channels and taps."""
    return [
        float(np.linalg.norm(r.kernel_error) / np.linalg.norm(r.kernel_norm)) for r in report.layers
    ]


def ssm_params(model) -> int:
    return sum(p.numel() for layer in s4dss.dss_layers(model) for p in layer[1].kernel.parameters())


class Runner:
    def __init__(self, model, task, L):
        self.model, self.task, self.L = model, task, L
        self.cache = {}

    def accuracy(self, model) -> float:
        return evaluate(model, self.task.test, self.task.collate)["acc"]

    def __call__(self, **kw):
        key = tuple(sorted(kw.items()))
        if key not in self.cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", s4dss.ParameterIncreaseWarning)
                t0 = time.perf_counter()
                red = s4dss.reduce(self.model, L=self.L, **kw)
                seconds = time.perf_counter() - t0
            rep = red.reduction_report
            self.cache[key] = {
                "orders": [r.order for r in rep.layers],
                "err": layer_errors(rep),
                "acc": self.accuracy(red),
                "params": rep.params_after,
                "ssm": ssm_params(red),
                "cond": max(float(np.max(r.cond)) for r in rep.layers),
                "scores": [r.score for r in rep.layers],
                "seconds": seconds,
            }
        return self.cache[key]


def fmt_err(errs) -> str:
    return "/".join(f"{e:.3f}" for e in errs)


def table_budget(run, log, model, L, N, n_layers):
    log("\n## 1. Uniform ranks vs a global state budget (same total states), per-channel BT")
    plans = [make_plan(name, layer, "bt", L, "per-channel") for name, layer in dss_layers(model)]
    rho = {
        norm: [layer_score(p.channel_bounds(), p.gains(), norm) for p in plans]
        for norm in NORMALISATIONS
    }
    for p in plans:
        ratios = np.median(p.hsv[:, [8, 16, 32]] / p.hsv[:, :1], axis=0)
        log(f"{p.name}: median over channels of sigma_9, sigma_17, sigma_33 / sigma_1: "
            f"{', '.join(f'{x:.3f}' for x in ratios)}")  # fmt: skip
    log("rho = each layer's normalised bound at its order (gain: ||b(r)|| / ||g||; total: "
        "||b(r)|| / ||b(0)||, LAST-style)")  # fmt: skip
    log(f"{'total':>6} {'arm':<22}{'orders':>18}{'rel. err (layers)':>26}{'test acc':>10}"
        f"{'rho gain':>24}{'rho total':>22}")  # fmt: skip
    for r in (N // 4, N // 8):
        K = r * n_layers
        rows = [
            ("uniform", dict(rank=r)),
            ("budget, gain (ours)", dict(budget=K)),
            ("budget, total (LAST)", dict(budget=K, normalise="total")),
        ]
        for name, kw in rows:
            res = run(**kw)
            at = {
                norm: "/".join(f"{c[o]:.2f}" for c, o in zip(curves, res["orders"], strict=True))
                for norm, curves in rho.items()
            }
            log(f"{K:>6} {name:<22}{str(res['orders']):>18}{fmt_err(res['err']):>26}"
                f"{res['acc']:>10.3f}{at['gain']:>24}{at['total']:>22}")  # fmt: skip


def table_shared(run, log, N, full_params, full_ssm):
    log("\n## 2. Shared-pole vs per-channel reduction (BT), no retraining")
    log(f"full model: {full_params} parameters ({full_ssm} in the SSM kernels)")
    log(f"{'r':>4} {'poles':<12}{'rel. err (layers)':>20}{'test acc':>10}{'params':>9}"
        f"{'SSM params':>12}{'max cond':>10}")  # fmt: skip
    for r in (N // 2, N // 4, N // 8):
        for poles in ("per-channel", "shared"):
            res = run(rank=r, poles=poles)
            log(f"{r:>4} {poles:<12}{fmt_err(res['err']):>20}{res['acc']:>10.3f}"
                f"{res['params']:>9}{res['ssm']:>12}{res['cond']:>10.3g}")  # fmt: skip


def table_spa(run, log, N):
    log("\n## 3. Singular perturbation vs balanced truncation (same r), no retraining")
    log(f"{'r':>4} {'poles':<12}{'method':<7}{'rel. err (layers)':>20}{'test acc':>10}")
    for r in (N // 2, N // 4, N // 8):
        for poles in ("per-channel", "shared"):
            for method in ("bt", "spa"):
                res = run(rank=r, poles=poles, method=method)
                log(f"{r:>4} {poles:<12}{method:<7}{fmt_err(res['err']):>20}{res['acc']:>10.3f}")


def sweep_plot(run, N, full_acc, full_params, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranks = [r for r in (2, 4, 8, 16, 24, 32, 48) if r < N]
    arms = {
        "BT per-channel": dict(poles="per-channel", method="bt"),
        "SPA per-channel": dict(poles="per-channel", method="spa"),
        "BT shared poles": dict(poles="shared", method="bt"),
        "SPA shared poles": dict(poles="shared", method="spa"),
    }
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, kw in arms.items():
        res = [run(rank=r, **kw) for r in ranks]
        params = [x["params"] for x in res]
        ax1.plot(params, [x["acc"] for x in res], "o-", label=name)
        ax2.plot(params, [np.mean(x["err"]) for x in res], "o-", label=name)
    budget = [run(budget=2 * r) for r in ranks]
    ax1.plot([x["params"] for x in budget], [x["acc"] for x in budget], "k^--",
             label="BT per-channel, budget (gain)")  # fmt: skip
    ax2.plot([x["params"] for x in budget], [np.mean(x["err"]) for x in budget], "k^--")
    ax1.axhline(full_acc, color="gray", ls=":", label="full model")
    for ax in (ax1, ax2):
        ax.axvline(full_params, color="gray", ls=":")
        ax.set_xlabel("parameters of the reduced model")
        ax.set_xscale("log")
    ax1.set_ylabel("test accuracy, no retraining")
    ax2.set_ylabel("kernel error (relative L2, mean of layers)")
    ax2.set_yscale("log")
    ax1.legend(fontsize=8)
    fig.suptitle(f"digits, 2 layers, H = 64, N = {N}: r in {ranks}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def describe(log, cfg, model, run):
    log(f"\nmodel: digits, {cfg['model']}, trained {cfg['train']['epochs']} epochs "
        f"(checkpoint {run_dir(cfg).relative_to(HERE.parent)}/best.pt)")  # fmt: skip
    acc = run.accuracy(model)
    params = sum(p.numel() for p in model.parameters())
    log(f"full model: test accuracy {acc:.3f}, {params} parameters")
    return acc, params


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "compression.txt")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, deep = trained_model(CONFIG, args.retrain), trained_model(DEEP, args.retrain)
    task_cfg = dict(CONFIG["task"])
    task = get_task(task_cfg.pop("name"), **task_cfg)
    L = task.seq_len
    N = model.config["d_state"]
    run, run_deep = Runner(model, task, L), Runner(deep, task, L)
    log = Tee()
    log("# Compression without retraining: budgets, shared poles, singular perturbation")
    log(sysred_version())
    log(f"kernel errors: relative L2 of each layer's map K + D delta over L = {L} taps and "
        "all channels, one number per layer ('layer 0/layer 1/...'); test accuracy without "
        "retraining")  # fmt: skip
    t0 = time.perf_counter()
    full_acc, full_params = describe(log, CONFIG, model, run)
    table_budget(run, log, model, L, N, CONFIG["model"]["n_layers"])
    table_shared(run, log, N, full_params, ssm_params(model))
    table_spa(run, log, N)
    describe(log, DEEP, deep, run_deep)
    table_budget(run_deep, log, deep, L, N, DEEP["model"]["n_layers"])
    png = args.out.with_suffix(".png")
    sweep_plot(run, N, full_acc, full_params, png)
    n = len(run.cache) + len(run_deep.cache)
    log(f"\n(sweep plot of the 2-layer model: {png.relative_to(HERE.parent)}; {n} reductions "
        f"and evaluations in {time.perf_counter() - t0:.0f} s)")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(log.lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
