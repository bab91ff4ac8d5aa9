r"""UCR time-series classification problems that ship inside ``aeon`` (no download).

``aeon`` 1.0-1.6 carries two long univariate UCR problems in its wheel:

=========  ========  =======  ======  =======================================================
problem    classes   length   train   test
=========  ========  =======  ======  =======================================================
ACSF1      10        1460     100     100 (power consumption of home appliances)
OSULeaf    6         427      200     242 (leaf outlines as 1-D curves)
=========  ========  =======  ======  =======================================================

Their loaders (``aeon.datasets.load_acsf1`` / ``load_osuleaf``) are deprecated in aeon 1.6 and
removed in 1.7 (the data stay on Zenodo through ``load_classification``, which downloads), so
the ``study`` extra pins ``aeon>=1.0,<1.7``.

Conventions, as usual for the UCR archive: the official train/test split is kept (the test
set is never touched for model selection); a validation set is carved from the official
training set, stratified by class, with a seeded generator; every series is z-normalised on
its own, :math:`x \leftarrow (x - \bar x) / s_x` with the population std :math:`s_x`
(a constant series becomes zeros). Labels are the sorted class names (numeric order when all
names are integers) mapped to ``0..n_classes-1``.
"""

from __future__ import annotations

import warnings

import numpy as np

from s4dss.data.common import PadCollate, SequenceDataset, TaskData

PROBLEMS = {"ACSF1": "load_acsf1", "OSULeaf": "load_osuleaf"}


def _read(problem: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        import aeon.datasets as datasets
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"the UCR task {problem!r} needs aeon>=1.0,<1.7 (pip install 'sysred-s4dss[study]')"
        ) from None
    loader = getattr(datasets, PROBLEMS[problem], None)
    if loader is None:  # aeon >= 1.7 removed the shipped copies
        raise ImportError(
            f"aeon {getattr(datasets, '__version__', '')} has no {PROBLEMS[problem]} (removed "
            "in aeon 1.7): install aeon>=1.0,<1.7 (the 'study' extra pins it)"
        )
    with warnings.catch_warnings():
        # deprecated in aeon 1.6 (removed in 1.7): the pin above keeps them available
        warnings.simplefilter("ignore", FutureWarning)
        X, y = loader(split=split)  # (n, 1, L), (n,) str
    return np.asarray(X, dtype=np.float64)[:, 0, :], np.asarray(y).astype(str)


def znormalise(x: np.ndarray) -> np.ndarray:
    """Per-series z-normalisation of ``(n, L)``: mean 0, population std 1 (zeros if constant)."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=-1, keepdims=True)  # (n 1)
    std = x.std(axis=-1, keepdims=True)  # (n 1)
    safe = np.where(std > 0, std, 1.0)
    return np.where(std > 0, (x - mean) / safe, 0.0)  # (n L)


def label_order(names: np.ndarray) -> list[str]:
    """Sorted class names: numerically when all are integers ("2" before "10"), else as text."""
    unique = sorted(set(names.tolist()))
    try:
        return sorted(unique, key=int)
    except ValueError:
        return unique


def stratified_split(
    y: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, val)``: from each class, ``round(val_fraction * count)`` items to val.

    Every class keeps at least one training item; the choice within a class is a seeded
    permutation, so the split is reproducible.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.nonzero(y == c)[0])
        k = min(int(round(val_fraction * len(idx))), len(idx) - 1)
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def load(
    problem: str,
    *,
    val_fraction: float = 0.2,
    split_seed: int = 0,
    znorm: bool = True,
) -> TaskData:
    """One UCR problem as a sequence task: ``x`` ``(L, 1)`` float32, label in ``0..C-1``.

    Parameters
    ----------
    problem : {"ACSF1", "OSULeaf"}
    val_fraction : float
        Fraction of each class of the official training set held out for validation.
    split_seed : int
        Seed of that stratified split.
    znorm : bool
        Z-normalise every series (train, val and test alike, each on its own statistics).

    Raises
    ------
    ValueError
        Unknown problem, or a test label that the training set does not have.
    """
    if problem not in PROBLEMS:
        raise ValueError(f"unknown UCR problem {problem!r}; shipped with aeon: {list(PROBLEMS)}")
    x_tr, y_tr = _read(problem, "train")
    x_te, y_te = _read(problem, "test")
    names = label_order(y_tr)
    unknown = sorted(set(y_te.tolist()) - set(names))
    if unknown:
        raise ValueError(f"{problem}: test labels {unknown} do not occur in the training set")
    code = {name: k for k, name in enumerate(names)}
    y_tr = np.array([code[v] for v in y_tr], dtype=np.int64)
    y_te = np.array([code[v] for v in y_te], dtype=np.int64)
    if znorm:
        x_tr, x_te = znormalise(x_tr), znormalise(x_te)
    x_tr = x_tr.astype(np.float32)[..., None]  # (n L 1)
    x_te = x_te.astype(np.float32)[..., None]  # (m L 1)
    tr, va = stratified_split(y_tr, val_fraction, split_seed)
    return TaskData(
        name=problem.lower(),
        train=SequenceDataset(x_tr[tr], y_tr[tr]),
        val=SequenceDataset(x_tr[va], y_tr[va]),
        test=SequenceDataset(x_te, y_te),
        n_classes=len(names),
        seq_len=x_tr.shape[1],
        d_input=1,
        collate=PadCollate(pad_value=0.0),
    )
