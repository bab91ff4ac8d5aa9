"""Shared pieces of the data package: errors, datasets, padding, the task record.

Every loader returns :class:`TaskData`, so the trainer never needs to know which task it is
running. Items are ``(x, y)`` pairs; the collate function turns a list of items into
``(x, y, lengths)`` with ``lengths`` the true (unpadded) length of each sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


class DataError(Exception):
    """Base class of the data errors; the message always names the path and expected layout."""


class MissingDataError(DataError, FileNotFoundError):
    """A required file or folder does not exist."""


class MalformedDataError(DataError, ValueError):
    """A file exists but does not have the expected format."""


def require_file(path: Path, layout: str) -> Path:
    """Return ``path`` if it is a file, else raise :class:`MissingDataError`.

    Parameters
    ----------
    path : Path
        The file that must exist.
    layout : str
        A human description of the expected layout, quoted in the error.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"expected file {path} is missing. Expected layout: {layout}")
    return path


def require_dir(path: Path, layout: str) -> Path:
    """Return ``path`` if it is a directory, else raise :class:`MissingDataError`."""
    path = Path(path)
    if not path.is_dir():
        raise MissingDataError(f"expected folder {path} is missing. Expected layout: {layout}")
    return path


class SequenceDataset(Dataset):
    """Sequences of token ids (variable length) or of feature vectors, with integer labels.

    Parameters
    ----------
    xs : sequence of array_like
        Either 1-D int arrays (token ids) or 2-D float arrays of shape (L, d_input).
    ys : array_like of int
        One label per sequence.
    transform : callable, optional
        Applied to ``xs[i]`` on access; images are kept as uint8 and scaled per item, which
        keeps real Pathfinder/CIFAR in memory at a quarter of the float size.
    """

    def __init__(self, xs: Sequence, ys: Sequence[int], transform: Callable | None = None):
        if len(xs) != len(ys):
            raise ValueError(f"{len(xs)} sequences but {len(ys)} labels")
        self.xs = xs
        self.ys = np.asarray(ys, dtype=np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.xs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = np.asarray(self.xs[i])
        if self.transform is not None:
            x = self.transform(x)
        return torch.as_tensor(x), int(self.ys[i])


def pixels_to_features(x: np.ndarray) -> np.ndarray:
    """uint8 pixels (L,) -> float32 (L, 1) scaled to [-1, 1] (mean 0.5, std 0.5 as in S4)."""
    return ((x.astype(np.float32) / 255.0 - 0.5) / 0.5)[:, None]


class PairDataset(Dataset):
    """Pairs of token sequences (the AAN retrieval task); items are ``((x1, x2), y)``."""

    def __init__(self, x1: Sequence, x2: Sequence, ys: Sequence[int]):
        if not len(x1) == len(x2) == len(ys):
            raise ValueError("x1, x2 and ys must have the same length")
        self.x1, self.x2 = x1, x2
        self.ys = np.asarray(ys, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ys)

    def __getitem__(self, i: int):
        a = torch.as_tensor(np.asarray(self.x1[i]))
        b = torch.as_tensor(np.asarray(self.x2[i]))
        return (a, b), int(self.ys[i])


def _pad(seqs: list[torch.Tensor], pad_value, pad_to: int | None, side: str) -> torch.Tensor:
    length = max(1, max(s.shape[0] for s in seqs))  # an all-empty batch still has one step
    if pad_to is not None:
        length = max(length, pad_to)
    out = torch.full((len(seqs), length, *seqs[0].shape[1:]), pad_value, dtype=seqs[0].dtype)
    for i, s in enumerate(seqs):
        if side == "right":
            out[i, : s.shape[0]] = s
        else:
            out[i, length - s.shape[0] :] = s
    return out


@dataclass
class PadCollate:
    """Collate ``(x, y)`` items into ``(x, y, lengths)``, padding to the longest item.

    Parameters
    ----------
    pad_value : int or float
        Value written into padded positions (the task's pad id for token tasks).
    pad_to : int, optional
        Pad at least to this length (fixed-length batches).
    side : {"right", "left"}
        Where padding goes. Left padding keeps the real tokens next to the last position,
        which matters for ``pooling="last"`` with a causal model.
    """

    pad_value: int | float = 0
    pad_to: int | None = None
    side: str = "right"

    def __post_init__(self):
        if self.side not in ("right", "left"):
            raise ValueError(f"side must be 'right' or 'left', got {self.side!r}")

    def __call__(self, items):
        xs, ys = zip(*items, strict=True)
        y = torch.tensor(ys, dtype=torch.long)
        if isinstance(xs[0], tuple):  # pair task: pad both members to a common length
            a = [p[0] for p in xs]
            b = [p[1] for p in xs]
            # empty documents count as one (padding) step: models need length >= 1
            lengths = torch.tensor([[p[0].shape[0], p[1].shape[0]] for p in xs]).clamp(min=1)
            both = _pad(a + b, self.pad_value, self.pad_to, self.side)
            x = torch.stack([both[: len(a)], both[len(a) :]], dim=1)  # (B, 2, L)
            return x, y, lengths
        lengths = torch.tensor([s.shape[0] for s in xs]).clamp(min=1)
        return _pad(list(xs), self.pad_value, self.pad_to, self.side), y, lengths


@dataclass
class TaskData:
    """Everything the trainer needs to know about a task.

    Attributes
    ----------
    name : str
        Registry name of the task.
    train, val, test : Dataset
        Items are ``(x, y)``; ``x`` is a LongTensor (L,) of token ids when ``vocab_size`` is
        set, else a FloatTensor (L, d_input). Pair tasks give ``((x1, x2), y)``.
    n_classes : int
    seq_len : int
        Maximum sequence length of the task (padding never goes beyond it).
    vocab_size : int or None
        Number of token ids (including padding), or None for real-valued inputs.
    d_input : int or None
        Feature size of real-valued inputs, or None for token inputs.
    pad_id : int or None
        Token id (or value) used for padding; None when all sequences have the same length.
    collate : callable
        Turns a list of items into ``(x, y, lengths)``.
    pair : bool
        True for two-sequence tasks (AAN), whose batches are (B, 2, L).
    """

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    n_classes: int
    seq_len: int
    vocab_size: int | None = None
    d_input: int | None = None
    pad_id: int | None = None
    collate: Callable = field(default_factory=PadCollate)
    pair: bool = False

    def summary(self) -> dict:
        """A JSON-friendly description (sizes, shapes), used in run logs and reports."""
        return {
            "name": self.name,
            "n_train": len(self.train),
            "n_val": len(self.val),
            "n_test": len(self.test),
            "n_classes": self.n_classes,
            "seq_len": self.seq_len,
            "vocab_size": self.vocab_size,
            "d_input": self.d_input,
            "pad_id": self.pad_id,
            "pair": self.pair,
        }


def split_indices(n: int, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Deterministic random split of ``range(n)`` into parts of the given fractions.

    The last part takes the remainder so that no index is lost to rounding.
    """
    perm = np.random.default_rng(seed).permutation(n)
    out, start = [], 0
    for k, f in enumerate(fractions):
        stop = n if k == len(fractions) - 1 else start + int(round(f * n))
        out.append(np.sort(perm[start:stop]))
        start = stop
    return out


def subset(xs, idx: np.ndarray):
    """Index a list or an array with an index array, keeping its type."""
    if isinstance(xs, np.ndarray):
        return xs[idx]
    return [xs[i] for i in idx]


def bytes_to_ids(text: bytes, max_length: int) -> np.ndarray:
    """Byte-level tokens: byte b becomes id b + 1 so that id 0 stays free for padding."""
    arr = np.frombuffer(text[:max_length], dtype=np.uint8).astype(np.int64) + 1
    return arr
