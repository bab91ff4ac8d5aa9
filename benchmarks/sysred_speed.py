#!/usr/bin/env python
"""Speed benchmark: sysred's batched balanced truncation of S4D-Lin-like diagonal systems
against slycot (``ab09ad`` / ``ab09ax``) and pyMOR (``BTReductor``), looping over systems, on
the realified form and on the natural real SISO form of each channel.

Systems (reference.md section 2): H channels, N complex states, discrete time,

    l_n = -1/2 + i pi n (n = 0..N-1),  Delta_h log-uniform in [1e-3, 1e-1],
    a = exp(Delta l),  b = (exp(Delta l) - 1) / l,  C = c * a (elementwise),

reduced to r = 16 complex states (= 32 real states of the realisation).

* ``full``: c random complex Gaussian (slowly decaying HSVs).
* ``decaying``: c_n = z_n exp(-2 n), z_n random complex Gaussian: the channel's energy falls
  off geometrically with the mode frequency pi n Delta, i.e. a smooth (analytic) kernel, the
  spectral bias of trained kernels. The script prints the measured HSV decay
  (sigma_{N/4+1} / sigma_1 < 1e-12 in every channel). At r = 16 some kept HSVs are at rounding
  level, so sysred is called with ``strict=False`` in this case (the warnings are counted).

Methods, all timed in the same run on the same systems:

* sysred: one batched call ``sysred.balanced_truncation(G, order=r)`` on the complex diagonal
  batch (the time includes the reduced systems, not only the HSVs), with the default options
  and with ``rank_tol=1e-16`` (low-rank factors; ``--lowrank-tol``), each after three untimed
  full-size calls (steady state, as inside a training loop);
* slycot: ``ab09ad(dico='D', job='B', equil='N')`` on ``sysred.realify(G[h])`` for each h
  (python-control's ``balanced_reduction`` hard-codes continuous time, so ``ab09ad`` is called
  directly, with a generous ``ldwork``), order 2r;
* pyMOR: ``BTReductor(LTIModel.from_matrices(A, B, C, sampling_time=1)).reduce(2r)`` on the
  real realisation (pyMOR is real-only) for each h; the HSVs come from ``fom.hsv()`` (cached
  by the reduction). By default pyMOR runs on a subset of the channels and its time is scaled
  linearly to H (printed in the table).

The *natural real form* (``sysred.real_part(G[h])``): what a DSS layer computes from a real
input is ``Re(G u)``, a real SISO system of order 2N with one 2x2 block per mode; this is what
a python-control / SLICOT / pyMOR user would reduce (to 2r real states). The realify form above
(2 inputs, 2 outputs) has the complex system's Hankel operator; the natural form has another
one (different HSVs). Timed on it, each in its strongest fair form:

* slycot: ``ab09ax(dico='D', job='B')``: ``A`` is already in real Schur form (block diagonal,
  standardised 2x2 blocks), so AB09AD's Schur step is skipped; balancing-free square root, as
  in the realify row (``job='N'``, plain square root, costs the same but slycot 0.7.1 writes
  past its hidden IWORK array there: valgrind shows an invalid write in DGETRF called from
  AB09AX, and the corrupted heap later aborted or segfaulted the process in unrelated code);
  the natural-form matrices are built before the clock starts (the realify rows convert
  inside the loop);
* pyMOR: ``BTReductor(LTIModel.from_matrices(A, B, C, sampling_time=1)).reduce(2r,
  projection='sr')`` (square root like sysred's default; pyMOR's default 'bfsr' adds a
  Gram-Schmidt, measured 1.3x slower), HSVs from ``fom.hsv()``; subset of channels as above;
* sysred itself: ``balanced_truncation(real_part(G, form='conjugate-pairs'), order=2r,
  strict=False)``, the natural form as a complex diagonal batch of order 2N (poles l and
  conj l; same transfer function and HSVs), to compare HSVs and to show the cost of the real
  map's own BT.

The targets (issue 13) are for sysred's batched BT of ``G`` (what s4dss.reduce runs) against
the slycot loop on the natural form: >= 20x in case ``full`` (default options) and >= 100x in
case ``decaying`` with ``rank_tol``. Timing rounds are interleaved (each round times every
method once, in the same order, each sysred variant several times; medians), so that load
drift on a shared machine hits all methods alike. Wall and process CPU time are both recorded:
the targets are wall-time ratios; CPU-time ratios (sysred's counting both worker threads) are
printed too, as they depend less on the machine's load.

BLAS is pinned to ``--threads`` threads (default 1): ``OPENBLAS_NUM_THREADS`` & co. are set
before numpy is imported and ``threadpoolctl.threadpool_limits`` is applied around all timings.
sysred may split a batch over its own worker threads (``$SYSRED_WORKERS``, ``--workers``); the
header prints how many it uses. The slycot and pyMOR loops are single Python threads.

Usage::

    python benchmarks/sysred_speed.py            # full run (~3-4 min on 2 cores), writes
                                                 # benchmarks/results/sysred_speed.{txt,png}
    python benchmarks/sysred_speed.py --quick    # smoke test, seconds, writes nothing

The header prints which sysred was imported; to measure a checkout while the editable install
points elsewhere, run from the checkout's root with ``PYTHONPATH=.``.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys


def _parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="sysred's own batch threads ($SYSRED_WORKERS; default: sysred's choice)",
    )
    p.add_argument("--quick", action="store_true", help="tiny smoke run; writes no results")
    p.add_argument("-H", "--channels", type=int, default=256, help="batch size H (default 256)")
    p.add_argument("-N", "--states", type=int, default=64, help="states per channel (default 64)")
    p.add_argument("-r", "--order", type=int, default=16, help="reduced order (default 16)")
    p.add_argument("--repeats", type=int, default=7, help="repeats of the sysred call")
    p.add_argument(
        "--lowrank-tol",
        type=float,
        default=1e-16,
        help="rank_tol of the second sysred row (low-rank factors; default 1e-16)",
    )
    p.add_argument("--loop-repeats", type=int, default=3, help="repeats of the slycot/pyMOR loops")
    p.add_argument(
        "--pymor-systems", type=int, default=32, help="channels pyMOR loops over (time scaled)"
    )
    p.add_argument("--sweep", default="16,32,64,128,256", help="N values of the sysred sweep")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--bt-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra keyword for sysred.balanced_truncation (e.g. accuracy=high); repeatable",
    )
    p.add_argument(
        "--out",
        default=None,
        help="folder for sysred_speed.{txt,png} (default benchmarks/results; --quick: none)",
    )
    return p.parse_args(argv)


ARGS = _parse_args() if __name__ == "__main__" else _parse_args([])
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)
if ARGS.workers is not None:
    os.environ["SYSRED_WORKERS"] = str(ARGS.workers)

import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import sysred  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_info import Tee, sysred_version  # noqa: E402

HERE = Path(__file__).resolve().parent
DECAY_RATE = 2.0  # decaying case: |c_n| ~ exp(-DECAY_RATE * n)
# wall-time speed-up targets: issue 13 against the natural real form (slycot, the stronger
# anchor); issue 3's against the realify form are kept
TARGETS = {
    ("full", "sysred"): {"slycot_natural": 20, "slycot": 20, "pymor": 100},
    ("decaying", "lowrank"): {"slycot_natural": 100, "slycot": 100},
}
REFS = (
    ("slycot_natural", "slycot natural"),
    ("slycot", "slycot realify"),
    ("pymor_natural", "pyMOR natural"),
    ("pymor", "pyMOR realify"),
)


out = Tee()


# ---------------------------------------------------------------------------------------------
# systems


def s4d_lin_batch(rng, H, N, case):
    """(poles a, b, c) of H S4D-Lin-like channels, each (H, N) complex; C = c * a."""
    ell = -0.5 + 1j * np.pi * np.arange(N)
    delta = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), H))
    a = np.exp(delta[:, None] * ell)
    b = (a - 1.0) / ell
    c = rng.standard_normal((H, N)) + 1j * rng.standard_normal((H, N))
    if case == "decaying":
        c = c * np.exp(-DECAY_RATE * np.arange(N))
    elif case != "full":
        raise ValueError(case)
    return a, b, c


def make_system(a, b, c):
    return sysred.DiagonalStateSpace(a, b[..., None], (c * a)[..., None, :], dt=1.0)


# ---------------------------------------------------------------------------------------------
# the three reductors


def bt_kwargs():
    kw = {}
    for item in ARGS.bt_option:
        key, _, value = item.partition("=")
        try:  # numbers and literals as Python values, anything else as a string
            kw[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kw[key] = value
    return kw


def run_sysred(G, r, strict=True, **extra):
    """One batched call; returns (hsv (H, N), path, number of warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = sysred.balanced_truncation(G, order=r, strict=strict, **{**bt_kwargs(), **extra})
    return res.hsv, res.path, len(caught)


def _ab09ad_ldwork(n, m, p):
    # slycot's default (SLICOT's minimum) has corrupted the heap here for some jobs
    return 4 * (n * (2 * n + max(n, m, p) + 5) + n * (n + 1) // 2) + 1000


def run_slycot(G, r, idx):
    """ab09ad on the real realisation of each G[h], h in idx; returns hsv (len(idx), 2N)."""
    from slycot import ab09ad

    out_hsv = []
    with warnings.catch_warnings():
        # decaying case: "selected order > minimal order, nr was set to ..." (harmless here)
        warnings.simplefilter("ignore")
        for h in idx:
            R = sysred.realify(G[h])
            n, m, p = R.n, R.m, R.p
            A, B, C = (np.array(X, order="F") for X in (R.A, R.B, R.C))
            res = ab09ad(
                "D", "B", "N", n, m, p, A, B, C, nr=2 * r, tol=0.0, ldwork=_ab09ad_ldwork(n, m, p)
            )
            out_hsv.append(res[4])
    return np.array(out_hsv)


def run_pymor(G, r, idx):
    """pyMOR BTReductor on the real realisation of each G[h]; returns hsv (len(idx), 2N)."""
    from pymor.models.iosys import LTIModel
    from pymor.reductors.bt import BTReductor

    out_hsv = []
    for h in idx:
        R = sysred.realify(G[h])
        fom = LTIModel.from_matrices(R.A, R.B, R.C, sampling_time=1)
        BTReductor(fom).reduce(2 * r)
        out_hsv.append(fom.hsv())
    return np.array(out_hsv)


def natural_forms(G):
    """The natural real form of each channel as Fortran-ordered (A, B, C) triples (built once,
    outside the timed loops)."""
    R = sysred.real_part(G)  # (H, 2N, 2N), (H, 2N, 1), (H, 1, 2N), real
    return [tuple(np.asfortranarray(X[h]) for X in (R.A, R.B, R.C)) for h in range(len(G))]


def run_slycot_natural(forms, r, idx):
    """ab09ax (A in real Schur form) on the natural real SISO form; returns hsv (len(idx), 2N)."""
    from slycot import ab09ax

    out_hsv = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for h in idx:
            A, B, C = (X.copy(order="F") for X in forms[h])  # ab09ax overwrites its inputs
            n = A.shape[0]
            # job 'B': with 'N', slycot 0.7.1's AB09AX writes past its hidden IWORK (valgrind)
            res = ab09ax(
                "D", "B", n, 1, 1, A, B, C, nr=2 * r, tol=0.0, ldwork=_ab09ad_ldwork(n, 1, 1)
            )
            out_hsv.append(res[4])
    return np.array(out_hsv)


def run_pymor_natural(forms, r, idx):
    """pyMOR BTReductor ('sr') on the natural real SISO form; returns hsv (len(idx), 2N)."""
    from pymor.models.iosys import LTIModel
    from pymor.reductors.bt import BTReductor

    out_hsv = []
    for h in idx:
        A, B, C = forms[h]
        fom = LTIModel.from_matrices(A, B, C, sampling_time=1)
        BTReductor(fom).reduce(2 * r, projection="sr")
        out_hsv.append(fom.hsv())
    return np.array(out_hsv)


def timed(fn, repeats, budget=None):
    """(median seconds, all times, last result); stops early once ``budget`` s are spent."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        if budget is not None and sum(times) > budget:
            break
    return float(np.median(times)), times, result


def timed_rounds(methods, rounds, inner):
    """Interleaved timing: each round calls every method once in order (a ``sysred*`` method
    ``inner`` times); returns {name: (median wall s, median CPU s, last result)}. CPU time is
    the process's (all threads: for sysred the work of both workers), less sensitive to the
    load of a shared machine than wall time."""
    times = {name: [] for name in methods}
    cpu = {name: [] for name in methods}
    results = {}
    for _ in range(rounds):
        for name, fn in methods.items():
            for _ in range(inner if name.startswith("sysred") else 1):
                c0, t0 = time.process_time(), time.perf_counter()
                results[name] = fn()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    return {
        name: (float(np.median(times[name])), float(np.median(cpu[name])), results[name])
        for name in methods
    }


# ---------------------------------------------------------------------------------------------
# HSV comparison


def paired_rel_diff(h_complex, h_real, floor=1e-10):
    """Max relative difference between complex HSVs (k, N) and realified ones (k, 2N), which
    come in pairs: both members of each pair are compared, for sigma >= floor * sigma_1."""
    h_real = np.sort(h_real, axis=-1)[..., ::-1]
    mask = h_complex >= floor * h_complex[..., :1]
    d = np.maximum(np.abs(h_real[..., 0::2] - h_complex), np.abs(h_real[..., 1::2] - h_complex))
    safe = np.where(mask, h_complex, 1.0)  # low-rank runs report unresolved HSVs as 0
    return float(np.max(np.where(mask, d / safe, 0.0)))


def real_rel_diff(h1, h2, floor=1e-10):
    """Max relative difference between two realified HSV arrays (k, 2N), sigma >= floor*s1."""
    h1, h2 = np.sort(h1, axis=-1)[..., ::-1], np.sort(h2, axis=-1)[..., ::-1]
    mask = h2 >= floor * h2[..., :1]
    return float(np.max(np.where(mask, np.abs(h1 - h2) / h2, 0.0)))


# ---------------------------------------------------------------------------------------------


def header():
    out("# sysred speed benchmark")
    out(
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S')}  host: {platform.node()}  "
        f"python {platform.python_version()}  numpy {np.__version__}  cpus: {os.cpu_count()}  "
        f"load avg (1/5 min) at start: {os.getloadavg()[0]:.1f}/{os.getloadavg()[1]:.1f}"
    )
    out(sysred_version())
    libs = [
        f"{i['internal_api']} {i.get('version')} ({i['num_threads']} thr)"
        for i in threadpool_info()
    ]
    out(f"BLAS threads pinned to {ARGS.threads}; loaded pools: {'; '.join(libs)}")
    try:
        from sysred._parallel import default_workers

        out(
            f"sysred batch worker threads: {default_workers()} (the slycot/pyMOR loops run in "
            "one Python thread; sysred is meant to use the cores it is given)"
        )
    except ImportError:
        out("sysred batch worker threads: none (single-threaded sysred)")
    if bt_kwargs():
        out(f"sysred.balanced_truncation extra keywords: {bt_kwargs()}")


def compare_case(case, rng, H, N, r):
    a, b, c = s4d_lin_batch(rng, H, N, case)
    G = make_system(a, b, c)
    P = sysred.real_part(G, form="conjugate-pairs")  # natural form, complex diagonal, order 2N
    forms = natural_forms(G)
    strict = case == "full"
    n_py = min(ARGS.pymor_systems, H)
    py_idx = np.arange(n_py)
    lowrank = {"rank_tol": ARGS.lowrank_tol}

    # warm-up, untimed: imports, numba's compiled kernels, and three full-size calls of each
    # sysred variant (measured: the first 2-3 calls in a process run up to 1.7x slower, fresh
    # batch-sized allocations); slycot/pyMOR on a few systems (their loops warm themselves)
    for _ in range(3):
        run_sysred(G, r, strict=False)
        run_sysred(G, r, strict=False, **lowrank)
        run_sysred(P, 2 * r, strict=False)
    run_slycot(G, r, [0, 1])
    run_slycot_natural(forms, r, [0, 1])
    run_pymor(G, r, [0])
    run_pymor_natural(forms, r, [0])
    methods = {
        "sysred": lambda: run_sysred(G, r, strict),
        "sysred_lowrank": lambda: run_sysred(G, r, strict, **lowrank),
        "sysred_natural": lambda: run_sysred(P, 2 * r, strict=False),
        # the HSVs alone (factors, S^H R, singular values; no vectors, no projection): the
        # part of sysred's time that any order costs, printed against the targets' budgets
        "sysred_hsv": lambda: sysred.BTReductor(G, **bt_kwargs()).hsv,
        "sysred_lowrank_hsv": lambda: sysred.BTReductor(G, **{**bt_kwargs(), **lowrank}).hsv,
        "slycot": lambda: run_slycot(G, r, range(H)),
        "slycot_natural": lambda: run_slycot_natural(forms, r, range(H)),
        "pymor": lambda: run_pymor(G, r, py_idx),
        "pymor_natural": lambda: run_pymor_natural(forms, r, py_idx),
    }
    inner = max(1, round(ARGS.repeats / ARGS.loop_repeats))
    res = timed_rounds(methods, ARGS.loop_repeats, inner)
    t_sr, c_sr, (hsv, path, nwarn) = res["sysred"]
    t_lr, c_lr, (hsv_lr, path_lr, _) = res["sysred_lowrank"]
    t_srn, c_srn, (hsv_srn, _, nwarn_n) = res["sysred_natural"]
    t_hsv, c_hsv, _ = res["sysred_hsv"]
    t_lrh, c_lrh, _ = res["sysred_lowrank_hsv"]
    t_sl, c_sl, hsv_sl = res["slycot"]
    t_sln, c_sln, hsv_sln = res["slycot_natural"]
    t_py, c_py, hsv_py = res["pymor"]
    t_pyn, c_pyn, hsv_pyn = res["pymor_natural"]
    scale = H / n_py

    q = hsv / hsv[:, :1]
    qn = np.sort(hsv_sln, axis=-1)[:, ::-1]
    qn = qn / qn[:, :1]
    k = N // 4
    out("")
    out(
        f"## case '{case}': H = {H} channels, N = {N}, r = {r}, discrete time, sysred paths "
        f"'{path}' and '{path_lr}'" + ("" if strict else f", strict=False ({nwarn} warning(s))")
    )
    out(
        f"HSV decay sigma_{k + 1}/sigma_1 over channels: median {np.median(q[:, k]):.2e}, "
        f"max {np.max(q[:, k]):.2e};  "
        + (f"sigma_{r + 1}/sigma_1: median {np.median(q[:, r]):.2e}; " if r != k else "")
        + f"numerical rank (> 1e-12 sigma_1): median {np.median(np.sum(q > 1e-12, axis=1)):.0f}, "
        f"max {np.max(np.sum(q > 1e-12, axis=1))} of {N}"
    )
    out(
        f"natural real form (order {2 * N}, slycot's HSVs): sigma_{2 * r + 1}/sigma_1 median "
        f"{np.median(qn[:, 2 * r]):.2e}; numerical rank (> 1e-12 sigma_1): median "
        f"{np.median(np.sum(qn > 1e-12, axis=1)):.0f} of {2 * N}; sysred on it: strict=False, "
        f"{nwarn_n} warning(s)"
    )
    d_sl = paired_rel_diff(hsv, hsv_sl)
    d_lr = paired_rel_diff(hsv_lr, hsv_sl)
    d_py = paired_rel_diff(hsv[py_idx], hsv_py)
    d_slpy = real_rel_diff(hsv_py, hsv_sl[py_idx])
    d_srn = real_rel_diff(hsv_srn, hsv_sln)
    d_slpyn = real_rel_diff(hsv_pyn, hsv_sln[py_idx])
    # (name, systems timed, median s, s for H, HSV difference against slycot on the same form)
    rows = [
        ("sysred (batched, default)", H, t_sr, t_sr, c_sr, f"{d_sl:.1e} R"),
        (f"sysred (rank_tol={ARGS.lowrank_tol:g})", H, t_lr, t_lr, c_lr, f"{d_lr:.1e} R"),
        ("sysred natural form (2N, conj.)", H, t_srn, t_srn, c_srn, f"{d_srn:.1e} N"),
        ("sysred HSVs only (BTReductor)", H, t_hsv, t_hsv, c_hsv, "-"),
        (f"sysred HSVs only (rank_tol={ARGS.lowrank_tol:g})", H, t_lrh, t_lrh, c_lrh, "-"),
        ("slycot ab09ad loop (realify)", H, t_sl, t_sl, c_sl, "-"),
        ("slycot ab09ax loop (natural 2N)", H, t_sln, t_sln, c_sln, "-"),
        ("pyMOR BT loop (realify)", n_py, t_py, t_py * scale, c_py * scale, f"{d_slpy:.1e} R"),
        (
            "pyMOR BT 'sr' loop (natural 2N)",
            n_py,
            t_pyn,
            t_pyn * scale,
            c_pyn * scale,
            f"{d_slpyn:.1e} N",
        ),
    ]
    out(
        f"{'method':32s} {'systems':>7s} {'median s':>9s} {'s for H':>9s} {'CPU s H':>8s} "
        f"{'x default':>10s} {'x rank_tol':>11s} {'HSV diff vs slycot':>19s}"
    )
    for name, nsys, t, t_h, c_h, dd in rows:
        out(
            f"{name:32s} {nsys:7d} {t:9.3f} {t_h:9.3f} {c_h:8.3f} {t_h / t_sr:10.1f} "
            f"{t_h / t_lr:11.1f} {dd:>19s}"
        )
    out(
        "('s for H': wall time for all H channels (pyMOR scaled); 'CPU s H': process CPU time "
        "(sysred: both worker threads); 'x default' / 'x rank_tol': the row's wall time for H "
        "channels over sysred's batched BT of G, i.e. sysred's speed-up; HSV diff: max relative "
        "difference for sigma >= 1e-10 sigma_1 against slycot on the same form: R = realify "
        "form (complex HSVs against both members of each realised pair), N = natural real form)"
    )
    out(
        f"max rel HSV difference: sysred-slycot {d_sl:.1e}, sysred(rank_tol)-slycot {d_lr:.1e}, "
        f"sysred-pyMOR {d_py:.1e}, slycot-pyMOR {d_slpy:.1e} (realify form); "
        f"sysred-slycot {d_srn:.1e}, pyMOR-slycot {d_slpyn:.1e} (natural form)"
    )
    if n_py < H:
        out(
            f"(pyMOR timed on the first {n_py} channels, 's for H' scales its time by "
            f"{H}/{n_py}; HSV differences involving pyMOR are over those channels)"
        )
    wall = {
        "sysred": t_sr,
        "lowrank": t_lr,
        "sysred_hsv": t_hsv,
        "lowrank_hsv": t_lrh,
        "slycot": t_sl,
        "slycot_natural": t_sln,
        "pymor": t_py * scale,
        "pymor_natural": t_pyn * scale,
    }
    cpu = {
        "sysred": c_sr,
        "lowrank": c_lr,
        "slycot": c_sl,
        "slycot_natural": c_sln,
        "pymor": c_py * scale,
        "pymor_natural": c_pyn * scale,
    }
    return {"case": case, "wall": wall, "cpu": cpu}


def sweep(rng, H, r, Ns, case):
    out("")
    out(f"## sysred alone, case '{case}': H = {H}, r = {r}, N swept")
    out(f"{'N':>5s} {'median s':>9s} {'repeats':>7s} {'x prev':>7s} {'exponent':>8s} {'path':>10s}")
    res, prev = [], None
    for N in Ns:
        a, b, c = s4d_lin_batch(rng, H, N, case)
        G = make_system(a, b, c)
        rN = min(r, N - 1)
        for _ in range(2):  # warm-up: first full-size calls, untimed
            run_sysred(G, rN, strict=False)
        t, times, (_, path, _) = timed(
            lambda G=G, rN=rN: run_sysred(G, rN, strict=False), ARGS.repeats, budget=6.0
        )
        if prev is None:
            out(f"{N:5d} {t:9.3f} {len(times):7d} {'-':>7s} {'-':>8s} {path:>10s}")
        else:
            ratio = t / prev[1]
            expo = np.log(ratio) / np.log(N / prev[0])
            out(f"{N:5d} {t:9.3f} {len(times):7d} {ratio:7.2f} {expo:8.2f} {path:>10s}")
        prev = (N, t)
        res.append((N, t))
    out("(exponent = log(t_N / t_prev) / log(N / N_prev): 2 means O(N^2) per channel, 3 O(N^3))")
    return res


def plot(sweeps, summary, path):
    """Left: sysred's time against N; right: the wall-time speed-ups with their targets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=(1, 1.25))
    for case, pts in sweeps.items():
        Ns, ts = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        ax.loglog(Ns, ts, "o-", label=f"sysred, case '{case}'")
    Ns = np.array([p[0] for p in next(iter(sweeps.values()))], dtype=float)
    t0 = next(iter(sweeps.values()))[0][1]
    for e, style in ((2, ":"), (3, "--")):
        ax.loglog(Ns, t0 * (Ns / Ns[0]) ** e, "k" + style, lw=0.8, label=f"~ N^{e}")
    ax.set_xticks(Ns, [str(int(n)) for n in Ns])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("N (states per channel)")
    ax.set_ylabel("seconds (median)")
    ax.set_title(
        f"sysred.balanced_truncation, H = {ARGS.channels}, r = {ARGS.order}, "
        f"{ARGS.threads} BLAS thread(s)",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)

    groups = [(s, v) for s in summary for v in ("sysred", "lowrank")]
    width = 0.8 / len(REFS)
    for j, (ref, ref_label) in enumerate(REFS):
        xs = np.arange(len(groups)) + (j - (len(REFS) - 1) / 2) * width
        ys = [s["wall"][ref] / s["wall"][v] for s, v in groups]
        bx.bar(xs, ys, width, label=f"vs {ref_label}")
        for x, (s, v) in zip(xs, groups, strict=True):
            goal = TARGETS.get((s["case"], v), {}).get(ref)
            if goal is not None:
                bx.plot([x - width / 2, x + width / 2], [goal, goal], "k-", lw=2)
    names = {"sysred": "default", "lowrank": f"rank_tol={ARGS.lowrank_tol:g}"}
    bx.set_xticks(np.arange(len(groups)), [f"{s['case']}\n{names[v]}" for s, v in groups])
    bx.set_yscale("log")
    bx.set_ylabel("speed-up of sysred (wall time, same run)")
    bx.set_title(
        f"loops over H = {ARGS.channels} channels vs one batched call (black bars: targets)",
        fontsize=9,
    )
    bx.grid(True, axis="y", which="both", alpha=0.3)
    bx.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    if ARGS.quick:
        ARGS.channels, ARGS.states, ARGS.repeats, ARGS.loop_repeats = 8, 16, 1, 1
        ARGS.pymor_systems, ARGS.sweep, ARGS.order = 4, "8,16", 4
    outdir = ARGS.out or (None if ARGS.quick else str(HERE / "results"))
    H, N, r = ARGS.channels, ARGS.states, ARGS.order
    Ns = [int(s) for s in ARGS.sweep.split(",") if s]

    try:
        from pymor.core.logger import set_log_levels

        set_log_levels({"pymor": "WARN"})
    except ImportError:
        sys.exit("pyMOR is needed: pip install pymor (listed in the 'bench' extra)")

    t_start = time.perf_counter()
    with threadpool_limits(limits=ARGS.threads):
        header()
        summary = [
            compare_case(case, np.random.default_rng(ARGS.seed + i), H, N, r)
            for i, case in enumerate(("full", "decaying"))
        ]
        sweeps = {
            case: sweep(np.random.default_rng(ARGS.seed + 10), H, r, Ns, case)
            for case in ("full", "decaying")
        }
    out("")
    out("## summary (speed-up of sysred = loop time for H channels / sysred time)")
    for s in summary:
        for variant, label in (
            ("sysred", "default"),
            ("lowrank", f"rank_tol={ARGS.lowrank_tol:g}"),
        ):
            cells = []
            for ref, ref_label in REFS:
                x = s["wall"][ref] / s["wall"][variant]
                goal = TARGETS.get((s["case"], variant), {}).get(ref)
                verdict = "met" if goal is not None and x >= goal else "NOT met"
                met = "" if goal is None else f" (target >= {goal}x: {verdict})"
                cells.append(f"vs {ref_label} {x:5.1f}x{met}")
            out(f"{s['case']:9s} {label:14s}: " + ", ".join(cells))
    out("budgets: the wall time each target allows sysred, and how much of it the HSVs alone take")
    out("(the rest is what the vectors, the projection and the checks may cost):")
    for s in summary:
        for variant in ("sysred", "lowrank"):
            for ref, ref_label in REFS:
                goal = TARGETS.get((s["case"], variant), {}).get(ref)
                if goal is None:
                    continue
                budget = s["wall"][ref] / goal
                hsv_t = s["wall"][variant + "_hsv"]
                out(
                    f"{s['case']:9s} {variant:8s} >= {goal:3d}x {ref_label:15s}: budget "
                    f"{budget * 1e3:6.1f} ms; HSVs alone {hsv_t * 1e3:6.1f} ms "
                    f"({hsv_t / budget:4.0%}); whole BT {s['wall'][variant] * 1e3:6.1f} ms "
                    f"({s['wall'][variant] / budget:4.0%})"
                )
    out("CPU-time ratios (work; load-robust; on an idle 2-core machine the wall ratio is about")
    out("this times sysred's parallel speed-up, up to 2):")
    for s in summary:
        for variant, label in (
            ("sysred", "default"),
            ("lowrank", f"rank_tol={ARGS.lowrank_tol:g}"),
        ):
            cells = [
                f"vs {ref_label} {s['cpu'][ref] / s['cpu'][variant]:5.1f}x"
                for ref, ref_label in REFS
            ]
            out(f"{s['case']:9s} {label:14s}: " + ", ".join(cells))
    out(
        f"total wall time {time.perf_counter() - t_start:.0f} s; load avg at end "
        f"{os.getloadavg()[0]:.1f} (a shared machine: compare ratios within this run)"
    )
    if outdir:
        Path(outdir).mkdir(parents=True, exist_ok=True)
        (Path(outdir) / "sysred_speed.txt").write_text("\n".join(out.lines) + "\n")
        plot(sweeps, summary, Path(outdir) / "sysred_speed.png")
        print(f"wrote {outdir}/sysred_speed.txt and sysred_speed.png")


if __name__ == "__main__":
    main()
