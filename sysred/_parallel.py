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
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from sysred.errors import OptionError

#: Below this many systems per chunk, threading costs more than it saves.
MIN_CHUNK = 16


def check_workers(workers):
    """``workers`` as a positive int (``None``: :func:`default_workers`)."""
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer) or workers < 1:
        raise OptionError(f"workers must be a positive integer (or None), got {workers!r}")
    return int(workers)


_local = threading.local()


@contextlib.contextmanager
def worker_threads(n):
    """Within the block, and in the calling thread only, sysred's default number of worker
    threads for batches is ``n`` (an explicit ``workers=`` argument still wins).

    For callers that parallelise over several batches themselves (e.g. one thread per layer
    of a network): each batch then runs on its caller's thread, ``worker_threads(1)``, instead
    of every batch starting its own threads and oversubscribing the cores.

    Raises
    ------
    OptionError
        ``n`` is not a positive integer.

    Examples
    --------
    >>> import sysred
    >>> with sysred.worker_threads(1):
    ...     sysred._parallel.default_workers()
    1
    """
    n = check_workers(n)
    before = getattr(_local, "workers", None)
    _local.workers = n
    try:
        yield
    finally:
        _local.workers = before


def default_workers() -> int:
    """The :func:`worker_threads` limit of this thread if one is active, else
    ``$SYSRED_WORKERS`` if set, else the number of CPUs this process may use (<= 8)."""
    limited = getattr(_local, "workers", None)
    if limited is not None:
        return limited
    env = os.environ.get("SYSRED_WORKERS")
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value < 1:
            raise OptionError(
                f"the environment variable SYSRED_WORKERS must be a positive integer (the number "
                f"of threads for batches), got {env!r}; unset it to use every available CPU"
            )
        return value
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def _flat(sys):
    """The same system with its batch dimensions flattened to one (or none)."""
    arrays = sys._arrays()
    ndims = [1] + [2] * (len(arrays) - 1) if arrays[0].ndim == sys.B.ndim - 1 else [2] * 4
    b = int(np.prod(sys.batch_shape, dtype=int))
    flat = [a.reshape((b,) + a.shape[a.ndim - k :]) for a, k in zip(arrays, ndims, strict=True)]
    return type(sys)(*flat, dt=sys.dt)


_limit_lock = threading.Lock()
_limit_depth = 0
_controller = None


@contextlib.contextmanager
def one_blas_thread():
    """Limit BLAS to one thread (threadpoolctl, if installed) for the duration of the block.

    Re-entrant and cheap when nested: only the outermost block talks to threadpoolctl, whose
    controller (a scan of the loaded libraries, ~1 ms) is built once per process.
    """
    global _limit_depth, _controller
    with _limit_lock:
        outer = _limit_depth == 0
        _limit_depth += 1
    try:
        if not outer:
            yield
            return
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            yield
            return
        if _controller is None:
            _controller = ThreadpoolController()
        with _controller.limit(limits=1, user_api="blas"):
            yield
    finally:
        with _limit_lock:
            _limit_depth -= 1


def split_batch(sys, workers=None):
    """``sys`` as a list of flat chunks (one per worker thread, >= MIN_CHUNK systems each).

    An unbatched system is a one-element list holding itself.

    Raises
    ------
    OptionError
        ``workers`` (or ``$SYSRED_WORKERS``) is not a positive integer.
    """
    workers = check_workers(workers)
    batch = sys.batch_shape
    if not batch:
        return [sys]
    size = int(np.prod(batch))
    n_chunks = max(1, min(workers, size // MIN_CHUNK))
    flat = _flat(sys)
    if n_chunks == 1:
        return [flat]
    bounds = np.linspace(0, size, n_chunks + 1).astype(int)
    return [flat[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


def run_chunks(fn, *per_chunk, limit_blas=True):
    """``[fn(*args) for args in zip(*per_chunk)]``, one thread per chunk.

    ``limit_blas``: one BLAS thread while running (small batched matrices); a single big
    unbatched system may rather keep BLAS's own threads.
    """
    jobs = list(zip(*per_chunk, strict=True))
    with one_blas_thread() if limit_blas else contextlib.nullcontext():
        if len(jobs) == 1:
            return [fn(*jobs[0])]
        with ThreadPoolExecutor(len(jobs)) as pool:
            return list(pool.map(lambda args: fn(*args), jobs))


def join_chunks(parts, batch):
    """Concatenate per-chunk arrays (leading axis = flat batch) and restore ``batch``.

    ``parts`` is a list (over chunks) of equally long tuples; non-array members (e.g. a path
    name) are the same for every chunk and returned once.
    """
    if not batch:
        return tuple(parts[0])
    out = []
    for pieces in zip(*parts, strict=True):
        if isinstance(pieces[0], np.ndarray):
            joined = np.concatenate(pieces, axis=0) if len(pieces) > 1 else pieces[0]
            out.append(joined.reshape(batch + joined.shape[1:]))
        else:
            out.append(pieces[0])
    return tuple(out)


def map_batch(fn, sys, workers=None):
    """``fn(chunk) -> tuple of arrays with a leading batch axis``, over chunks of ``sys``.

    Returns the concatenated tuple with the leading axis reshaped to ``sys.batch_shape``.
    """
    chunks = split_batch(sys, workers)
    parts = run_chunks(fn, chunks, limit_blas=bool(sys.batch_shape))
    return join_chunks(parts, sys.batch_shape)
