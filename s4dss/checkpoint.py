"""Checkpoints: atomic writes, validated loads with clear errors, RNG state capture.

A checkpoint is a ``torch.save`` dict readable with ``weights_only=True`` (no pickled code)::

    format: "s4dss-checkpoint", version: 1, kind: "train" | "reduced"
    model_config: dict            # S4Model(**model_config) rebuilds the architecture
    model_state: state_dict
    config: dict                  # the resolved run config
    ... kind "train": optimizer, scheduler, rng, position {epoch, step_in_epoch, global_step},
        metrics_bytes, best, callbacks {state_key: callback state}
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

FORMAT = "s4dss-checkpoint"
VERSION = 1
REQUIRED = {
    "train": ("model_config", "model_state", "config", "optimizer", "scheduler", "rng",
              "position"),
    "reduced": ("model_config", "model_state", "config", "reduction"),
}  # fmt: skip


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, of another kind, or does not fit the model."""


def save_checkpoint(path: Path, payload: dict, *, kind: str = "train") -> None:
    """Write ``payload`` atomically: a temp file in the same folder, fsync, then ``os.replace``.

    A crash at any moment leaves either the previous checkpoint or the new one under ``path``,
    never a partial file.
    """
    if kind not in REQUIRED:
        raise ValueError(f"kind must be one of {tuple(REQUIRED)}")
    missing = [k for k in REQUIRED[kind] if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    data = {"format": FORMAT, "version": VERSION, "kind": kind, **payload}
    try:
        with open(tmp, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: Path, *, kind: str | None = None) -> dict:
    """Load and validate a checkpoint.

    Parameters
    ----------
    path : Path
    kind : {"train", "reduced"}, optional
        Require this kind of checkpoint.

    Raises
    ------
    CheckpointError
        If the file is missing, empty, truncated or corrupt, not an s4dss checkpoint, from a
        newer version, of the wrong kind, or lacks required entries.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError/EOFError/UnpicklingError/...
        raise CheckpointError(
            f"checkpoint {path} cannot be read: it is truncated or corrupt, or not a torch "
            f"file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        keys = sorted(data)[:8] if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path} is not an s4dss checkpoint (no format={FORMAT!r} marker; found {keys})"
        )
    if data.get("version", 0) > VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {data['version']}, newer than this code ({VERSION})"
        )
    if kind is not None and data.get("kind") != kind:
        raise CheckpointError(f"{path} is a {data.get('kind')!r} checkpoint, expected {kind!r}")
    missing = [k for k in REQUIRED.get(data.get("kind"), ()) if k not in data]
    if missing:
        raise CheckpointError(f"{path} lacks the entries {missing}")
    return data


def load_model_state(model: torch.nn.Module, state: dict, *, source: str = "checkpoint") -> None:
    """``model.load_state_dict(state)`` with an error listing every mismatch."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{source} does not fit the model: missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, shape mismatches {shapes[:5]}"
        )
    model.load_state_dict(state)


def capture_rng() -> dict:
    """The torch, numpy and Python RNG states, as weights_only-loadable values."""
    # the legacy global numpy RNG is what user code and libraries draw from: keep it exact
    np_state = np.random.get_state()  # noqa: NPY002
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
         n["cached_gaussian"])
    )  # fmt: skip
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
