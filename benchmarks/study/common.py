"""Small pieces shared by the runner, the probes and the report: files, tasks, models."""

from __future__ import annotations

import csv
import io
import json
import os
from functools import lru_cache
from pathlib import Path

from torch import nn

from s4dss.checkpoint import load_checkpoint, load_model_state
from s4dss.data import TaskData, get_task
from s4dss.dss import DSSKernel
from s4dss.model import S4Model


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace`` (never torn)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    """The whole CSV at once, atomically."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, buf.getvalue())


def ignore_runs(out: Path) -> None:
    """Keep checkpoints and generated data of a results folder out of git."""
    atomic_write(Path(out) / ".gitignore", "runs/\ndata/\n*.tmp\n")


def _resolve(task_cfg: dict, data_root: Path) -> dict:
    cfg = dict(task_cfg)
    dd = cfg.get("data_dir")
    if dd is not None and not Path(str(dd)).is_absolute():
        cfg["data_dir"] = str(Path(data_root) / dd)
    return cfg


@lru_cache(maxsize=8)
def _load(key: str) -> TaskData:
    cfg = json.loads(key)
    return get_task(cfg.pop("name"), **cfg)


def load_task(task_cfg: dict, data_root: Path) -> TaskData:
    """The task of a spec's ``task`` section; a relative ``data_dir`` lives under ``data_root``.

    Loaded once per process (generated tasks are generated once per folder).
    """
    return _load(json.dumps(_resolve(task_cfg, data_root), sort_keys=True))


def build_model(
    model_spec: dict, task: TaskData, d_state: int | None = None, per_channel: bool = True
) -> S4Model:
    """The spec's model sized for ``task``: the full one, or at ``d_state`` states.

    An r-state model gets per-channel ``Lambda`` ``(H, r)`` by default (initialised
    identically in every channel), the parameterisation of a reduced layer, so that a
    from-scratch model and a reduced one at the same r train exactly the same parameters.
    Seed torch first.
    """
    cfg = dict(model_spec)
    cfg.setdefault("init", "skew-hippo")
    if d_state is not None:
        cfg.update(d_state=int(d_state), lambda_per_channel=bool(per_channel))
    if task.vocab_size is not None:
        cfg["vocab_size"] = task.vocab_size
    else:
        cfg["d_input"] = task.d_input
    return S4Model(d_output=task.n_classes, **cfg)


def load_checkpoint_model(path: Path) -> S4Model:
    """The model of a training checkpoint (``last.pt``, ``best.pt`` or a snapshot), in eval mode."""
    ck = load_checkpoint(path)
    model = S4Model(**ck["model_config"])
    load_model_state(model, ck["model_state"], source=str(path))
    return model.eval()


def ssm_params(model: nn.Module) -> int:
    """Parameters of the SSM part: every DSS kernel's ``Lambda``, ``log_dt`` and ``W``."""
    return sum(
        p.numel() for m in model.modules() if isinstance(m, DSSKernel) for p in m.parameters()
    )
