"""scikit-learn's handwritten digits (8x8, 1797 images) as a built-in length-64 sequence task.

The data ship inside scikit-learn, so this task needs no download: it is the smoke test of
the whole pipeline on real data.
"""

from __future__ import annotations

import numpy as np

from s4dss.data.common import PadCollate, SequenceDataset, TaskData, split_indices


def load(*, split: tuple[float, float, float] = (0.7, 0.15, 0.15), split_seed: int = 0) -> TaskData:
    """Digits as sequences of 64 pixels (one feature each, scaled to [-1, 1]), 10 classes."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the 'digits' task needs scikit-learn (pip install scikit-learn)"
        ) from None
    d = load_digits()
    x = ((d.data / 16.0 - 0.5) / 0.5).astype(np.float32)[..., None]  # (1797, 64, 1)
    y = d.target.astype(np.int64)
    parts = split_indices(len(x), split, split_seed)
    sets = [SequenceDataset(x[idx], y[idx]) for idx in parts]
    return TaskData(
        name="digits",
        train=sets[0],
        val=sets[1],
        test=sets[2],
        n_classes=10,
        seq_len=64,
        d_input=1,
        collate=PadCollate(pad_value=0.0),
    )
