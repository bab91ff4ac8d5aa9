"""Checkpoints: atomic writes, integrity-checked loads with clear errors, RNG state capture.

A checkpoint is a ``torch.save`` dict readable with ``weights_only=True`` (no pickled code)::

    format: "s4dss-checkpoint", version: 2, kind: "train" | "reduced"
    model_config: dict            # S4Model(**model_config) rebuilds the architecture
    model_state: state_dict
    config: dict                  # the resolved run config
    ... kind "train": optimizer, scheduler, rng, position {epoch, step_in_epoch, global_step},
        metrics_bytes, best, callbacks {state_key: callback state}

Integrity: ``torch.save`` writes a zip archive; its archive comment (the last bytes of the file)
holds ``s4dss-sha256:<hex>``, the SHA-256 of every byte before the comment. The file stays a valid
zip that ``torch.load`` reads, and :func:`load_checkpoint` refuses it if any byte changed (torch
itself checks no checksum: a flipped byte in a tensor or in the optimizer moments would load
silently). Version-1 checkpoints (written before the digest existed) still load, with a
:class:`CheckpointWarning` that their integrity cannot be checked; a version-2 file without a
valid digest is refused.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import warnings
from pathlib import Path

import numpy as np
import torch

FORMAT = "s4dss-checkpoint"
VERSION = 2
#: first version whose files carry a digest; older ones load with a CheckpointWarning
DIGEST_VERSION = 2
REQUIRED = {
    "train": ("model_config", "model_state", "config", "optimizer", "scheduler", "rng",
              "position"),
    "reduced": ("model_config", "model_state", "config", "reduction"),
}  # fmt: skip
_META = ("format", "version", "kind")
_DIGEST_TAG = b"s4dss-sha256:"
_TRAILER = len(_DIGEST_TAG) + 64  # the zip archive comment: tag + hex digest
_EOCD = b"PK\x05\x06"  # zip end-of-central-directory record: 22 bytes + comment
_ADVICE = (
    "do not use it: restore the file from a copy, load another checkpoint of the run (best.pt "
    "instead of last.pt, or an earlier one), or retrain"
)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, damaged, of another kind, or does not fit the model."""


class CheckpointWarning(UserWarning):
    """A checkpoint loads but its integrity cannot be checked (version 1: no digest)."""


def _sealed(body: bytes) -> list:
    """``torch.save`` bytes -> the pieces of the file: the zip with its archive comment set to
    ``s4dss-sha256:<SHA-256 of everything before the comment>``."""
    if body[-22:-18] != _EOCD or body[-2:] != b"\x00\x00":
        raise RuntimeError(
            "torch.save wrote a zip without an empty archive comment at its end; this torch "
            "version's layout is not supported by s4dss checkpoints"
        )
    head = memoryview(body)[:-2]
    length = struct.pack("<H", _TRAILER)  # the comment-length field, the last one of the record
    digest = hashlib.sha256(head)
    digest.update(length)
    return [head, length, _DIGEST_TAG, digest.hexdigest().encode()]


def save_checkpoint(path: Path, payload: dict, *, kind: str = "train") -> None:
    """Write ``payload`` atomically, with a digest: a temp file in the same folder, fsync, then
    ``os.replace``.

    A crash at any moment leaves either the previous checkpoint or the new one under ``path``,
    never a partial file. ``payload`` keys ``format``, ``version`` and ``kind`` are replaced by
    this code's (so a loaded version-1 checkpoint re-saved becomes a version-2 one).
    """
    if kind not in REQUIRED:
        raise ValueError(f"kind must be one of {tuple(REQUIRED)}")
    missing = [k for k in REQUIRED[kind] if k not in payload]
    if missing:
        raise ValueError(f"checkpoint payload lacks {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    data = {"format": FORMAT, "version": VERSION, "kind": kind}
    data.update((k, v) for k, v in payload.items() if k not in _META)
    try:
        buffer = io.BytesIO()
        torch.save(data, buffer)
        with open(tmp, "wb") as f:
            for piece in _sealed(buffer.getbuffer()):
                f.write(piece)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _check_digest(path: Path, raw: bytes) -> bool:
    """True if ``raw`` carries a digest (and it matches); False if it carries none."""
    if not raw[-_TRAILER:].startswith(_DIGEST_TAG):
        return False
    stored = bytes(raw[-64:])
    actual = hashlib.sha256(memoryview(raw)[:-_TRAILER]).hexdigest().encode()
    if stored != actual:
        raise CheckpointError(
            f"checkpoint {path} is damaged: its bytes do not match the SHA-256 digest stored "
            f"in it (a byte changed after it was written); {_ADVICE}"
        )
    return True


def load_checkpoint(path: Path, *, kind: str | None = None) -> dict:
    """Load, integrity-check and validate a checkpoint.

    Parameters
    ----------
    path : Path
    kind : {"train", "reduced"}, optional
        Require this kind of checkpoint.

    Raises
    ------
    CheckpointError
        If the file is missing, empty, truncated or corrupt, fails its SHA-256 digest (any byte
        changed), is a version >= 2 file without its digest, is not an s4dss checkpoint, is from
        a newer version, of the wrong kind, or lacks required entries.

    Warns
    -----
    CheckpointWarning
        A version-1 checkpoint (no digest): loaded, but its integrity cannot be checked.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    raw = path.read_bytes()  # hash and load the very same bytes
    if not raw:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    sealed = _check_digest(path, raw)
    try:
        # weights_only: nothing read from disk runs code, digest or not
        data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
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
    version = data.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {version!r}, newer than this code ({VERSION})"
        )
    if not sealed:
        if version >= DIGEST_VERSION:
            raise CheckpointError(
                f"checkpoint {path} is damaged: a version-{version} checkpoint must end with its "
                f"SHA-256 digest and this one does not (the end of the file changed); {_ADVICE}"
            )
        warnings.warn(
            f"{path} is a version-{version} checkpoint without a digest: it loads, but damage to "
            "it cannot be detected. Once you trust it, re-save it with "
            "s4dss.checkpoint.save_checkpoint (or keep training, which writes version "
            f"{VERSION}) to add one.",
            CheckpointWarning,
            stacklevel=2,
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
