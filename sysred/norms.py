"""System norms: H-infinity (certified level-set algorithm, :mod:`sysred._levelset`) and H2."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from sysred._checks import require_stable, require_system
from sysred._levelset import hinf_levelset
from sysred._parallel import one_blas_thread
from sysred.errors import OptionError, ShapeError, SysredError
from sysred.gramians import factors_with_tails, io_scaled
from sysred.systems import DiagonalStateSpace, StateSpace, _ldexp

__all__ = ["hinf_norm", "h2_norm", "difference", "bilinear_to_continuous", "peak_gain"]


def difference(G1, G2) -> StateSpace:
    """The error system ``G1 - G2`` (parallel connection), order ``n1 + n2``, batched.

    ``A = blkdiag(A1, A2)``, ``B = [B1; B2]``, ``C = [C1, -C2]``, ``D = D1 - D2``.
    """
    G1, G2 = (S.to_dense() for S in _compatible(G1, G2))
    batch = np.broadcast_shapes(G1.batch_shape, G2.batch_shape)
    n1, n2 = G1.n, G2.n
    dtype = np.result_type(G1.A, G2.A)
    A = np.zeros(batch + (n1 + n2, n1 + n2), dtype=dtype)
    A[..., :n1, :n1] = G1.A
    A[..., n1:, n1:] = G2.A
    B = np.concatenate(_bcast(batch, G1.B, G2.B), axis=-2)
    C = np.concatenate(_bcast(batch, G1.C, -G2.C), axis=-1)
    return StateSpace(A, B, C, G1.D - G2.D, G1.dt)


def _flat_batch(X, shape):
    """``X`` (..., a, b) broadcast to ``shape`` and flattened to (prod(shape), a, b)."""
    b = int(np.prod(shape, dtype=int))
    return np.broadcast_to(X, shape + X.shape[-2:]).reshape((b,) + X.shape[-2:])


def _compatible(G1, G2):
    """Check that ``G1 - G2`` makes sense (same inputs, outputs, time domain; batch shapes
    that broadcast); return both."""
    require_system(G1), require_system(G2)
    if (G1.m, G1.p) != (G2.m, G2.p):
        raise ShapeError(
            f"systems differ in (inputs m, outputs p): {(G1.m, G1.p)} vs {(G2.m, G2.p)}"
        )
    if G1.dt != G2.dt:
        raise SysredError(f"systems differ in time domain: dt={G1.dt} vs dt={G2.dt}")
    try:
        np.broadcast_shapes(G1.batch_shape, G2.batch_shape)
    except ValueError:
        raise ShapeError(
            f"batch shapes {G1.batch_shape} and {G2.batch_shape} do not broadcast: pass systems "
            "with equal batch shapes (or one unbatched system)"
        ) from None
    return [G1, G2]


def _bcast(batch, X1, X2):
    return [np.broadcast_to(X, batch + X.shape[-2:]) for X in (X1, X2)]


def bilinear_to_continuous(sys) -> StateSpace:
    """Map a discrete-time system to continuous time by ``z = (1 + s) / (1 - s)``.

    ``Ac = (A + I)^{-1} (A - I)``, ``Bc = sqrt(2) (A + I)^{-1} B``, ``Cc = sqrt(2) C (A + I)^{-1}``,
    ``Dc = D - C (A + I)^{-1} B``, so that ``Gc(i w) = Gd(exp(i theta))`` with
    ``w = tan(theta / 2)``. Stability, the H-infinity norm and the Hankel singular values are
    preserved. Needs ``-1`` not to be a pole.
    """
    sys = require_system(sys).to_dense()
    if not sys.is_discrete:
        raise SysredError("bilinear_to_continuous expects a discrete-time system")
    eye = np.eye(sys.n)
    ApI = sys.A + eye
    try:
        X = np.linalg.solve(ApI, np.concatenate([sys.A - eye, sys.B], axis=-1))  # (..., n, n+m)
        CAi = np.linalg.solve(ApI.swapaxes(-1, -2), sys.C.swapaxes(-1, -2)).swapaxes(-1, -2)
    except np.linalg.LinAlgError:
        raise SysredError(
            "bilinear_to_continuous: z = -1 is a pole (A + I is singular), which the map sends "
            "to s = infinity; sysred.hinf_norm needs no such map"
        ) from None
    Ac, AiB = X[..., :, : sys.n], X[..., :, sys.n :]
    r2 = np.sqrt(2.0)
    return StateSpace(Ac, r2 * AiB, r2 * CAi, sys.D - sys.C @ AiB, None)


def _check_tol(tol):
    """``tol`` must be a real number in ``[0, 1)``."""
    if isinstance(tol, bool) or not isinstance(tol, int | float | np.integer | np.floating):
        raise OptionError(f"tol must be a number in [0, 1) such as 1e-10, got {tol!r}")
    if not 0 <= tol < 1:  # NaN fails too
        raise OptionError(f"tol must be a number in [0, 1) such as 1e-10, got {tol!r}")
    return float(tol)


def _exponent(X):
    """``e`` with ``2^(e-1) <= max|X_ij| < 2^e`` (0 for an empty or zero ``X``)."""
    big = float(np.max(np.abs(X))) if X.size else 0.0
    return int(np.frexp(big)[1]) if big > 0 else 0


def _hinf_one(parts, D, discrete, tol):
    """``(norm, frequency)`` of ``D + sum_k C_k (sI - A_k)^{-1} B_k`` (the parts of one
    system, or of an error system ``G1 - G2``), scaled first by exact powers of two.

    Each ``A_k`` is balanced by a diagonal similarity (LAPACK ``gebal``, powers of two) and, in
    continuous time, all are time-scaled: ``G(s) = C (s~ I - A~)^{-1} (B / 2^a)`` with
    ``A~ = A / 2^a`` and ``s = 2^a s~``. Then ``B``, ``C`` are scaled to entries of order
    one, ``D`` by the same factor, and the norm is scaled back: the level set never sees
    ``g^2`` overflow or underflow, whatever the magnitude of the data.
    """
    balanced = []
    for A, B, C in parts:
        if A.shape[0]:
            _, (scale, _) = sla.matrix_balance(A, permute=False, separate=True)
            A = A / scale[:, None] * scale[None, :]
            B, C = B / scale[:, None], C * scale[None, :]
        balanced.append((A, B, C))
    ea = 0 if discrete else max(_exponent(A) for A, _, _ in balanced)
    eb = max(_exponent(B) for _, B, _ in balanced) - ea
    ec = max(_exponent(C) for _, _, C in balanced)
    ed = eb + ec
    if np.any(D != 0) and _exponent(D) - ed > 900:  # dynamics far below D's rounding: ||D||
        e = _exponent(D)
        g = np.ldexp(float(np.linalg.norm(_ldexp(D, -e), 2)), e)
        return float(g), (0.0 if discrete else np.inf)
    scaled = [
        (_ldexp(A, -ea), _ldexp(B, -ea - eb), _ldexp(C, -ec)) for A, B, C in balanced if A.size
    ]
    g, w = hinf_levelset(scaled, _ldexp(D, -ed), discrete, tol)
    with np.errstate(over="ignore"):
        g = float(np.ldexp(g, ed))  # inf only if the norm itself exceeds the double range
    if not discrete and np.isfinite(w):
        w = float(np.ldexp(w, ea))
    return g, w


def hinf_norm(sys, other=None, tol=1e-10, return_frequency=False):
    """H-infinity norm ``sup_w sigma_max(G(i w))`` (ct) or ``sup_theta sigma_max(G(e^{i theta}))``.

    Level-set (Boyd-Balakrishnan / Bruinsma-Steinbuch) iteration on the extended Hamiltonian
    (ct) or symplectic (dt) pencil, directly in the system's own time domain (no bilinear map;
    see :mod:`sysred._levelset`). The returned norm ``g`` is *certified*:

    * attained: ``g = sigma_max(G)`` at the returned frequency, evaluated there (a lower bound);
    * the pencil at level ``(1 + 2 tol) g`` has no eigenvalue on the imaginary axis (unit
      circle) bounding an interval above that level (the upper bound
      ``||G||_inf < (1 + 2 tol) g``), where every eigenvalue within ``1e-6`` of the axis
      (circle), or without a mirrored partner (``-conj(l)``, resp. ``1/conj(l)``: rounding
      moved it off), counts as on it.

    Both hold up to the rounding error of evaluating ``G``, which no double-precision method
    avoids: ``eps S`` with ``S = ||D|| + ||C|| ||X|| + ||Y|| ||B|| + ||Y|| ||A|| ||X||``,
    ``X = (sI - A)^{-1} B``, ``Y = C (sI - A)^{-1}``, the first-order effect of one-ulp changes
    of the data (``~eps ||G||`` for a well-conditioned system; the size of the parts for an
    error system ``sys - other``, whose parts are evaluated apart; more next to a lightly
    damped pole of a non-normal ``A``). Evaluations where that matters are refined in extended
    precision, and the search maximises ``sigma_max - eps S``, so that rounding noise never
    passes for a peak (see :mod:`sysred._levelset`). For complex systems the supremum is over
    *all* real frequencies (all of ``(-pi, pi]`` in discrete time). Data of any finite
    magnitude work: the system is scaled by exact powers of two first.

    Parameters
    ----------
    sys : StateSpace or DiagonalStateSpace
        Asymptotically stable; batched input gives one norm per batch entry.
    other : system, optional
        If given, the norm of the error system ``sys - other`` (same ``m``, ``p``, ``dt``;
        batch shapes that broadcast).
    tol : float
        Relative accuracy target, ``0 <= tol < 1``.
    return_frequency : bool
        Also return the peak frequency (rad per time unit; ``inf`` when the peak is at
        infinity (ct); in ``(-pi/dt, pi/dt]`` (dt)).

    Returns
    -------
    norm : float or ndarray (batch shape)
        ``||D||`` for a system without states (and 0 without inputs or outputs).
    freq : float or ndarray, only with ``return_frequency``

    Raises
    ------
    UnstableSystemError
        Some batch entry is not asymptotically stable.
    ShapeError
        ``sys`` and ``other`` differ in inputs, outputs or (non-broadcasting) batch shape.
    OptionError
        ``tol`` is not a number in ``[0, 1)``.

    Examples
    --------
    >>> import sysred
    >>> G = sysred.StateSpace([[-1.0]], [[1.0]], [[1.0]])   # 1/(s+1): peak 1 at w = 0
    >>> round(sysred.hinf_norm(G), 12)
    1.0
    >>> H = sysred.StateSpace([[-0.9]], [[1.0]], [[1.0]], dt=1.0)  # 1/(z+0.9): peak at z = -1
    >>> norm, theta = sysred.hinf_norm(H, return_frequency=True)
    >>> round(norm, 10), round(abs(theta), 10)
    (10.0, 3.1415926536)
    """
    tol = _check_tol(tol)
    systems = [require_system(sys)] if other is None else _compatible(sys, other)
    for S in systems:
        require_stable(S, "hinf_norm")
    dense = [S.to_dense() for S in systems]
    shape = np.broadcast_shapes(*(S.batch_shape for S in dense))
    disc = dense[0].is_discrete
    flat = [[_flat_batch(X, shape) for X in S._arrays()] for S in dense]  # [[A, B, C, D]]
    norms, freqs = [], []
    for k in range(int(np.prod(shape, dtype=int))):
        signs = (1.0, -1.0)[: len(flat)]
        parts = [(A[k], B[k], sg * C[k]) for sg, (A, B, C, _) in zip(signs, flat, strict=True)]
        D = flat[0][3][k] - (flat[1][3][k] if len(flat) > 1 else 0)
        with one_blas_thread():
            g, w = _hinf_one(parts, D, disc, tol)
        norms.append(g)
        freqs.append(w / dense[0].dt if disc else w)
    norms = np.array(norms, dtype=float).reshape(shape)
    freqs = np.array(freqs, dtype=float).reshape(shape)
    if not shape:
        norms, freqs = float(norms), float(freqs)
    return (norms, freqs) if return_frequency else norms


def _fro(X):
    """Frobenius norm over the last two axes, without overflow for huge entries."""
    e = np.frexp(np.max(np.abs(X), axis=(-2, -1), initial=0.0))[1]
    return np.ldexp(np.linalg.norm(_ldexp(X, -e[..., None, None]), axis=(-2, -1)), e)


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
    # C P C^H with P = R R^H, from B / 2^eb and C / 2^ec (exact; no overflow in the squares)
    scaled, eb, ec = io_scaled(sys)
    R, _, _, _, _ = factors_with_tails(scaled, backend)
    dyn = np.ldexp(np.linalg.norm(scaled.C @ R, axis=(-2, -1)), eb + ec)  # (...)
    out = dyn
    if sys.is_discrete:
        out = np.hypot(dyn, _fro(sys.D))
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
