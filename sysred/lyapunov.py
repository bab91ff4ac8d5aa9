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

__all__ = ["hammarling_factor", "cauchy_factor", "slycot_factor"]


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
    """
    from slycot import sb03od

    A = np.asarray(A, dtype=float)
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


def cauchy_factor(x, G, discrete=False):
    """Diagonally pivoted Cholesky factor of a Cauchy-like Gramian, batched.

    The Lyapunov equation with ``A = diag(x)`` has the closed-form solution

    ``X_ij = g_i g_j^H / d_ij``,  ``d_ij = -(x_i + conj(x_j))`` (ct),
    ``d_ij = 1 - x_i conj(x_j)`` (dt),

    (``g_i`` the rows of ``G``). This returns ``F`` with ``X = F F^H`` whose columns are the
    Cholesky columns in pivot order (largest remaining diagonal first), so ``F`` is a
    row-permuted lower-triangular matrix and its column norms decay like the eigenvalues of
    ``X``. Cost O(n^2 m) for ``m = 1`` (generator updates), O(n^3) otherwise (explicit
    Schur complements); memory O(batch n^2).

    Parameters
    ----------
    x : ndarray, shape (..., n)
        Stable poles.
    G : ndarray, shape (..., n, m)
    discrete : bool

    Returns
    -------
    F : ndarray, shape (..., n, n), complex
    """
    x = np.asarray(x, dtype=complex)
    G = np.asarray(G, dtype=complex)
    batch, n = x.shape[:-1], x.shape[-1]
    if discrete:
        den = 1.0 - x[..., :, None] * x[..., None, :].conj()  # (..., n, n)
    else:
        den = -(x[..., :, None] + x[..., None, :].conj())  # (..., n, n)
    F = np.zeros(batch + (n, n), dtype=complex)
    active = np.ones(batch + (n,), dtype=bool)
    if G.shape[-1] == 1:
        g = G[..., 0].copy()  # (..., n)
        X = None
    else:
        X = (G @ G.conj().swapaxes(-1, -2)) / den  # explicit Cauchy-like matrix (..., n, n)
    diag_den = np.diagonal(den, axis1=-2, axis2=-1).real  # (..., n)
    for k in range(n):
        if X is None:
            d = np.abs(g) ** 2 / diag_den
        else:
            d = np.diagonal(X, axis1=-2, axis2=-1).real.copy()
        d = np.where(active, d, -np.inf)
        piv = np.argmax(d, axis=-1)[..., None]  # (..., 1)
        dp = np.take_along_axis(d, piv, axis=-1)  # (..., 1)
        dp_safe = np.where(dp > 0, dp, 1.0)
        if X is None:
            gp = np.take_along_axis(g, piv, axis=-1)  # (..., 1)
            denp = np.take_along_axis(den, piv[..., None], axis=-1)[..., 0]  # (..., n)
            col = g * gp.conj() / denp  # X[:, p], (..., n)
        else:
            col = np.take_along_axis(X, piv[..., None], axis=-1)[..., 0]  # (..., n)
        col = np.where(active & (dp > 0), col, 0.0)
        F[..., :, k] = col / np.sqrt(dp_safe)
        np.put_along_axis(active, piv, False, axis=-1)
        if X is None:
            xp = np.take_along_axis(x, piv, axis=-1)  # (..., 1)
            if discrete:
                g = g * (x - xp) / (1.0 - x * xp.conj())
            else:
                g = g * (x - xp) / (x + xp.conj())
        else:
            X = X - col[..., :, None] * col[..., None, :].conj() / dp_safe[..., None]
    return F
