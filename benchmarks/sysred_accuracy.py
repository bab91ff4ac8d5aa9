#!/usr/bin/env python
"""Accuracy benchmark: Hankel singular values of diagonal systems whose HSVs decay to
1e-30 * sigma_1 and beyond, against an mpmath reference.

Systems (SISO, complex arrays, n = 28..40; the script prints each one's decay):

* ``ct-line``: continuous time, poles ``-1 + i w`` with ``w`` equispaced in [-1, 1], b = c = 1
  (a Cauchy matrix on a vertical segment);
* ``ct-geo``: continuous time, real poles ``-10^t``, ``t`` equispaced in [0, 1], b = c = 1
  (the classic geometrically spaced Cauchy/Hilbert-like case; complex dtype);
* ``dt-spiral``: discrete time, poles ``rho_k exp(i theta_k)`` on a spiral, rho in [0.5, 0.8],
  theta in [0, 1], b = c = 1;
* ``dt-cluster``: discrete time, 36 random poles in the disc of radius 0.15 around
  0.5 + 0.2i, random complex Gaussian b and c (non-symmetric Gramians);
* ``dt-s4d-smooth``: one S4D-Lin channel (Delta = 0.01, reference.md section 2) with
  ``c_n = z_n exp(-2 n)``: the "decaying" case of ``sysred_speed.py`` at N = 40.

Reference: :mod:`mp_reference` (closed-form Gramians in mpmath, Cholesky, SVD of ``S^H R``) at
150 and 250 digits; their agreement is printed (it bounds the reference's own error).

Methods:

* sysred default path on the ``DiagonalStateSpace`` (``sysred.hankel_singular_values(G)``;
  the path it reports is printed), and with ``accuracy="high"`` (extended precision,
  :mod:`sysred.precise`);
* sysred dense path: ``sysred.hankel_singular_values(G.to_dense())`` (Hammarling);
* slycot ``ab09ad(job='B', equil='N')`` on ``sysred.realify(G)``: each HSV appears twice, and
  both copies are compared with the reference.

Printed: the max relative HSV error per decade of sigma/sigma_1 (1e0..1e-1, ..., 1e-29..1e-30)
over all systems, per method, and a per-system summary. Also written (unless ``--quick``):
``benchmarks/results/sysred_accuracy.{txt,png}``.

Usage::

    python benchmarks/sysred_accuracy.py          # ~1-2 min (mpmath dominates)
    python benchmarks/sysred_accuracy.py --quick  # small systems, lower precision, seconds
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import mp_reference  # noqa: E402
from bench_info import Tee, sysred_version  # noqa: E402

import sysred  # noqa: E402

DECADES = 30  # rows 1e0..1e-1, ..., 1e-29..1e-30


out = Tee()


# ---------------------------------------------------------------------------------------------
# systems: name -> (poles, b, c, discrete)


def cases(quick=False):
    rng = np.random.default_rng(1)
    s = 0.5 if quick else 1.0  # quick: smaller systems
    res = {}
    n = int(30 * s)
    res["ct-line"] = (-1.0 + 1j * np.linspace(-1, 1, n), np.ones(n) + 0j, np.ones(n) + 0j, False)
    n = int(28 * s)
    res["ct-geo"] = (-(10.0 ** np.linspace(0, 1, n)) + 0j, np.ones(n) + 0j, np.ones(n) + 0j, False)
    n = int(30 * s)
    a = np.linspace(0.5, 0.8, n) * np.exp(1j * np.linspace(0, 1, n))
    res["dt-spiral"] = (a, np.ones(n) + 0j, np.ones(n) + 0j, True)
    n = int(36 * s)
    z = rng.uniform(0, 1, n) ** 0.5 * np.exp(2j * np.pi * rng.uniform(0, 1, n))
    a = 0.5 + 0.2j + 0.15 * z
    b = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    c = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    res["dt-cluster"] = (a, b, c, True)
    n = int(40 * s)
    ell = -0.5 + 1j * np.pi * np.arange(n)
    a = np.exp(0.01 * ell)
    b = (a - 1.0) / ell
    c = (rng.standard_normal(n) + 1j * rng.standard_normal(n)) * np.exp(-2.0 * np.arange(n))
    res["dt-s4d-smooth"] = (a, b, c * a, True)
    return res


def system(poles, b, c, discrete):
    return sysred.DiagonalStateSpace(poles, b[:, None], c[None, :], dt=1.0 if discrete else None)


# ---------------------------------------------------------------------------------------------
# methods: each returns (hsv as (n,) or (2n,) for the realification, label)


def _ab09ad_ldwork(n, m, p):
    return 4 * (n * (2 * n + max(n, m, p) + 5) + n * (n + 1) // 2) + 1000


def hsv_slycot(G):
    from slycot import ab09ad

    R = sysred.realify(G)
    n, m, p = R.n, R.m, R.p
    A, B, C = (np.array(X, order="F") for X in (R.A, R.B, R.C))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "nr set to the minimal order": irrelevant for HSVs
        res = ab09ad("D" if G.is_discrete else "C", "B", "N", n, m, p, A, B, C, nr=1, tol=0.0,
                     ldwork=_ab09ad_ldwork(n, m, p))  # fmt: skip
    return np.sort(res[4])[::-1]


def methods():
    ms = {
        "sysred diagonal": lambda G: sysred.hankel_singular_values(G),  # accuracy="standard"
        "sysred dense": lambda G: sysred.hankel_singular_values(G.to_dense()),
        "slycot ab09ad": hsv_slycot,
    }
    ms["sysred accuracy=high"] = lambda G: sysred.hankel_singular_values(G, accuracy="high")
    return ms


def rel_errors(h, ref):
    """Relative error of each reference HSV; a realified result (2n values) is compared in
    pairs, both copies, the worse one counts."""
    h = np.sort(np.asarray(h, dtype=float))[::-1]
    if h.size == 2 * ref.size:
        e = np.maximum(np.abs(h[0::2] - ref), np.abs(h[1::2] - ref))
    else:
        e = np.abs(h - ref)
    return e / ref


# ---------------------------------------------------------------------------------------------


def header(dps):
    out("# sysred accuracy benchmark: HSVs against an mpmath reference")
    out(f"date: {time.strftime('%Y-%m-%d %H:%M:%S')}  host: {platform.node()}  "
        f"python {platform.python_version()}  numpy {np.__version__}  "
        f"reference precisions: {dps[0]} and {dps[1]} digits")  # fmt: skip
    out(sysred_version())


def decade_of(ratio):
    """0 for sigma/sigma_1 in (1e-1, 1], 1 for (1e-2, 1e-1], ...; 1 itself is decade 0."""
    return np.floor(-np.log10(ratio) + 1e-12).astype(int).clip(min=0)


def plot(points, path, names):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = ["o", "s", "^", "v", "D"]
    for k, name in enumerate(names):
        ratio = np.concatenate([p[0] for p in points[name]])
        err = np.concatenate([p[1] for p in points[name]])
        err = np.maximum(err, 1e-17)  # exact matches drawn at the bottom
        ax.loglog(ratio, err, markers[k % len(markers)], ms=3.5, alpha=0.7, label=name)
    ax.axhline(1e-10, color="k", ls="--", lw=0.8, label="target 1e-10")
    ax.axvline(1e-30, color="gray", ls=":", lw=0.8)
    ax.invert_xaxis()
    ax.set_xlabel("sigma_i / sigma_1 (reference)")
    ax.set_ylabel("relative error of sigma_i")
    ax.set_ylim(1e-17, 1e3)
    ax.set_title("HSV accuracy on diagonal systems vs mpmath (all benchmark systems)", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small systems, 40/60 digits")
    ap.add_argument("--dps", default="150,250", help="the two mpmath precisions")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    dps = (40, 60) if args.quick else tuple(int(d) for d in args.dps.split(","))
    outdir = args.out or (None if args.quick else str(HERE / "results"))
    t_start = time.perf_counter()
    header(dps)

    ms = methods()
    names = list(ms)
    _, _, path = sysred.gramian_factors(system(*next(iter(cases(args.quick).values()))))
    out(f"sysred diagonal path reported by gramian_factors: {path!r}")
    worst = {name: np.zeros(DECADES) for name in names}  # max error per decade
    count = np.zeros(DECADES, dtype=int)
    points = {name: [] for name in names}
    seconds = {name: 0.0 for name in names}
    summary = []
    out("")
    out("## systems (log10 sigma_i/sigma_1 from the reference)")
    for cname, (poles, b, c, disc) in cases(args.quick).items():
        t0 = time.perf_counter()
        ref, agree = mp_reference.reference_hsv(poles, b, c, disc, dps)
        t_ref = time.perf_counter() - t0
        ratio = ref / ref[0]
        out(f"{cname:14s} n={poles.size:2d} {'dt' if disc else 'ct'}  reference agreement "
            f"{dps[0]} vs {dps[1]} digits: {agree:.1e} (mpmath {t_ref:.1f} s)")  # fmt: skip
        out("   " + " ".join(f"{v:.0f}" for v in np.log10(ratio)))
        keep = ratio >= 10.0 ** (-DECADES)
        dec = decade_of(ratio[keep])
        np.add.at(count, dec, 1)
        G = system(poles, b, c, disc)
        row = {"case": cname, "n": poles.size, "agree": agree}
        for name in names:
            t0 = time.perf_counter()
            h = ms[name](G)
            seconds[name] += time.perf_counter() - t0
            err = rel_errors(h, ref)[keep]
            np.maximum.at(worst[name], dec, err)
            points[name].append((ratio[keep], err))
            row[name] = (err.max(), err[ratio[keep] >= 1e-12].max())
        summary.append(row)

    out("")
    out("## max relative HSV error per decade of sigma/sigma_1 (all systems; '-' = no HSV there)")
    width = max(16, *(len(n) + 1 for n in names))
    out(f"{'sigma/sigma_1':>17s} {'#':>3s} " + " ".join(f"{n:>{width}s}" for n in names))
    for k in range(DECADES):
        label = f"1e-{k:02d}..1e-{k + 1:02d}"
        cells = [f"{worst[n][k]:>{width}.1e}" if count[k] else f"{'-':>{width}s}" for n in names]
        out(f"{label:>17s} {count[k]:3d} " + " ".join(cells))
    out(f"{'all >= 1e-30':>17s} {count.sum():3d} " + " ".join(
        f"{worst[n].max():>{width}.1e}" for n in names))  # fmt: skip
    out("(slycot: both copies of each realified HSV are compared; errors >= 1 mean no digit)")
    out(f"{'seconds (all)':>17s} {'':3s} " + " ".join(f"{seconds[n]:>{width}.3f}" for n in names))
    for n in names:
        verdict = "met" if worst[n].max() <= 1e-10 else "NOT met"
        out(f"target (every sigma_i >= 1e-30 sigma_1 within 1e-10 relative), {n}: {verdict}")

    out("")
    out("## per system: max rel error for sigma >= 1e-30 sigma_1 / for sigma >= 1e-12 sigma_1")
    out(f"{'system':14s} {'n':>3s} " + " ".join(f"{n:>{width + 9}s}" for n in names))
    for row in summary:
        cells = [f"{row[n][0]:>{width}.1e}/{row[n][1]:.1e}" for n in names]
        out(f"{row['case']:14s} {row['n']:3d} " + " ".join(cells))
    out(f"total wall time {time.perf_counter() - t_start:.0f} s")

    if outdir:
        Path(outdir).mkdir(parents=True, exist_ok=True)
        (Path(outdir) / "sysred_accuracy.txt").write_text("\n".join(out.lines) + "\n")
        plot(points, Path(outdir) / "sysred_accuracy.png", names)
        print(f"wrote {outdir}/sysred_accuracy.txt and sysred_accuracy.png")


if __name__ == "__main__":
    main()
