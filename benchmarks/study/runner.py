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
import contextlib
import copy
import dataclasses
import datetime
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import torch

import sysred
from benchmarks.study import common
from benchmarks.study.arms import Arm, Reduction, build_arms, missing
from benchmarks.study.presets import PRESETS
from s4dss import flops
from s4dss.callbacks import Callback
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
    "train_cpu_seconds",
    "reduce_cpu_seconds",
    "total_cpu_seconds",
    "kernel_rel_err",
    "orders",
    "finished_at",
]
# clock columns: everything else is a deterministic function of the preset and the seed
TIME_FIELDS = (
    "train_seconds",
    "reduce_seconds",
    "total_seconds",
    "train_cpu_seconds",
    "reduce_cpu_seconds",
    "total_cpu_seconds",
    "finished_at",
)


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
    """Wall and CPU seconds of a run's training, accumulated over processes in ``timing.json``.

    CPU seconds (``time.process_time`` of the worker, which trains with one torch thread) are
    what the run would take on an idle core: unlike wall seconds they do not grow with the
    machine's load. ``snapshots`` holds both at the end of each snapshot epoch.
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / "timing.json"
        self.data = {"seconds": 0.0, "cpu_seconds": 0.0, "snapshots": {}, "cpu_snapshots": {}}
        if self.path.is_file():
            self.data.update(json.loads(self.path.read_text()))
        self._wall = self._cpu = None

    def start(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def _elapsed(self) -> tuple[float, float]:
        if self._wall is None:
            return 0.0, 0.0
        return time.perf_counter() - self._wall, time.process_time() - self._cpu

    def stop(self) -> None:
        """Add the seconds since :meth:`start` to the totals and save them."""
        wall, cpu = self._elapsed()
        self.data["seconds"] += wall
        self.data["cpu_seconds"] += cpu
        self._wall = self._cpu = None
        self.save()

    def mark(self, snapshot: int) -> None:
        """Record the totals so far (saved ones + this process's) at a snapshot epoch."""
        wall, cpu = self._elapsed()
        self.data["snapshots"][str(snapshot)] = self.data["seconds"] + wall
        self.data["cpu_snapshots"][str(snapshot)] = self.data["cpu_seconds"] + cpu
        self.save()

    def save(self) -> None:
        common.atomic_write(self.path, json.dumps(self.data))

    def at(self, epoch: int | None, cpu: bool = False) -> float:
        if epoch is None:
            return self.data["cpu_seconds" if cpu else "seconds"]
        return self.data["cpu_snapshots" if cpu else "snapshots"][str(epoch)]


class Snapshots(Callback):
    """Copies ``last.pt`` to ``snapshots/epoch<e>.pt`` when it is written at the end of epoch e.

    A checkpoint written at the end of an epoch has ``step_in_epoch == 0`` and ``epoch == e``
    (epochs completed); one written on an interrupt mid-epoch (or after the epoch's last step,
    before its validation) does not, so a snapshot is always the state after the whole epoch.
    The clock records the training seconds at that point (the child's ancestry cost).
    """

    def __init__(self, run_dir: Path, epochs, clock: _Clock):
        self.dir, self.epochs, self.clock = Path(run_dir) / "snapshots", set(epochs), clock

    def path(self, epoch: int) -> Path:
        return self.dir / f"epoch{epoch}.pt"

    def take(self, last: Path, epoch: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path(epoch).with_name(f"epoch{epoch}.pt.tmp")
        shutil.copyfile(last, tmp)
        os.replace(tmp, self.path(epoch))
        self.clock.mark(epoch)

    def on_checkpoint(self, loop, path) -> None:
        if Path(path) == loop.last_path and loop.step_in_epoch == 0 and loop.epoch in self.epochs:
            self.take(Path(path), loop.epoch)


def _reduce(model, red: Reduction, L: int) -> tuple[torch.nn.Module, str]:
    """``s4dss.reduce`` with the arm's arguments; a degenerate order is retried non-strictly."""
    try:
        return reduce_model(model, L=L, **red.kwargs()), ""
    except sysred.SysredError as err:
        note = f"strict=False after {type(err).__name__}: {str(err).splitlines()[0][:160]}"
    return reduce_model(model, L=L, strict=False, **red.kwargs()), note


def _position(last: Path) -> tuple[int, int]:
    """``(epochs completed, steps into the next epoch)`` of the run whose checkpoint is
    ``last`` (``(0, 0)`` without one)."""
    if not last.is_file():
        return 0, 0
    pos = load_checkpoint(last)["position"]
    return pos["epoch"], pos["step_in_epoch"]


def _train(model, task, cfg: TrainConfig, run_dir: Path, snapshots, interrupt) -> dict:
    """:func:`train` with the :class:`Snapshots` callback and the run's :class:`_Clock`.

    ``interrupt`` (test hook): stop after that many steps of this call, as Ctrl-C would.
    """
    clock = _Clock(run_dir)
    snap = Snapshots(run_dir, snapshots, clock)
    last = run_dir / "last.pt"
    epoch, step = _position(last)
    for e in sorted(snapshots):
        if snap.path(e).is_file() or e > epoch:
            continue
        if (e, 0) == (epoch, step):  # killed between last.pt and its copy: copy it now
            snap.take(last, e)
            continue
        raise RuntimeError(
            f"{last} is past the snapshot at epoch {e} that its children need (epoch {epoch}, "
            f"step {step}): delete that run folder and resume"
        )
    cfg = dataclasses.replace(cfg, interrupt_after_steps=interrupt)
    clock.start()
    try:
        summary = train(model, task, cfg, run_dir, resume=last.is_file(), callbacks=[snap])
    finally:
        clock.stop()
    if summary["status"] != "finished":
        raise RunInterrupted(f"{run_dir} interrupted; continue with --resume")
    return summary


def reduction_events(run_dir: Path) -> list[dict]:
    """The ``reduce`` records of a run's ``metrics.jsonl`` (in-training reductions), in order."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    events = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("event") == "reduce" and "orders_after" in rec:
            events.append(rec)
    return events


def run_flops(
    model_config: dict, task, cfg: TrainConfig, epochs: int, events=(), eval_batch: int = 128
) -> tuple[float, list[float]]:
    """Analytic training FLOPs of a run whose state size may change (``reduce`` records).

    Epoch k (1-based) runs at the orders in force when it starts: the initial ones, or the
    ``orders_after`` of the last reduction at the end of an epoch before k. A reduction after
    epoch e re-validates the reduced model (one more validation pass). The HSV regulariser
    (``cfg.hsv_reg``) adds :func:`s4dss.flops.hsv_reg_flops` per step. Returns the total and
    the FLOPs of each epoch.
    """
    n_tr, n_val, L = len(task.train), len(task.val), task.seq_len
    steps = math.ceil(n_tr / cfg.batch_size)
    at = {int(e["epoch"]): list(e["orders_after"]) for e in events}
    conf = dict(model_config)
    per_epoch = []
    for k in range(1, epochs + 1):
        f = flops.epoch_flops(conf, L, n_tr, cfg.batch_size, n_val, eval_batch)
        if cfg.hsv_reg:
            reg = cfg.hsv_reg
            f += steps * flops.hsv_reg_flops(conf, reg.get("kind", "tail"), reg.get("channels"))
        if k in at:  # reduced after this epoch's validation; the reduced model is validated
            conf = dict(conf, d_state=at[k], lambda_per_channel=True)
            full, rest = divmod(n_val, eval_batch)
            f += full * flops.forward_flops(conf, L, eval_batch).total
            f += flops.forward_flops(conf, L, rest).total if rest else 0.0
        per_epoch.append(f)
    return float(sum(per_epoch)), per_epoch


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
    parent_flops = parent_seconds = parent_cpu = 0.0
    if arm.parent is None:
        seed_everything(arm.seed)
        r0 = None if arm.start_full else arm.r
        model = common.build_model(
            {**spec["model"], **dict(arm.model)}, task, d_state=r0, per_channel=arm.per_channel
        )
    else:
        model = common.load_checkpoint_model(ctx.source(arm))
        src = evaluate(model, task.test, task.collate, ev_batch)
        row["source_test_acc"] = src["acc"]
        row["source_val_acc"] = evaluate(model, task.val, task.collate, ev_batch)["acc"]
        p = parent_row or {}

        def _p(key: str) -> float:
            return float(p.get(key) or 0)

        if arm.parent_epoch is None:
            parent_flops, parent_seconds = _p("total_flops"), _p("total_seconds")
            parent_cpu = _p("total_cpu_seconds")
        else:  # a snapshot: the ancestry plus the parent's first parent_epoch epochs
            parent_flops = _p("total_flops") - _p("train_flops")
            parent_flops += arm.parent_epoch * _p("epoch_flops")
            clock = _Clock(ctx.run_dir(arm.parent))
            parent_seconds = _p("total_seconds") - _p("train_seconds")
            parent_seconds += clock.at(arm.parent_epoch)
            parent_cpu = _p("total_cpu_seconds") - _p("train_cpu_seconds")
            parent_cpu += clock.at(arm.parent_epoch, cpu=True)
        if arm.reduction is not None:
            seed_everything(arm.seed)
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                model, row["note"] = _reduce(model, arm.reduction, task.seq_len)
            except (sysred.SysredError, ValueError, NotImplementedError) as err:
                row.update(status="failed", note=f"{type(err).__name__}: {err}"[:300])
                return _finish(row)
            row["reduce_seconds"] = round(time.perf_counter() - t0, 3)
            row["reduce_cpu_seconds"] = round(time.process_time() - c0, 3)
            rep = model.reduction_report
            row["kernel_rel_err"] = max(
                float((lr.kernel_error / lr.kernel_norm).max()) for lr in rep.layers
            )
    model.train()
    start_config = copy.deepcopy(model.config)  # an in-training reduction changes model.config
    if arm.epochs == 0:
        t0, c0 = time.perf_counter(), time.process_time()
        test = evaluate(model, task.test, task.collate, ev_batch)
        val = evaluate(model, task.val, task.collate, ev_batch)
        row.update(
            test_acc=test["acc"], test_acc_final=test["acc"], best_val_acc=val["acc"],
            best_epoch=0, epoch_flops=0.0, train_flops=0.0,
            train_seconds=round(time.perf_counter() - t0, 3),
            train_cpu_seconds=round(time.process_time() - c0, 3),
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
        events = reduction_events(run_dir)
        total, per_epoch = run_flops(start_config, task, train_cfg, arm.epochs, events, ev_batch)
        best = summary.get("test_at_best_val", summary["test"])
        clock = _Clock(run_dir)
        row.update(
            test_acc=best["acc"],
            test_acc_final=summary["test"]["acc"],
            best_val_acc=summary["best"]["val_acc"],
            best_epoch=summary["best"]["epoch"],  # 1-based
            epoch_flops=per_epoch[0],
            train_flops=total,
            train_seconds=round(clock.at(None), 3),
            train_cpu_seconds=round(clock.at(None, cpu=True), 3),
        )
        if events:
            row["note"] = "; ".join(
                f"reduced after epoch {e['epoch']}: {e['orders_before']} -> {e['orders_after']}"
                for e in events
            )
    cfg = model.config  # the final architecture (reduced during training, for intrain)
    row.update(
        orders="/".join(str(n) for n in flops.layer_states(cfg)),
        params=sum(p.numel() for p in model.parameters()),
        ssm_params=common.ssm_params(model),
        state_size=flops.state_size(cfg),
        step_flops=flops.step_flops(cfg),
    )
    row["total_flops"] = parent_flops + row["train_flops"]
    row["total_seconds"] = round(parent_seconds + row["reduce_seconds"] + row["train_seconds"], 3)
    row["total_cpu_seconds"] = round(
        parent_cpu + row.get("reduce_cpu_seconds", 0.0) + row["train_cpu_seconds"], 3
    )
    return _finish(row)


def _finish(row: dict) -> dict:
    row["finished_at"] = datetime.datetime.now().isoformat(timespec="seconds")
    return row


def _worker(arm: Arm, ctx: Context, parent_row: dict | None) -> dict:
    """Run one arm; an error becomes a ``failed`` row (traceback in ``<run dir>/error.txt``),
    so that one broken arm does not stop the study. Interrupts (Ctrl-C, SIGTERM) go through.
    Also the entry point of a worker process (no progress bars, one torch thread)."""
    try:
        return execute(arm, ctx, parent_row)
    except Exception as err:
        import traceback

        common.atomic_write(ctx.run_dir(arm.id) / "error.txt", traceback.format_exc())
        return _finish(_failed(arm, f"{type(err).__name__}: {err}"[:300]))


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
    retry_failed: bool = False,
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
    retry_failed : bool
        With ``resume``: run the arms whose row says ``failed`` again (their new row replaces
        the old one; an arm that failed in training continues from its last checkpoint).
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
    done = {r["arm"]: r for r in rows if not (retry_failed and r["status"] == "failed")}
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
    old_term = _forward_sigterm(pool)
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
                    fut.set_result(_worker(arm, ctx, parent))
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
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return executed


def _forward_sigterm(pool) -> object:
    """SIGTERM to the study's process acts like Ctrl-C on the whole study: it is passed on to
    the worker processes (each stops its arm at a checkpoint) and the main process stops as on
    Ctrl-C, once they have. Without this a ``kill`` of a background study (no terminal sends
    SIGINT to the workers) would orphan workers that go on training. Returns the old handler
    (None when not installed: not the main thread)."""

    def handler(signum, frame):
        procs = getattr(pool, "_processes", None) or {}  # {pid: Process} of a ProcessPool
        for proc in list(procs.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


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
    p.add_argument("--retry-failed", action="store_true", help="with --resume: rerun failed arms")
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
                retry_failed=args.retry_failed,
            )
        except KeyboardInterrupt:
            report.write_report(args.out, title=f"preset `{args.preset}` (partial)")
            return 130
        print(f"{len(executed)} arms executed in {time.perf_counter() - t0:.0f} s")
    report.write_report(args.out, title=f"preset `{args.preset}`")
    print(f"report: {args.out / 'results.md'}")
    return 0
