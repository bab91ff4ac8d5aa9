"""System norms: H-infinity (certified level-set algorithm) and H2."""

from __future__ import annotations

import numpy as np

from sysred._checks import require_stable, require_system
from sysred._parallel import one_blas_thread
from sysred.errors import ShapeError, SysredError
from sysred.gramians import gramian_factors
from sysred.systems import DiagonalStateSpace, StateSpace

__all__ = ["hinf_norm", "h2_norm", "difference", "bilinear_to_continuous", "peak_gain"]


def difference(G1, G2) -> StateSpace:
    """The error system ``G1 - G2`` (parallel connection), order ``n1 + n2``, batched.

    ``A = blkdiag(A1, A2)``, ``B = [B1; B2]``, ``C = [C1, -C2]``, ``D = D1 - D2``.
    """
    G1, G2 = require_system(G1).to_dense(), require_system(G2).to_dense()
    if (G1.m, G1.p) != (G2.m, G2.p):
        raise ShapeError(f"systems differ in (m, p): {(G1.m, G1.p)} vs {(G2.m, G2.p)}")
    if G1.dt != G2.dt:
        raise SysredError(f"systems differ in time domain: dt={G1.dt} vs dt={G2.dt}")
    batch = np.broadcast_shapes(G1.batch_shape, G2.batch_shape)
    n1, n2 = G1.n, G2.n
    dtype = np.result_type(G1.A, G2.A)
    A = np.zeros(batch + (n1 + n2, n1 + n2), dtype=dtype)
    A[..., :n1, :n1] = G1.A
    A[..., n1:, n1:] = G2.A
    B = np.concatenate(_bcast(batch, G1.B, G2.B), axis=-2)
    C = np.concatenate(_bcast(batch, G1.C, -G2.C), axis=-1)
    return StateSpace(A, B, C, G1.D - G2.D, G1.dt)


def _bcast(batch, X1, X2):
    return [np.broadcast_to(X, batch + X.shape[-2:]) for X in (X1, X2)]


def bilinear_to_continuous(sys) -> StateSpace:
    """Map a discrete-time system to continuous time by ``z = (1 + s) / (1 - s)``.

    ``Ac = (A + I)^{-1} (A - I)``, ``Bc = sqrt(2) (A + I)^{-1} B``, ``Cc = sqrt(2) C (A + I)^{-1}``,
    ``Dc = D - C (A + I)^{-1} B``, so that ``Gc(i w) = Gd(exp(i theta))`` with
    ``w = tan(theta / 2)``. Stability, the H-infinity norm and the Hankel singular values are
    preserved. Needs ``-1`` not to be a pole.
    """
    sys = sys.to_dense()
    if not sys.is_discrete:
        raise SysredError("bilinear_to_continuous expects a discrete-time system")
    eye = np.eye(sys.n)
    ApI = sys.A + eye
    X = np.linalg.solve(ApI, np.concatenate([sys.A - eye, sys.B], axis=-1))  # (..., n, n+m)
    Ac, AiB = X[..., :, : sys.n], X[..., :, sys.n :]
    CAi = np.linalg.solve(ApI.swapaxes(-1, -2), sys.C.swapaxes(-1, -2)).swapaxes(-1, -2)
    r2 = np.sqrt(2.0)
    return StateSpace(Ac, r2 * AiB, r2 * CAi, sys.D - sys.C @ AiB, None)


def _sigma_max(A, B, C, D, w):
    """Largest singular value of ``C (i w I - A)^{-1} B + D`` at each real ``w``."""
    w = np.atleast_1d(np.asarray(w, dtype=float))
    M = 1j * w[:, None, None] * np.eye(A.shape[0]) - A  # (k, n, n)
    G = C @ np.linalg.solve(M, np.broadcast_to(B, (len(w),) + B.shape)) + D  # (k, p, m)
    return np.linalg.norm(G, ord=2, axis=(-2, -1))


def _hamiltonian(A, B, C, D, gamma):
    """``H(gamma)``: ``i w`` is an eigenvalue iff gamma is a singular value of ``G(i w)``.

    With ``R = gamma^2 I - D^H D`` and ``S = gamma^2 I - D D^H`` (gamma > ||D||):
    ``H = [[F, gamma B R^{-1} B^H], [-gamma C^H S^{-1} C, -F^H]]``, ``F = A + B R^{-1} D^H C``.
    Valid for complex data (conjugate transposes throughout).
    """
    m, p = B.shape[1], C.shape[0]
    R = gamma**2 * np.eye(m) - D.conj().T @ D
    S = gamma**2 * np.eye(p) - D @ D.conj().T
    Ri = np.linalg.inv(R)
    F = A + B @ Ri @ D.conj().T @ C
    top = np.concatenate([F, gamma * (B @ Ri @ B.conj().T)], axis=1)
    bottom = np.concatenate([-gamma * (C.conj().T @ np.linalg.solve(S, C)), -F.conj().T], axis=1)
    return np.concatenate([top, bottom], axis=0)


def _hinf_continuous(A, B, C, D, tol):
    """Bruinsma-Steinbuch level-set iteration; returns (norm, peak frequency).

    The result ``g`` is attained at some frequency (a lower bound) and the Hamiltonian at
    level ``(1 + 2 tol) g`` has no imaginary-axis eigenvalue, which certifies
    ``g <= ||G||_inf < (1 + 2 tol) g``. Complex systems: all real frequencies are searched,
    negative ones included (no conjugate symmetry).
    """
    poles = np.linalg.eigvals(A)
    # Starting frequencies: 0, near every pole's resonance (its imaginary part, with sign), and
    # a coarse log grid of both signs. A good start matters beyond speed: when the start is
    # ||D|| (peak "at infinity"), gamma^2 I - D^H D is nearly singular at the first level and
    # the Hamiltonian's imaginary eigenvalues are computed too inaccurately to be seen.
    mags = np.abs(poles[poles != 0]) if np.any(poles != 0) else np.ones(1)
    grid = np.logspace(np.log10(mags.min()) - 2, np.log10(mags.max()) + 2, 40)
    cands = np.unique(np.concatenate([[0.0], poles.imag, mags, -mags, grid, -grid]))
    sig = _sigma_max(A, B, C, D, cands)
    k = int(np.argmax(sig))
    gamma_lb, w_peak = float(sig[k]), float(cands[k])
    d_norm = float(np.linalg.norm(D, 2)) if D.size else 0.0
    if d_norm >= gamma_lb:
        gamma_lb, w_peak = d_norm, np.inf
    if gamma_lb == 0.0:
        return 0.0, 0.0
    for _ in range(200):
        gamma = (1.0 + 2.0 * tol) * gamma_lb
        Hm = _hamiltonian(A, B, C, D, gamma)
        ev = np.linalg.eigvals(Hm)
        # loose test on purpose: a spurious candidate costs one evaluation, a missed one is a
        # wrong answer (eigenvalues of an ill-conditioned H move by ~eps * ||H|| * cond)
        axis_tol = np.maximum(1e-6 * np.maximum(1.0, np.abs(ev)), 1e-10 * np.linalg.norm(Hm, 1))
        on_axis = np.abs(ev.real) <= axis_tol
        w = np.sort(ev[on_axis].imag)
        if w.size == 0:
            break
        mids = np.concatenate([(w[:-1] + w[1:]) / 2.0, w])
        sig = _sigma_max(A, B, C, D, mids)
        k = int(np.argmax(sig))
        if sig[k] <= gamma_lb:  # only spurious (off-level) crossings left
            break
        gamma_lb, w_peak = float(sig[k]), float(mids[k])
    return gamma_lb, w_peak


def hinf_norm(sys, other=None, tol=1e-10, return_frequency=False):
    """H-infinity norm ``sup_w sigma_max(G(i w))`` (ct) or ``sup_theta sigma_max(G(e^{i theta}))``.

    Level-set (Boyd-Balakrishnan / Bruinsma-Steinbuch) iteration on the Hamiltonian, certified
    to relative accuracy ``2 tol`` (not a frequency grid, which only gives a lower bound).
    Discrete-time systems are mapped by :func:`bilinear_to_continuous`, which keeps the norm.
    For complex systems the supremum is over *all* real frequencies.

    Parameters
    ----------
    sys : StateSpace or DiagonalStateSpace
        Asymptotically stable; batched input gives one norm per batch entry.
    other : system, optional
        If given, the norm of the error system ``sys - other``.
    tol : float
        Relative accuracy target.
    return_frequency : bool
        Also return the peak frequency (rad per time unit; ``inf`` when the peak is at
        infinity (ct) or the Nyquist frequency ``pi/dt`` (dt)).

    Returns
    -------
    norm : float or ndarray (batch shape)
    freq : float or ndarray, only with ``return_frequency``

    Examples
    --------
    >>> import sysred
    >>> G = sysred.StateSpace([[-1.0]], [[1.0]], [[1.0]])   # 1/(s+1): peak 1 at w = 0
    >>> round(sysred.hinf_norm(G), 12)
    1.0
    """
    if other is not None:
        require_stable(other, "hinf_norm")
        sys = difference(sys, other)
    require_stable(sys, "hinf_norm")
    disc = sys.is_discrete
    G = bilinear_to_continuous(sys) if disc else sys.to_dense()
    shape = G.batch_shape
    flat = [G.A.reshape((-1,) + G.A.shape[-2:])] + [
        X.reshape((-1,) + X.shape[-2:]) for X in (G.B, G.C, G.D)
    ]
    norms, freqs = [], []
    for A, B, C, D in zip(*flat, strict=True):
        with one_blas_thread():
            g, w = _hinf_continuous(A, B, C, D, tol)
        if disc:
            w = 2.0 * np.arctan(w) / sys.dt if np.isfinite(w) else np.pi / sys.dt
        norms.append(g)
        freqs.append(w)
    norms, freqs = np.array(norms).reshape(shape), np.array(freqs).reshape(shape)
    if not shape:
        norms, freqs = float(norms), float(freqs)
    return (norms, freqs) if return_frequency else norms


def h2_norm(sys, backend="auto"):
    """H2 norm: ``sqrt(trace(C P C^H))`` (ct, needs ``D = 0``), ``sqrt(||D||_F^2 +
    trace(C P C^H))`` (dt, the l2 norm of the impulse response ``h_0 = D, h_k = C A^{k-1} B``).

    Raises
    ------
    SysredError
        Continuous-time system with nonzero ``D`` (the H2 norm is infinite).
    """
    require_stable(sys, "h2_norm")
    if not sys.is_discrete and np.any(sys.D != 0):
        raise SysredError("continuous-time H2 norm is infinite for a nonzero feed-through D")
    R, _, _ = gramian_factors(sys, backend)
    sq = np.sum(np.abs(sys.C @ R) ** 2, axis=(-2, -1))
    if sys.is_discrete:
        sq = sq + np.sum(np.abs(sys.D) ** 2, axis=(-2, -1))
    out = np.sqrt(sq)
    return float(out) if not sys.batch_shape else out


def peak_gain(sys, n_grid=256, refine=4):
    """Largest gain over a frequency grid and the poles' resonances: a cheap lower bound on the
    H-infinity norm, per batch entry.

    ``max sigma_max(G)`` over ``s = i w`` (ct) or ``z = e^{i theta}`` (dt) at ~``n_grid``
    frequencies (0 and a two-sided log grid spanning the poles' magnitudes, ``|log p|`` in dt,
    +- 2 decades; dt also a uniform grid on ``[-pi, pi)``) and, per entry, every pole's own
    resonance (``Im p`` in ct, ``arg p`` in dt) and its half-power neighbourhood (+- the damping
    ``|Re p|``, resp. ``|log|p||``, and half of it), where a lightly damped mode peaks; then
    ``refine`` zoom steps around the best point. Costs O(b (n_grid + 5 n) n m p), no
    Hamiltonian: use it to *scale* (e.g. to compare errors across systems), and
    :func:`hinf_norm` when the number must be certified (``peak_gain <= hinf_norm``, equal up
    to the grid's resolution).

    Parameters
    ----------
    sys : StateSpace or DiagonalStateSpace
        Batched or not (stability is not required: the gain on the axis is what is measured).
    n_grid : int
    refine : int
        Zoom steps: the bracket around the best point is sampled at 9 points, ``refine`` times
        (each shrinks it ~4x), which finds peaks the grid straddles.

    Returns
    -------
    float or ndarray (batch shape)

    Examples
    --------
    >>> import sysred
    >>> G = sysred.DiagonalStateSpace([-0.01 + 3j], [[1.0]], [[1.0]])  # peak 100 at w = 3
    >>> round(float(sysred.peak_gain(G)), 9)
    100.0
    """
    sys = require_system(sys)
    poles = sys.poles  # (..., n)
    # a log grid over the poles' magnitudes (ct) or |log p| (dt, where DSS poles crowd z = 1)
    cont = np.log(poles[poles != 0]) if sys.is_discrete else poles[poles != 0]
    mags = np.abs(cont[cont != 0]) if np.any(cont != 0) else np.ones(1)
    lo, hi = np.log10(mags.min()) - 2, np.log10(mags.max()) + 2
    if sys.is_discrete:
        half = np.logspace(lo, min(hi, np.log10(np.pi)), max(int(n_grid) // 4, 1))
        uniform = np.linspace(-np.pi, np.pi, max(int(n_grid) // 2, 1), endpoint=False)
        grid = np.concatenate([uniform, half, -half])  # (k,)
        with np.errstate(divide="ignore"):
            centre, width = np.angle(poles), np.abs(np.log(np.abs(poles)))  # (..., n)
    else:
        half = np.logspace(lo, hi, max(int(n_grid) // 2, 1))
        grid = np.concatenate([[0.0], half, -half])  # (k,)
        centre, width = poles.imag, np.abs(poles.real)  # (..., n)
    # each resonance and its half-power neighbourhood (modes interfere: the peak shifts)
    offsets = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    own = (centre[..., None] + offsets * np.minimum(width, 1.0)[..., None]).reshape(
        poles.shape[:-1] + (-1,)
    )  # (..., 5 n)
    w = np.concatenate([np.broadcast_to(grid, poles.shape[:-1] + grid.shape), own], axis=-1)
    w = np.sort(w, axis=-1)  # (..., k)
    gains = _gains_at(sys, w)  # (..., k)
    best = np.max(gains, axis=-1)  # (...)
    for _ in range(refine):  # zoom into the bracket around the best point so far
        i = np.argmax(gains, axis=-1)[..., None]  # (..., 1)
        lo = np.take_along_axis(w, np.maximum(i - 1, 0), axis=-1)
        hi = np.take_along_axis(w, np.minimum(i + 1, w.shape[-1] - 1), axis=-1)
        w = np.sort(np.concatenate([lo + (hi - lo) * np.linspace(0, 1, 9), np.take_along_axis(
            w, i, axis=-1)], axis=-1), axis=-1)  # fmt: skip
        gains = _gains_at(sys, w)
        best = np.maximum(best, np.max(gains, axis=-1))
    return float(best) if not sys.batch_shape else best


def _gains_at(sys, w):
    """``sigma_max(G)`` at per-entry frequencies ``w`` (..., k); non-finite (a pole) -> 0."""
    points = np.exp(1j * w) if sys.is_discrete else 1j * w  # (..., k): w is theta in dt
    if isinstance(sys, DiagonalStateSpace):
        res = 1.0 / (points[..., :, None] - sys.poles[..., None, :])  # (..., k, n)
        CB = sys.C.swapaxes(-1, -2)[..., :, :, None] * sys.B[..., :, None, :]  # (..., n, p, m)
        G = (res @ CB.reshape(CB.shape[:-2] + (-1,))).reshape(res.shape[:-1] + CB.shape[-2:])
        G = G + sys.D[..., None, :, :]  # (..., k, p, m)
    else:
        eye = np.eye(sys.n)
        M = points[..., :, None, None] * eye - sys.A[..., None, :, :]  # (..., k, n, n)
        X = np.linalg.solve(M, np.broadcast_to(sys.B[..., None, :, :], M.shape[:-1] + (sys.m,)))
        G = sys.C[..., None, :, :] @ X + sys.D[..., None, :, :]  # (..., k, p, m)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if min(G.shape[-2:]) == 1:  # a row or column: its 2-norm, no SVD
            gains = np.sqrt(np.sum(np.abs(G) ** 2, axis=(-2, -1)))  # (..., k)
        else:
            gains = np.linalg.norm(G, ord=2, axis=(-2, -1))  # (..., k)
    return np.where(np.isfinite(gains), gains, 0.0)
