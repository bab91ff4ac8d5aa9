"""scikit-learn's handwritten digits (8x8, 1797 images) as a built-in sequence task.

The data ship inside scikit-learn, so this task needs no download: it is the smoke test of
the whole pipeline on real data. ``hold=k`` stretches each sequence to length ``64 k`` by
holding every pixel for ``k`` steps (``np.repeat`` along time), so the layers' kernels must
carry information over a ``k``-times longer horizon; the registry's ``digits-256`` is
``hold=4``.
"""

from __future__ import annotations

import numpy as np

from s4dss.data.common import PadCollate, SequenceDataset, TaskData, split_indices


def load(
    *,
    split: tuple[float, float, float] = (0.7, 0.15, 0.15),
    split_seed: int = 0,
    hold: int = 1,
) -> TaskData:
    """Digits as sequences of ``64 * hold`` steps (one feature in [-1, 1]), 10 classes.

    Parameters
    ----------
    split : (train, val, test) fractions of the 1797 images.
    split_seed : int
        Seed of the random split.
    hold : int
        Steps each pixel is held for (row-major pixel order, pixel ``p`` at steps
        ``p*hold .. p*hold + hold - 1``).
    """
    if isinstance(hold, bool) or not isinstance(hold, int | np.integer) or hold < 1:
        raise ValueError(f"digits: hold must be an integer >= 1, got {hold!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the 'digits' task needs scikit-learn (pip install scikit-learn)"
        ) from None
    d = load_digits()
    x = ((d.data / 16.0 - 0.5) / 0.5).astype(np.float32)  # (1797, 64)
    x = np.repeat(x, int(hold), axis=1)[..., None]  # (1797, 64 hold, 1)
    y = d.target.astype(np.int64)
    parts = split_indices(len(x), split, split_seed)
    sets = [SequenceDataset(x[idx], y[idx]) for idx in parts]
    return TaskData(
        name="digits" if hold == 1 else f"digits-{64 * int(hold)}",
        train=sets[0],
        val=sets[1],
        test=sets[2],
        n_classes=10,
        seq_len=64 * int(hold),
        d_input=1,
        collate=PadCollate(pad_value=0.0),
    )
