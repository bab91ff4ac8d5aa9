"""Sequential grey CIFAR-10 (LRA "Image"): the python pickle batches, read as length-1024 rows.

Expected layout (the official ``cifar-10-python.tar.gz`` unpacked)::

    <data_dir>/data_batch_1 ... data_batch_5, test_batch

Each batch is a pickle of a dict with ``b"data"`` (uint8, 10000 x 3072, red then green then
blue planes of 32x32 row-major) and ``b"labels"`` (list of 0..9). ``<data_dir>`` may also be the
parent of ``cifar-10-batches-py``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from s4dss.data.common import (
    MalformedDataError,
    PadCollate,
    SequenceDataset,
    TaskData,
    pixels_to_features,
    require_file,
    split_indices,
    subset,
)

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
LAYOUT = "<data_dir>/{data_batch_1..data_batch_5,test_batch} (CIFAR-10 python pickle batches)"
# ITU-R 601 luma, the weights of tf.image.rgb_to_grayscale used by LRA
GREY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140])


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one pickle batch; returns RGB images (n, 3, 32, 32) uint8 and labels (n,)."""
    path = require_file(path, LAYOUT)
    try:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as e:
        raise MalformedDataError(
            f"{path} is not a CIFAR-10 python batch (a pickled dict with b'data' uint8 "
            f"n x 3072 and b'labels'): {type(e).__name__}: {e}"
        ) from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise MalformedDataError(
            f"{path}: b'data' has shape {data.shape} and {len(labels)} labels; "
            "expected n x 3072 and n labels"
        )
    return data.reshape(-1, 3, 32, 32), labels


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """(n, 3, 32, 32) uint8 -> (n, 1024) uint8 grey, rounded as tf.image.rgb_to_grayscale does."""
    grey = np.tensordot(GREY_WEIGHTS, rgb.astype(np.float64), axes=([0], [1]))  # (n, 32, 32)
    return np.clip(np.rint(grey), 0, 255).astype(np.uint8).reshape(len(rgb), 1024)


def _tokens(x: np.ndarray) -> np.ndarray:
    return x.astype(np.int64)


def load(
    data_dir: Path, *, val_fraction: float = 0.1, split_seed: int = 42, tokens: bool = False
) -> TaskData:
    """Load grey sequential CIFAR-10.

    Parameters
    ----------
    data_dir : Path
        Folder with the pickle batches (or its parent holding ``cifar-10-batches-py``).
    val_fraction : float
        Part of the 50000 training images held out for validation (fixed random split).
    tokens : bool
        If True, pixels are token ids 0..255 (vocab 256, LRA's transformer input); otherwise
        one real feature per pixel scaled to [-1, 1] (the S4 setting). Either way the grey
        value is rounded to 8 bits first, as LRA's ``tf.image.rgb_to_grayscale`` does.
    """
    data_dir = Path(data_dir)
    if (data_dir / "cifar-10-batches-py").is_dir():
        data_dir = data_dir / "cifar-10-batches-py"
    parts = [read_batch(data_dir / name) for name in TRAIN_BATCHES]
    x_train = to_grey(np.concatenate([p[0] for p in parts]))
    y_train = np.concatenate([p[1] for p in parts])
    rgb_test, y_test = read_batch(data_dir / "test_batch")
    x_test = to_grey(rgb_test)
    tr, va = split_indices(len(x_train), (1 - val_fraction, val_fraction), split_seed)
    f = _tokens if tokens else pixels_to_features  # grey stays uint8 in memory
    return TaskData(
        name="cifar",
        train=SequenceDataset(subset(x_train, tr), y_train[tr], f),
        val=SequenceDataset(subset(x_train, va), y_train[va], f),
        test=SequenceDataset(x_test, y_test, f),
        n_classes=10,
        seq_len=1024,
        vocab_size=256 if tokens else None,
        d_input=None if tokens else 1,
        collate=PadCollate(pad_value=0),
    )
