"""Compiled (numba) kernel for the pivoted Cholesky factor of rank-one Cauchy-like Gramians.

The same algorithm as :func:`sysred.lyapunov._cauchy_rank1` (the numpy version, which stays
the reference and the fallback), written as plain loops over one system at a time: O(n k) work
per system for k pivots, no temporaries, and the GIL released, so that the batch threads of
:mod:`sysred._parallel` run on all cores. numba is optional (``pip install numba``, or the
``fast`` extra); without it, or with ``SYSRED_NUMBA=0`` in the environment, sysred uses the
numpy version. Both give the same factors up to rounding (tested).

Per system, with ``X_ij = g_i conj(g_j) / d_ij`` and ``d_ij = 1 - x_i conj(x_j)`` (dt) or
``-(x_i + conj(x_j))`` (ct):

* pivot ``p``: the largest remaining diagonal ``|g_i|^2 / d_ii``;
* Cholesky column ``X[:, p] / sqrt(X_pp) = g * conj(g_p) / (d_{:, p} sqrt(X_pp))``;
* generator update ``g_i <- g_i (x_i - x_p) / d_ip`` (dt; ct with a minus sign), which makes
  ``g_p`` exactly 0 and keeps every entry accurate to a few ulps *relative*.
"""

from __future__ import annotations

import os
import threading

import numpy as np

try:  # optional accelerator
    import numba
except ImportError:  # pragma: no cover - exercised where numba is missing
    numba = None

__all__ = ["available", "cauchy_rank1_factors"]


def available() -> bool:
    """Whether the compiled kernel will be used (numba importable, ``SYSRED_NUMBA`` not 0)."""
    return numba is not None and os.environ.get("SYSRED_NUMBA", "1") != "0"


def _kernel(x, g, discrete, tol, w, Ft, tails, ranks):  # pragma: no cover - compiled
    """Fill ``Ft`` (b, n, n): row k of Ft[s] is Cholesky column k of system s, for
    k < ranks[s] (the rows beyond are left untouched: the caller zeroes what it keeps).

    ``tol < 0``: no truncation. Otherwise system s stops once its remainder is below
    ``tol * sqrt(trace0)``: the remainder is ``sqrt(sum_i X_ii)`` or, if ``w`` has a row per
    system, ``sum_i sqrt(X_ii w_i)`` against ``tol * sqrt(trace0 * sum_i w_i)``, and pivots
    then maximise ``X_ii w_i`` (see :func:`sysred.lyapunov.cauchy_factor`). ``tails[s]`` is
    the remainder at the stop, 0 if nothing was dropped.

    The update runs on split real and imaginary parts (``xr, xi, gr, gi``) with no branch in
    its body, so that it compiles to SIMD code (with numpy's error model: no division-by-zero
    checks, and none can occur for stable poles); the arithmetic is the same operation for
    operation as the complex form, so the factors are bitwise those of the scalar loop.
    """
    b, n = x.shape
    weighted = w.shape[0] == b
    inv_dd = np.empty(n)
    diag = np.empty(n)
    xr, xi = np.empty(n), np.empty(n)  # poles
    gr, gi = np.empty(n), np.empty(n)  # generator
    fr, fi = np.empty(n), np.empty(n)  # the Cholesky column being formed
    for s in range(b):
        tr0 = 0.0
        wsum = 0.0
        for i in range(n):
            xr[i], xi[i] = x[s, i].real, x[s, i].imag
            gr[i], gi[i] = g[s, i].real, g[s, i].imag
            dd = (1.0 - (xr[i] * xr[i] + xi[i] * xi[i])) if discrete else -2.0 * xr[i]
            inv_dd[i] = 1.0 / dd
            diag[i] = (gr[i] * gr[i] + gi[i] * gi[i]) * inv_dd[i]
            tr0 += diag[i]
            if weighted:
                wsum += w[s, i]
        limit = tol * np.sqrt(tr0 * wsum) if weighted else tol * np.sqrt(tr0)
        k = 0
        rest = 0.0
        while k < n:
            rest = 0.0  # sum_i X_ii (then its square root), or sum_i sqrt(X_ii w_i)
            wrest = 0.0  # sum_i w_i over the remaining diagonal
            best = -1.0
            bestw = -1.0
            p = 0
            for i in range(n):
                v = diag[i]
                if v < 0.0:
                    v = 0.0
                vw = v * w[s, i] if weighted else v
                rest += v
                if weighted and v > 0.0:
                    wrest += w[s, i]
                if vw > bestw:
                    bestw = vw
                    best = v
                    p = i
            if weighted:
                # sum sqrt(X_ii w_i) <= sqrt(sum X_ii * sum w_i) (Cauchy-Schwarz): the exact sum
                # (n square roots) only once the cheap bound is near the limit
                rest = np.sqrt(rest * wrest)
                if tol >= 0.0 and k > 0 and limit < rest <= n * limit:
                    rest = 0.0
                    for i in range(n):
                        if diag[i] > 0.0:
                            rest += np.sqrt(diag[i] * w[s, i])
            else:
                rest = np.sqrt(rest)
            if best <= 0.0 or bestw <= 0.0 or (tol >= 0.0 and k > 0 and rest <= limit):
                break
            scale = np.conj(complex(gr[p], gi[p])) / np.sqrt(best)
            sr, si = scale.real, scale.imag
            pr, pi = xr[p], xi[p]
            # d = d_ip = 1 - x_i conj(x_p) (dt) or -(x_i + conj(x_p)) (ct), in real arithmetic;
            # 1/d = conj(d)/|d|^2 (a few ulps relative, |d| <= 2 in dt); ratio e/d with
            # e = x_i - x_p (dt) or x_p - x_i (ct). Two loops, so neither body branches.
            if discrete:
                for i in range(n):
                    dr = 1.0 - (xr[i] * pr + xi[i] * pi)
                    di = -(xi[i] * pr - xr[i] * pi)
                    nrm = 1.0 / (dr * dr + di * di)
                    ir, ii = dr * nrm, -di * nrm  # 1/d
                    er, ei = xr[i] - pr, xi[i] - pi
                    rr, ri = er * ir - ei * ii, er * ii + ei * ir
                    ar, ai = gr[i], gi[i]
                    cr, ci = ar * sr - ai * si, ar * si + ai * sr
                    fr[i], fi[i] = cr * ir - ci * ii, cr * ii + ci * ir
                    nr, ni = ar * rr - ai * ri, ar * ri + ai * rr
                    gr[i], gi[i] = nr, ni
                    diag[i] = (nr * nr + ni * ni) * inv_dd[i]
            else:
                for i in range(n):
                    dr = -(xr[i] + pr)
                    di = -(xi[i] - pi)
                    nrm = 1.0 / (dr * dr + di * di)
                    ir, ii = dr * nrm, -di * nrm
                    er, ei = pr - xr[i], pi - xi[i]
                    rr, ri = er * ir - ei * ii, er * ii + ei * ir
                    ar, ai = gr[i], gi[i]
                    cr, ci = ar * sr - ai * si, ar * si + ai * sr
                    fr[i], fi[i] = cr * ir - ci * ii, cr * ii + ci * ir
                    nr, ni = ar * rr - ai * ri, ar * ri + ai * rr
                    gr[i], gi[i] = nr, ni
                    diag[i] = (nr * nr + ni * ni) * inv_dd[i]
            for i in range(n):
                Ft[s, k, i] = complex(fr[i], fi[i])
            k += 1
        ranks[s] = k
        tails[s] = rest if k < n else 0.0


_compiled = None
_compile_lock = threading.Lock()


def _get_kernel():
    """The compiled kernel, created once even when a batch's worker threads ask for it at the
    same time (otherwise each would build and compile its own dispatcher)."""
    global _compiled
    with _compile_lock:
        if _compiled is None:
            _compiled = numba.njit(nogil=True, cache=True, error_model="numpy")(_kernel)
    return _compiled


def cauchy_rank1_factors(x, g, discrete, rank_tol=None, weights=None):
    """Pivoted Cholesky rows of ``X_ij = g_i conj(g_j) / d_ij`` for a batch.

    Parameters
    ----------
    x, g : ndarray, shape (b, n), complex
        Poles (stable) and the one generator column.
    discrete : bool
    rank_tol : float, optional
        Stop each system once its remaining trace is ``<= rank_tol^2 * trace(X)``.
    weights : ndarray, shape (b, n), optional
        With ``rank_tol``: truncate for the product ``S^H F`` with ``weights`` the squared row
        norms of ``S`` (see :func:`sysred.lyapunov.cauchy_factor`).

    Returns
    -------
    Ft : ndarray, shape (b, k, n)
        ``X ~= Ft^H Ft`` (rows = Cholesky columns in pivot order), ``k`` the largest rank kept
        in the batch (``n`` without ``rank_tol``); a system that stopped earlier has zero rows.
    tails : ndarray, shape (b,)
        Frobenius norm of each system's dropped part (with weights: the bound on its product),
        0 when nothing was dropped.
    """
    x = np.ascontiguousarray(x, dtype=np.complex128)
    g = np.ascontiguousarray(g, dtype=np.complex128)
    b, n = x.shape
    Ft = np.empty((b, n, n), dtype=np.complex128)
    tails = np.zeros(b)
    ranks = np.zeros(b, dtype=np.int64)
    tol = -1.0 if rank_tol is None else float(rank_tol)
    w = np.zeros((0, n)) if weights is None else np.ascontiguousarray(weights, dtype=float)
    _get_kernel()(x, g, bool(discrete), tol, w, Ft, tails, ranks)
    if rank_tol is not None:
        Ft = Ft[:, : max(1, int(ranks.max(initial=0))), :]
    unset = np.arange(Ft.shape[1])[None, :] >= ranks[:, None]  # (b, k): rows the kernel skipped
    if unset.any():
        Ft[unset] = 0.0
    return Ft, tails
