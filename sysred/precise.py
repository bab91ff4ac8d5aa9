"""Hankel singular values of diagonal SISO systems to high *relative* accuracy.

This is ``accuracy="high"`` of :func:`sysred.hankel_singular_values` and
:func:`sysred.balanced_truncation` (path ``"diagonal-extended"``). The goal: every HSV down to
``1e-30 sigma_1`` and below to about 1e-13 relative, where dense solvers (SLICOT ``AB09AD``)
and LAPACK's SVD keep no digit below ``1e-16 sigma_1``.

Why extended precision. The HSVs are ``sv(S^H R)`` with ``P = R R^H``, ``Q = S S^H`` the
pivoted Cholesky factors of the Cauchy-like Gramians. Those factors are computed from the
generators without cancellation (:mod:`sysred.lyapunov`), yet in double precision measured
errors near ``1e-30 sigma_1`` were (ct-line and dt-spiral of ``benchmarks/sysred_accuracy.py``):

* factors rounded to double, exact product and exact SVD: up to ~1e-11 relative (the
  conditioning of the product representation amplifies entrywise rounding ~1e5 times);
* the product ``S^H R`` rounded to double, exact SVD: ~5e-11;
* LAPACK's SVD of that product: ~7e-9; a one-sided Jacobi SVD in double: ~5e-10.

So the steps below run in ``np.longdouble`` (64-bit mantissa on x86-64, ``eps ~ 1.1e-19``;
128-bit on some other platforms; refused where it is plain double):

1. ``R, S`` by the generator recursion of :func:`sysred.lyapunov._cauchy_rank1`;
2. ``M = S^H R``;
3. preconditioning (Drmac's QR-preconditioned Jacobi): QR with column pivoting of ``M``
   rounded to double (LAPACK), ``M Pi ~= Q T``; the extended-precision
   ``G = (M Pi)^H Q`` is then nearly ``T^H``, whose columns carry the grading of ``M``'s
   rows, and one-sided Jacobi converges in a few sweeps (measured 5-17; without the QR
   step, from LAPACK's singular vectors, 10-40);
4. one-sided (Hestenes) Jacobi on the columns of ``G``: pairs (p, q) are rotated until no
   rotation would change ``||g_p||^2`` or ``||g_q||^2`` by more than ``tol`` relative; then
   ``sigma_i = ||g_i||``, ``V = Pi G diag(1/sigma)`` and ``U = Q J`` (J the rotations).
   A rotation's rounding errors are relative to the two columns it mixes, which is what
   keeps tiny singular values accurate (Demmel & Veselic 1992, Drmac 1998).

Measured against mpmath (``benchmarks/sysred_accuracy.py``, five systems with HSVs down to
1e-38 sigma_1): max relative error 6e-14 for every sigma_i >= 1e-30 sigma_1.

Cost: O(n^3) extended-precision flops per system and sweep, without BLAS (numpy's
long-double loops): 0.01-0.1 s for one n = 30 system, 30-40 s for a batch of 256 systems with
n = 64. Use it for analysis, not inside training loops.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg as sla

from sysred.errors import OptionError, SysredError
from sysred.lyapunov import _cauchy_rank1
from sysred.systems import DiagonalStateSpace

__all__ = [
    "ACCURACIES",
    "check_accuracy",
    "extended_precision_available",
    "precise_factors_and_svd",
]

#: Values of the ``accuracy`` argument.
ACCURACIES = ("standard", "high")

#: Rotations stop once none would change a squared column norm by more than this, relative.
JACOBI_TOL = 1e-16
MAX_SWEEPS = 60


def extended_precision_available() -> bool:
    """Whether ``np.longdouble`` has more precision than double (>= 63-bit mantissa)."""
    return np.finfo(np.longdouble).nmant >= 63


def check_accuracy(accuracy, sys, horizon=None, rank_tol=None):
    """Validate an ``accuracy`` argument; return True for ``"high"``."""
    if accuracy not in ACCURACIES:
        raise OptionError(f"accuracy must be one of {ACCURACIES}, got {accuracy!r}")
    if accuracy == "standard":
        return False
    if not isinstance(sys, DiagonalStateSpace):
        raise SysredError(
            "accuracy='high' needs a DiagonalStateSpace (closed-form Cauchy-like Gramians); "
            "for a dense system use sysred.diagonalize first (its eigenvector condition number "
            "then limits the accuracy)"
        )
    if horizon is not None:
        raise SysredError(
            "accuracy='high' is not available for time-limited Gramians (horizon=...), which "
            "are formed explicitly"
        )
    if rank_tol is not None:
        raise SysredError(
            "accuracy='high' keeps every factor column while rank_tol drops some: give one"
        )
    _require_extended(sys)
    return True


def _require_extended(sys):
    if not extended_precision_available():
        raise SysredError(
            "accuracy='high' computes in extended precision, but np.longdouble is plain double "
            "on this platform (e.g. Windows, macOS on arm64); use accuracy='standard'"
        )
    if sys.m != 1 or sys.p != 1:
        raise SysredError(
            "accuracy='high' is implemented for single-input single-output diagonal systems "
            f"(the DSS case); got m = {sys.m} inputs and p = {sys.p} outputs"
        )


def _round_robin(n):
    """n - 1 rounds of n/2 disjoint pairs (n even) covering every pair once: (P, Q) arrays."""
    idx = list(range(n))
    rounds = []
    for _ in range(n - 1):
        rounds.append((np.array(idx[: n // 2]), np.array(idx[::-1][: n // 2])))
        idx = [idx[0], idx[-1]] + idx[1:-1]
    return rounds


def jacobi_columns(G, V=None, tol=JACOBI_TOL, max_sweeps=MAX_SWEEPS, orthogonal=False):
    """One-sided Jacobi: rotate column pairs of ``G`` (b, m, n) until they are orthogonal.

    Works in the dtype of ``G`` (e.g. ``np.clongdouble``), vectorised over the batch and over
    the n/2 disjoint pairs of each round-robin round. ``V`` (b, k, n), if given, receives the
    same rotations. For a pair with ``a = ||g_p||^2``, ``c = ||g_q||^2``,
    ``gamma = g_p^H g_q``: ``zeta = (c - a) / (2 |gamma|)``,
    ``t = sign(zeta) / (|zeta| + sqrt(1 + zeta^2))``, ``cs = 1/sqrt(1 + t^2)``, ``sn = t cs``,
    ``e = gamma / |gamma|`` and

    ``[g_p, g_q] <- [cs g_p - sn conj(e) g_q,  sn e g_p + cs g_q]``,

    which makes ``g_p^H g_q = 0`` and moves ``t |gamma|`` between ``a`` and ``c``. A pair is
    rotated only if that amount exceeds ``tol * min(a, c)`` (the column norms, i.e. the
    singular values, are then converged), or, with ``orthogonal``, if also
    ``|gamma| > m eps sqrt(a c)`` (the columns are orthogonal to working precision, as
    singular vectors need to be).

    When a rotation cancels the column it shrinks down to that column's own rounding level
    (new ``||g||^2 <= (4 m eps)^2`` times the old), the column lies in its partner's span to
    working precision and is set to exactly zero, as LAPACK's ``xGESVJ`` does; rotating it
    again would only recreate rounding noise until underflow. The test is relative to the
    column itself, so tiny but genuine columns (singular values near ``1e-60 sigma_1``) are
    kept. ``G`` should have full column rank apart from exactly zero columns: a rank-deficient
    ``G`` whose noise spreads over several columns can run to ``max_sweeps`` (then a warning).

    Returns ``G, V`` (rotated; ``V`` None if not given) and the number of sweeps run.
    """
    G = G.copy()
    V = None if V is None else V.copy()
    b, m, n = G.shape
    if n % 2:  # a zero column pads the round robin; it is never rotated
        G = np.concatenate([G, np.zeros((b, m, 1), G.dtype)], axis=2)
        if V is not None:
            V = np.concatenate([V, np.zeros((b, V.shape[1], 1), V.dtype)], axis=2)
    rounds = _round_robin(G.shape[-1])
    eps = np.finfo(G.real.dtype).eps
    orth_tol = m * eps
    noise_tol = (4 * m * eps) ** 2
    sweeps = 0
    while sweeps < max_sweeps:
        sweeps += 1
        rotated = False
        for P, Q in rounds:
            gp, gq = G[:, :, P], G[:, :, Q]  # (b, m, n/2)
            a = (gp.real**2 + gp.imag**2).sum(axis=1)  # (b, n/2)
            c = (gq.real**2 + gq.imag**2).sum(axis=1)
            gamma = (gp.conj() * gq).sum(axis=1)
            mag = np.abs(gamma)
            safe = np.where(mag > 0, mag, 1)
            zeta = (c - a) / (2 * safe)
            t = np.where(zeta >= 0, 1, -1) / (np.abs(zeta) + np.sqrt(1 + zeta * zeta))
            need = (mag > 0) & (np.abs(t) * mag > tol * np.minimum(a, c))
            if orthogonal:
                need |= (mag > 0) & (mag > orth_tol * np.sqrt(a * c))
            if not need.any():
                continue
            rotated = True
            cs = np.where(need, 1 / np.sqrt(1 + t * t), 1)
            sn = np.where(need, t * cs, 0)
            e = gamma / safe
            cs, snp, snq = cs[:, None, :], (sn * e.conj())[:, None, :], (sn * e)[:, None, :]
            newp, newq = cs * gp - snp * gq, snq * gp + cs * gq
            # a column the rotation cancels down to its own rounding level is noise: zero it
            p_shrinks = t >= 0  # a' = a - t |gamma|, c' = c + t |gamma|
            shrunk = np.where(p_shrinks[:, None, :], newp, newq)
            before = np.where(p_shrinks, a, c)
            noise = need & ((shrunk.real**2 + shrunk.imag**2).sum(axis=1) <= noise_tol * before)
            if noise.any():
                newp = np.where((noise & p_shrinks)[:, None, :], 0, newp)
                newq = np.where((noise & ~p_shrinks)[:, None, :], 0, newq)
            G[:, :, P], G[:, :, Q] = newp, newq
            if V is not None:
                vp, vq = V[:, :, P], V[:, :, Q]
                V[:, :, P], V[:, :, Q] = cs * vp - snp * vq, snq * vp + cs * vq
        if not rotated:
            break
    if rotated:
        warnings.warn(
            f"one-sided Jacobi did not converge in {max_sweeps} sweeps; HSVs may be less "
            "accurate than accuracy='high' promises",
            RuntimeWarning,
            stacklevel=3,
        )
    return G[:, :, :n], (None if V is None else V[:, :, :n]), sweeps


def _extended_factor(x, g, discrete):
    """Pivoted Cholesky factor (b, n, n) of ``g_i conj(g_j) / d_ij`` in np.clongdouble."""
    Ft, _ = _cauchy_rank1(x.astype(np.clongdouble), g.astype(np.clongdouble), discrete)
    return Ft.swapaxes(-1, -2)


def _qr_preconditioner(M):
    """QR with column pivoting of ``M`` rounded to double, per batch entry (LAPACK zgeqp3)."""
    Md = M.astype(np.complex128)
    Q = np.empty_like(Md)
    piv = np.empty(M.shape[:2], dtype=np.intp)
    for k in range(M.shape[0]):
        Q[k], _, piv[k] = sla.qr(Md[k], pivoting=True)
    return Q.astype(M.dtype), piv


def precise_factors_and_svd(sys, vectors=True):
    """Gramian factors and the SVD of ``S^H R`` to high relative accuracy (see module).

    Parameters
    ----------
    sys : DiagonalStateSpace
        SISO, stable (checked by the caller), batched or not.
    vectors : bool
        Also the singular vectors (needed for balanced truncation, not for the HSVs).

    Returns
    -------
    R, S : ndarray, shape (..., n, n), complex128
        The factors, rounded from extended precision.
    U, s, Vh : ndarray, shapes (..., n, n), (..., n), (..., n, n)
        ``S^H R = U diag(s) Vh``, ``s`` descending, each ``s_i`` to ~1e-12 relative or better;
        ``U`` and ``Vh`` are None unless ``vectors``.
    """
    _require_extended(sys)
    batch, n = sys.batch_shape, sys.n
    x = np.broadcast_to(sys.poles, batch + (n,)).reshape(-1, n)  # (b, n)
    b = sys.B.reshape(-1, n)  # (b, n): the single input column
    ch = sys.C.reshape(-1, n).conj()  # (b, n): the single output row, conjugated
    R = _extended_factor(x, b, sys.is_discrete)  # (b, n, n)
    S = _extended_factor(x.conj(), ch, sys.is_discrete)
    M = S.conj().swapaxes(-1, -2) @ R  # (b, n, n), long double (no BLAS)
    Q, piv = _qr_preconditioner(M)
    MPi = np.take_along_axis(M, piv[:, None, :], axis=-1)  # M Pi
    G, U, _ = jacobi_columns(
        MPi.conj().swapaxes(-1, -2) @ Q, Q if vectors else None, orthogonal=vectors
    )
    s = np.sqrt((G.real**2 + G.imag**2).sum(axis=1))  # (b, n), long double
    order = np.argsort(-s, axis=-1, kind="stable")
    s = np.take_along_axis(s, order, axis=-1)

    def out(X, tail):
        return X.astype(np.complex128).reshape(batch + tail)

    svals = s.astype(np.float64).reshape(batch + (n,))
    if not vectors:
        return out(R, (n, n)), out(S, (n, n)), None, svals, None
    G = np.take_along_axis(G, order[:, None, :], axis=-1)
    U = np.take_along_axis(U, order[:, None, :], axis=-1)
    Vpi = G / np.where(s > 0, s, 1)[:, None, :]  # right singular vectors of Pi^T M^H ... (b, n, n)
    V = np.empty_like(Vpi)
    np.put_along_axis(V, piv[:, :, None], Vpi, axis=1)  # V = Pi Vpi: row piv[i] <- row i
    return (
        out(R, (n, n)),
        out(S, (n, n)),
        out(U, (n, n)),
        svals,
        out(V.conj().swapaxes(-1, -2), (n, n)),
    )
