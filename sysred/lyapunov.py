"""Square-root factors of Lyapunov (Gramian) solutions, computed without forming the solution.

Equations solved (``^H`` is the conjugate transpose; for real data it is the transpose):

* continuous time: ``A X + X A^H + G G^H = 0``  (``A`` stable: ``Re eig(A) < 0``)
* discrete time:   ``A X A^H - X + G G^H = 0``  (``A`` stable: ``|eig(A)| < 1``)

and every routine returns ``F`` with ``X = F F^H``. The controllability Gramian ``P`` is
``(A, G=B)``; the observability Gramian ``Q`` is ``(A^H, G=C^H)``.

Why factors: Hankel singular values are the singular values of ``S^H R`` (``P = R R^H``,
``Q = S S^H``). Factoring a *computed* Gramian (Cholesky of ``P``) loses every digit of
eigenvalues below ``eps * ||P||``; computing ``R`` directly (Hammarling) keeps them.

Two algorithms:

* :func:`hammarling_factor` -- dense ``A``: complex Schur form plus Hammarling's recursion,
  O(n^3). Optionally SLICOT ``SB03OD`` (real data only) through slycot.
* :func:`cauchy_factor` -- diagonal ``A = diag(x)``: the solution is the Cauchy-like matrix
  ``X_ij = g_i g_j^H / d_ij`` with ``d_ij = -(x_i + conj(x_j))`` (ct) or
  ``1 - x_i conj(x_j)`` (dt). Its diagonally pivoted Cholesky factor is computed from the
  generators, vectorised over a batch. For one input column (``g_i`` scalars, the DSS case) the
  Schur complements are updated multiplicatively,
  ``g_i <- g_i (x_i - x_k) / (x_i + conj(x_k))`` (ct) or ``g_i (x_i - x_k) / (1 - x_i conj(x_k))``
  (dt), which involves no cancellation beyond the differences of the given poles: the factor
  is accurate entrywise to high *relative* precision (Demmel 1999).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from sysred import _cauchy_kernel

__all__ = ["hammarling_factor", "cauchy_factor", "slycot_factor", "factor_residual"]


def _compress_columns(G):
    """Return ``F`` with at most n columns and ``F F^H = G G^H`` (QR of ``G^H``)."""
    n, m = G.shape
    if m <= n:
        return G
    R = np.linalg.qr(G.conj().T, mode="r")  # (n, n): G^H = Q R  ->  G G^H = R^H R
    return R.conj().T


def _hammarling_triangular(T, G, discrete):
    """Upper-triangular ``U`` with ``T X + X T^H + G G^H = 0`` (ct) or
    ``T X T^H - X + G G^H = 0`` (dt), ``X = U U^H``, for upper-triangular ``T``.

    The recursion peels off the last row and column: with ``T = [[T1, t], [0, l]]``,
    ``U = [[U1, u], [0, nu]]`` and ``G = [[G1], [g]]`` (``g`` the last row):

    * ct: ``nu = |g| / sqrt(-2 Re l)``, ``(T1 + conj(l) I) u = -(nu^2 t + G1 g^H) / nu``,
      and ``U1`` solves the same equation for ``(T1, G1 - u g / nu)``;
    * dt: ``nu = |g| / sqrt(1 - |l|^2)``, ``(I - conj(l) T1) u = (conj(l) nu^2 t + G1 g^H) / nu``,
      and with ``X = [T1 u + nu t, G1]``, ``z = [conj(l); g^H / nu]`` (a unit vector, ``u = X z``)
      ``U1`` solves the equation for ``(T1, X Y)``, ``Y`` an orthonormal basis of ``z``'s
      orthogonal complement.
    """
    n = T.shape[0]
    U = np.zeros((n, n), dtype=complex)
    G = G.astype(complex)
    for k in range(n - 1, -1, -1):
        lam = T[k, k]
        g = G[k]  # (m,)
        gnorm = np.linalg.norm(g)
        denom = 1.0 - abs(lam) ** 2 if discrete else -2.0 * lam.real
        nu = gnorm / np.sqrt(denom)
        U[k, k] = nu
        if k == 0:
            break
        T1, t, G1 = T[:k, :k], T[:k, k], G[:k]
        if nu == 0.0:  # g = 0: the last state is uncontrollable, u = 0
            G = G1
            continue
        Gg = G1 @ g.conj()  # (k,)
        eye = np.eye(k)
        if discrete:
            u = sla.solve_triangular(eye - np.conj(lam) * T1, (np.conj(lam) * nu**2 * t + Gg) / nu)
            X = np.concatenate([(T1 @ u + nu * t)[:, None], G1], axis=1)  # (k, m+1)
            z = np.concatenate([[np.conj(lam)], g.conj() / nu])  # unit vector, (m+1,)
            Qz = np.linalg.qr(z[:, None], mode="complete")[0]  # first column ~ z
            G = X @ Qz[:, 1:]
        else:
            u = sla.solve_triangular(T1 + np.conj(lam) * eye, -(nu**2 * t + Gg) / nu)
            G = G1 - np.outer(u, g) / nu
        U[:k, k] = u
    return U


def hammarling_factor(A, G, discrete=False):
    """Square-root factor ``F`` (``X = F F^H``) of a Lyapunov equation with dense ``A``.

    Solves ``A X + X A^H + G G^H = 0`` (continuous) or ``A X A^H - X + G G^H = 0``
    (discrete) by the complex Schur form ``A = Z T Z^H`` and Hammarling's recursion on the
    triangular equation, never forming ``X``. ``F = Z U`` with ``U`` upper triangular.

    Parameters
    ----------
    A : ndarray, shape (n, n)
        Stable (the caller checks): eigenvalues in the open left half-plane (ct) or the open
        unit disc (dt).
    G : ndarray, shape (n, m)
    discrete : bool

    Returns
    -------
    F : ndarray, shape (n, n)
        Real if ``A`` and ``G`` are real (then ``F`` is a real square-root factor obtained by
        an orthogonal compression of ``[Re(Z U), Im(Z U)]``), complex otherwise.
    """
    real = not (np.iscomplexobj(A) or np.iscomplexobj(G))
    n = A.shape[0]
    if n == 0 or G.shape[1] == 0:  # no states, or a zero right-hand side: X = 0
        return np.zeros((n, n), dtype=float if real else complex)
    T, Z = sla.schur(np.asarray(A, dtype=complex), output="complex")
    Gt = _compress_columns(Z.conj().T @ G)
    F = Z @ _hammarling_triangular(T, Gt, discrete)
    if real:
        # X = Re(F F^H) = [Re F, Im F] [Re F, Im F]^T; compress the 2n columns back to n.
        F = _compress_columns(np.concatenate([F.real, F.imag], axis=1))
    return F


def slycot_factor(A, G, discrete=False):
    """Same as :func:`hammarling_factor` through SLICOT ``SB03OD`` (real data only).

    ``SB03OD`` with ``trans='T'`` solves ``A X + X A^T = -scale^2 G G^T`` (ct) or
    ``A X A^T - X = -scale^2 G G^T`` (dt) for an upper-triangular ``U`` with ``X = U U^T``.
    Check the result with :func:`factor_residual` (the caller does).
    """
    from slycot import sb03od

    A = np.asarray(A, dtype=float)
    n = A.shape[0]
    if n == 0 or G.shape[1] == 0:
        return np.zeros((n, n))
    G = _compress_columns(np.asarray(G, dtype=float))
    n, m = G.shape
    B = np.zeros((max(n, m), max(n, m)))
    B[:n, :m] = G
    # keywords throughout: slycot's docstring and signature disagree on the argument order
    U, scale, _ = sb03od(
        n=n,
        m=m,
        A=A.copy(order="F"),
        Q=np.zeros((n, n), order="F"),
        B=np.asfortranarray(B),
        dico="D" if discrete else "C",
        fact="N",
        trans="T",
    )
    return np.triu(U[:n, :n]) / scale


def factor_residual(A, G, F, discrete=False):
    """Relative residual of ``X = F F^H`` in ``A X + X A^H + G G^H = 0`` (ct) or
    ``A X A^H - X + G G^H = 0`` (dt): ``||residual||_F`` over the sum of the terms' norms
    (``2 ||A F|| ||F|| + ||G||^2``, resp. ``||A F||^2 + ||F||^2 + ||G||^2``), O(n^3)."""
    AF = A @ F
    GG = G @ G.conj().T
    if discrete:
        res = AF @ AF.conj().T - F @ F.conj().T + GG
        scale = np.linalg.norm(AF) ** 2 + np.linalg.norm(F) ** 2 + np.linalg.norm(G) ** 2
    else:
        AX = AF @ F.conj().T
        res = AX + AX.conj().T + GG
        scale = 2 * np.linalg.norm(AF) * np.linalg.norm(F) + np.linalg.norm(G) ** 2
    return float(np.linalg.norm(res) / scale) if scale > 0 else 0.0


def geometric_sum(z, length):
    """``sum_{k=0}^{L-1} z^k = (1 - z^L) / (1 - z)``, accurate also for ``z`` near 1.

    Written as ``expm1(L w) / expm1(w)`` with ``w = log z``, which keeps relative accuracy when
    ``z -> 1`` (the limit is ``L``) and needs no stability (``|z| >= 1`` is fine).
    """
    z = np.asarray(z, dtype=complex)
    out = np.ones_like(z)  # z == 0: only the k = 0 term
    nz = z != 0
    w = np.log(z[nz])
    small = np.abs(w) < 1e-300
    num, den = np.expm1(length * w), np.expm1(w)
    out[nz] = np.where(small, length, num / np.where(small, 1.0, den))
    return out


def cauchy_factor(
    x, G, discrete=False, horizon=None, rank_tol=None, return_tail=False, weights=None
):
    """Diagonally pivoted Cholesky factor of a Cauchy-like Gramian, batched.

    The Lyapunov equation with ``A = diag(x)`` has the closed-form solution

    ``X_ij = g_i g_j^H / d_ij``,  ``d_ij = -(x_i + conj(x_j))`` (ct),
    ``d_ij = 1 - x_i conj(x_j)`` (dt),

    (``g_i`` the rows of ``G``). This returns ``F`` with ``X = F F^H`` whose columns are the
    Cholesky columns in pivot order (largest remaining diagonal first), so ``F`` is a
    row-permuted lower-triangular matrix and its column norms decay like the eigenvalues of
    ``X``. Every arithmetic step is vectorised over the batch; the Python loop runs over the
    n pivots only.

    Cost and memory: for ``m = 1`` (the DSS case) O(n^2) flops per system and O(batch n^2)
    memory (the output); otherwise the Schur complements are formed explicitly, O(n^3) flops
    and O(batch n^2) memory. For ``m = 1`` a compiled loop (numba, optional: see
    :mod:`sysred._cauchy_kernel`) replaces the vectorised one when available; with
    ``rank_tol`` it truncates each batch entry at its own rank (the numpy loop stops at the
    largest one).

    Finite horizon (discrete time, ``horizon=L``): the time-limited Gramian
    ``X_L = sum_{k=0}^{L-1} A^k G G^H A^{kH}``, entrywise ``g_i g_j^H sum_k (x_i conj(x_j))^k``
    (:func:`geometric_sum`); no stability needed. It is formed explicitly (no relative-accuracy
    guarantee for tiny eigenvalues).

    Parameters
    ----------
    x : ndarray, shape (..., n)
        Poles; stable unless ``horizon`` is given.
    G : ndarray, shape (..., n, m)
    discrete : bool
    horizon : int, optional
        Discrete time only: number of terms of the time-limited Gramian.
    rank_tol : float, optional
        Low-rank factor: stop pivoting once, for every batch entry, the Schur complement's
        trace is ``<= rank_tol^2 * trace(X)``, i.e. ``||X - F F^H||_* <= rank_tol^2 trace(X)``
        and the dropped factor columns have Frobenius norm ``<= rank_tol ||F_full||_F``.
        O(n k m) per system for k kept columns (``m = 1``).
    return_tail : bool
        Also return the Frobenius norm of the dropped columns, shape (...).
    weights : ndarray, shape (..., n), optional
        With ``rank_tol``: truncate for a product instead. ``weights[i] = ||s_i||^2``, the
        squared row norms of a matrix ``S`` (n x k) that the factor will be multiplied with as
        ``S^H F``. Pivots maximise ``X_ii w_i``, and pivoting stops once
        ``beta = sum_i sqrt(X_ii w_i) <= rank_tol ||S||_F sqrt(trace X)`` (``X_ii`` the
        Schur complement's diagonal), which bounds what the dropped columns add to the
        product: ``||S^H F_dropped||_F <= beta`` (``|X_ij| <= sqrt(X_ii X_jj)`` for the PSD
        remainder). The tail returned is then ``beta``. For balanced truncation with a
        low-rank observability factor, the controllability factor needs only the directions
        that factor sees.

    Returns
    -------
    F : ndarray, shape (..., n, k), complex
        ``k = n`` unless ``rank_tol`` truncates; ``k = n m`` for ``m > 1`` columns without
        ``rank_tol`` or ``horizon`` (one rank-one factor per column, each to high relative
        accuracy, side by side).
    tail : ndarray, shape (...), only with ``return_tail``
    """
    x = np.asarray(x, dtype=complex)
    G = np.asarray(G, dtype=complex)
    n = x.shape[-1]
    if n == 0 or G.shape[-1] == 0:  # no states, or a zero right-hand side: X = 0
        batch = np.broadcast_shapes(x.shape[:-1], G.shape[:-2])
        F = np.zeros(batch + (n, n), dtype=complex)
        return (F, np.zeros(batch)) if return_tail else F
    if weights is not None:
        if rank_tol is None:
            raise ValueError("weights only act together with rank_tol")
        weights = np.asarray(weights, dtype=float)
    w_batch = () if weights is None else weights.shape[:-1]
    batch = np.broadcast_shapes(x.shape[:-1], G.shape[:-2], w_batch)
    x = np.broadcast_to(x, batch + (n,)).reshape(-1, n)  # (b, n)
    G = np.broadcast_to(G, batch + G.shape[-2:])
    G = G.reshape(-1, n, G.shape[-1])  # (b, n, m)
    if weights is not None:
        weights = np.broadcast_to(weights, batch + (n,)).reshape(-1, n)
    xi, xjc = x[:, :, None], x[:, None, :].conj()
    if horizon is not None:
        X = (G @ G.conj().swapaxes(-1, -2)) * geometric_sum(xi * xjc, horizon)  # (b, n, n)
        Ft, tail = _pivoted_cholesky_rows(X, rank_tol, weights)
    elif G.shape[-1] == 1 and _cauchy_kernel.available():
        Ft, tail = _cauchy_kernel.cauchy_rank1_factors(x, G[..., 0], discrete, rank_tol, weights)
    elif G.shape[-1] == 1:
        Ft, tail = _cauchy_rank1(x, G[..., 0], discrete, rank_tol, weights)
    elif rank_tol is None:
        # X = sum_k X_k, X_k the Cauchy-like Gramian of column k alone: one accurate rank-one
        # factor per column, side by side (F F^H = X, n m columns). Forming X and factoring it
        # (below) loses the small eigenvalues (measured: HSVs off by 1e-10 sigma_1 with
        # clustered poles, against 2e-16 this way).
        b, m = G.shape[0], G.shape[-1]
        xs = np.repeat(x, m, axis=0)  # (b m, n)
        gs = G.swapaxes(-1, -2).reshape(b * m, n)  # (b m, n): column k of entry t at t m + k
        if _cauchy_kernel.available():
            Ft, _ = _cauchy_kernel.cauchy_rank1_factors(xs, gs, discrete, None, None)
        else:
            Ft, _ = _cauchy_rank1(xs, gs, discrete)
        Ft = Ft.reshape(b, m * Ft.shape[1], n)  # (b, m k, n): the columns of all m factors
        tail = np.zeros(b)
    else:
        den = (1.0 - xi * xjc) if discrete else -(xi + xjc)  # (b, n, n)
        Ft, tail = _pivoted_cholesky_rows((G @ G.conj().swapaxes(-1, -2)) / den, rank_tol, weights)
    F = Ft.swapaxes(-1, -2).reshape(batch + (n, Ft.shape[1]))
    return (F, tail.reshape(batch)) if return_tail else F


def _remaining(d, weights):
    """What the dropped columns would still carry, per batch entry: ``sqrt(sum_i X_ii)`` (their
    Frobenius norm) or, with weights, ``sum_i sqrt(X_ii w_i)`` (see :func:`cauchy_factor`)."""
    d = np.maximum(d, 0.0)
    if weights is None:
        return np.sqrt(d.sum(axis=-1))
    return np.sqrt(d * weights).sum(axis=-1)


def _den_column(x, xp, discrete):
    """``d_{:, p}``: ``1 - x conj(x_p)`` (dt) or ``-(x + conj(x_p))`` (ct); x (b, n), xp (b, 1)."""
    return 1.0 - x * xp.conj() if discrete else -(x + xp.conj())


def _cauchy_rank1(x, g, discrete, rank_tol=None, weights=None):
    """Pivoted Cholesky rows (b, n_pivots, n) for ``X_ij = g_i conj(g_j) / d_ij``.

    Schur complements stay Cauchy-like with updated generators
    ``g_i <- g_i (x_i - x_p) / (1 - x_i conj(x_p))`` (dt) or
    ``g_i (x_i - x_p) / (x_i + conj(x_p))`` (ct): products and quotients of differences of the
    data, hence high relative accuracy. An eliminated pivot's generator becomes exactly 0, so
    it is never chosen again while a positive diagonal remains.
    """
    b, n = x.shape
    rows = np.arange(b)
    diag_den = (1.0 - (x.real**2 + x.imag**2)) if discrete else -2.0 * x.real  # (b, n) > 0
    sign = 1.0 if discrete else -1.0
    g = g.copy()

    def diagonal():
        return (g.real**2 + g.imag**2) / diag_den  # (b, n) Schur-complement diagonal

    def eliminate(piv, inv_sqrt):
        nonlocal g
        gp, xp = g[rows, piv], x[rows, piv, None]  # (b,), (b, 1)
        den = _den_column(x, xp, discrete)  # (b, n)
        row = g * (gp.conj() * inv_sqrt)[:, None] / den  # X[:, p] / sqrt(X_pp)
        g = g * (sign * (x - xp) / den)
        return row

    dtype = np.result_type(g, x, complex)
    return _pivoted_cholesky(b, n, diagonal, eliminate, rank_tol, dtype, weights)


def _pivoted_cholesky_rows(X, rank_tol=None, weights=None):
    """Diagonally pivoted Cholesky rows (b, k, n) of explicit PSD matrices X (b, n, n)."""
    b, n = X.shape[:2]
    rows = np.arange(b)

    def diagonal():
        return np.diagonal(X, axis1=-2, axis2=-1).real  # (b, n)

    def eliminate(piv, inv_sqrt):
        nonlocal X
        col = X[rows, :, piv] * inv_sqrt[:, None]  # (b, n)
        X = X - col[:, :, None] * col[:, None, :].conj()
        return col

    return _pivoted_cholesky(b, n, diagonal, eliminate, rank_tol, complex, weights)


def _pivoted_cholesky(b, n, diagonal, eliminate, rank_tol, dtype=complex, weights=None):
    """The pivoting loop shared by the generator and explicit variants.

    ``diagonal()`` gives the current Schur complement's diagonal (b, n); ``eliminate(piv,
    1/sqrt(pivot))`` returns the Cholesky row (b, n) and updates the Schur complement.
    Pivots maximise the diagonal (times ``weights``, if given); with ``rank_tol`` the loop
    stops once every batch entry's remainder (:func:`_remaining`) is below ``rank_tol``
    times its initial ``sqrt(trace)`` (times ``sqrt(sum(weights))``).
    Returns the rows (b, k, n) and the remainder at the stop (b,), 0 if nothing was dropped.
    """
    rows = np.arange(b)
    Ft = np.empty((b, n, n), dtype=dtype)
    limit = None
    for k in range(n):
        d = diagonal()
        if rank_tol is not None:
            rest = _remaining(d, weights)  # (b,)
            if k == 0:
                scale = 1.0 if weights is None else np.sqrt(weights.sum(axis=-1))
                limit = rank_tol * np.sqrt(np.maximum(d, 0.0).sum(axis=-1)) * scale
            elif np.all(rest <= limit):
                return Ft[:, :k], rest
        piv = (d if weights is None else d * weights).argmax(axis=-1)  # (b,)
        dp = d[rows, piv]
        inv_sqrt = np.zeros_like(dp)
        np.divide(1.0, np.sqrt(np.maximum(dp, 0.0)), out=inv_sqrt, where=dp > 0)
        Ft[:, k, :] = eliminate(piv, inv_sqrt)
    return Ft, np.zeros(b)
