"""Random stable test systems and thin wrappers around the SLICOT oracles."""

from __future__ import annotations

import numpy as np
from slycot import ab09ad, ab09bd, ab13dd

import sysred


def _randn(rng, shape, complex_):
    x = rng.standard_normal(shape)
    return x + 1j * rng.standard_normal(shape) if complex_ else x


def random_dense(rng, n, m, p, discrete=False, complex_=False, feedthrough=True, batch=()):
    """Dense stable system: random A shifted (ct) or scaled (dt) into the stable region."""
    A = _randn(rng, batch + (n, n), complex_) / np.sqrt(n)
    ev = np.linalg.eigvals(A)
    if discrete:
        rho = rng.uniform(0.5, 0.98)
        A = A * (rho / np.max(np.abs(ev), axis=-1))[..., None, None]
    else:
        shift = np.max(ev.real, axis=-1) + rng.uniform(0.05, 1.0)
        A = A - shift[..., None, None] * np.eye(n)
    B = _randn(rng, batch + (n, m), complex_)
    C = _randn(rng, batch + (p, n), complex_)
    D = _randn(rng, batch + (p, m), complex_) if feedthrough else None
    return sysred.StateSpace(A, B, C, D, dt=1.0 if discrete else None)


def random_diagonal(rng, n, m, p, discrete=False, complex_=True, feedthrough=True, batch=()):
    """Diagonal stable system; complex poles unless ``complex_=False`` (then real poles)."""
    re = -rng.uniform(0.05, 2.0, batch + (n,))
    im = rng.uniform(-10.0, 10.0, batch + (n,)) if complex_ else 0.0
    poles = re + 1j * im if complex_ else re
    if discrete:
        poles = np.exp(0.3 * poles)
    B = _randn(rng, batch + (n, m), complex_)
    C = _randn(rng, batch + (p, n), complex_)
    D = _randn(rng, batch + (p, m), complex_) if feedthrough else None
    return sysred.DiagonalStateSpace(poles, B, C, D, dt=1.0 if discrete else None)


def _AB09AD_LDWORK(n, m, p):
    # slycot's default (SLICOT's documented minimum) corrupts the heap with job="N" (seen:
    # glibc abort / segfault at exit); a generous workspace avoids it.
    return 4 * (n * (2 * n + max(n, m, p) + 5) + n * (n + 1) // 2) + 1000


def slycot_bt(G, order, job="B"):
    """SLICOT AB09AD on a real dense system: (reduced StateSpace, hsv). No equilibration."""
    G = G.to_dense()
    out = ab09ad(
        "D" if G.is_discrete else "C", job, "N", G.n, G.m, G.p,
        G.A.copy(), G.B.copy(), G.C.copy(), nr=order, tol=0.0,
        ldwork=_AB09AD_LDWORK(G.n, G.m, G.p),
    )  # fmt: skip
    nr, Ar, Br, Cr, hsv = out
    return sysred.StateSpace(Ar[:nr, :nr], Br[:nr], Cr[:, :nr], G.D, G.dt), hsv


def slycot_hinf(G):
    """SLICOT AB13DD H-infinity norm of a real dense system."""
    G = G.to_dense()
    n = G.n
    gpeak, _ = ab13dd(
        "D" if G.is_discrete else "C", "I", "N", "D", n, G.m, G.p,
        G.A.copy(), np.eye(n), G.B.copy(), G.C.copy(), G.D.copy(), tol=1e-13,
    )  # fmt: skip
    return gpeak


def load_slicot(path):
    """A SLICOT benchmark .mat file as (StateSpace, published hsv). Casts int storage first."""
    from scipy.io import loadmat

    d = loadmat(path)

    def dense(x):
        x = x.toarray() if hasattr(x, "toarray") else x
        return np.asarray(x, dtype=float)

    G = sysred.StateSpace(dense(d["A"]), dense(d["B"]), dense(d["C"]))
    return G, np.sort(dense(d["hsv"]).ravel())[::-1]


def gap_orders(hsv, candidates, ratio=1.01):
    """Orders r among ``candidates`` with a clear gap sigma_r / sigma_{r+1} > ratio."""
    return [r for r in candidates if r < len(hsv) and hsv[r - 1] > ratio * hsv[r]]


def _pad_inputs(G, m_total):
    """``G`` with zero input columns appended up to ``m_total`` inputs (same HSVs, same map)."""
    B = np.zeros((G.n, m_total))
    B[:, : G.m] = G.B
    D = np.zeros((G.p, m_total))
    D[:, : G.m] = G.D
    return B, D


def slycot_spa(G, order, job="N"):
    """SLICOT AB09BD (balanced SPA) on a real dense system: (reduced StateSpace, hsv).

    Two pitfalls of this oracle, measured here:

    * slycot's wrapper gives AB09BD an integer workspace of ``max(m, p)`` where SLICOT needs
      ``2n``: the heap is corrupted (segfault at interpreter exit, sometimes wrong results).
      Zero input columns up to ``2n`` inputs change neither the HSVs nor the transfer function
      of the real inputs, and give the routine its workspace.
    * ``job="B"`` (square-root SPA) in discrete time is wrong whenever the minimal order exceeds
      ``r``: AB09BX biorthogonalises only the kept block (``TI1 T1 = I``), not the residualised
      one, which the continuous-time formula ``A22^{-1}`` does not notice (it is invariant under
      ``T2 -> T2 X``, ``TI2 -> Y TI2``) but ``(I - A22)^{-1}`` does: ``G_r(1) != G(1)``. Use
      ``job="N"`` (balancing-free), which is exact, as the discrete-time oracle.
    """
    G = G.to_dense()
    m = G.m
    B, D = _pad_inputs(G, max(2 * G.n, m))
    nr, Ar, Br, Cr, Dr, hsv = ab09bd(
        "D" if G.is_discrete else "C", job, "N", G.n, B.shape[1], G.p,
        G.A.copy(), B, G.C.copy(), D, nr=order, tol1=0.0, tol2=0.0,
    )  # fmt: skip
    return sysred.StateSpace(Ar[:nr, :nr], Br[:nr, :m], Cr[:, :nr], Dr[:, :m], G.dt), hsv
