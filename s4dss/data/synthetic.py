"""An easy in-memory synthetic task for smoke tests: which of two tokens is more frequent.

Sequences of ``length`` tokens drawn from {1, 2, 3} (0 is padding); the label is 1 when token
1 occurs more often than token 2 (ties are resampled). A mean-pooled embedding solves it, so
any working model and trainer must get well above chance within a few hundred steps.
"""

from __future__ import annotations

import numpy as np

from s4dss.data.common import PadCollate, SequenceDataset, TaskData


def _make(rng: np.random.Generator, n: int, length: int):
    xs, ys = [], []
    while len(xs) < n:
        x = rng.integers(1, 4, size=length)
        a, b = int((x == 1).sum()), int((x == 2).sum())
        if a == b:
            continue
        xs.append(x.astype(np.int64))
        ys.append(int(a > b))
    return np.stack(xs), np.asarray(ys)


def load(
    n_train: int = 512, n_val: int = 128, n_test: int = 128, length: int = 32, seed: int = 0
) -> TaskData:
    """Build the majority task deterministically from ``seed``."""
    rng = np.random.default_rng(seed)
    sets = [SequenceDataset(*_make(rng, n, length)) for n in (n_train, n_val, n_test)]
    return TaskData(
        name="majority",
        train=sets[0],
        val=sets[1],
        test=sets[2],
        n_classes=2,
        seq_len=length,
        vocab_size=4,
        pad_id=0,
        collate=PadCollate(pad_value=0),
    )
