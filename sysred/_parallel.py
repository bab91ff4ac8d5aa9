"""Splitting a batch of systems over threads.

numpy's elementwise ufuncs (on arrays above a few hundred elements) and its batched LAPACK
gufuncs (``svd``, ``solve``) release the GIL, so chunks of a batch processed in threads run
on several cores at once. Each chunk is still vectorised; threads only add the second core.

While a batch is processed, BLAS is limited to one thread (with threadpoolctl, if installed):
the matrices are small (n <= a few hundred), where OpenBLAS's own threads only oversubscribe
the cores; measured here on a loaded 2-core machine, an SVD batch ran 5-10x slower without it.
"""

from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: Below this many systems per chunk, threading costs more than it saves.
MIN_CHUNK = 16


def default_workers() -> int:
    """``$SYSRED_WORKERS`` if set, else the number of CPUs this process may use (<= 8)."""
    env = os.environ.get("SYSRED_WORKERS")
    if env:
        return max(1, int(env))
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def _flat(sys):
    """The same system with its batch dimensions flattened to one (or none)."""
    arrays = sys._arrays()
    ndims = [1] + [2] * (len(arrays) - 1) if arrays[0].ndim == sys.B.ndim - 1 else [2] * 4
    flat = [a.reshape((-1,) + a.shape[a.ndim - k :]) for a, k in zip(arrays, ndims, strict=True)]
    return type(sys)(*flat, dt=sys.dt)


def one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def map_batch(fn, sys, workers=None):
    """``fn(chunk) -> tuple of arrays with a leading batch axis``, over chunks of ``sys``.

    Returns the concatenated tuple with the leading axis reshaped to ``sys.batch_shape``.
    """
    batch = sys.batch_shape
    size = int(np.prod(batch)) if batch else 1
    workers = default_workers() if workers is None else max(1, int(workers))
    n_chunks = min(workers, size // MIN_CHUNK)
    if not batch:
        return fn(sys)
    with one_blas_thread():
        if n_chunks <= 1:
            return fn(sys)
        flat = _flat(sys)
        bounds = np.linspace(0, size, n_chunks + 1).astype(int)
        chunks = [flat[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        with ThreadPoolExecutor(n_chunks) as pool:
            parts = list(pool.map(fn, chunks))
    out = []
    for pieces in zip(*parts, strict=True):
        if isinstance(pieces[0], np.ndarray):
            joined = np.concatenate(pieces, axis=0)
            out.append(joined.reshape(batch + joined.shape[1:]))
        else:
            out.append(pieces[0])  # non-array outputs (e.g. a path name) are the same for all
    return tuple(out)
