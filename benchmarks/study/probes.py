"""Probes that size the study: seconds per epoch, and learning curves (where is the knee?).

::

    python -m benchmarks.study.probes timing --out benchmarks/results/study-probes
    python -m benchmarks.study.probes curves --out benchmarks/results/study-probes \\
        [--tasks digits256,osuleaf] [--epochs 40] [--resume]
    python -m benchmarks.study.probes budget --preset cpu --out benchmarks/results/study-probes

``timing``: for each task (and the Pathfinder sizes 16, 24, 32), the seconds of a training
step of the full model (N) and of the r-state models, measured in the same process one after
the other (only ratios within one run mean anything on a shared machine), the seconds per
epoch that follow, and the analytic FLOPs per epoch (:mod:`s4dss.flops`). Writes
``timing.csv`` and ``timing.md``.

``curves``: per task, three learning curves at a constant learning rate (after warm-up), so
that the curve shows where training stops paying rather than where a schedule ends:
``N`` (the full model from Skew-HiPPO), ``r`` (the r-state model from Skew-HiPPO,
per-channel poles) and ``bt`` (the final ``N`` model reduced by BT to r, then trained).
Validation accuracy per epoch goes to ``curves.csv`` and ``curves.png``; ``curves.md`` gives
the knee of each curve: the first epoch at which the 3-epoch moving average of the
validation accuracy has made 90 % of its largest gain over the run.

``budget``: the predicted run time of a preset's arm table from ``timing.csv``
(``budget-<preset>.md``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.study import common
from benchmarks.study.presets import TASKS, task_spec
from s4dss import flops
from s4dss.reduce import reduce as reduce_model
from s4dss.train import TrainConfig, seed_everything, train

CURVE_FIELDS = ["task", "curve", "epoch", "val_acc", "val_loss", "train_seconds", "flops"]


def knee(acc: list[float], fraction: float = 0.9, window: int = 3) -> int | None:
    """First epoch (1-based) where the moving average has made ``fraction`` of its max gain.

    Parameters
    ----------
    acc : validation accuracies of epochs 1, 2, ...
    fraction : share of the largest gain (over the first smoothed value) that counts as done.
    window : moving-average width (the first ``window - 1`` epochs average what exists).

    Returns
    -------
    int or None
        ``None`` for an empty curve; epoch 1 for a curve that never improves.
    """
    a = np.asarray(acc, dtype=float)
    if not len(a):
        return None
    smooth = np.array([a[max(0, i - window + 1) : i + 1].mean() for i in range(len(a))])
    gain = smooth - smooth[0]
    if gain.max() <= 0:
        return 1
    return int(np.argmax(gain >= fraction * gain.max())) + 1


# ----------------------------------------------------------------------------- timing


def _time_steps(model, task, batch_size: int, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    items = [task.train[i % len(task.train)] for i in range(batch_size)]
    x, y, _ = task.collate(items)
    model.train()
    for i in range(steps + 1):
        if i == 1:  # the first step warms up allocations
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


def timing(out: Path, tasks: list[str], ranks: list[int], steps: int) -> list[dict]:
    """Seconds per step/epoch at N and at each r, and FLOPs per epoch; ``timing.csv/.md``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    specs = {t: task_spec(t) for t in tasks}
    if "pathfinder16" in tasks:  # the candidate sizes, for the choice of the largest that fits
        for size, length in ((24, 14), (32, 20)):
            specs[f"pathfinder{size}"] = task_spec(
                "pathfinder16",
                task=dict(data_dir=f"pathfinder{size}", size=size, path_length=length, n_paths=3),
            )
    for name, spec in specs.items():
        task = common.load_task(spec["task"], out / "data")
        bs = spec["train"]["batch_size"]
        n_steps = -(-len(task.train) // bs)
        for r in [None, *ranks]:
            seed_everything(0)
            model = common.build_model(spec["model"], task, d_state=r)
            sec = _time_steps(model, task, bs, steps)
            f = flops.epoch_flops(model, task.seq_len, len(task.train), bs, len(task.val))
            rows.append(
                dict(
                    task=name,
                    L=task.seq_len,
                    n_train=len(task.train),
                    state=model.config["d_state"] if r is None else r,
                    per_channel=r is not None,
                    step_seconds=round(sec, 4),
                    epoch_seconds=round(sec * n_steps, 2),
                    epoch_gflops=round(f / 1e9, 3),
                )
            )
            print(rows[-1], flush=True)
    for row in rows:
        full = next(x for x in rows if x["task"] == row["task"] and not x["per_channel"])
        row["wall_ratio_N_over_this"] = round(full["step_seconds"] / row["step_seconds"], 2)
        row["flops_ratio_N_over_this"] = round(full["epoch_gflops"] / row["epoch_gflops"], 3)
    common.write_csv(out / "timing.csv", rows, list(rows[0]))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    md = [
        "# Seconds per epoch (training steps only) and FLOPs per epoch",
        "",
        f"`python -m benchmarks.study.probes timing --out {out}`; {steps} timed steps per row "
        "after one warm-up step, one torch thread, measured one after the other in one process "
        "on the shared 2-core machine (compare ratios within a task, not absolute times). "
        f"Load average at the end of the measurement: {load} (2 cores).",
        "",
        "| task | L | train items | state | s/step | s/epoch | GFLOP/epoch | wall N/this "
        "| FLOPs N/this |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        st = f"r={r['state']} (per-channel)" if r["per_channel"] else f"N={r['state']}"
        md.append(
            f"| {r['task']} | {r['L']} | {r['n_train']} | {st} | {r['step_seconds']} | "
            f"{r['epoch_seconds']} | {r['epoch_gflops']} | {r['wall_ratio_N_over_this']} | "
            f"{r['flops_ratio_N_over_this']} |"
        )
    common.atomic_write(out / "timing.md", "\n".join(md) + "\n")
    return rows


# ----------------------------------------------------------------------------- curves


def _curve_rows(task_name: str, curve: str, run_dir: Path, epoch_flops: float) -> list[dict]:
    rows = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("event") == "val":
            rows.append(
                dict(
                    task=task_name,
                    curve=curve,
                    epoch=rec["epoch"] + 1,
                    val_acc=rec["acc"],
                    val_loss=rec["loss"],
                    train_seconds=round(rec["train_seconds"], 2),
                    flops=epoch_flops * (rec["epoch"] + 1),
                )
            )
    return rows


def curves(out: Path, tasks: list[str], r: int, epochs: dict[str, int], resume: bool) -> None:
    """Constant-lr learning curves N / r / BT->r per task; ``curves.csv``, ``.png``, ``.md``."""
    out.mkdir(parents=True, exist_ok=True)
    for name in tasks:
        spec = task_spec(name)
        task = common.load_task(spec["task"], out / "data")
        E = epochs[name]
        cfg = dict(spec["train"], schedule="constant", epochs=E, seed=0, progress=False)
        rows = []
        runs = {"N": None, "r": r, "bt": r}
        for curve, state in runs.items():
            run_dir = out / "runs" / name / curve
            if curve == "bt":
                src = common.load_checkpoint_model(out / "runs" / name / "N" / "last.pt")
                seed_everything(0)
                model = reduce_model(src, rank=r, L=task.seq_len, strict=False)
            else:
                seed_everything(0)
                model = common.build_model(spec["model"], task, d_state=state)
            done = (run_dir / "summary.json").is_file()
            if not done:
                t0 = time.perf_counter()
                summary = train(
                    model,
                    task,
                    TrainConfig(**cfg),
                    run_dir,
                    resume=resume and (run_dir / "last.pt").is_file(),
                )
                if summary["status"] != "finished":
                    raise KeyboardInterrupt(f"{run_dir} interrupted; continue with --resume")
                print(f"[{name}] {curve}: {time.perf_counter() - t0:.0f} s", flush=True)
            f = flops.epoch_flops(
                model, task.seq_len, len(task.train), cfg["batch_size"], len(task.val)
            )
            rows += _curve_rows(name, curve, run_dir, f)
        common.write_csv(out / f"curves-{name}.csv", rows, CURVE_FIELDS)
    write_curve_report(out)


def write_curve_report(out: Path) -> None:
    """Merge ``curves-*.csv`` into ``curves.csv``; plot; knee table in ``curves.md``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for path in sorted(out.glob("curves-*.csv")):
        with open(path, newline="") as f:
            rows += list(csv.DictReader(f))
    if not rows:
        return
    common.write_csv(out / "curves.csv", rows, CURVE_FIELDS)
    names = sorted({r["task"] for r in rows}, key=list(TASKS).index)
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    md = [
        "# Learning curves (constant learning rate after warm-up, seed 0)",
        "",
        "Knee: first epoch where the 3-epoch moving average of the validation accuracy has "
        "made 90 % of its largest gain over the run (`probes.knee`).",
        "",
        "| task | curve | epochs | knee | val acc at knee % | best val acc % (epoch) |",
        "|---|---|---|---|---|---|",
    ]
    for ax, name in zip(axes[0], names, strict=True):
        for i, curve in enumerate(("N", "r", "bt")):
            pts = [r for r in rows if r["task"] == name and r["curve"] == curve]
            if not pts:
                continue
            ep = [int(p["epoch"]) for p in pts]
            acc = [float(p["val_acc"]) for p in pts]
            k = knee(acc)
            label = {"N": "full N", "r": "Skew-HiPPO at r", "bt": "BT(final N) -> r"}[curve]
            ax.plot(ep, [100 * a for a in acc], color=f"C{i}", label=label)
            ax.axvline(k, color=f"C{i}", ls=":", lw=1)
            best = int(np.argmax(acc))
            md.append(
                f"| {name} | {label} | {len(acc)} | {k} | {100 * acc[k - 1]:.1f} | "
                f"{100 * acc[best]:.1f} ({ep[best]}) |"
            )
        ax.set(title=name, xlabel="epoch", ylabel="val acc (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)
    common.atomic_write(out / "curves.md", "\n".join(md) + "\n")


# ----------------------------------------------------------------------------- budget


def budget(out: Path, preset_name: str, jobs: int = 2) -> list[dict]:
    """Predicted run time of a preset from ``timing.csv``: ``budget-<preset>.md``.

    Every arm costs its epochs times the measured seconds per epoch of its model (the full
    model at N, or the r-state model; validation is not included, it is a few % of an epoch),
    so the sum is the serial time, and ``/ jobs`` the best case with ``jobs`` workers.
    """
    from benchmarks.study.presets import PRESETS
    from benchmarks.study.runner import plan

    with open(out / "timing.csv", newline="") as f:
        timing = list(csv.DictReader(f))
    preset = PRESETS[preset_name]
    arms, skipped = plan(preset, out)
    rows = []
    for name in preset["tasks"]:
        sec = {
            (None if t["per_channel"] == "False" else int(t["state"])): float(t["epoch_seconds"])
            for t in timing
            if t["task"] == name
        }
        if not sec:
            raise SystemExit(f"timing.csv has no rows for task {name!r}: run the timing probe")
        mine = [a for a in arms if a.task == name and a.id not in skipped]
        n_epochs = sum(a.epochs for a in mine if a.r is None)
        r_epochs = sum(a.epochs for a in mine if a.r is not None)
        total = sum(a.epochs * sec[a.r] for a in mine)
        rows.append(
            dict(task=name, arms=len(mine), epochs_at_N=n_epochs, epochs_at_r=r_epochs,
                 serial_hours=total / 3600, sec_N=sec[None])
        )  # fmt: skip
    all_h = sum(r["serial_hours"] for r in rows)
    md = [
        f"# Predicted run time of preset `{preset_name}` (from `timing.csv`)",
        "",
        "Each arm: its epochs x the measured seconds per epoch of its model (training steps; "
        "validation adds a few %). Timings were taken on the shared machine, so they are an "
        "upper estimate for an idle one.",
        "",
        "| task | arms | epochs at N | epochs at r | s/epoch at N | serial hours |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['task']} | {r['arms']} | {r['epochs_at_N']} | {r['epochs_at_r']} | "
            f"{r['sec_N']:.1f} | {r['serial_hours']:.2f} |"
        )
    md += ["", f"Total: {all_h:.2f} h serial, {all_h / jobs:.2f} h with {jobs} workers."]
    common.atomic_write(out / f"budget-{preset_name}.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["timing", "curves", "report", "budget"])
    p.add_argument("--preset", default="cpu", help="budget: the preset to predict")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/study-probes"))
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--ranks", default="16,4", help="timing: r values")
    p.add_argument("--rank", type=int, default=4, help="curves: r of the small model")
    p.add_argument("--epochs", default="40", help="curves: epochs, one value or task=E,...")
    p.add_argument("--steps", type=int, default=5, help="timing: timed steps per row")
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    tasks = args.tasks.split(",")
    unknown = set(tasks) - set(TASKS)
    if unknown:
        p.error(f"unknown tasks {sorted(unknown)}; known: {list(TASKS)}")
    common.ignore_runs(args.out)
    if args.what == "timing":
        timing(args.out, tasks, [int(x) for x in args.ranks.split(",")], args.steps)
    elif args.what == "curves":
        if "=" in args.epochs:
            epochs = {k: int(v) for k, v in (x.split("=") for x in args.epochs.split(","))}
        else:
            epochs = dict.fromkeys(tasks, int(args.epochs))
        curves(args.out, tasks, args.rank, epochs, args.resume)
    elif args.what == "budget":
        budget(args.out, args.preset)
    else:
        write_curve_report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
