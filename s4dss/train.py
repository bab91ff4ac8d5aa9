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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

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

    def __post_init__(self):
        # every field is checked by its rule in s4dss.config.TRAIN (add one there with a new
        # field); ConfigError (a ValueError) names the key, the value and what is allowed
        from s4dss.config import check_train

        for key, value in check_train(asdict(self)).items():
            setattr(self, key, value)


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
) -> dict:
    """Train ``model`` on ``task``, checkpointing to ``run_dir`` every epoch and on interrupt.

    Parameters
    ----------
    model : nn.Module
        Maps ``x`` (and ``lengths=`` if its forward accepts it) to logits ``(B, n_classes)``.
    task : TaskData
    cfg : TrainConfig or dict
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

    Returns
    -------
    dict
        Summary: ``status`` ("finished" or "interrupted"), steps, best/final val metrics, test
        metrics of the final model.
    """
    if isinstance(cfg, dict):
        cfg = TrainConfig(**cfg)
    run_dir = Path(run_dir)
    rank, world = dist_info()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.batch_size % world and rank == 0:
        print(f"note: batch_size {cfg.batch_size} is uneven over {world} ranks", file=sys.stderr)
    run_config = run_config if run_config is not None else {"train": asdict(cfg)}
    model_config = model_config if model_config is not None else getattr(model, "config", {})
    groups = (param_groups or default_param_groups)(model, cfg.lr, cfg.weight_decay)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_train = len(task.train)
    steps_per_epoch = _steps_per_epoch(n_train, cfg.batch_size, world)
    if steps_per_epoch == 0:
        raise ValueError(f"task {task.name!r} has too few training items ({n_train})")
    total_steps = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    sched = _make_scheduler(opt, cfg, total_steps)
    metrics = _Metrics(run_dir / "metrics.jsonl", enabled=rank == 0)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"

    epoch = step_in_epoch = global_step = 0
    best = {"val_acc": -1.0, "epoch": -1}
    if resume:
        ck = load_checkpoint(last_path, kind="train")
        from s4dss.config import diff

        changed = diff(ck["config"], run_config, ignore=RESUME_SAFE)
        if changed:
            raise ValueError(
                f"cannot resume {last_path}: the config differs from the checkpoint's in "
                + "; ".join(changed)
            )
        load_model_state(model, ck["model_state"], source=str(last_path))
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        restore_rng(ck["rng"])
        epoch, step_in_epoch, global_step = (
            ck["position"][k] for k in ("epoch", "step_in_epoch", "global_step")
        )
        best = dict(ck["best"])
        metrics.truncate(ck["metrics_bytes"])
        metrics.write({"event": "resume", "epoch": epoch, "step": global_step})
    elif rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        metrics.truncate(0)
        metrics.write({"event": "start", "task": task.summary(), "world_size": world})

    ddp_model = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(model)
    use_lengths = _accepts_lengths(model)

    def checkpoint(path: Path) -> None:
        if rank != 0:
            return
        save_checkpoint(
            path,
            {
                "model_config": model_config,
                "model_state": model.state_dict(),
                "config": run_config,
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng": capture_rng(),
                "position": {
                    "epoch": epoch,
                    "step_in_epoch": step_in_epoch,
                    "global_step": global_step,
                },
                "best": best,
                "metrics_bytes": metrics.size(),
                "task": task.summary(),
            },
        )

    status = "finished"
    steps_this_process = 0
    with _StopFlag() as stop:
        while epoch < cfg.epochs and (cfg.max_steps is None or global_step < cfg.max_steps):
            ddp_model.train()
            t_epoch = time.perf_counter()
            order = _epoch_order(n_train, cfg.seed, epoch)
            bar = None
            if cfg.progress and rank == 0:
                from tqdm import tqdm

                bar = tqdm(
                    total=steps_per_epoch,
                    initial=step_in_epoch,
                    desc=f"epoch {epoch + 1}/{cfg.epochs}",
                    file=sys.stderr,
                    dynamic_ncols=True,
                    mininterval=1.0,  # redraws cost time and flood non-terminal logs
                )
            while step_in_epoch < steps_per_epoch:
                if cfg.max_steps is not None and global_step >= cfg.max_steps:
                    break
                batch = order[step_in_epoch * cfg.batch_size : (step_in_epoch + 1) * cfg.batch_size]
                n_global = len(batch)
                local = batch[rank::world].tolist()
                x, y, lengths = task.collate([task.train[i] for i in local])
                logits = _forward(ddp_model, x, lengths, use_lengths)
                # sum / global count, times world (DDP averages over ranks): the global mean
                loss = nn.functional.cross_entropy(logits, y, reduction="sum") * (world / n_global)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    gnorm = float(nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
                else:
                    gnorm = float("nan")
                opt.step()
                if cfg.schedule != "plateau":
                    sched.step()
                step_in_epoch += 1
                global_step += 1
                steps_this_process += 1
                if cfg.interrupt_after_steps and steps_this_process == cfg.interrupt_after_steps:
                    stop.requested = True
                # one all-reduce per step: the global batch loss for the log, and the stop flag
                # (every rank must stop at the same step)
                shared = torch.tensor(
                    [float(loss.detach()) / world, float(stop.requested)], dtype=torch.float64
                )
                if world > 1:
                    dist.all_reduce(shared)
                step_loss = float(shared[0])
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{step_loss:.4f}")
                if global_step % cfg.log_every == 0:
                    metrics.write(
                        {
                            "event": "train",
                            "epoch": epoch,
                            "step": global_step,
                            "loss": step_loss,  # mean over the global batch
                            "acc": float((logits.argmax(-1) == y).float().mean()),  # rank 0
                            "grad_norm": gnorm,
                            "lr": [g["lr"] for g in opt.param_groups],
                        }
                    )
                if shared[1] > 0:
                    status = "interrupted"
                    break
            if bar is not None:
                bar.close()
            if status == "interrupted":
                checkpoint(last_path)
                metrics.write({"event": "interrupted", "epoch": epoch, "step": global_step})
                break
            if step_in_epoch < steps_per_epoch:  # max_steps reached mid-epoch
                break
            # wall-clock figures go in "*_seconds" keys; everything else is reproducible
            train_seconds = time.perf_counter() - t_epoch
            t_eval = time.perf_counter()
            val = evaluate(model, task.val, task.collate, cfg.eval_batch_size)
            val["eval_seconds"] = time.perf_counter() - t_eval
            val["train_seconds"] = train_seconds  # of this process's part of the epoch
            if cfg.schedule == "plateau":
                sched.step(val["loss"])
            improved = val["acc"] > best["val_acc"]
            if improved:
                best = {"val_acc": val["acc"], "epoch": epoch}
            metrics.write({"event": "val", "epoch": epoch, "step": global_step, **val})
            epoch += 1
            step_in_epoch = 0
            checkpoint(last_path)
            if improved:
                checkpoint(best_path)
            if world > 1:
                dist.barrier()
    summary = {"status": status, "epoch": epoch, "step": global_step, "best": best}
    if status == "finished":
        if step_in_epoch:  # stopped by max_steps mid-epoch: keep the final state too
            checkpoint(last_path)
        summary["val"] = evaluate(model, task.val, task.collate, cfg.eval_batch_size)
        summary["test"] = evaluate(model, task.test, task.collate, cfg.eval_batch_size)
        metrics.write({"event": "test", "step": global_step, **summary["test"]})
        if best_path.exists():
            # LRA practice: report test accuracy of the epoch with the best validation accuracy
            best_model = copy.deepcopy(model)
            ck = load_checkpoint(best_path, kind="train")
            load_model_state(best_model, ck["model_state"], source=str(best_path))
            summary["test_at_best_val"] = evaluate(
                best_model, task.test, task.collate, cfg.eval_batch_size
            )
        if rank == 0:
            tmp = run_dir / "summary.json.tmp"
            tmp.write_text(json.dumps(summary, indent=1) + "\n")
            tmp.replace(run_dir / "summary.json")
    return summary


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
