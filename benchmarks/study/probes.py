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


# ----------------------------------------------------------------------------- regulariser


REG_VARIANTS = {
    # name: (SSM learning rate, train.hsv_reg or None); the order is filled in per r
    "plain-ssm1e-3": (1e-3, None),
    "plain-ssm1e-2": (1e-2, None),
    "reg1-ssm1e-3": (1e-3, dict(weight=1.0, kind="tail", channels=8)),
    "reg10-ssm1e-3": (1e-3, dict(weight=10.0, kind="tail", channels=8)),
    "reg1-ssm1e-2": (1e-2, dict(weight=1.0, kind="tail", channels=8)),
    "reg0.1-ssm1e-2": (1e-2, dict(weight=0.1, kind="tail", channels=8)),
}


def regprobe(
    out: Path, task_name: str, variants: list[str], order: int, ranks: list[int], epochs: int
) -> list[dict]:
    """Pre-training with and without the HSV regulariser, then BT without retraining.

    Per variant (:data:`REG_VARIANTS`): pre-train the task's full model for ``epochs`` (cosine
    schedule, seed 0) with that SSM learning rate and regulariser (tail beyond ``order``),
    then report the full model's test accuracy, its HSV tails beyond each r (median and max over
    channels, relative to the HSV sum), BT to each r without retraining (test accuracy), and
    wall and CPU seconds per epoch. Rows go to ``regprobe-<task>.csv`` (one per variant,
    appended as they finish); :func:`write_regprobe_report` makes ``regprobe.md``.
    """
    import sysred
    from s4dss.adapters import to_system
    from s4dss.reduce import dss_layers
    from s4dss.train import evaluate

    out.mkdir(parents=True, exist_ok=True)
    spec = task_spec(task_name)
    task = common.load_task(spec["task"], out / "data")
    path = out / f"regprobe-{task_name}.csv"
    rows = []
    if path.is_file():
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    for name in variants:
        if any(r["variant"] == name and int(r["order"]) == order for r in rows):
            continue
        ssm_lr, reg = REG_VARIANTS[name]
        run_dir = out / "runs" / f"regprobe-{task_name}" / f"{name}-o{order}"
        cfg = dict(spec["train"], epochs=epochs, seed=0, progress=False)
        if reg is not None:
            cfg["hsv_reg"] = dict(reg, order=order)
        seed_everything(0)
        model = common.build_model(dict(spec["model"], ssm_lr=ssm_lr), task)
        w0, c0 = time.perf_counter(), time.process_time()
        summary = train(
            model, task, TrainConfig(**cfg), run_dir, resume=(run_dir / "last.pt").is_file()
        )
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        if summary["status"] != "finished":
            raise KeyboardInterrupt(f"{run_dir} interrupted; run again to continue")
        best = common.load_checkpoint_model(run_dir / "best.pt")
        row = dict(task=task_name, variant=name, order=order, ssm_lr=ssm_lr,
                   weight=reg["weight"] if reg else 0.0, channels=reg["channels"] if reg else "",
                   epochs=epochs, test_acc=summary["test_at_best_val"]["acc"],
                   best_val_acc=summary["best"]["val_acc"],
                   wall_s_per_epoch=round(wall / epochs, 2),
                   cpu_s_per_epoch=round(cpu / epochs, 2))  # fmt: skip
        hsv = np.concatenate(
            [
                sysred.hankel_singular_values(to_system(layer, task.seq_len))
                for _, layer in dss_layers(best)
            ]
        )  # fmt: skip  (channels of all layers, N)
        for r in ranks:
            tail = hsv[:, r:].sum(-1) / hsv.sum(-1)
            small = reduce_model(best, rank=r, L=task.seq_len, strict=False)
            rel = max(float((lay.kernel_error / lay.kernel_norm).max())
                      for lay in small.reduction_report.layers)  # fmt: skip
            acc = evaluate(small, task.test, task.collate)["acc"]
            row.update(
                {
                    f"tail{r}_median": round(float(np.median(tail)), 4),
                    f"tail{r}_max": round(float(tail.max()), 4),
                    f"bt0_r{r}_test_acc": acc,
                    f"bt0_r{r}_kernel_rel_err": round(rel, 4),
                }
            )
        print(row, flush=True)
        rows = [r for r in rows if not (r["variant"] == name and int(r["order"]) == order)]
        rows.append(row)
        fields = list(dict.fromkeys(k for r in rows for k in r))
        common.write_csv(path, rows, fields)
    return rows


def write_regprobe_report(out: Path) -> None:
    """``regprobe-*.csv`` -> ``regprobe.md``: one line per task and variant."""
    rows = []
    for path in sorted(out.glob("regprobe-*.csv")):
        with open(path, newline="") as f:
            rows += list(csv.DictReader(f))
    if not rows:
        return
    keys = [k for k in rows[0] if k.startswith("bt0_r") and k.endswith("_test_acc")]
    ranks = sorted({int(k[len("bt0_r") : -len("_test_acc")]) for k in keys}, reverse=True)
    md = [
        "# The HSV regulariser: SSM lr and weight (pre-training, then BT without retraining)",
        "",
        "`python -m benchmarks.study.probes regprobe --tasks T --variants V --epochs E`: the "
        "task's full model (N = 64) pre-trained with the preset's optimiser (cosine schedule, "
        "seed 0) and the variant's SSM lr and `train.hsv_reg` (tail of the HSVs beyond "
        "`order`, 8 random channels of 32 per layer and step); then every layer reduced by BT "
        "to r without retraining. Tail = sum of the HSVs beyond r / sum of all, per channel "
        "(median and max over the channels of all layers). One seed: a test item is 0.37 / "
        "0.25 / 0.41 points on digits / Pathfinder / OSULeaf.",
        "",
        "| task | variant | SSM lr | weight | order | epochs | full test % | best val % | "
        + " | ".join(f"tail>{r} med / max | BT r={r} test %" for r in ranks)
        + " | CPU s/epoch |",
        "|" + "---|" * (8 + 2 * len(ranks) + 1),
    ]
    for r in rows:
        cells = [
            f"{r[f'tail{k}_median']} / {r[f'tail{k}_max']} | "
            f"{100 * float(r[f'bt0_r{k}_test_acc']):.1f}"
            for k in ranks
        ]
        md.append(
            f"| {r['task']} | {r['variant']} | {r['ssm_lr']} | {r['weight']} | {r['order']} | "
            f"{r['epochs']} | {100 * float(r['test_acc']):.1f} | "
            f"{100 * float(r['best_val_acc']):.1f} | "
            + " | ".join(cells)
            + f" | {r['cpu_s_per_epoch']} |"
        )
    common.atomic_write(out / "regprobe.md", "\n".join(md) + "\n")


# ----------------------------------------------------------------------------- cost and budget


def model_kinds(spec: dict, ranks: list[int]) -> dict[str, tuple]:
    """The model variants whose speed the arms need: ``{kind: (d_state, per_channel, reg)}``.

    ``N`` (shared poles, as pre-training), ``N+reg`` (with the HSV regulariser), and per r
    ``r<r>`` (per-channel poles: reduced and from-scratch models) and ``r<r>-shared``.
    """
    kinds = {"N": (None, False, False), "N+reg": (None, False, True)}
    for r in ranks:
        kinds[f"r{r}"] = (r, True, False)
        kinds[f"r{r}-shared"] = (r, False, False)
    return kinds


def _cost_step(model, opt, x, y, reg_args) -> None:
    """One training step (with the HSV regulariser when ``reg_args`` is given)."""
    from s4dss.regularizers import hsv_penalty

    loss = torch.nn.functional.cross_entropy(model(x), y)
    if reg_args is not None:
        reg, order, L, gen = reg_args
        pen = hsv_penalty(model, "tail", order, L, channels=reg.get("channels"), generator=gen)
        loss = loss + reg["weight"] * pen.float()
    opt.zero_grad()
    loss.backward()
    opt.step()


def cost(out: Path, preset_name: str, steps: int, rounds: int, tasks: list[str] | None = None):
    """CPU and wall seconds per training step and per validation pass of every model kind.

    For each task of the preset, the kinds of :func:`model_kinds` take ``steps`` optimizer
    steps per round, interleaved over ``rounds`` rounds (so that the machine's load, which
    changes by the minute, hits them alike), after one untimed step each; then one validation
    pass each. CPU seconds (``time.process_time``; one torch thread) are what an idle core
    would take; the wall seconds and the load average show how loaded the machine was. The
    regulariser is the preset's ``hsv_reg`` (tail beyond the smallest r). Writes
    ``cost-<preset>.csv`` and ``.md``.
    """
    from benchmarks.study.presets import PRESETS
    from s4dss.train import evaluate

    preset = PRESETS[preset_name]
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    load0 = os.getloadavg()
    for name, spec in preset["tasks"].items():
        if tasks and name not in tasks:
            continue
        proto = {**preset.get("protocol", {}), **spec.get("protocol", {})}
        ranks = [int(r) for r in proto["ranks"]]
        reg = dict(proto.get("hsv_reg", {"weight": 1.0, "channels": 8}))
        task = common.load_task(spec["task"], out / "data")
        bs = spec["train"]["batch_size"]
        x, y, _ = task.collate([task.train[i % len(task.train)] for i in range(bs)])
        models, opts = {}, {}
        for kind, (r, per_channel, _) in model_kinds(spec, ranks).items():
            seed_everything(0)
            models[kind] = common.build_model(spec["model"], task, r, per_channel).train()
            opts[kind] = torch.optim.AdamW(models[kind].parameters(), lr=1e-3)
        kinds = model_kinds(spec, ranks)
        gen = torch.Generator().manual_seed(0)

        reg_args = (reg, min(ranks), task.seq_len, gen)

        def step(kind, models=models, opts=opts, x=x, y=y, kinds=kinds, reg_args=reg_args):
            _cost_step(models[kind], opts[kind], x, y, reg_args if kinds[kind][2] else None)

        cpu = dict.fromkeys(kinds, 0.0)
        wall = dict.fromkeys(kinds, 0.0)
        for kind in kinds:
            step(kind)  # warm-up
        for _ in range(rounds):
            for kind in kinds:
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in range(steps):
                    step(kind)
                cpu[kind] += time.process_time() - c0
                wall[kind] += time.perf_counter() - w0
        n_steps = -(-len(task.train) // bs)
        for kind in kinds:
            w0, c0 = time.perf_counter(), time.process_time()
            evaluate(
                models[kind], task.val, task.collate, spec["train"].get("eval_batch_size", 128)
            )
            val_cpu, val_wall = time.process_time() - c0, time.perf_counter() - w0
            n = steps * rounds
            rows.append(dict(
                task=name, kind=kind, L=task.seq_len, n_train=len(task.train),
                n_val=len(task.val), n_test=len(task.test), steps_per_epoch=n_steps,
                cpu_s_per_step=round(cpu[kind] / n, 5), wall_s_per_step=round(wall[kind] / n, 5),
                val_cpu_s=round(val_cpu, 3), val_wall_s=round(val_wall, 3),
                cpu_s_per_epoch=round(cpu[kind] / n * n_steps + val_cpu, 3),
            ))  # fmt: skip
            print(rows[-1], flush=True)
    load1 = os.getloadavg()
    for row in rows:
        base = next(x for x in rows if x["task"] == row["task"] and x["kind"] == "N")
        row["cpu_ratio_N_over_this"] = round(base["cpu_s_per_step"] / row["cpu_s_per_step"], 3)
    path = out / f"cost-{preset_name}.csv"
    if tasks and path.is_file():  # keep the other tasks' rows
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r["task"] not in tasks] + rows
    common.write_csv(path, rows, list(rows[-1]))
    md = [
        f"# Seconds per training step and per validation pass, preset `{preset_name}`",
        "",
        f"`python -m benchmarks.study.probes cost --preset {preset_name}`: {steps} steps x "
        f"{rounds} interleaved rounds per kind, one torch thread, CPU seconds of the process "
        "(what an idle core would take) and wall seconds. Load average (1, 5, 15 min) "
        f"{', '.join(f'{v:.1f}' for v in load0)} before, {', '.join(f'{v:.1f}' for v in load1)} "
        "after (2 cores).",
        "",
        "| task | kind | CPU s/step | wall s/step | wall/CPU | val CPU s | CPU s/epoch "
        "| CPU N/this |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ws, cs = float(r["wall_s_per_step"]), float(r["cpu_s_per_step"])
        md.append(
            f"| {r['task']} | {r['kind']} | {cs:.4f} | {ws:.4f} | {ws / cs:.2f} | "
            f"{float(r['val_cpu_s']):.2f} | {float(r['cpu_s_per_epoch']):.2f} | "
            f"{r['cpu_ratio_N_over_this']} |"
        )
    common.atomic_write(out / f"cost-{preset_name}.md", "\n".join(md) + "\n")
    return rows


def arm_seconds(arm, proto: dict, cost_rows: dict[str, dict]) -> float:
    """Predicted CPU seconds of one arm from :func:`cost` rows (``{kind: row}`` of its task).

    Training epochs at the kind of model the arm trains (``intrain``: ``intrain_epoch`` epochs
    at N, the rest at r; ``regpre``: N with the regulariser), plus its evaluations (validation
    and test of the source model for a reduced arm; test at the end, twice).
    """
    from benchmarks.study.arms import intrain_epoch

    def epoch(kind):
        return float(cost_rows[kind]["cpu_s_per_epoch"])

    def evals(kind):  # one validation pass scaled to the test set
        row = cost_rows[kind]
        return float(row["val_cpu_s"]) * int(row["n_test"]) / max(1, int(row["n_val"]))

    small = None
    if arm.r is not None:
        small = f"r{arm.r}" + ("" if arm.per_channel else "-shared")
        if arm.reduction is not None and arm.reduction.poles == "shared":
            small = f"r{arm.r}-shared"
    if arm.group == "intrain":
        e = intrain_epoch(proto)
        train = e * epoch("N") + (arm.epochs - e) * epoch(small)
        kind = small
    elif arm.start_full or arm.r is None:
        kind = "N+reg" if dict(arm.train).get("hsv_reg") else "N"
        train = arm.epochs * epoch(kind)
    else:
        kind = small
        train = arm.epochs * epoch(kind) if arm.epochs else float(cost_rows[kind]["val_cpu_s"])
    n_evals = 2 + (2 if arm.parent is not None else 0)
    return train + n_evals * evals(kind)


def schedule(arms, seconds: dict[str, float], jobs: int) -> float:
    """Makespan of the runner's scheduling (table order, an arm starts once its parent has
    finished, at most ``jobs`` at a time) with the given seconds per arm."""
    import heapq

    todo = list(arms)
    done: set[str] = set()
    running: list[tuple[float, str]] = []
    now = 0.0
    while todo or running:
        for a in list(todo):
            if len(running) >= jobs:
                break
            if a.parent is not None and a.parent not in done:
                continue
            todo.remove(a)
            heapq.heappush(running, (now + seconds[a.id], a.id))
        if not running:
            raise ValueError("an arm's parent is not in the table")
        now, aid = heapq.heappop(running)
        done.add(aid)
    return now


def budget(out: Path, preset_name: str, jobs: int = 2) -> list[dict]:
    """Predicted run time of a preset from ``cost-<preset>.csv``: ``budget-<preset>.md``.

    Every arm costs :func:`arm_seconds` (CPU seconds: an idle core's wall time); the serial
    sum, and the makespan of the runner's schedule with ``jobs`` workers (:func:`schedule`).
    """
    from benchmarks.study.presets import PRESETS
    from benchmarks.study.runner import plan

    with open(out / f"cost-{preset_name}.csv", newline="") as f:
        cost_rows = list(csv.DictReader(f))
    preset = PRESETS[preset_name]
    arms, skipped = plan(preset, out)
    arms = [a for a in arms if a.id not in skipped]
    seconds, rows = {}, []
    for name, spec in preset["tasks"].items():
        proto = {**preset.get("protocol", {}), **spec.get("protocol", {})}
        mine = {r["kind"]: r for r in cost_rows if r["task"] == name}
        if not mine:
            raise SystemExit(f"cost-{preset_name}.csv has no rows for {name!r}: run the probe")
        task_arms = [a for a in arms if a.task == name]
        for a in task_arms:
            seconds[a.id] = arm_seconds(a, proto, mine)
        by_group: dict[str, float] = {}
        for a in task_arms:
            by_group[a.group] = by_group.get(a.group, 0.0) + seconds[a.id]
        rows.append(dict(task=name, arms=len(task_arms),
                         serial_hours=sum(seconds[a.id] for a in task_arms) / 3600,
                         by_group=by_group))  # fmt: skip
    total = sum(r["serial_hours"] for r in rows)
    span = schedule(arms, seconds, jobs) / 3600
    md = [
        f"# Predicted run time of preset `{preset_name}` (from `cost-{preset_name}.csv`)",
        "",
        "Each arm: its epochs x the CPU seconds per epoch (steps + validation) of the model it "
        "trains, plus its evaluations (`probes.arm_seconds`); CPU seconds are an idle core's "
        "wall time. The makespan follows the runner's scheduling (table order, an arm starts "
        f"when its parent has finished, {jobs} at a time).",
        "",
        "| task | arms | serial hours | largest groups (hours) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        top = sorted(r["by_group"].items(), key=lambda kv: -kv[1])[:6]
        md.append(
            f"| {r['task']} | {r['arms']} | {r['serial_hours']:.2f} | "
            + ", ".join(f"{g} {s / 3600:.2f}" for g, s in top)
            + " |"
        )
    md += ["", f"Total: {total:.2f} h serial; {span:.2f} h with {jobs} workers on an idle "
           "machine (2 cores)."]  # fmt: skip
    common.atomic_write(out / f"budget-{preset_name}.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=["timing", "curves", "report", "budget", "regprobe", "cost"])
    p.add_argument("--preset", default="cpu", help="budget: the preset to predict")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/study-probes"))
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--ranks", default="16,4", help="timing: r values")
    p.add_argument("--rank", type=int, default=4, help="curves: r of the small model")
    p.add_argument("--epochs", default="40", help="curves: epochs, one value or task=E,...")
    p.add_argument("--steps", type=int, default=5, help="timing: timed steps per row")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--variants", default=",".join(REG_VARIANTS), help="regprobe: variants")
    p.add_argument("--order", type=int, default=4, help="regprobe: the regulariser's order")
    p.add_argument("--rounds", type=int, default=4, help="cost: interleaved rounds")
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
    elif args.what == "cost":
        cost(args.out, args.preset, args.steps, args.rounds,
             tasks if args.tasks != ",".join(TASKS) else None)  # fmt: skip
    elif args.what == "regprobe":
        if "=" in args.epochs:
            per_task = {k: int(v) for k, v in (x.split("=") for x in args.epochs.split(","))}
        else:
            per_task = dict.fromkeys(tasks, int(args.epochs))
        for name in tasks:
            epochs = per_task[name]
            regprobe(
                args.out,
                name,
                args.variants.split(","),
                args.order,
                [int(x) for x in args.ranks.split(",")],
                epochs,
            )
    else:
        write_curve_report(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
