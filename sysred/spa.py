r"""Balanced singular perturbation approximation (SPA), batched.

Liu & Anderson (1989, continuous time), Fernando & Nicholson (1982) and Al-Saggaf & Franklin
(1988, discrete time); SLICOT ``AB09BD``. Balance (square-root, to the numerical minimal order
``k``), split the balanced realisation at the order ``r``,

.. math::

    A = \begin{bmatrix} A_{11} & A_{12} \\ A_{21} & A_{22} \end{bmatrix},\quad
    B = \begin{bmatrix} B_1 \\ B_2 \end{bmatrix},\quad C = [C_1, C_2],

and let the fast (weakly controllable and observable) states ``x_2`` settle instantly:

* continuous time, ``x_2' = 0``: with :math:`M = -A_{22}^{-1}`,
* discrete time, ``x_2[k+1] = x_2[k]``: with :math:`M = (I - A_{22})^{-1}`,

.. math::

    A_r = A_{11} + A_{12} M A_{21},\quad B_r = B_1 + A_{12} M B_2,\quad
    C_r = C_1 + C_2 M A_{21},\quad D_r = D + C_2 M B_2.

The reduced model matches the steady-state gain exactly: ``G_r(0) = G(0)`` (ct),
``G_r(1) = G(1)`` (dt), is stable and balanced-bounded like balanced truncation,
``sigma_{r+1} <= ||G - G_r||_inf <= 2 * (sum of the distinct sigma_i, i > r)``. Truncation is
accurate at high frequencies, SPA at low ones. ``A_22`` is stable (a subsystem of a balanced
realisation with ``sigma_r > sigma_{r+1}``), so ``A_22`` (ct) and ``I - A_22`` (dt) are
invertible.

Balancing stops at the numerical minimal order (HSVs above ``10 n eps sigma_1``): the states
beyond it have no balanced form (``Sigma^{-1/2}`` would amplify rounding noise into ``A_22``),
and they contribute at most ``2 (n - k) 10 n eps sigma_1`` to ``G``. Batch entries have their
own minimal orders; the balanced realisations are padded to the largest one with inert states
(no coupling; ``A_22`` entry ``-1`` in ct, ``0`` in dt), which leaves every Schur complement
unchanged, so the whole batch is one vectorised solve.
"""

from __future__ import annotations

import numpy as np

__all__ = ["singular_perturbation", "perturb_balanced"]


def perturb_balanced(A, B, C, D, order, minimal, discrete):
    """SPA of a batch of balanced realisations, each valid on its first ``minimal`` states.

    Parameters
    ----------
    A : ndarray, shape (..., k, k)
        Balanced realisations (Gramians ``diag(sigma_1..sigma_k)``), padded to a common ``k``.
    B : ndarray, shape (..., k, m)
    C : ndarray, shape (..., p, k)
    D : ndarray, shape (..., p, m)
    order : int
        ``r <= minimal`` for every entry.
    minimal : ndarray of int, shape (...)
        Each entry's numerical minimal order ``k_b``; its states ``k_b .. k-1`` are discarded
        (their rows and columns are replaced by inert padding).
    discrete : bool

    Returns
    -------
    Ar (..., r, r), Br (..., r, m), Cr (..., p, r), Dr (..., p, m)
    """
    k, r = A.shape[-1], int(order)
    minimal = np.asarray(minimal)
    live = np.arange(k) < minimal[..., None]  # (..., k): states inside the minimal realisation
    both = live[..., :, None] & live[..., None, :]  # (..., k, k)
    A = np.where(both, A, 0.0)
    B = np.where(live[..., :, None], B, 0.0)
    C = np.where(live[..., None, :], C, 0.0)
    if r == k:
        return A, B, C, np.array(D, copy=True)
    A11, A12 = A[..., :r, :r], A[..., :r, r:]
    A21, A22 = A[..., r:, :r], A[..., r:, r:]
    B1, B2, C1, C2 = B[..., :r, :], B[..., r:, :], C[..., :, :r], C[..., :, r:]
    eye = np.eye(k - r)
    pad = ~live[..., r:]  # (..., k - r)
    # inert padding: A_22 gets -1 (ct) or 0 (dt) on its diagonal, so M is diagonal there
    if discrete:
        M_inv = eye - A22  # (..., k-r, k-r); padded diagonal: 1 - 0
    else:
        M_inv = pad[..., :, None] * eye - A22  # (..., k-r, k-r); padded diagonal: -(-1)
    X = np.linalg.solve(M_inv, np.concatenate([A21, B2], axis=-1))  # (..., k-r, r+m): M [A21 B2]
    XA, XB = X[..., :, :r], X[..., :, r:]
    return A11 + A12 @ XA, B1 + A12 @ XB, C1 + C2 @ XA, D + C2 @ XB


def singular_perturbation(
    sys,
    order=None,
    tol=None,
    strict=True,
    backend="auto",
    workers=None,
    rank_tol=None,
    accuracy="standard",
):
    """Balanced singular perturbation approximation: ``BTReductor(sys, ...).reduce(..., "spa")``.

    See the module docstring for the formulas. Same inputs and the same bound as
    :func:`sysred.balanced_truncation` (no time-limited variant: SPA needs the infinite-horizon
    balanced realisation); the reduced ``D_r`` differs from ``D``.

    Parameters
    ----------
    sys : StateSpace or DiagonalStateSpace
        Asymptotically stable, batched or not, ct or dt, real or complex.
    order, tol, strict, backend, workers, rank_tol, accuracy
        As for :func:`sysred.balanced_truncation`.

    Returns
    -------
    BTResult
        ``method="spa"``; ``T, W`` are the first ``r`` columns of the balancing projection (the
        kept balanced coordinates ``x_1 = W^H x``); ``A_r`` is *not* ``W^H A T``.

    Examples
    --------
    >>> import numpy as np, sysred
    >>> d = np.array([1.0, 2.0, 5.0, 10.0])
    >>> G = sysred.DiagonalStateSpace(-d, np.ones((4, 1)), np.ones((1, 4)))
    >>> res = sysred.singular_perturbation(G, order=2)
    >>> bool(np.allclose(res.system.transfer([0.0]), G.transfer([0.0])))  # G_r(0) = G(0)
    True
    >>> bool(sysred.hinf_norm(G, res.system) <= res.bound)
    True
    """
    from sysred.reductors import BTReductor  # reductors imports this module

    reductor = BTReductor(sys, backend, None, workers, rank_tol, accuracy)
    return reductor.reduce(order, tol, method="spa", strict=strict)
