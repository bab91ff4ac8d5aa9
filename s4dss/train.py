"""Training and evaluation: deterministic, resumable, optionally data-parallel.

:func:`train` works with any ``nn.Module`` mapping a batch ``x`` (and, if its ``forward`` takes
it, ``lengths``) to logits ``(B, n_classes)``, and with any :class:`~s4dss.data.TaskData`.

Exact resumption rests on three choices:

- the batch order of epoch ``e`` is a permutation drawn from its own generator seeded by
  ``(seed, e)``, so a resumed run can jump to any step without replaying the data pipeline;
- interrupts (Ctrl-C, SIGTERM) only set a flag; the loop stops at the next step boundary and
  checkpoints the exact position (epoch, step within epoch), optimizer, scheduler and RNG states;
- ``metrics.jsonl`` is cut back, on resume, to its size at the checkpoint, so records written
  after the checkpoint by a killed run are not duplicated.

The loop (:class:`Trainer`) only steps, validates, checkpoints and resumes; the progress bar, the
train records, regularisers and in-training reduction are :mod:`s4dss.callbacks` reacting to its
events. Epochs are numbered from 1 wherever a user sees them: the progress bar shows ``epoch k/E``
and every ``metrics.jsonl`` record written during or at the end of the k-th epoch has ``"epoch":
k``; ``summary.json`` has ``"epoch"`` (the epoch of its last records: the number of completed
epochs unless the run stopped mid-epoch) and ``"epochs_completed"``; ``best.epoch`` is the epoch
of the best ``val`` record. (The checkpoint's internal ``position.epoch`` counts completed
epochs.)

Data parallelism: when ``torch.distributed`` is initialised (``torchrun``, gloo on CPU), each
global batch is split across ranks and every rank's loss is scaled so that DDP's gradient
average equals the single-process mean over the global batch.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import random
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from s4dss.callbacks import Callback, MetricsLog, ProgressBar, StepOutput
from s4dss.checkpoint import (
    capture_rng,
    load_checkpoint,
    load_model_state,
    restore_rng,
    save_checkpoint,
)
from s4dss.data.common import TaskData

SCHEDULES = ("cosine", "plateau", "constant")
# keys that may change between an interrupted run and its resumption without changing results
RESUME_SAFE = ("train.progress", "train.log_every", "train.interrupt_after_steps", "run.dir")


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train` (the ``train`` section of a run config).

    Attributes
    ----------
    epochs : int
    batch_size : int
        Global batch size (split across ranks under DDP).
    eval_batch_size : int
    lr, weight_decay : float
        AdamW settings of the non-SSM parameters; the SSM parameters keep the lr and weight
        decay (0) of the model's own parameter groups.
    schedule : {"cosine", "plateau", "constant"}
        Cosine decay per step after ``warmup_steps`` linear warm-up, or reduce-on-plateau of
        the validation loss per epoch (factor ``plateau_factor``, ``plateau_patience``).
    grad_clip : float or None
        Maximum global gradient norm.
    seed : int
        Seeds model initialisation (in the CLI), batch order and dropout.
    max_steps : int or None
        Stop after this many optimizer steps (smoke runs); the run then counts as finished.
    progress : bool
        Show a tqdm bar (rank 0 only).
    log_every : int
        Write a train record to ``metrics.jsonl`` every this many steps.
    num_threads : int or None
        ``torch.set_num_threads``; results are bit-reproducible for a fixed thread count.
    interrupt_after_steps : int or None
        Test hook: behave as if Ctrl-C arrived after this many steps of this process.
    hsv_reg : dict or None
        Hankel-singular-value regulariser added to the loss, e.g. ``{"weight": 0.1, "order":
        16}``; keys of :class:`s4dss.regularizers.HSVRegConfig`.
    reduce : dict or None
        In-training reduction of the DSS layers, e.g. ``{"at_epochs": [3], "rank": 16}``; keys
        of :class:`s4dss.intrain.ReduceConfig`.
    """

    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 128
    lr: float = 4e-3
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_steps: int = 0
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    grad_clip: float | None = 1.0
    seed: int = 0
    max_steps: int | None = None
    progress: bool = True
    log_every: int = 10
    num_threads: int | None = None
    interrupt_after_steps: int | None = None
    hsv_reg: dict | None = None
    reduce: dict | None = None

    def __post_init__(self):
        # every field is checked by its rule in s4dss.config.TRAIN (add one there with a new
        # field); ConfigError (a ValueError) names the key, the value and what is allowed
        from s4dss.config import check_train

        for key, value in check_train(asdict(self)).items():
            setattr(self, key, value)
        # sections (mappings) check their own keys and ranges; errors name the section
        from s4dss.config import ConfigError

        try:
            if self.hsv_reg is not None:
                from s4dss.regularizers import HSVRegConfig

                HSVRegConfig.from_dict(self.hsv_reg)
            if self.reduce is not None:
                from s4dss.intrain import ReduceConfig

                ReduceConfig.from_dict(self.reduce, epochs=self.epochs)
        except ConfigError:
            raise
        except (TypeError, ValueError) as e:
            raise ConfigError(str(e)) from None


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked at step boundaries (a second Ctrl-C aborts)."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: interrupts stay default
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def dist_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python, and ask torch for deterministic kernels."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the global RNG others may use)
    random.seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _accepts_lengths(model: nn.Module) -> bool:
    target = model.module if hasattr(model, "module") else model
    try:
        return "lengths" in inspect.signature(target.forward).parameters
    except (TypeError, ValueError):
        return False


def _forward(model: nn.Module, x, lengths, use_lengths: bool):
    return model(x, lengths=lengths) if use_lengths else model(x)


def default_param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """The model's SSM groups when it has DSS layers, else one group for everything."""
    from s4dss.model import param_groups

    return param_groups(model, lr=lr, weight_decay=weight_decay)


def _epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def _steps_per_epoch(n: int, batch_size: int, world: int) -> int:
    steps = math.ceil(n / batch_size)
    # a last global batch with fewer items than ranks cannot be split; drop it
    if steps and n - (steps - 1) * batch_size < world:
        steps -= 1
    return steps


def _make_scheduler(opt, cfg: TrainConfig, total_steps: int):
    if cfg.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience
        )
    warm = cfg.warmup_steps

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset, collate: Callable, batch_size: int = 128
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``dataset`` (sharded under DDP).

    Returns
    -------
    dict
        ``{"loss": float, "acc": float, "n": int}`` over the whole dataset.
    """
    rank, world = dist_info()
    was_training = model.training
    model.eval()
    use_lengths = _accepts_lengths(model)
    target = model.module if hasattr(model, "module") else model  # no DDP hooks in eval
    idx = list(range(rank, len(dataset), world))
    loss_sum = correct = 0.0
    for start in range(0, len(idx), batch_size):
        x, y, lengths = collate([dataset[i] for i in idx[start : start + batch_size]])
        logits = _forward(target, x, lengths, use_lengths)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        correct += float((logits.argmax(-1) == y).sum())
    totals = torch.tensor([loss_sum, correct, float(len(idx))], dtype=torch.float64)
    if world > 1:
        dist.all_reduce(totals)
    model.train(was_training)
    n = int(totals[2])
    return {"loss": float(totals[0]) / max(n, 1), "acc": float(totals[1]) / max(n, 1), "n": n}


class _Metrics:
    """Append-only JSON-lines log (rank 0 only), truncatable to a checkpointed size."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = Path(path), enabled

    def truncate(self, size: int) -> None:
        if self.enabled and self.path.exists():
            with open(self.path, "r+b") as f:
                f.truncate(size)

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def write(self, record: dict) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


class Trainer:
    """The training loop; features beyond it are :mod:`s4dss.callbacks` reacting to its events.

    One epoch: ``steps_per_epoch`` optimizer steps over a seeded permutation of the training set,
    then validation, then the callbacks' ``on_epoch_end`` (which may change the model), then
    ``last.pt`` (and ``best.pt`` when the validation accuracy improved). See :func:`train` for the
    parameters; :meth:`fit` runs it and returns the summary.

    Attributes callbacks use
    ------------------------
    model : nn.Module
        The model being trained (the same object throughout; reductions swap its submodules).
    cfg : TrainConfig
    task : TaskData
    opt, sched
        The AdamW optimizer and the learning-rate scheduler (rebuilt by :meth:`replace_modules`).
    epoch : int
        Epochs completed before the current one (0-based index of the current epoch).
    step_in_epoch, global_step : int
        Optimizer steps done in this epoch / in the whole run.
    best : dict
        ``{"val_acc", "epoch"}`` of the best validation so far (``epoch`` 1-based, -1: none).
    model_config : dict
        Constructor arguments that rebuild the current architecture (stored in checkpoints).
    rank, world : int
    steps_per_epoch, total_steps : int
    step_logs : dict
        Values logged this step with :meth:`log_step`, added to the next ``train`` record.
    """

    def __init__(
        self,
        model: nn.Module,
        task: TaskData,
        cfg: TrainConfig | dict,
        run_dir: Path,
        *,
        param_groups: Callable[[nn.Module, float, float], list[dict]] | None = None,
        run_config: dict | None = None,
        model_config: dict | None = None,
        callbacks: Sequence[Callback] = (),
    ):
        self.cfg = cfg = TrainConfig(**cfg) if isinstance(cfg, dict) else cfg
        self.model, self.task, self.run_dir = model, task, Path(run_dir)
        self.rank, self.world = dist_info()
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        if cfg.batch_size % self.world and self.rank == 0:
            print(
                f"note: batch_size {cfg.batch_size} is uneven over {self.world} ranks",
                file=sys.stderr,
            )
        self.run_config = run_config if run_config is not None else {"train": asdict(cfg)}
        self.model_config = (
            model_config if model_config is not None else getattr(model, "config", {})
        )
        self._param_groups = param_groups or default_param_groups
        self.n_train = len(task.train)
        self.steps_per_epoch = _steps_per_epoch(self.n_train, cfg.batch_size, self.world)
        if self.steps_per_epoch == 0:
            raise ValueError(f"task {task.name!r} has too few training items ({self.n_train})")
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        self.metrics = _Metrics(self.run_dir / "metrics.jsonl", enabled=self.rank == 0)
        self.last_path, self.best_path = self.run_dir / "last.pt", self.run_dir / "best.pt"
        self.epoch = self.step_in_epoch = self.global_step = 0
        self.best = {"val_acc": -1.0, "epoch": -1}
        self.callbacks = list(callbacks)
        keys = [cb.state_key for cb in self.callbacks]
        if len(set(keys)) != len(keys):
            raise ValueError(f"callbacks need distinct state_key values, got {keys}")
        self.step_logs: dict = {}
        self.ddp_model = model
        self.opt, self.sched = self._build_optimizer()
        self.stop_requested = False
        self._best_changed = False

    # ------------------------------------------------------------ for callbacks

    @property
    def epoch_number(self) -> int:
        """The current epoch, 1-based: what the progress bar and the metrics records show."""
        return self.epoch + 1

    def log(self, record: dict) -> None:
        """Append a record to ``metrics.jsonl`` (rank 0)."""
        self.metrics.write(record)

    def log_step(self, **values) -> None:
        """Add ``values`` to this step's ``train`` record (written every ``log_every`` steps)."""
        self.step_logs.update(values)

    def evaluate(self, split: str = "val") -> dict:
        """:func:`evaluate` of the current model on ``split`` ("train", "val" or "test")."""
        data = getattr(self.task, split)
        return evaluate(self.model, data, self.task.collate, self.cfg.eval_batch_size)

    def set_best(self, val_acc: float) -> None:
        """Make the current model the best one (``best.pt`` is rewritten after this epoch)."""
        self.best = {"val_acc": float(val_acc), "epoch": self.epoch_number}
        self._best_changed = True

    def replace_modules(self, modules: dict[str, nn.Module], fresh: Sequence[str] = ()) -> dict:
        """Swap submodules of the model in place and rebuild optimizer, scheduler and DDP.

        The new AdamW has the same parameter groups (built by ``param_groups`` from the changed
        model) and each group's current learning rate; the scheduler is rebuilt and given the
        old one's state, so the schedule continues where it was (no restart, no re-warm-up).
        The AdamW state (``step``, ``exp_avg``, ``exp_avg_sq``) of a parameter is carried over
        when the new model has a parameter of the same name and shape that is either the same
        tensor (outside the swapped modules) or has exactly the same values (e.g. a layer's
        output projection copied into its reduced version), and the name is not in ``fresh``.
        Every other parameter starts fresh (zero moments, bias correction from its first step),
        as a new parameter would.

        Parameters
        ----------
        modules : dict
            ``{dotted submodule name: new module}``.
        fresh : sequence of str
            Parameter names whose optimizer state must not be carried over even though their
            shape is unchanged (e.g. poles of a layer in a new basis).

        Returns
        -------
        dict
            ``{"kept": [names], "fresh": [names]}`` of the new model's parameters.
        """
        old = {name: p for name, p in self.model.named_parameters()}
        old_state = {name: self.opt.state.get(p) for name, p in old.items()}
        old_lrs = [(g["lr"], g.get("initial_lr")) for g in self.opt.param_groups]
        sched_state = self.sched.state_dict()
        for name, module in modules.items():
            self.model.set_submodule(name, module)
        opt, sched = self._build_optimizer()
        if len(opt.param_groups) != len(old_lrs):
            raise RuntimeError(
                f"the changed model has {len(opt.param_groups)} optimizer groups, the old one "
                f"{len(old_lrs)}: the learning-rate schedule cannot be continued"
            )
        for group, (lr, initial) in zip(opt.param_groups, old_lrs, strict=True):
            group["lr"] = lr
            if initial is not None:
                group["initial_lr"] = initial
        sched.load_state_dict(sched_state)
        kept, new = [], []
        skip = set(fresh)
        for name, p in self.model.named_parameters():
            state, before = old_state.get(name), old.get(name)
            same = before is not None and before.shape == p.shape
            same = same and (before is p or torch.equal(before.detach(), p.detach()))
            if state and same and name not in skip:
                opt.state[p] = {k: v.clone() for k, v in state.items()}
                kept.append(name)
            else:
                new.append(name)
        self.opt, self.sched = opt, sched
        if self.world > 1:  # DDP registers parameters at construction (and syncs from rank 0)
            self.ddp_model = nn.parallel.DistributedDataParallel(self.model)
        return {"kept": kept, "fresh": new}

    # ------------------------------------------------------------ the loop

    def _build_optimizer(self):
        groups = self._param_groups(self.model, self.cfg.lr, self.cfg.weight_decay)
        opt = torch.optim.AdamW(groups, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        return opt, _make_scheduler(opt, self.cfg, self.total_steps)

    def _resume(self) -> None:
        ck = load_checkpoint(self.last_path, kind="train")
        from s4dss.config import diff

        changed = diff(ck["config"], self.run_config, ignore=RESUME_SAFE)
        if changed:
            raise ValueError(
                f"cannot resume {self.last_path}: the config differs from the checkpoint's in "
                + "; ".join(changed)
            )
        for cb in self.callbacks:
            cb.on_load_checkpoint(self, ck)
        load_model_state(self.model, ck["model_state"], source=str(self.last_path))
        self.model_config = ck.get("model_config", self.model_config)
        self.opt, self.sched = self._build_optimizer()  # for the (possibly changed) model
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        states = ck.get("callbacks", {})
        for cb in self.callbacks:
            if cb.state_key in states:
                cb.load_state_dict(states[cb.state_key])
        restore_rng(ck["rng"])
        self.epoch, self.step_in_epoch, self.global_step = (
            ck["position"][k] for k in ("epoch", "step_in_epoch", "global_step")
        )
        self.best = dict(ck["best"])
        self.metrics.truncate(ck["metrics_bytes"])
        self.log({"event": "resume", "epoch": self.epoch_number, "step": self.global_step})

    def checkpoint(self, path: Path) -> None:
        """Write the exact training state to ``path`` (rank 0; atomic)."""
        if self.rank == 0:
            states = {cb.state_key: cb.state_dict() for cb in self.callbacks}
            save_checkpoint(
                path,
                {
                    "model_config": self.model_config,
                    "model_state": self.model.state_dict(),
                    "config": self.run_config,
                    "optimizer": self.opt.state_dict(),
                    "scheduler": self.sched.state_dict(),
                    "rng": capture_rng(),
                    "position": {
                        "epoch": self.epoch,  # internal: epochs completed (0-based index)
                        "step_in_epoch": self.step_in_epoch,
                        "global_step": self.global_step,
                    },
                    "best": self.best,
                    "metrics_bytes": self.metrics.size(),
                    "task": self.task.summary(),
                    "callbacks": {k: v for k, v in states.items() if v},
                },
            )
        for cb in self.callbacks:
            cb.on_checkpoint(self, path)

    def _step(self, order: torch.Tensor, use_lengths: bool) -> bool:
        """One optimizer step on the next global batch; True when the run must stop."""
        cfg, world = self.cfg, self.world
        start = self.step_in_epoch * cfg.batch_size
        batch = order[start : start + cfg.batch_size]
        n_global = len(batch)
        local = batch[self.rank :: world].tolist()
        x, y, lengths = self.task.collate([self.task.train[i] for i in local])
        self.step_logs = {}
        logits = _forward(self.ddp_model, x, lengths, use_lengths)
        # sum / global count, times world (DDP averages over ranks): the global mean
        loss = nn.functional.cross_entropy(logits, y, reduction="sum") * (world / n_global)
        total = loss
        for cb in self.callbacks:
            extra = cb.extra_loss(self)
            if extra is not None:
                total = total + extra
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        if cfg.grad_clip:
            gnorm = float(nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
        else:
            gnorm = float("nan")
        self.opt.step()
        if cfg.schedule != "plateau":
            self.sched.step()
        self.step_in_epoch += 1
        self.global_step += 1
        self._steps_this_process += 1
        if cfg.interrupt_after_steps and self._steps_this_process == cfg.interrupt_after_steps:
            self.stop_requested = True
        stop = self.stop_requested or self._signals.requested
        # one all-reduce per step: the global batch loss for the log, and the stop flag
        # (every rank must stop at the same step)
        shared = torch.tensor([float(loss.detach()) / world, float(stop)], dtype=torch.float64)
        if world > 1:
            dist.all_reduce(shared)
        out = StepOutput(float(shared[0]), logits, y, gnorm)
        for cb in self.callbacks:
            cb.on_step_end(self, out)
        return bool(shared[1] > 0)

    def _end_epoch(self, train_seconds: float) -> None:
        """Validation, the callbacks' ``on_epoch_end``, then ``last.pt`` (and ``best.pt``)."""
        # wall-clock figures go in "*_seconds" keys; everything else is reproducible
        t_eval = time.perf_counter()
        val = self.evaluate("val")
        val["eval_seconds"] = time.perf_counter() - t_eval
        val["train_seconds"] = train_seconds  # of this process's part of the epoch
        if self.cfg.schedule == "plateau":
            self.sched.step(val["loss"])
        self._best_changed = val["acc"] > self.best["val_acc"]
        if self._best_changed:
            self.best = {"val_acc": val["acc"], "epoch": self.epoch_number}
        self.log({"event": "val", "epoch": self.epoch_number, "step": self.global_step, **val})
        for cb in self.callbacks:
            cb.on_epoch_end(self, val)
        self.epoch += 1
        self.step_in_epoch = 0
        self.checkpoint(self.last_path)
        if self._best_changed:
            self.checkpoint(self.best_path)
        if self.world > 1:
            dist.barrier()

    def fit(self, resume: bool = False) -> dict:
        """Run (or, with ``resume``, continue) the training; returns the summary."""
        cfg = self.cfg
        if resume:
            self._resume()
        elif self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.metrics.truncate(0)
            self.log({"event": "start", "task": self.task.summary(), "world_size": self.world})
        if self.world > 1:
            self.ddp_model = nn.parallel.DistributedDataParallel(self.model)
        use_lengths = _accepts_lengths(self.model)
        for cb in self.callbacks:
            cb.on_train_start(self)
        status = "finished"
        self._steps_this_process = 0
        with _StopFlag() as self._signals:
            while self.epoch < cfg.epochs and not self._max_steps_done():
                self.ddp_model.train()
                t_epoch = time.perf_counter()
                order = _epoch_order(self.n_train, cfg.seed, self.epoch)
                for cb in self.callbacks:
                    cb.on_epoch_start(self)
                while self.step_in_epoch < self.steps_per_epoch and not self._max_steps_done():
                    if self._step(order, use_lengths):
                        status = "interrupted"
                        break
                for cb in self.callbacks:
                    cb.on_epoch_train_end(self)
                if status == "interrupted":
                    self.checkpoint(self.last_path)
                    at = {"epoch": self.epoch_number, "step": self.global_step}
                    self.log({"event": "interrupted", **at})
                    break
                if self.step_in_epoch < self.steps_per_epoch:  # max_steps reached mid-epoch
                    break
                self._end_epoch(time.perf_counter() - t_epoch)
        return self._finish(status)

    def _max_steps_done(self) -> bool:
        return self.cfg.max_steps is not None and self.global_step >= self.cfg.max_steps

    def _finish(self, status: str) -> dict:
        mid_epoch = self.step_in_epoch > 0
        summary = {
            "status": status,
            # the epoch of the last records: the one in progress when stopped mid-epoch
            "epoch": self.epoch_number if mid_epoch else self.epoch,
            "epochs_completed": self.epoch,
            "step": self.global_step,
            "best": self.best,
        }
        if status == "finished":
            if mid_epoch:  # stopped by max_steps mid-epoch: keep the final state too
                self.checkpoint(self.last_path)
            summary["val"] = self.evaluate("val")
            summary["test"] = self.evaluate("test")
            self.log({"event": "test", "step": self.global_step, **summary["test"]})
            if self.best_path.exists():
                # LRA practice: report test accuracy of the epoch with the best validation accuracy
                summary["test_at_best_val"] = evaluate(
                    self._best_model(), self.task.test, self.task.collate, self.cfg.eval_batch_size
                )
        for cb in self.callbacks:
            cb.on_train_end(self, summary)
        if status == "finished" and self.rank == 0:
            tmp = self.run_dir / "summary.json.tmp"
            tmp.write_text(json.dumps(summary, indent=1) + "\n")
            tmp.replace(self.run_dir / "summary.json")
        return summary

    def _best_model(self) -> nn.Module:
        ck = load_checkpoint(self.best_path, kind="train")
        if ck.get("model_config") == self.model_config:
            best_model = copy.deepcopy(self.model)
        else:  # best.pt holds an earlier architecture (e.g. before an in-training reduction)
            best_model = model_from_config(ck["model_config"])
        load_model_state(best_model, ck["model_state"], source=str(self.best_path))
        return best_model


def train(
    model: nn.Module,
    task: TaskData,
    cfg: TrainConfig | dict,
    run_dir: Path,
    *,
    resume: bool = False,
    param_groups: Callable[[nn.Module, float, float], list[dict]] | None = None,
    run_config: dict | None = None,
    model_config: dict | None = None,
    callbacks: Sequence[Callback] = (),
) -> dict:
    """Train ``model`` on ``task``, checkpointing to ``run_dir`` every epoch and on interrupt.

    Parameters
    ----------
    model : nn.Module
        Maps ``x`` (and ``lengths=`` if its forward accepts it) to logits ``(B, n_classes)``.
        Trained in place (an in-training reduction swaps its DSS layers in place too).
    task : TaskData
    cfg : TrainConfig or dict
        ``cfg.hsv_reg`` and ``cfg.reduce`` add the :class:`~s4dss.regularizers.HSVRegularizer`
        and :class:`~s4dss.intrain.InTrainingReduction` callbacks.
    run_dir : Path
        Gets ``last.pt``, ``best.pt``, ``metrics.jsonl`` and ``summary.json``.
    resume : bool
        Continue from ``run_dir/last.pt`` exactly where it stopped.
    param_groups : callable, optional
        ``f(model, lr, weight_decay) -> list of param-group dicts``; default
        :func:`default_param_groups` (SSM parameters at their own lr, no weight decay).
    run_config : dict, optional
        The resolved run config, stored in checkpoints and compared on resume.
    model_config : dict, optional
        Constructor arguments that rebuild the model (``S4Model(**model_config)``); defaults to
        ``model.config`` when the model has one.
    callbacks : sequence of Callback, optional
        Extra :class:`~s4dss.callbacks.Callback` objects (run after the configured ones, before
        the metrics log and the progress bar).

    Returns
    -------
    dict
        Summary: ``status`` ("finished" or "interrupted"), ``epoch`` (1-based epoch of the last
        records: the number of completed epochs unless stopped mid-epoch), ``epochs_completed``,
        ``step``, ``best`` (``val_acc`` and its 1-based ``epoch``), final ``val``/``test``
        metrics and ``test_at_best_val``.
    """
    cfg = TrainConfig(**cfg) if isinstance(cfg, dict) else cfg
    chain = [*configured_callbacks(cfg, task), *callbacks, MetricsLog(cfg.log_every)]
    if cfg.progress:
        chain.append(ProgressBar())
    loop = Trainer(
        model,
        task,
        cfg,
        run_dir,
        param_groups=param_groups,
        run_config=run_config,
        model_config=model_config,
        callbacks=chain,
    )
    return loop.fit(resume=resume)


def configured_callbacks(cfg: TrainConfig, task: TaskData) -> list[Callback]:
    """The callbacks the config asks for: HSV regulariser (``hsv_reg``), reduction (``reduce``)."""
    out: list[Callback] = []
    if cfg.hsv_reg:
        from s4dss.regularizers import HSVRegularizer

        out.append(HSVRegularizer.from_config(cfg.hsv_reg, task, seed=cfg.seed))
    if cfg.reduce:
        from s4dss.intrain import InTrainingReduction

        out.append(InTrainingReduction.from_config(cfg.reduce, task))
    return out


class PairClassifier(nn.Module):
    """Two-tower classifier for document-pair tasks (LRA Retrieval / AAN).

    One shared :class:`s4dss.S4Model` encodes each document to a pooled ``d_model`` vector
    (its decoder is a ``d_model -> d_model`` projection); an MLP classifies
    ``[u, v, u*v, u-v]``, the LRA dual-encoder head.

    Parameters
    ----------
    n_classes : int
    d_hidden : int, optional
        Width of the head's hidden layer (default ``d_model``).
    **encoder
        :class:`s4dss.S4Model` arguments except ``d_output``.
    """

    def __init__(self, n_classes: int, d_hidden: int | None = None, **encoder):
        super().__init__()
        from s4dss.model import S4Model

        encoder.pop("d_output", None)
        d_model = encoder.setdefault("d_model", 64)
        self.n_classes, self.d_hidden = n_classes, d_hidden or d_model
        self.encoder = S4Model(d_output=d_model, **encoder)
        self.head = nn.Sequential(
            nn.Linear(4 * d_model, self.d_hidden), nn.GELU(), nn.Linear(self.d_hidden, n_classes)
        )

    @property
    def config(self) -> dict:
        """Constructor arguments (always in step with the encoder's, e.g. after reduction)."""
        enc = {k: v for k, v in self.encoder.config.items() if k != "d_output"}
        return {"kind": "pair", "n_classes": self.n_classes, "d_hidden": self.d_hidden, **enc}

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(B, 2, L)`` token ids, ``lengths`` ``(B, 2)`` -> logits ``(B, n_classes)``."""
        B = x.shape[0]
        flat_len = None if lengths is None else lengths.reshape(-1)
        z = self.encoder(x.reshape(B * 2, *x.shape[2:]), lengths=flat_len).view(B, 2, -1)
        u, v = z[:, 0], z[:, 1]  # (B d_model)
        return self.head(torch.cat([u, v, u * v, u - v], dim=-1))


def model_from_config(config: dict) -> nn.Module:
    """Rebuild a model from a checkpoint's ``model_config`` (S4Model or PairClassifier)."""
    config = dict(config)
    if config.pop("kind", None) == "pair":
        return PairClassifier(**config)
    from s4dss.model import S4Model

    return S4Model(**config)


def build_model(model_cfg: dict, task: TaskData) -> nn.Module:
    """Build the model a config describes, sized for ``task``.

    ``model_cfg["name"]`` is ``"s4"`` (:class:`s4dss.S4Model`); the remaining keys are its
    constructor arguments. ``d_output`` and ``vocab_size``/``d_input`` come from the task. For
    pair tasks (AAN) the model is a :class:`PairClassifier` around such an encoder (extra
    option ``d_hidden``).
    """
    cfg = dict(model_cfg)
    name = cfg.pop("name", "s4")
    if name != "s4":
        raise ValueError(f"unknown model.name {name!r}; available: 's4'")
    from s4dss.model import S4Model

    for key in ("d_output", "vocab_size", "d_input"):
        if key in cfg:
            raise ValueError(f"model.{key} is set from the task; remove it from the config")
    if task.vocab_size is not None:
        cfg["vocab_size"] = task.vocab_size
    else:
        cfg["d_input"] = task.d_input
    try:
        if task.pair:
            return PairClassifier(task.n_classes, **cfg)
        cfg.pop("d_hidden", None)
        return S4Model(d_output=task.n_classes, **cfg)
    except TypeError as e:
        raise TypeError(f"model section: {e}") from None
