"""High-precision (mpmath) reference Hankel singular values of diagonal systems.

For ``A = diag(x)`` the Gramians have closed forms (``^H`` conjugate transpose, ``b_i`` the rows
of ``B``, ``c_j`` the columns of ``C``):

* continuous time: ``P_ij = -b_i b_j^H / (x_i + conj(x_j))``,
  ``Q_ij = -c_i^H c_j / (conj(x_i) + x_j)``;
* discrete time: ``P_ij = b_i b_j^H / (1 - x_i conj(x_j))``,
  ``Q_ij = c_i^H c_j / (1 - conj(x_i) x_j)``.

The float64 data are converted to mpmath exactly, the Gramians are formed entrywise at ``dps``
decimal digits, factored by Cholesky (``P = R R^H``, ``Q = S S^H``; for SISO systems the
generators are scaled out first, see :func:`_factors_mp`) and the HSVs are the singular values of
``S^H R``. Nothing here shares code with sysred: it is an independent oracle for the
exact system that the float64 arrays define. :func:`reference_hsv` runs at two precisions and
reports their agreement, which bounds the reference's own error.

Usable from the benchmarks (``import mp_reference`` from this folder) and from the tests (which
put ``benchmarks/`` on ``sys.path``).
"""

from __future__ import annotations

import mpmath
import numpy as np

__all__ = ["gramians_mp", "hsv_mp", "reference_hsv"]


def _mpc(z):
    z = complex(z)
    return mpmath.mpc(mpmath.mpf(z.real), mpmath.mpf(z.imag))  # exact: float64 -> mpf


def gramians_mp(poles, B, C, discrete):
    """Closed-form Gramians ``P, Q`` as mpmath matrices at the current ``mpmath.mp.dps``."""
    x = [_mpc(v) for v in np.asarray(poles).ravel()]
    B = np.asarray(B).reshape(len(x), -1)
    C = np.asarray(C).reshape(-1, len(x))
    Bm = [[_mpc(v) for v in row] for row in B]  # n x m
    Cm = [[_mpc(v) for v in col] for col in C.T]  # n x p: column j of C
    n = len(x)
    P, Q = mpmath.matrix(n, n), mpmath.matrix(n, n)
    for i in range(n):
        for j in range(n):
            if discrete:
                dp = 1 - x[i] * mpmath.conj(x[j])
            else:
                dp = -(x[i] + mpmath.conj(x[j]))
            bb = mpmath.fsum(bi * mpmath.conj(bj) for bi, bj in zip(Bm[i], Bm[j], strict=True))
            cc = mpmath.fsum(mpmath.conj(ci) * cj for ci, cj in zip(Cm[i], Cm[j], strict=True))
            P[i, j] = bb / dp
            Q[i, j] = cc / mpmath.conj(dp)
    return P, Q


def _cauchy_mp(x, discrete, conj_first):
    """The generator-free Cauchy part ``K_ij = 1/d_ij`` of the Gramian, as an mpmath matrix."""
    n = len(x)
    K = mpmath.matrix(n, n)
    for i in range(n):
        for j in range(n):
            xi, xj = (mpmath.conj(x[i]), x[j]) if conj_first else (x[i], mpmath.conj(x[j]))
            K[i, j] = 1 / (1 - xi * xj) if discrete else -1 / (xi + xj)
    return K


def _factors_mp(poles, B, C, discrete):
    """Square-root factors ``R, S`` (``P = R R^H``, ``Q = S S^H``) at the current precision.

    SISO: ``P = D_b K D_b^H`` with ``D_b = diag(b)`` and ``K`` the pure Cauchy matrix, so
    ``R = D_b chol(K)`` (likewise ``S = diag(conj(c)) chol(K')``): the diagonal scaling is
    applied exactly, and only ``K``'s own conditioning must fit in the working precision,
    however small the generators are. Otherwise: Cholesky of the closed-form Gramians.
    """
    B = np.asarray(B)
    C = np.asarray(C)
    n = np.asarray(poles).size
    if B.size == n and C.size == n:
        x = [_mpc(v) for v in np.asarray(poles).ravel()]
        b = [_mpc(v) for v in B.ravel()]
        c = [_mpc(v) for v in C.ravel()]
        R = mpmath.diag(b) * mpmath.cholesky(_cauchy_mp(x, discrete, conj_first=False))
        S = mpmath.diag([mpmath.conj(v) for v in c]) * mpmath.cholesky(
            _cauchy_mp(x, discrete, conj_first=True)
        )
        return R, S
    P, Q = gramians_mp(poles, B, C, discrete)
    return mpmath.cholesky(P), mpmath.cholesky(Q)


def _hsv_mp_values(poles, B, C, discrete, dps):
    """HSVs as mpmath numbers (descending), computed entirely at ``dps`` decimal digits."""
    with mpmath.workdps(dps):
        try:
            R, S = _factors_mp(poles, B, C, discrete)
        except ValueError as err:  # Cholesky: not numerically positive definite
            raise ValueError(f"{err} at {dps} digits: raise dps") from err
        sv = mpmath.svd_c(S.H * R, compute_uv=False)
        return sorted((mpmath.re(s) for s in sv), reverse=True)


def hsv_mp(poles, B, C, discrete, dps=150):
    """HSVs (descending, rounded to float64) computed entirely at ``dps`` decimal digits.

    ``poles`` (n,), ``B`` (n, m) or (n,), ``C`` (p, n) or (n,); ``discrete`` selects the
    Gramian formulas. Raises ``ValueError`` if a Gramian is not positive definite at ``dps``.
    """
    return np.array([float(s) for s in _hsv_mp_values(poles, B, C, discrete, dps)])


def reference_hsv(poles, B, C, discrete, dps=(150, 250)):
    """Reference HSVs at the higher of two precisions and their max relative disagreement.

    Returns
    -------
    hsv : ndarray, shape (n,)
        From ``dps[1]`` digits, rounded to float64.
    agreement : float
        ``max_i |s_i(dps[0]) - s_i(dps[1])| / s_i(dps[1])``, evaluated in mpmath (so it can be
        far below float64's eps): a bound on the reference error.
    """
    lo = _hsv_mp_values(poles, B, C, discrete, dps[0])
    hi = _hsv_mp_values(poles, B, C, discrete, dps[1])
    with mpmath.workdps(dps[1]):
        agreement = max(abs(u - v) / v for u, v in zip(lo, hi, strict=True))
        agreement = float(agreement) if agreement > 0 else 0.0
    return np.array([float(s) for s in hi]), agreement
