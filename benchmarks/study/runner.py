"""Execute the arm table of a preset: resumable, one CSV row per finished arm, progress shown.

::

    python -m benchmarks.study --preset quick --out DIR [--resume] [--jobs 2]

Every arm trains with :func:`s4dss.train.train` in ``DIR/runs/<arm id>`` (atomic checkpoints
every epoch and on Ctrl-C / SIGTERM). When an arm finishes, its row is appended to
``DIR/results.csv`` with a single ``write`` of one complete line followed by ``fsync``; a line
torn by a crash is dropped when the file is read back (and the file rewritten atomically on
``--resume``). ``--resume`` skips arms that have a row and continues an interrupted one from its
last checkpoint; results are identical to an uninterrupted study (every run is seeded, and
:func:`s4dss.train.train` resumes exactly). ``--jobs J`` runs up to J arms at a time in worker
processes (an arm starts once its parent has finished); only the main process writes the CSV.

Measured per arm (columns of :data:`FIELDS`): test accuracy at the best validation epoch (and
of the final model), parameters, SSM parameters, state size, analytic FLOPs per recurrent
token (:func:`s4dss.flops.step_flops`), training FLOPs (:func:`s4dss.flops.epoch_flops` x
epochs: steps and per-epoch validation) and wall seconds, each also as a total that adds the
arm's ancestry (a reduced model is charged the whole pre-training, up to the snapshot it was
made from), the seconds of the reduction, and the largest relative kernel change it made.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import dataclasses
import datetime
import json
import math
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import torch

import sysred
from benchmarks.study import common
from benchmarks.study.arms import Arm, Reduction, build_arms, missing
from benchmarks.study.presets import PRESETS
from s4dss import flops
from s4dss.checkpoint import load_checkpoint
from s4dss.reduce import reduce as reduce_model
from s4dss.train import TrainConfig, evaluate, seed_everything, train

FIELDS = [
    "arm",
    "task",
    "group",
    "seed",
    "N",
    "r",
    "epochs",
    "budget",
    "stage",
    "parent",
    "parent_epoch",
    "reduction",
    "status",
    "note",
    "test_acc",
    "test_acc_final",
    "best_val_acc",
    "best_epoch",
    "source_test_acc",
    "source_val_acc",
    "params",
    "ssm_params",
    "state_size",
    "step_flops",
    "epoch_flops",
    "train_flops",
    "total_flops",
    "train_seconds",
    "reduce_seconds",
    "total_seconds",
    "kernel_rel_err",
    "finished_at",
]
# wall-clock columns: everything else is a deterministic function of the preset and the seed
TIME_FIELDS = ("train_seconds", "reduce_seconds", "total_seconds", "finished_at")


class RunInterrupted(KeyboardInterrupt):
    """An arm stopped at a checkpoint (Ctrl-C, SIGTERM or the test hook); ``--resume`` goes on."""


# ----------------------------------------------------------------------------- the CSV


class ResultsCSV:
    """``results.csv``: one row per finished arm, appended line by line."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def read(self) -> list[dict]:
        """Complete rows only (a last line without its newline, or with the wrong number of
        fields, was torn by a crash and is dropped); a repeated arm keeps its last row."""
        import csv

        if not self.path.is_file():
            return []
        text = self.path.read_text()
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            lines = lines[:-1]
        rows = {}
        for row in csv.DictReader(lines):
            if None in row or any(v is None for v in row.values()):
                continue
            rows[row["arm"]] = row
        return list(rows.values())

    def repair(self) -> list[dict]:
        """Rewrite the file atomically with the complete rows only; returns them."""
        rows = self.read()
        if self.path.is_file():
            common.write_csv(self.path, rows, FIELDS)
        return rows

    def append(self, row: dict) -> None:
        import csv
        import io

        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=FIELDS, extrasaction="ignore", lineterminator="\n")
        new = not self.path.is_file() or self.path.stat().st_size == 0
        if new:
            w.writeheader()
        w.writerow(row)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, buf.getvalue().encode())
            os.fsync(fd)
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------- one arm


@dataclasses.dataclass
class Context:
    """What a worker needs besides the arm: the folder, the preset, a few switches."""

    out: Path
    preset: dict
    threads: int = 1
    inner_progress: bool = False
    interrupt: dict = dataclasses.field(default_factory=dict)  # test hook: arm id -> steps

    def run_dir(self, arm_id: str) -> Path:
        return self.out / "runs" / arm_id

    def source(self, arm: Arm) -> Path:
        """The parent's checkpoint: its best one, or its snapshot after ``parent_epoch``."""
        d = self.run_dir(arm.parent)
        if arm.parent_epoch is None:
            return d / "best.pt"
        return d / "snapshots" / f"epoch{arm.parent_epoch}.pt"


class _Clock:
    """Wall seconds of a run's training, accumulated over processes in ``timing.json``."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "timing.json"
        self.data = {"seconds": 0.0, "snapshots": {}}
        if self.path.is_file():
            self.data = json.loads(self.path.read_text())

    def add(self, seconds: float, snapshot: int | None = None) -> None:
        self.data["seconds"] += seconds
        if snapshot is not None:
            self.data["snapshots"][str(snapshot)] = self.data["seconds"]
        common.atomic_write(self.path, json.dumps(self.data))

    def at(self, epoch: int | None) -> float:
        return self.data["seconds"] if epoch is None else self.data["snapshots"][str(epoch)]


def _reduce(model, red: Reduction, L: int) -> tuple[torch.nn.Module, str]:
    """``s4dss.reduce`` with the arm's arguments; a degenerate order is retried non-strictly."""
    try:
        return reduce_model(model, L=L, **red.kwargs()), ""
    except sysred.SysredError as err:
        note = f"strict=False after {type(err).__name__}: {str(err).splitlines()[0][:160]}"
    return reduce_model(model, L=L, strict=False, **red.kwargs()), note


def _position(last: Path) -> int:
    """Optimizer steps done by the run whose checkpoint is ``last`` (0 without one)."""
    return load_checkpoint(last)["position"]["global_step"] if last.is_file() else 0


def _train(model, task, cfg: TrainConfig, run_dir: Path, snapshots, interrupt) -> dict:
    """:func:`train`, stopping at the end of each snapshot epoch to copy ``last.pt`` aside.

    ``interrupt`` (test hook): stop after that many steps of this call, as Ctrl-C would.
    """
    clock = _Clock(run_dir)
    steps_per_epoch = math.ceil(len(task.train) / cfg.batch_size)
    last = run_dir / "last.pt"
    for e in sorted(snapshots):
        path = run_dir / "snapshots" / f"epoch{e}.pt"
        if path.is_file():
            continue
        target, at = e * steps_per_epoch, _position(last)
        if at > target:
            raise RuntimeError(
                f"{last} is at step {at}, past the snapshot at epoch {e} (step {target}) that "
                "its children need: delete that run folder and resume"
            )
        hook = False
        if at < target:  # train up to the end of epoch e exactly, then copy the checkpoint
            need = target - at
            hook = interrupt is not None and interrupt <= need
            step_cfg = dataclasses.replace(cfg, interrupt_after_steps=interrupt if hook else need)
            t0 = time.perf_counter()
            train(model, task, step_cfg, run_dir, resume=last.is_file())
            clock.add(time.perf_counter() - t0)
            if _position(last) != target:  # Ctrl-C, SIGTERM or the hook before the snapshot
                raise RunInterrupted(f"{run_dir} stopped before its snapshot at epoch {e}")
            interrupt = None if hook else interrupt - need if interrupt is not None else None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        shutil.copyfile(last, tmp)
        os.replace(tmp, path)
        clock.add(0.0, snapshot=e)
        if hook:
            raise RunInterrupted(f"{run_dir} stopped at its snapshot at epoch {e}")
    t0 = time.perf_counter()
    cfg = dataclasses.replace(cfg, interrupt_after_steps=interrupt)
    summary = train(model, task, cfg, run_dir, resume=last.is_file())
    clock.add(time.perf_counter() - t0)
    if summary["status"] != "finished":
        raise RunInterrupted(f"{run_dir} interrupted; continue with --resume")
    return summary


def execute(arm: Arm, ctx: Context, parent_row: dict | None = None) -> dict:
    """Run one arm and return its CSV row (``status`` ``ok`` or ``failed`` with a note)."""
    torch.set_num_threads(ctx.threads)
    spec = ctx.preset["tasks"][arm.task]
    task = common.load_task(spec["task"], ctx.out / "data")
    run_dir = ctx.run_dir(arm.id)
    row = {
        "arm": arm.id,
        "task": arm.task,
        "group": arm.group,
        "seed": arm.seed,
        "N": spec["model"]["d_state"],
        "r": arm.r if arm.r is not None else spec["model"]["d_state"],
        "epochs": arm.epochs,
        "budget": arm.budget,
        "stage": arm.stage,
        "parent": arm.parent or "",
        "parent_epoch": "" if arm.parent_epoch is None else arm.parent_epoch,
        "reduction": arm.reduction.label if arm.reduction else "",
        "status": "ok",
        "note": "",
        "reduce_seconds": 0.0,
    }
    ev_batch = spec["train"].get("eval_batch_size", 128)
    parent_flops = parent_seconds = 0.0
    if arm.parent is None:
        seed_everything(arm.seed)
        model = common.build_model(spec["model"], task, d_state=arm.r, per_channel=arm.per_channel)
    else:
        model = common.load_checkpoint_model(ctx.source(arm))
        src = evaluate(model, task.test, task.collate, ev_batch)
        row["source_test_acc"] = src["acc"]
        row["source_val_acc"] = evaluate(model, task.val, task.collate, ev_batch)["acc"]
        p = parent_row or {}
        ancestors = float(p.get("total_flops", 0)) - float(p.get("train_flops", 0))
        if arm.parent_epoch is None:
            parent_flops = float(p.get("total_flops", 0))
            parent_seconds = float(p.get("total_seconds", 0))
        else:
            parent_flops = ancestors + arm.parent_epoch * float(p.get("epoch_flops", 0))
            anc_sec = float(p.get("total_seconds", 0)) - float(p.get("train_seconds", 0))
            parent_seconds = anc_sec + _Clock(ctx.run_dir(arm.parent)).at(arm.parent_epoch)
        if arm.reduction is not None:
            seed_everything(arm.seed)
            t0 = time.perf_counter()
            try:
                model, row["note"] = _reduce(model, arm.reduction, task.seq_len)
            except (sysred.SysredError, ValueError, NotImplementedError) as err:
                row.update(status="failed", note=f"{type(err).__name__}: {err}"[:300])
                return _finish(row)
            row["reduce_seconds"] = round(time.perf_counter() - t0, 3)
            rep = model.reduction_report
            row["kernel_rel_err"] = max(
                float((lr.kernel_error / lr.kernel_norm).max()) for lr in rep.layers
            )
    model.train()
    cfg = model.config
    row.update(
        params=sum(p.numel() for p in model.parameters()),
        ssm_params=common.ssm_params(model),
        state_size=flops.state_size(cfg),
        step_flops=flops.step_flops(cfg),
    )
    if arm.epochs == 0:
        t0 = time.perf_counter()
        test = evaluate(model, task.test, task.collate, ev_batch)
        val = evaluate(model, task.val, task.collate, ev_batch)
        row.update(
            test_acc=test["acc"], test_acc_final=test["acc"], best_val_acc=val["acc"],
            best_epoch=0, epoch_flops=0.0, train_flops=0.0,
            train_seconds=round(time.perf_counter() - t0, 3),
        )  # fmt: skip
    else:
        train_cfg = TrainConfig(
            **{
                **spec["train"],
                **dict(arm.train),
                "epochs": arm.epochs,
                "seed": arm.seed,
                "progress": ctx.inner_progress,
                "num_threads": None,
            }
        )
        seed_everything(arm.seed)
        summary = _train(model, task, train_cfg, run_dir, arm.snapshots, ctx.interrupt.get(arm.id))
        ef = flops.epoch_flops(
            cfg, task.seq_len, len(task.train), train_cfg.batch_size, len(task.val), ev_batch
        )
        best = summary.get("test_at_best_val", summary["test"])
        row.update(
            test_acc=best["acc"],
            test_acc_final=summary["test"]["acc"],
            best_val_acc=summary["best"]["val_acc"],
            best_epoch=summary["best"]["epoch"] + 1,
            epoch_flops=ef,
            train_flops=ef * arm.epochs,
            train_seconds=round(_Clock(run_dir).at(None), 3),
        )
    row["total_flops"] = parent_flops + row["train_flops"]
    row["total_seconds"] = round(parent_seconds + row["reduce_seconds"] + row["train_seconds"], 3)
    return _finish(row)


def _finish(row: dict) -> dict:
    row["finished_at"] = datetime.datetime.now().isoformat(timespec="seconds")
    return row


def _worker(arm: Arm, ctx: Context, parent_row: dict | None) -> dict:
    """Entry point of a worker process (no progress bars, one torch thread)."""
    return execute(arm, ctx, parent_row)


# ----------------------------------------------------------------------------- the study


def task_sizes(preset: dict, out: Path) -> dict[str, dict]:
    """Sizes of every task (loads it, generating data once): what the arm table needs."""
    sizes = {}
    for name, spec in preset["tasks"].items():
        t = common.load_task(spec["task"], Path(out) / "data")
        sizes[name] = dict(
            seq_len=t.seq_len, n_train=len(t.train), n_val=len(t.val), n_classes=t.n_classes,
            d_input=t.d_input, vocab_size=t.vocab_size,
        )  # fmt: skip
    return sizes


def plan(preset: dict, out: Path, tasks: list[str] | None = None) -> tuple[list[Arm], dict]:
    """The arm table (restricted to ``tasks``) and ``{arm id: why it cannot run}``."""
    arms = build_arms(preset, task_sizes(preset, out))
    if tasks:
        unknown = set(tasks) - set(preset["tasks"])
        if unknown:
            raise SystemExit(f"unknown tasks {sorted(unknown)}; preset has {list(preset['tasks'])}")
        arms = [a for a in arms if a.task in tasks]
    skipped: dict[str, str] = {}
    for a in arms:
        why = missing(a)
        if why is None and a.parent in skipped:
            why = f"its parent {a.parent} cannot run"
        if why is not None:
            skipped[a.id] = why
    return arms, skipped


def _write_table(out: Path, arms: list[Arm], skipped: dict) -> None:
    rows = [
        dict(
            arm=a.id,
            task=a.task,
            group=a.group,
            seed=a.seed,
            r="" if a.r is None else a.r,
            epochs=a.epochs,
            parent=a.parent or "",
            parent_epoch="" if a.parent_epoch is None else a.parent_epoch,
            reduction=json.dumps(a.reduction.kwargs()) if a.reduction else "",
            train=json.dumps(dict(a.train)) if a.train else "",
            budget=a.budget,
            stage=a.stage,
            runnable="no: " + skipped[a.id] if a.id in skipped else "yes",
        )  # fmt: skip
        for a in arms
    ]
    common.write_csv(out / "arms.csv", rows, list(rows[0]) if rows else ["arm"])


def _check_preset(out: Path, preset: dict, resume: bool) -> None:
    path = out / "preset.json"
    text = json.dumps(preset, indent=1, sort_keys=True, default=str)
    if path.is_file() and resume and path.read_text() != text + "\n":
        raise SystemExit(
            f"{path} records another preset than the one requested: results would mix; "
            "choose another --out"
        )
    common.atomic_write(path, text + "\n")


def run(
    preset: dict,
    out: Path,
    *,
    resume: bool = False,
    jobs: int = 1,
    tasks: list[str] | None = None,
    max_arms: int | None = None,
    progress: bool = True,
    inner_progress: bool = False,
    interrupt: dict | None = None,
) -> list[str]:
    """Run (or continue) a preset's study in ``out``; returns the arm ids executed now.

    Parameters
    ----------
    preset : dict
        A preset (``benchmarks.study.presets.PRESETS[name]``).
    out : Path
        Results folder: ``results.csv``, ``arms.csv``, ``preset.json``; ``runs/`` and
        ``data/`` (git-ignored) hold checkpoints and generated data.
    resume : bool
        Continue a study whose ``results.csv`` exists (else that is an error).
    jobs : int
        Arms run at a time (worker processes when > 1).
    tasks : list of str, optional
        Only these tasks of the preset.
    max_arms : int, optional
        Stop after this many arms finished (for tests, and to run a study in slices).
    interrupt : dict, optional
        Test hook ``{arm id: steps}``: that arm stops at a checkpoint after so many steps.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    common.ignore_runs(out)
    results = ResultsCSV(out / "results.csv")
    rows = results.repair() if resume else results.read()
    if rows and not resume:
        raise SystemExit(
            f"{results.path} already holds {len(rows)} finished arms: pass --resume to continue "
            "the study, or choose another --out"
        )
    _check_preset(out, preset, resume)
    arms, skipped = plan(preset, out, tasks)
    _write_table(out, arms, skipped)
    for why in sorted(set(skipped.values())):
        n = sum(1 for v in skipped.values() if v == why)
        print(f"skipped {n} arm(s): {why}", flush=True)
    done = {r["arm"]: r for r in rows}
    todo = [a for a in arms if a.id not in skipped and a.id not in done]
    ctx = Context(
        out, preset, int(preset.get("threads", 1)), inner_progress and jobs == 1, interrupt or {}
    )
    from tqdm import tqdm

    n_total = len([a for a in arms if a.id not in skipped])
    bar = tqdm(
        total=n_total,
        initial=n_total - len(todo),
        desc="study",
        unit="arm",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    executed: list[str] = []
    pool = None
    if jobs > 1:
        pool = cf.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    running: dict = {}
    try:
        while todo or running:
            for arm in list(todo):
                if max_arms is not None and len(executed) + len(running) >= max_arms:
                    break
                if len(running) >= jobs:
                    break
                if arm.parent is not None and arm.parent not in done:
                    continue
                todo.remove(arm)
                parent = done.get(arm.parent) if arm.parent else None
                if parent is not None and parent["status"] != "ok":
                    row = _finish(_failed(arm, f"parent {arm.parent} failed"))
                    results.append(row)
                    done[arm.id] = {k: str(v) for k, v in row.items()}
                    bar.update(1)
                    continue
                t0 = time.perf_counter()
                if pool is None:
                    bar.set_postfix_str(arm.id)
                    fut = cf.Future()
                    fut.set_result(execute(arm, ctx, parent))
                else:
                    fut = pool.submit(_worker, arm, ctx, parent)
                running[fut] = (arm, t0)
            if not running:
                break  # max_arms reached, or nothing ready (cannot happen with a valid table)
            finished, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                arm, t0 = running.pop(fut)
                row = fut.result()
                results.append(row)
                done[arm.id] = {k: str(v) for k, v in row.items()}
                executed.append(arm.id)
                bar.update(1)
                acc = f"test acc {float(row['test_acc']):.4f}" if row["status"] == "ok" else ""
                bar.write(f"{arm.id}: {row['status']} {acc} ({time.perf_counter() - t0:.1f} s)")
    except KeyboardInterrupt:
        bar.write("interrupted: every run is checkpointed; continue with --resume")
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return executed


def _failed(arm: Arm, note: str) -> dict:
    return dict(
        arm=arm.id, task=arm.task, group=arm.group, seed=arm.seed, r=arm.r or "",
        epochs=arm.epochs, budget=arm.budget, stage=arm.stage, parent=arm.parent or "",
        status="failed", note=note,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.study",
        description="The compression study (issue 12): run a preset's arms, then the report.",
    )
    p.add_argument("--preset", choices=sorted(PRESETS), required=True)
    p.add_argument("--out", type=Path, required=True, help="results folder")
    p.add_argument("--resume", action="store_true", help="skip finished arms, continue the rest")
    p.add_argument("--jobs", type=int, default=None, help="arms at a time (default: preset's)")
    p.add_argument("--tasks", help="comma-separated subset of the preset's tasks")
    p.add_argument("--max-arms", type=int, help="stop after this many arms")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from the CSV")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--verbose", action="store_true", help="per-epoch progress bars (jobs 1)")
    args = p.parse_args(argv)
    from benchmarks.study import report

    preset = PRESETS[args.preset]
    if not args.report_only:
        t0 = time.perf_counter()
        try:
            executed = run(
                preset,
                args.out,
                resume=args.resume,
                jobs=args.jobs or int(preset.get("jobs", 1)),
                tasks=args.tasks.split(",") if args.tasks else None,
                max_arms=args.max_arms,
                progress=not args.no_progress,
                inner_progress=args.verbose,
            )
        except KeyboardInterrupt:
            report.write_report(args.out, title=f"preset `{args.preset}` (partial)")
            return 130
        print(f"{len(executed)} arms executed in {time.perf_counter() - t0:.0f} s")
    report.write_report(args.out, title=f"preset `{args.preset}`")
    print(f"report: {args.out / 'results.md'}")
    return 0
