"""The task registry: ``get_task(name, **cfg)`` -> :class:`TaskData`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from s4dss.data import aan, cifar, digits, imdb, listops, pathfinder, synthetic, ucr
from s4dss.data.common import TaskData

GENERATOR_RECORD = "generator.json"


def _need_dir(name: str, data_dir) -> Path:
    if data_dir is None:
        raise ValueError(f"task {name!r} reads files from disk: pass data_dir=<folder>")
    return Path(data_dir)


def _generated(name: str, data_dir, params: dict, write: Callable[[Path], None]) -> Path:
    """Generate into ``data_dir`` once; refuse to reuse a folder made with other parameters.

    The parameters are recorded in ``generator.json``; the record is written last, so a folder
    whose generation was interrupted is regenerated rather than trusted.
    """
    if data_dir is None:
        digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
        data_dir = Path("runs") / "data" / f"{name}-{digest}"  # runs/ is git-ignored
    data_dir = Path(data_dir)
    record = data_dir / GENERATOR_RECORD
    if record.is_file():
        old = json.loads(record.read_text())
        if old != params:
            raise ValueError(
                f"{data_dir} holds {name} data generated with {old}, not the requested "
                f"{params}; choose another data_dir or delete that folder"
            )
        return data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    write(data_dir)
    record.write_text(json.dumps(params, sort_keys=True, indent=1) + "\n")
    return data_dir


def _listops_synth(
    data_dir=None,
    n_train=2000,
    n_val=200,
    n_test=200,
    seed=0,
    max_depth=10,
    max_args=10,
    min_length=500,
    max_length=2000,
    pad_side="right",
) -> TaskData:
    rules = dict(
        max_depth=max_depth, max_args=max_args, min_length=min_length, max_length=max_length
    )
    params = dict(n_train=n_train, n_val=n_val, n_test=n_test, seed=seed, **rules)
    folder = _generated(
        "listops",
        data_dir,
        params,
        lambda d: listops.write_release(d, n_train, n_val, n_test, seed=seed, **rules),
    )
    task = listops.load(folder, pad_side=pad_side)
    task.name = "listops-synth"
    return task


def _pathfinder_synth(
    data_dir=None,
    n=2000,
    seed=0,
    size=32,
    path_length=20,
    n_paths=3,
    dash=3,
    curvature=0.3,
    split_seed=42,
) -> TaskData:
    rules = dict(
        size=size, path_length=path_length, n_paths=n_paths, dash=dash, curvature=curvature
    )
    params = dict(n=n, seed=seed, **rules)
    folder = _generated(
        "pathfinder",
        data_dir,
        params,
        lambda d: pathfinder.write_release(d, n, seed=seed, **rules),
    )
    task = pathfinder.load(folder, split_seed=split_seed)
    task.name = "pathfinder-synth"
    return task


TASKS: dict[str, Callable[..., TaskData]] = {
    "listops": lambda data_dir=None, **kw: listops.load(_need_dir("listops", data_dir), **kw),
    "listops-synth": _listops_synth,
    "pathfinder": lambda data_dir=None, **kw: pathfinder.load(
        _need_dir("pathfinder", data_dir), **kw
    ),
    "pathfinder-synth": _pathfinder_synth,
    "cifar": lambda data_dir=None, **kw: cifar.load(_need_dir("cifar", data_dir), **kw),
    "imdb": lambda data_dir=None, **kw: imdb.load(_need_dir("imdb", data_dir), **kw),
    "aan": lambda data_dir=None, **kw: aan.load(_need_dir("aan", data_dir), **kw),
    "digits": lambda **kw: digits.load(**kw),
    "digits-256": lambda **kw: digits.load(hold=4, **kw),  # each pixel held for 4 steps
    "acsf1": lambda **kw: ucr.load("ACSF1", **kw),  # UCR, shipped in aeon<1.7
    "osuleaf": lambda **kw: ucr.load("OSULeaf", **kw),  # UCR, shipped in aeon<1.7
    "majority": lambda **kw: synthetic.load(**kw),
}


def get_task(name: str, **cfg) -> TaskData:
    """Build a task by name.

    Parameters
    ----------
    name : str
        One of :data:`TASKS`.
    **cfg
        Task options (``data_dir`` and the loader's or generator's keyword arguments).
        Unknown options raise ``TypeError`` naming the option.
    """
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    try:
        return TASKS[name](**cfg)
    except TypeError as e:
        if "unexpected keyword" in str(e):
            raise TypeError(f"task {name!r}: {e}") from None
        raise
