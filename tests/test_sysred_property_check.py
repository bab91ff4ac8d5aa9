"""The property check of issue 10 as a test: 5,000 seeded random stable systems, 0 violations.

Kinds (dense real ct/dt, dense complex ct/dt, complex diagonal ct/dt), SISO and MIMO, n = 1..40,
eigenvector conditioning up to 1e4, random / graded / clustered / near-boundary poles; for every
system the reduced model is stable, ``sigma_{r+1} <= ||G - G_r|| <= bound + 10 n eps ||G||``
(or within 2x SLICOT AB09AD's error at the same order: the issue's criterion, literally), every
H-infinity norm is attained at its returned frequency and not exceeded on a grid, and on every
10th system the HSVs and the norm agree with AB09AD / AB13DD. See tests/_properties.py for the
exact criteria; benchmarks/sysred_properties.py prints the same check as a table.

Ten chunks of 500 systems (progress is visible per chunk), each over two forked processes.
"""

import multiprocessing as mp

import pytest
from _properties import check_system

CHUNKS = 10
PER_CHUNK = 500
WORKERS = 2
TIMEOUT = 900  # seconds for one system (measured: a few seconds at most)


def _one_blas_thread():
    """Pool initializer: BLAS on one thread in each worker. Two workers on two cores each
    running OpenBLAS's own threads oversubscribed them: a chunk took 197 s instead of 49 s
    (the systems are small; benchmarks/sysred_properties.py pins the threads the same way)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")  # lasts for the process (restored only on exit)


@pytest.mark.slow
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_property_check(chunk):
    seeds = range(chunk * PER_CHUNK, (chunk + 1) * PER_CHUNK)
    ctx = mp.get_context("fork")
    with ctx.Pool(WORKERS, initializer=_one_blas_thread, maxtasksperchild=100) as pool:
        it = pool.imap(check_system, seeds)  # chunksize 1: next(timeout) works
        # a worker that dies loses its task and would hang the pool: fail instead
        records = [it.next(timeout=TIMEOUT) for _ in seeds]
    assert len(records) == PER_CHUNK
    reduced = sum(r.get("r") is not None for r in records)
    assert reduced >= 0.9 * PER_CHUNK  # the check ran on (almost) every system
    bad = [r for r in records if r["violations"]]
    report = "\n".join(
        f"seed {r['seed']} {r['kind']} {r['family']} n={r['n']} r={r.get('r')}: "
        + " | ".join(r["notes"])
        for r in bad
    )
    assert not bad, f"{len(bad)} of {PER_CHUNK} systems violate a property:\n{report}"
