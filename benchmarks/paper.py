r"""The paper's experiment (issue 6): balanced-truncation initialisation vs Skew-HiPPO.

Ezoe & Sato, *Model Compression Method for S4 with Diagonal State Space Layers using Balanced
Truncation*: pre-train an S4/DSS model at state dimension ``N``, reduce every DSS layer to ``r``
states by balanced truncation (BT), and use the reduced parameters to initialise the main
training of the small model. Claims: (1) this beats the same ``r``-state model initialised from
Skew-HiPPO; (2) the better the original model, the better the compressed-and-trained one.

One command runs the whole study for a preset::

    python benchmarks/paper.py --preset quick --out benchmarks/results/paper-quick
    python benchmarks/paper.py --preset cpu --out benchmarks/results/paper-cpu [--resume]
    python benchmarks/paper.py --preset lra --data-dir /data/lra --out results/paper-lra

For every task of the preset, with seeds ``s`` (pre-training seed = main-training seed):

=================  ========================================================================
run id             what it is
=================  ========================================================================
``pre-s``          pre-training at ``N`` from Skew-HiPPO, ``pre_epochs`` (snapshots kept)
``bt0-r-s``        ``reduce_model(pre-s, rank=r, method="bt")``, evaluated, no retraining
``bt-r-s``         main training (``main_epochs``) from ``bt0-r-s``
``hippo-r-s``      Skew-HiPPO init of the whole ``r``-state model, ``main_epochs``
``hippo-long-r-s`` the same for ``pre_epochs + main_epochs`` (equal training compute)
``reinit-r-s``     ``pre-s`` with only its DSS kernels re-initialised (Skew-HiPPO at ``r``);
                   encoder, norms, skips, output projections and decoder inherited
``modal0/modal``   modal truncation init, if ``sysred.modal_truncation`` exists (else skipped)
``full-s``         the full-size ``N`` model, ``pre_epochs + main_epochs``
``corr-e-s``       snapshot of ``pre-s`` after ``e`` epochs, BT-reduced to ``corr_rank``,
                   main-trained: the correlation study (``e = pre_epochs`` is ``bt-r-s``)
=================  ========================================================================

Every ``r``-state model, whatever its init, has per-channel poles ``Lambda`` ``(H, r)`` (a
reduced layer always has them; the baselines get them too, initialised identically in every
channel), so all inits at the same ``r`` have exactly the same parameters and optimiser
settings: the comparison is between initialisations only. Training is
:func:`s4dss.train.train` with the preset's hyper-parameters (AdamW, SSM parameters at their
own lr and no weight decay, cosine schedule), the same for every init.

Outputs in ``--out``: ``results.csv`` (one row per run), ``results.md`` (mean +- std over seeds,
parameter counts, training time, the two claims tested), ``acc_vs_r_<task>.png``,
``hsv_<task>.png``, ``corr_<task>.png``. Checkpoints and generated data go in ``--out/runs`` and
``--out/data`` (git-ignored). Each finished run is recorded at once (per-task CSV rewritten
atomically through a temp file + ``os.replace``; checkpoints are atomic too): ``--resume``
skips finished runs and continues an interrupted one from its last epoch checkpoint.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

# The repo root first: a stale editable install can expose ``s4dss`` as a namespace package
# (no top-level API) when the script is run from outside the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sysred  # noqa: E402
from benchmarks.study.common import atomic_write, ssm_params, write_csv  # noqa: E402
from s4dss.adapters import to_system  # noqa: E402
from s4dss.checkpoint import load_checkpoint, load_model_state  # noqa: E402
from s4dss.data import get_task  # noqa: E402
from s4dss.model import S4Model  # noqa: E402
from s4dss.reduce import METHODS, dss_layers  # noqa: E402
from s4dss.reduce import reduce as reduce_model  # noqa: E402
from s4dss.train import TrainConfig, evaluate, seed_everything, train  # noqa: E402

# ----------------------------------------------------------------------------- presets

_TRAIN = dict(batch_size=32, lr=4e-3, weight_decay=0.01, schedule="cosine", grad_clip=1.0)

PRESETS: dict[str, dict] = {
    # A couple of minutes on 2 CPU cores: built-in digits (length 64), a tiny model, one seed.
    "quick": {
        "seeds": [0],
        "threads": 1,
        "tasks": {
            "digits": {
                "task": {"name": "digits"},
                "model": dict(
                    d_model=16,
                    n_layers=2,
                    d_state=16,
                    prenorm=True,
                    pool="mean",
                    kernel_dtype="float32",
                ),
                "train": dict(_TRAIN, lr=1e-2, warmup_steps=10),
                "pre_epochs": 6,
                "main_epochs": 3,
                "ranks": [8, 4, 2],
                "corr_rank": 4,
                "corr_epochs": [0, 1, 2, 4],
            },
        },
    },
    # Generated ListOps and Pathfinder variants sized for 2 shared CPU cores (~40-50 min total).
    "cpu": {
        "seeds": [0, 1, 2],
        "threads": 1,
        "tasks": {
            "listops": {
                "task": dict(
                    name="listops-synth",
                    data_dir="listops",
                    n_train=4000,
                    n_val=500,
                    n_test=1000,
                    seed=0,
                    max_depth=6,
                    max_args=5,
                    min_length=20,
                    max_length=200,
                ),
                "model": dict(
                    d_model=64,
                    n_layers=2,
                    d_state=32,
                    prenorm=True,
                    pool="mean",
                    kernel_dtype="float32",
                ),
                "train": dict(_TRAIN, lr=1e-2, warmup_steps=50),
                "pre_epochs": 5,
                "main_epochs": 2,
                "ranks": [16, 4],
                "corr_rank": 4,
                "corr_epochs": [1, 3],
            },
            "pathfinder": {
                "task": dict(
                    name="pathfinder-synth",
                    data_dir="pathfinder",
                    n=4000,
                    seed=0,
                    size=16,
                    path_length=10,
                    n_paths=2,
                ),
                "model": dict(
                    d_model=32,
                    n_layers=3,
                    d_state=32,
                    prenorm=True,
                    pool="mean",
                    kernel_dtype="float32",
                ),
                "train": dict(_TRAIN, warmup_steps=50),
                "pre_epochs": 5,
                "main_epochs": 2,
                "ranks": [16, 4],
                "corr_rank": 4,
                "corr_epochs": [1, 3],
            },
        },
    },
    # The real LRA files (``--data-dir``) with the hyper-parameters of the S4 reference LRA
    # configs (state-spaces/s4 ``configs/experiment/lra/s4-{listops,pathfinder}.yaml``: layers,
    # d_model, N = 64, batch size, lr / weight decay, SSM lr 1e-3, epochs). Differences that
    # remain: our blocks use LayerNorm, GELU and a unidirectional kernel (no BatchNorm, GLU or
    # bidirectional kernels). Meant for a GPU: ``--device cuda``. Not run on CPU here.
    "lra": {
        "seeds": [0, 1, 2],
        "threads": None,
        "tasks": {
            "listops": {
                "task": {"name": "listops", "data_dir": "{data_dir}/listops-1000"},
                "model": dict(
                    d_model=128, n_layers=8, d_state=64, prenorm=False, dropout=0.0, pool="mean"
                ),
                "train": dict(
                    batch_size=50,
                    eval_batch_size=50,
                    lr=1e-2,
                    weight_decay=0.05,
                    schedule="cosine",
                    warmup_steps=1000,
                    grad_clip=None,
                ),
                "pre_epochs": 40,
                "main_epochs": 40,
                "ranks": [32, 16, 8, 4],
                "corr_rank": 16,
                "corr_epochs": [2, 5, 10, 20],
            },
            "pathfinder": {
                "task": {"name": "pathfinder", "data_dir": "{data_dir}/pathfinder32"},
                "model": dict(
                    d_model=256, n_layers=6, d_state=64, prenorm=True, dropout=0.0, pool="mean"
                ),
                "train": dict(
                    batch_size=64,
                    eval_batch_size=64,
                    lr=4e-3,
                    weight_decay=0.03,
                    schedule="cosine",
                    warmup_steps=500,
                    grad_clip=None,
                ),
                "pre_epochs": 200,
                "main_epochs": 200,
                "ranks": [32, 16, 8, 4],
                "corr_rank": 16,
                "corr_epochs": [10, 25, 50, 100],
            },
        },
    },
}

# Study-level options every task section may override.
TASK_DEFAULTS = dict(
    baseline_per_channel=True,  # baselines get per-channel Lambda like the reduced models
    reduce_L=None,  # kernel length for s4dss.reduce (default: the task's sequence length)
    reduce_horizon=None,  # time-limited BT over this many steps (None: infinite horizon)
)

FIELDS = [
    "task",
    "run_id",
    "init",
    "N",
    "r",
    "seed",
    "epochs",
    "snapshot_epoch",
    "source_acc",
    "test_acc",
    "test_acc_best_val",
    "val_acc",
    "best_val_acc",
    "test_loss",
    "ssm_params",
    "total_params",
    "train_seconds",
    "status",
    "note",
]

INIT_ORDER = ["bt", "bt0", "hippo", "hippo-long", "reinit", "modal", "modal0", "full", "pretrained"]
INIT_LABEL = {
    "pretrained": "pre-trained (N)",
    "full": "full-size reference (N, pre+main epochs)",
    "bt0": "BT, no retraining",
    "bt": "BT init + main training",
    "hippo": "Skew-HiPPO init (main epochs)",
    "hippo-long": "Skew-HiPPO init (pre+main epochs)",
    "reinit": "pre-trained, DSS kernels re-init (Skew-HiPPO)",
    "modal0": "modal truncation, no retraining",
    "modal": "modal truncation init + main training",
    "corr": "correlation: BT from a snapshot",
}


# ----------------------------------------------------------------------------- small helpers


def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def total_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def modal_available() -> bool:
    """``method="modal"`` works only if sysred has ``modal_truncation`` (s4dss delegates)."""
    return "modal" in METHODS and callable(getattr(sysred, "modal_truncation", None))


def read_rows(path: Path) -> list[dict]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict]) -> None:
    write_csv(path, rows, FIELDS)


def _f(row: dict, key: str) -> float:
    try:
        return float(row.get(key, ""))
    except (TypeError, ValueError):
        return float("nan")


# ----------------------------------------------------------------------------- the study


class TaskStudy:
    """All runs of one task; finished runs are rows of ``<out>/runs/<task>/results.csv``."""

    def __init__(
        self,
        name: str,
        spec: dict,
        seeds: list[int],
        out: Path,
        resume: bool,
        device: str = "cpu",
        progress: bool = True,
        inner_progress: bool = False,
    ):
        self.name, self.seeds, self.out = name, list(seeds), Path(out)
        self.spec = {**TASK_DEFAULTS, **spec}
        self.dir = self.out / "runs" / name
        self.csv = self.dir / "results.csv"
        self.rows = read_rows(self.csv)
        if self.rows and not resume:
            raise SystemExit(
                f"{self.csv} already holds {len(self.rows)} finished runs: pass --resume to "
                "continue the study, or choose another --out"
            )
        self.done = {r["run_id"] for r in self.rows}
        self.device, self.progress, self.inner_progress = device, progress, inner_progress
        self.executed: list[str] = []  # run ids executed (not skipped) by this process
        self.N = int(self.spec["model"]["d_state"])
        self.ranks = [int(r) for r in self.spec["ranks"]]
        self.pre_epochs, self.main_epochs = int(spec["pre_epochs"]), int(spec["main_epochs"])
        task_cfg = dict(spec["task"])
        tname = task_cfg.pop("name")
        if "data_dir" in task_cfg and not Path(str(task_cfg["data_dir"])).is_absolute():
            task_cfg["data_dir"] = str(self.out / "data" / task_cfg["data_dir"])
        self.task = get_task(tname, **task_cfg)
        self.L = int(self.spec["reduce_L"] or self.task.seq_len)
        self._pre_models: dict[int, S4Model] = {}

    # ---------------------------------------------------------------- building blocks

    def train_cfg(self, epochs: int, seed: int) -> TrainConfig:
        return TrainConfig(
            **{
                **self.spec["train"],
                "epochs": int(epochs),
                "seed": int(seed),
                "progress": self.inner_progress,
                "num_threads": None,
            }
        )

    def base_model(self, d_state: int, seed: int, per_channel: bool = False) -> S4Model:
        seed_everything(seed)
        cfg = dict(
            self.spec["model"],
            d_state=int(d_state),
            lambda_per_channel=per_channel,
            init="skew-hippo",
        )
        if self.task.vocab_size is not None:
            cfg["vocab_size"] = self.task.vocab_size
        else:
            cfg["d_input"] = self.task.d_input
        return S4Model(d_output=self.task.n_classes, **cfg)

    def record(self, row: dict) -> None:
        row = {"task": self.name, "N": self.N, **row}
        self.rows = [r for r in self.rows if r["run_id"] != row["run_id"]] + [row]
        write_rows(self.csv, self.rows)
        self.done.add(row["run_id"])

    def _device_model(self, model: nn.Module) -> nn.Module:
        return model if self.device == "cpu" else _OnDevice(model, self.device)

    def fit(
        self,
        run_id: str,
        model: S4Model,
        epochs: int,
        seed: int,
        resume_ok: bool = True,
        interrupt_after_steps: int | None = None,
    ) -> tuple[dict, float]:
        """Train ``model`` in place under ``runs/<task>/<run_id>``; returns (summary, seconds).

        An interrupted earlier attempt (``last.pt`` present) is continued from its checkpoint.
        """
        run_dir = self.dir / run_id
        resume = resume_ok and (run_dir / "last.pt").is_file()
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)  # a stale, unusable attempt
        cfg = self.train_cfg(epochs, seed)
        cfg.interrupt_after_steps = interrupt_after_steps
        seed_everything(seed)
        t0 = time.perf_counter()
        summary = train(
            self._device_model(model),
            self.task,
            cfg,
            run_dir,
            resume=resume,
            model_config=model.config,
        )
        return summary, time.perf_counter() - t0

    def eval_test(self, model: nn.Module) -> dict:
        m = self._device_model(model)
        return {
            "test": evaluate(
                m, self.task.test, self.task.collate, self.spec["train"].get("eval_batch_size", 128)
            ),
            "val": evaluate(
                m, self.task.val, self.task.collate, self.spec["train"].get("eval_batch_size", 128)
            ),
        }

    def trained_row(self, run_id, init, r, seed, epochs, model, summary, seconds, **extra):
        status = summary["status"]
        if status != "finished":  # Ctrl-C: checkpointed, not recorded, resumable
            raise KeyboardInterrupt(f"run {run_id} interrupted; continue with --resume")
        self.record(
            dict(
                run_id=run_id,
                init=init,
                r=r,
                seed=seed,
                epochs=epochs,
                test_acc=summary["test"]["acc"],
                test_acc_best_val=summary.get("test_at_best_val", {}).get("acc", ""),
                val_acc=summary["val"]["acc"],
                best_val_acc=summary["best"]["val_acc"],
                test_loss=summary["test"]["loss"],
                ssm_params=ssm_params(model),
                total_params=total_params(model),
                train_seconds=round(seconds, 2),
                status="ok",
                **extra,
            )
        )

    # ---------------------------------------------------------------- pre-training

    def snapshot_path(self, seed: int, epoch: int) -> Path:
        return self.dir / f"pre-s{seed}-snapshots" / f"epoch{epoch}.pt"

    def pretrain(self, seed: int) -> None:
        """Pre-train at N; keep a snapshot after each epoch in ``corr_epochs``."""
        run_id = f"pre-s{seed}"
        if run_id in self.done:
            return
        model = self.base_model(self.N, seed)
        run_dir = self.dir / run_id
        snaps = sorted(e for e in self.spec["corr_epochs"] if 0 <= e < self.pre_epochs)
        steps_per_epoch = math.ceil(len(self.task.train) / self.spec["train"]["batch_size"])
        seconds = 0.0
        if not (run_dir / "last.pt").is_file() and run_dir.exists():
            shutil.rmtree(run_dir)
        for e in snaps:
            path = self.snapshot_path(seed, e)
            if path.is_file():
                continue
            if e == 0:  # the initial model itself
                path.parent.mkdir(parents=True, exist_ok=True)
                buf = io.BytesIO()
                torch.save({"model_config": model.config, "model_state": model.state_dict()}, buf)
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_bytes(buf.getvalue())
                os.replace(tmp, path)
                continue
            done_steps = 0
            if (run_dir / "last.pt").is_file():
                done_steps = load_checkpoint(run_dir / "last.pt")["position"]["global_step"]
            need = e * steps_per_epoch - done_steps
            if need > 0:
                # stop exactly at the end of epoch e (train's step-boundary stop hook), keep it
                summary, dt = self.fit(
                    run_id, model, self.pre_epochs, seed, interrupt_after_steps=need
                )
                seconds += dt
                at = load_checkpoint(run_dir / "last.pt")["position"]["global_step"]
                if summary["status"] != "interrupted" or at != e * steps_per_epoch:
                    # a real Ctrl-C elsewhere: the checkpoint is resumable, not a snapshot
                    raise KeyboardInterrupt(f"{run_id} stopped at step {at}; use --resume")
            _atomic_copy(run_dir / "last.pt", path)
        summary, dt = self.fit(run_id, model, self.pre_epochs, seed)
        seconds += dt
        self.trained_row(
            run_id, "pretrained", self.N, seed, self.pre_epochs, model, summary, seconds
        )

    def load_model(self, path: Path) -> S4Model:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        model = S4Model(**ck["model_config"])
        state = {k.removeprefix("model."): v for k, v in ck["model_state"].items()}
        load_model_state(model, state, source=str(path))
        return model.eval()

    def pretrained(self, seed: int) -> S4Model:
        if seed not in self._pre_models:
            self._pre_models[seed] = self.load_model(self.dir / f"pre-s{seed}" / "last.pt")
        return copy.deepcopy(self._pre_models[seed])

    # ---------------------------------------------------------------- reduction runs

    def reduced(self, source: S4Model, r: int, method: str) -> tuple[S4Model | None, str]:
        """``s4dss.reduce`` at rank r; a degenerate order is retried with ``strict=False``."""
        hz = self.spec["reduce_horizon"] if method == "bt" else None
        try:
            return reduce_model(source, rank=r, method=method, L=self.L, horizon=hz), ""
        except sysred.SysredError as err:
            first = f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
        try:
            red = reduce_model(source, rank=r, method=method, L=self.L, horizon=hz, strict=False)
            return red, f"strict=False after {first}"
        except (sysred.SysredError, NotImplementedError) as err:
            return None, f"{first}; strict=False: {type(err).__name__}: {err}"[:300]

    def reduce_runs(self, seed: int, r: int, method: str) -> None:
        """``<m>0-r-s`` (no retraining) and ``<m>-r-s`` (main training) for bt or modal."""
        tag = method
        id0, id1 = f"{tag}0-r{r}-s{seed}", f"{tag}-r{r}-s{seed}"
        if id0 in self.done and id1 in self.done:
            return
        red, note = self.reduced(self.pretrained(seed), r, method)
        if red is None:
            for rid, init, ep in ((id0, f"{tag}0", 0), (id1, tag, self.main_epochs)):
                self.record(
                    dict(
                        run_id=rid, init=init, r=r, seed=seed, epochs=ep, status="failed", note=note
                    )
                )
            return
        if id0 not in self.done:
            ev = self.eval_test(red)
            rep = red.reduction_report
            err = max(float(np.max(lr.kernel_error / lr.kernel_norm)) for lr in rep.layers)
            cond = max(float(np.max(lr.cond)) for lr in rep.layers)
            self.record(
                dict(
                    run_id=id0,
                    init=f"{tag}0",
                    r=r,
                    seed=seed,
                    epochs=0,
                    test_acc=ev["test"]["acc"],
                    val_acc=ev["val"]["acc"],
                    test_loss=ev["test"]["loss"],
                    ssm_params=ssm_params(red),
                    total_params=total_params(red),
                    train_seconds=0,
                    status="ok",
                    note=f"max rel kernel err {err:.2e}; max cond(V) {cond:.3g}"
                    + (f"; {note}" if note else ""),
                )
            )
        if id1 not in self.done:
            summary, dt = self.fit(id1, red, self.main_epochs, seed)
            self.trained_row(id1, tag, r, seed, self.main_epochs, red, summary, dt, note=note)

    def hippo_run(self, seed: int, r: int, long: bool) -> None:
        run_id = f"hippo{'-long' if long else ''}-r{r}-s{seed}"
        if run_id in self.done:
            return
        model = self.base_model(r, seed, per_channel=bool(self.spec["baseline_per_channel"]))
        epochs = self.main_epochs + (self.pre_epochs if long else 0)
        summary, dt = self.fit(run_id, model, epochs, seed)
        init = "hippo-long" if long else "hippo"
        self.trained_row(run_id, init, r, seed, epochs, model, summary, dt)

    def reinit_run(self, seed: int, r: int) -> None:
        run_id = f"reinit-r{r}-s{seed}"
        if run_id in self.done:
            return
        pre = self.pretrained(seed)
        model = self.base_model(r, seed, per_channel=bool(self.spec["baseline_per_channel"]))
        inherited = {k: v for k, v in pre.state_dict().items() if ".kernel." not in k}
        missing, unexpected = model.load_state_dict(inherited, strict=False)
        assert not unexpected and all(".kernel." in k for k in missing), (missing, unexpected)
        summary, dt = self.fit(run_id, model, self.main_epochs, seed)
        self.trained_row(run_id, "reinit", r, seed, self.main_epochs, model, summary, dt)

    def full_run(self, seed: int) -> None:
        run_id = f"full-s{seed}"
        if run_id in self.done:
            return
        model = self.base_model(self.N, seed)
        epochs = self.pre_epochs + self.main_epochs
        summary, dt = self.fit(run_id, model, epochs, seed)
        self.trained_row(run_id, "full", self.N, seed, epochs, model, summary, dt)

    def corr_run(self, seed: int, e: int) -> None:
        run_id = f"corr-e{e}-s{seed}"
        if run_id in self.done:
            return
        r = int(self.spec["corr_rank"])
        snap = self.load_model(self.snapshot_path(seed, e))
        src = self.eval_test(snap)["test"]["acc"]
        red, note = self.reduced(snap, r, "bt")
        if red is None:
            self.record(
                dict(
                    run_id=run_id,
                    init="corr",
                    r=r,
                    seed=seed,
                    epochs=self.main_epochs,
                    snapshot_epoch=e,
                    source_acc=src,
                    status="failed",
                    note=note,
                )
            )
            return
        summary, dt = self.fit(run_id, red, self.main_epochs, seed)
        self.trained_row(
            run_id,
            "corr",
            r,
            seed,
            self.main_epochs,
            red,
            summary,
            dt,
            snapshot_epoch=e,
            source_acc=src,
            note=note,
        )

    # ---------------------------------------------------------------- the plan

    def plan(self) -> list[tuple[str, callable]]:
        """Every run as ``(run_id, thunk)``, most informative first (partial results useful)."""
        S, R = self.seeds, self.ranks
        plan = [(f"pre-s{s}", lambda s=s: self.pretrain(s)) for s in S]
        for r in R:
            for s in S:
                plan.append((f"bt-r{r}-s{s}", lambda s=s, r=r: self.reduce_runs(s, r, "bt")))
                plan.append((f"hippo-r{r}-s{s}", lambda s=s, r=r: self.hippo_run(s, r, False)))
        rc = int(self.spec["corr_rank"])
        for s in S:
            if f"bt-r{rc}-s{s}" not in dict(plan):
                plan.append((f"bt-r{rc}-s{s}", lambda s=s: self.reduce_runs(s, rc, "bt")))
            for e in self.spec["corr_epochs"]:
                if e < self.pre_epochs:
                    plan.append((f"corr-e{e}-s{s}", lambda s=s, e=e: self.corr_run(s, e)))
        for r in R:
            for s in S:
                plan.append((f"hippo-long-r{r}-s{s}", lambda s=s, r=r: self.hippo_run(s, r, True)))
        for r in R:
            for s in S:
                plan.append((f"reinit-r{r}-s{s}", lambda s=s, r=r: self.reinit_run(s, r)))
        plan += [(f"full-s{s}", lambda s=s: self.full_run(s)) for s in S]
        if modal_available():
            for r in R:
                for s in S:
                    plan.append(
                        (f"modal-r{r}-s{s}", lambda s=s, r=r: self.reduce_runs(s, r, "modal"))
                    )
        return plan

    def run(self) -> None:
        from tqdm import tqdm

        if not modal_available():
            print(
                f"[{self.name}] note: modal truncation baseline skipped: sysred has no "
                "modal_truncation, so reduce_model(method='modal') is unavailable",
                flush=True,
            )
        plan = self.plan()
        finished = sum(1 for rid, _ in plan if rid in self.done)
        if finished:
            print(
                f"[{self.name}] resume: {finished} of {len(plan)} planned runs already "
                "finished, skipped",
                flush=True,
            )
        bar = tqdm(
            plan,
            desc=self.name,
            disable=not self.progress,
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=2.0,
        )
        for run_id, thunk in bar:
            bar.set_postfix_str(run_id)
            if run_id in self.done:
                continue
            t0 = time.perf_counter()
            thunk()
            self.executed.append(run_id)
            last = [r for r in self.rows if r["run_id"] == run_id]
            acc = f"test acc {_f(last[0], 'test_acc'):.4f}" if last else ""
            bar.write(f"[{self.name}] {run_id}: {acc} ({time.perf_counter() - t0:.1f} s)")
            sys.stdout.flush()

    # ---------------------------------------------------------------- HSVs for the plot

    def hsvs(self, seed: int) -> list[np.ndarray]:
        """Per layer, the HSVs ``(H, N)`` of the pre-trained model ``pre-s``."""
        model = self.pretrained(seed)
        return [
            sysred.hankel_singular_values(to_system(layer, self.L))
            for _, layer in dss_layers(model)
        ]


class _OnDevice(nn.Module):
    """Runs a CPU-fed model on ``device`` (s4dss.train feeds CPU batches and CPU labels)."""

    def __init__(self, model: nn.Module, device: str):
        super().__init__()
        self.model = model.to(device)
        self.device = device

    def forward(self, x, lengths=None):
        lengths = None if lengths is None else lengths.to(self.device)
        return self.model(x.to(self.device), lengths=lengths).cpu()


# ----------------------------------------------------------------------------- reporting


def _stats(values: list[float]) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if not len(v):
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def _pm(values: list[float], scale: float = 100.0) -> str:
    m, s, n = _stats(values)
    if n == 0:
        return "-"
    return f"{scale * m:.2f} ± {scale * s:.2f} (n={n})"


def correlation(rows: list[dict]) -> dict | None:
    """Pearson and Spearman between source (original) and compressed-trained test accuracy."""
    from scipy import stats

    pts = [(_f(r, "source_acc"), _f(r, "test_acc")) for r in rows]
    pts = [p for p in pts if all(np.isfinite(p))]
    if len(pts) < 3:
        return None
    x, y = np.array(pts).T
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return {
            "n": len(pts),
            "x": x,
            "y": y,
            "pearson": (float("nan"),) * 2,
            "spearman": (float("nan"),) * 2,
        }
    p = stats.pearsonr(x, y)
    s = stats.spearmanr(x, y)
    return {
        "n": len(pts),
        "x": x,
        "y": y,
        "pearson": (float(p[0]), float(p[1])),
        "spearman": (float(s[0]), float(s[1])),
    }


def corr_points(rows: list[dict]) -> list[dict]:
    """Correlation points: ``corr-*`` runs and ``bt-r<corr_rank>`` runs (the last snapshot)."""
    pre_acc = {r["seed"]: r["test_acc"] for r in rows if r["init"] == "pretrained"}
    corr = [r for r in rows if r["init"] == "corr" and r["status"] == "ok"]
    if not corr:
        return []
    rc = corr[0]["r"]
    last = [
        {**r, "source_acc": pre_acc.get(r["seed"], ""), "snapshot_epoch": "final"}
        for r in rows
        if r["init"] == "bt" and r["r"] == rc and r["status"] == "ok"
    ]
    return corr + last


def verdicts(rows: list[dict]) -> list[dict]:
    """Per r: BT vs Skew-HiPPO (main epochs and pre+main epochs) against the seed spread."""
    out = []
    ranks = sorted({int(r["r"]) for r in rows if r["init"] == "bt"}, reverse=True)
    for r in ranks:
        acc = {
            init: [
                _f(x, "test_acc")
                for x in rows
                if x["init"] == init and int(x["r"]) == r and x["status"] == "ok"
            ]
            for init in ("bt", "hippo", "hippo-long", "reinit")
        }
        for base in ("hippo", "hippo-long", "reinit"):
            mb, sb, nb = _stats(acc["bt"])
            mh, sh, nh = _stats(acc[base])
            if nb == 0 or nh == 0:
                continue
            spread = max(sb, sh)
            diff = mb - mh
            if nb < 2 or nh < 2:
                verdict = "one seed: no spread to compare"
            elif diff > spread:
                verdict = "BT better, by more than the spread"
            elif diff < -spread:
                verdict = "BT worse, by more than the spread"
            else:
                verdict = "within the seed spread"
            out.append(
                dict(r=r, base=base, bt=mb, other=mh, diff=diff, spread=spread, verdict=verdict)
            )
    return out


def write_report(out: Path, preset: str, spec: dict, command: str) -> None:
    """``results.csv``, ``results.md`` and the plots from every task's CSV under ``out``."""
    out = Path(out)
    all_rows: list[dict] = []
    tasks = [t for t in spec["tasks"] if (out / "runs" / t / "results.csv").is_file()]
    for t in tasks:
        all_rows += read_rows(out / "runs" / t / "results.csv")
    write_rows(out / "results.csv", all_rows)
    md = [
        f"# Paper study, preset `{preset}`",
        "",
        f"Command: `{command}`",
        "",
        "Test accuracy in %, mean ± sample std over seeds (n = number of seeds). Every r-state "
        "model has the same parameters whatever its init (per-channel poles; see "
        "`benchmarks/paper.py`). `SSM params` counts Lambda, log_dt and W of all layers; "
        "`train s` is the mean wall-clock training time of one run (shared 2-core machine).",
        "",
    ]
    if not modal_available():
        md += [
            "Modal truncation baseline: **skipped** — `sysred` has no `modal_truncation`, so "
            "`reduce_model(method='modal')` raises NotImplementedError.",
            "",
        ]
    for t in tasks:
        rows = [r for r in all_rows if r["task"] == t]
        ts = spec["tasks"][t]
        md += _task_markdown(t, ts, rows)
        _plots(out, t, rows, ts)
    md += [
        "",
        "Plots: " + ", ".join(f"`acc_vs_r_{t}.png`, `hsv_{t}.png`, `corr_{t}.png`" for t in tasks),
    ]
    atomic_write(out / "results.md", "\n".join(md) + "\n")


def _task_markdown(t: str, ts: dict, rows: list[dict]) -> list[str]:
    m = ts["model"]
    md = [
        f"## {t}",
        "",
        f"Task `{ts['task']['name']}` ({', '.join(f'{k}={v}' for k, v in ts['task'].items() if k not in ('name', 'data_dir'))}); "  # noqa: E501
        f"model d_model={m['d_model']}, n_layers={m['n_layers']}, N={m['d_state']}; "
        f"pre-training {ts['pre_epochs']} epochs, main training {ts['main_epochs']} epochs; "
        f"train {ts['train']}. Runs recorded: {len(rows)}.",
        "",
        "| r | init | epochs | test acc % | val acc % | SSM params | total params | train s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ok = [r for r in rows if r["status"] == "ok" and r["init"] != "corr"]
    keys = sorted(
        {(int(r["r"]), r["init"]) for r in ok},
        key=lambda k: (-k[0], INIT_ORDER.index(k[1]) if k[1] in INIT_ORDER else 99),
    )
    for r, init in keys:
        grp = [x for x in ok if int(x["r"]) == r and x["init"] == init]
        ep = sorted({x["epochs"] for x in grp})
        tsec = _stats([_f(x, "train_seconds") for x in grp])[0]
        md.append(
            f"| {r} | {INIT_LABEL.get(init, init)} | {'/'.join(ep)} | "
            f"{_pm([_f(x, 'test_acc') for x in grp])} | {_pm([_f(x, 'val_acc') for x in grp])} | "
            f"{grp[0]['ssm_params']} | {grp[0]['total_params']} | {tsec:.0f} |"
        )
    failed = [r for r in rows if r["status"] != "ok"]
    if failed:
        md += ["", "Failed runs: " + "; ".join(f"{r['run_id']}: {r['note']}" for r in failed)]
    md += [
        "",
        "**Claim 1 — BT init vs baselines at each r** (difference of means vs the larger "
        "of the two seed stds):",
        "",
        "| r | baseline | BT % | baseline % | diff (pp) | spread (pp) | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in verdicts(rows):
        md.append(
            f"| {v['r']} | {INIT_LABEL[v['base']]} | {100 * v['bt']:.2f} | "
            f"{100 * v['other']:.2f} | {100 * v['diff']:+.2f} | {100 * v['spread']:.2f} | "
            f"{v['verdict']} |"
        )
    c = correlation(corr_points(rows))
    md += [
        "",
        "**Claim 2 — correlation** between the accuracy of the model that was reduced "
        f"(pre-training snapshots after {ts['corr_epochs']} and {ts['pre_epochs']} epochs, "
        f"all seeds) and the accuracy after BT to r={ts['corr_rank']} + main training:",
        "",
    ]
    if c is None:
        md.append("not enough points yet.")
    else:
        md.append(
            f"n = {c['n']} points: Pearson r = {c['pearson'][0]:+.3f} (p = {c['pearson'][1]:.3g}), "
            f"Spearman rho = {c['spearman'][0]:+.3f} (p = {c['spearman'][1]:.3g})."
        )
    md.append("")
    return md


def _plots(out: Path, t: str, rows: list[dict], ts: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok"]
    # accuracy vs r, one line per init
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, init in enumerate(["bt", "bt0", "hippo", "hippo-long", "reinit", "modal", "modal0"]):
        grp = [x for x in ok if x["init"] == init]
        rs = sorted({int(x["r"]) for x in grp})
        if not rs:
            continue
        st = [_stats([_f(x, "test_acc") for x in grp if int(x["r"]) == r]) for r in rs]
        ax.errorbar(
            rs,
            [100 * s[0] for s in st],
            yerr=[100 * s[1] for s in st],
            marker="o",
            capsize=3,
            label=INIT_LABEL[init],
            color=f"C{i}",
            ls="--" if init.endswith("0") else "-",
        )
    for init, ls in (("full", ":"), ("pretrained", "-.")):
        m, s, n = _stats([_f(x, "test_acc") for x in ok if x["init"] == init])
        if n:
            ax.axhline(100 * m, color="k", ls=ls, lw=1, label=f"{INIT_LABEL[init]}")
    ax.set_xscale("log", base=2)
    ax.set(
        xlabel="state dimension r",
        ylabel="test accuracy (%)",
        title=f"{t}: accuracy vs r (mean ± std over seeds)",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"acc_vs_r_{t}.png", dpi=110)
    plt.close(fig)
    # correlation scatter
    pts = corr_points(rows)
    c = correlation(pts)
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    for p in pts:
        ax.scatter(100 * _f(p, "source_acc"), 100 * _f(p, "test_acc"), color="C0")
        ax.annotate(
            f"e{p['snapshot_epoch']} s{p['seed']}",
            (100 * _f(p, "source_acc"), 100 * _f(p, "test_acc")),
            fontsize=6,
        )
    title = f"{t}: BT to r={ts['corr_rank']} + main training"
    if c is not None:
        title += f"\nPearson {c['pearson'][0]:+.2f}, Spearman {c['spearman'][0]:+.2f}"
    ax.set(
        xlabel="original model test acc (%)",
        ylabel="compressed + trained test acc (%)",
        title=title,
    )
    fig.tight_layout()
    fig.savefig(out / f"corr_{t}.png", dpi=110)
    plt.close(fig)


def _plot_hsv(out: Path, t: str, hsvs: list[np.ndarray]) -> None:
    from s4dss.demo import plot_hsv

    plot_hsv(hsvs, out / f"hsv_{t}.png")


# ----------------------------------------------------------------------------- entry point


def resolve_preset(name: str, data_dir: str | None) -> dict:
    spec = copy.deepcopy(PRESETS[name])
    for ts in spec["tasks"].values():
        dd = ts["task"].get("data_dir")
        if isinstance(dd, str) and "{data_dir}" in dd:
            if data_dir is None:
                raise SystemExit(f"preset {name!r} reads the real LRA files: pass --data-dir")
            ts["task"]["data_dir"] = dd.format(data_dir=data_dir)
    return spec


def run_study(
    spec: dict,
    out: Path,
    *,
    resume: bool = False,
    preset: str = "custom",
    command: str = "",
    tasks: list[str] | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, list[str]]:
    """Run (or continue) every task of ``spec``; returns the run ids executed per task."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / ".gitignore", "runs/\ndata/\n*.log\n*.tmp\n")
    threads = spec.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    executed = {}
    for name, ts in spec["tasks"].items():
        if tasks and name not in tasks:
            continue
        study = TaskStudy(name, ts, spec["seeds"], out, resume, device=device, progress=progress)
        try:
            study.run()
        finally:
            executed[name] = study.executed
            if any(r["init"] == "pretrained" for r in study.rows):
                _plot_hsv(out, name, study.hsvs(spec["seeds"][0]))
            write_report(out, preset, spec, command)
    return executed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", choices=sorted(PRESETS), required=True)
    p.add_argument("--out", type=Path, required=True, help="results folder")
    p.add_argument("--resume", action="store_true", help="skip finished runs, continue the rest")
    p.add_argument("--data-dir", help="root of the real LRA files (preset lra)")
    p.add_argument("--tasks", help="comma-separated subset of the preset's tasks")
    p.add_argument("--threads", type=int, help="torch threads (default: the preset's)")
    p.add_argument("--seeds", help="comma-separated seeds instead of the preset's (e.g. 0,1,2,3,4)")
    p.add_argument("--device", default="cpu", help="e.g. cuda (preset lra)")
    p.add_argument("--report-only", action="store_true", help="rebuild table/plots from CSVs")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    spec = resolve_preset(args.preset, args.data_dir)
    if args.threads:
        spec["threads"] = args.threads
    if args.seeds:
        spec["seeds"] = [int(x) for x in args.seeds.split(",")]
    argv_used = sys.argv[1:] if argv is None else argv
    # the command that reproduces the study (resume/report flags and task subsets do not
    # change results: every run is deterministic given its seed)
    shown, skip = [], False
    for a in argv_used:
        if skip or a in ("--report-only", "--resume", "--no-progress"):
            skip = False
            continue
        if a == "--tasks":
            skip = True
            continue
        if not a.startswith("--tasks="):
            shown.append(a)
    command = "python benchmarks/paper.py " + " ".join(shown)
    if args.report_only:
        write_report(args.out, args.preset, spec, command)
        return 0
    tasks = args.tasks.split(",") if args.tasks else None
    t0 = time.perf_counter()
    executed = run_study(
        spec,
        args.out,
        resume=args.resume,
        preset=args.preset,
        command=command,
        tasks=tasks,
        device=args.device,
        progress=not args.no_progress,
    )
    n = sum(len(v) for v in executed.values())
    print(
        f"study done: {n} runs executed in {time.perf_counter() - t0:.0f} s; "
        f"results in {args.out}/results.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
