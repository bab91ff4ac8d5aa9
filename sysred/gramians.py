"""Gramians, their square-root factors, and Hankel singular values.

Conventions (``^H`` = conjugate transpose):

* continuous time: ``A P + P A^H + B B^H = 0``,  ``A^H Q + Q A + C^H C = 0``;
* discrete time:   ``A P A^H - P + B B^H = 0``,  ``A^H Q A - Q + C^H C = 0``.

``P = R R^H`` and ``Q = S S^H``; the Hankel singular values (HSVs) are
``sigma_i = sqrt(eig_i(P Q)) = sv_i(S^H R)``, in descending order.

Which algorithm runs (the *path*):

* ``"diagonal"`` -- ``DiagonalStateSpace``: closed-form Cauchy-like Gramians, pivoted Cholesky
  from the generators (:func:`sysred.lyapunov.cauchy_factor`), vectorised over the batch, or
  a compiled loop per system when numba is installed (:mod:`sysred._cauchy_kernel`).
* ``"diagonal-lowrank"`` -- the same, pivoting stopped early (``rank_tol``): low-rank factors.
* ``"diagonal-extended"`` -- ``accuracy="high"``: the factors and the SVD of ``S^H R`` in
  extended precision, HSVs to high relative accuracy (:mod:`sysred.precise`).
* ``"diagonal-horizon"`` -- time-limited (finite-horizon) Gramians of discrete-time diagonal
  systems, formed explicitly and factored by pivoted Cholesky.
* ``"hammarling"`` -- dense systems (default): sysred's complex-Schur Hammarling solver, one
  batch entry at a time.
* ``"slycot"`` -- dense real systems with ``backend="slycot"``: SLICOT ``SB03OD``. About 2-3x
  faster. Its residual is checked: a relative residual above ``100 n eps`` (sysred's own solver
  leaves ~1e-16) gives a :class:`~sysred.BackendWarning` and sysred's factor instead. Like
  every backward-stable dense solver (sysred's and ``AB09AD``'s included) its HSVs are only as
  accurate as the Lyapunov equations are well conditioned: within ~1e-14 sigma_1 of the
  default path on well-conditioned systems, 3e-11 sigma_1 on the SLICOT ISS benchmark, and up
  to 1e-4 sigma_1 on the property check's worst random systems (eigenvector conditioning
  ~1e4, poles 1e-5 from the axis), where, against an mpmath reference, ``SB03OD`` was off by
  1.7e-4 sigma_1, ``AB09AD`` by 1.0e-4 and the default path by 5.2e-5. Not the default.
"""

from __future__ import annotations

import warnings

import numpy as np

from sysred._checks import require_stable, require_system
from sysred._parallel import map_batch
from sysred.errors import BackendWarning, OptionError, SysredError
from sysred.lyapunov import (
    cauchy_factor,
    factor_residual,
    geometric_sum,
    hammarling_factor,
    slycot_factor,
)
from sysred.precise import check_accuracy, precise_factors_and_svd
from sysred.systems import DiagonalStateSpace, StateSpace, _ldexp, _pow2_exponent

__all__ = ["gramian_factors", "gramians", "hankel_singular_values"]

_BACKENDS = ("auto", "numpy", "slycot")


def _dense_path(sys, backend):
    if backend not in _BACKENDS:
        raise OptionError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if sys.is_complex:
        if backend == "slycot":
            raise SysredError("slycot is real-only; use backend='numpy' or realify(sys) first")
        return "hammarling"
    if backend != "slycot":
        return "hammarling"
    try:
        import slycot  # noqa: F401
    except ImportError:
        raise SysredError("backend='slycot' needs slycot: pip install slycot") from None
    return "slycot"


def _pad_to(sv, n):
    """The first ``n`` singular values, zero-padded if there are fewer."""
    if sv.shape[-1] >= n:
        return sv[..., :n]
    return np.concatenate([sv, np.zeros(sv.shape[:-1] + (n - sv.shape[-1],))], axis=-1)


def _require_horizon_ok(sys, horizon):
    require_system(sys)
    if not sys.is_discrete:
        raise SysredError("a finite horizon (time-limited Gramians) needs a discrete-time system")
    if not isinstance(sys, DiagonalStateSpace):
        raise SysredError(
            "time-limited Gramians are implemented for diagonal systems: sysred.diagonalize first"
        )
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
        raise SysredError(f"horizon must be a positive integer, got {horizon!r}")


def gramian_factors(sys, backend="auto", horizon=None, rank_tol=None):
    """Square-root factors ``R, S`` of the Gramians, ``P = R R^H``, ``Q = S S^H``.

    Computed directly (never by factoring a computed Gramian), so that the HSVs keep their
    relative accuracy far below ``eps * sigma_1``.

    Parameters
    ----------
    sys : StateSpace or DiagonalStateSpace
        Asymptotically stable (unless ``horizon``), possibly batched.
    backend : {"auto", "numpy", "slycot"}
        For dense systems: sysred's own Hammarling solver (``"auto"`` and ``"numpy"``) or
        SLICOT ``SB03OD`` (``"slycot"``, real only; residual-checked, see the module
        docstring). Ignored for diagonal systems.
    horizon : int, optional
        Discrete-time diagonal systems only: the time-limited Gramians
        ``P_L = sum_{k<L} A^k B B^H A^{kH}``, ``Q_L = sum_{k<L} A^{kH} C^H C A^k``, which
        describe the impulse response samples ``h_1 .. h_L`` only (the kernel a DSS layer
        uses for sequences of length L). No stability needed. Path ``"diagonal-horizon"``.
    rank_tol : float, optional
        Diagonal systems only: low-rank factors, truncated once the dropped columns' Frobenius
        norm is ``<= rank_tol`` times the full factor's (pivoted Cholesky stopped early,
        O(n k) per system instead of O(n^2)). Path ``"diagonal-lowrank"``.

    Returns
    -------
    R, S : ndarray, shape (..., n, kR) and (..., n, kS)
        ``kR = kS = n`` unless ``rank_tol`` truncates, except for diagonal systems with
        ``m > 1`` inputs (``p > 1`` outputs) and no ``rank_tol``/``horizon``: then
        ``kR = n m`` (``kS = n p``), one rank-one Cauchy-like factor per column, which keeps
        the small HSVs' relative accuracy. Real for real systems.
    path : str
        ``"diagonal"``, ``"diagonal-horizon"``, ``"diagonal-lowrank"``, ``"hammarling"`` or
        ``"slycot"``.

    Raises
    ------
    UnstableSystemError
        Some batch entry is not asymptotically stable (and no ``horizon``).

    Examples
    --------
    >>> import numpy as np, sysred
    >>> G = sysred.DiagonalStateSpace([-1.0, -2.0], [[1.0], [1.0]], [[1.0, 1.0]])
    >>> R, S, path = sysred.gramian_factors(G)
    >>> P = R @ R.conj().T
    >>> bool(np.allclose(G.A @ P + P @ G.A.T + G.B @ G.B.T, 0)), path
    (True, 'diagonal')
    """
    scaled, eb, ec = io_scaled(require_system(sys))
    R, S, path, _, _ = factors_with_tails(scaled, backend, horizon, rank_tol)
    return _ldexp(R, eb[..., None, None]), _ldexp(S, ec[..., None, None]), path


def io_scaled(sys):
    """``sys`` with ``B / 2^eb`` and ``C / 2^ec`` (entries below one in modulus, per batch
    entry; ``eb - ec`` even), and ``eb, ec`` (arrays of the batch shape).

    Exact (powers of two), and what keeps the factors, the HSVs and the projection free of
    overflow and underflow for data of any finite magnitude (``B, C ~ 1e-300`` or ``1e300``):
    ``R = 2^eb R~``, ``S = 2^ec S~``, ``sigma = 2^(eb + ec) sigma~``, and balanced truncation's
    ``T = 2^((eb - ec)/2) T~``, ``W = 2^((ec - eb)/2) W~``, ``A_r = A_r~``,
    ``B_r = 2^((eb + ec)/2) B_r~``, ``C_r = 2^((eb + ec)/2) C_r~``.
    """
    eb = _pow2_exponent(sys.B, (-2, -1))  # (...)
    ec = _pow2_exponent(sys.C, (-2, -1))
    ec = ec + (eb - ec) % 2
    if not np.any(eb) and not np.any(ec):
        return sys, eb, ec
    B = _ldexp(sys.B, -eb[..., None, None])
    C = _ldexp(sys.C, -ec[..., None, None])
    if isinstance(sys, DiagonalStateSpace):
        return DiagonalStateSpace(sys.poles, B, C, sys.D, sys.dt), eb, ec
    return StateSpace(sys.A, B, C, sys.D, sys.dt), eb, ec


def factors_with_tails(
    sys, backend="auto", horizon=None, rank_tol=None, product=False, conj_S=False
):
    """:func:`gramian_factors` plus the dropped columns' Frobenius norms, shape (...).

    ``conj_S=True``: the second factor is returned conjugated, ``conj(S)`` (for a diagonal
    system computed as such: the factor of ``conj(Q)``, poles ``x``, generator ``C^T``, the
    same pivots), which is what ``S^H R`` in LAPACK's column order needs, without a pass
    conjugating ``S``.

    ``product=True`` (with ``rank_tol``, diagonal systems): factors for the product ``S^H R``
    only, as balanced truncation uses them. ``S`` is truncated as usual; ``R`` is truncated
    where its dropped columns change ``S^H R`` by at most ``rank_tol ||S||_F ||R||_F``
    (weighted pivoting, see :func:`sysred.lyapunov.cauchy_factor`), and the first tail
    returned is that bound on ``||S^H R_dropped||_F`` rather than ``||R_dropped||_F``. When
    ``Q`` has low numerical rank (smooth, decaying kernels) but ``P`` does not, ``R`` then
    keeps about as many columns as ``S`` instead of all n.
    """
    if horizon is not None:
        _require_horizon_ok(sys, horizon)
    else:
        require_stable(sys, "Gramian computation")
    if not isinstance(sys, DiagonalStateSpace):
        R, S, path = _dense_factors(sys, backend)
        zero = np.zeros(sys.batch_shape)
        return R, (S.conj() if conj_S and np.iscomplexobj(S) else S), path, zero, zero
    disc = sys.is_discrete
    # S from (conj(x), C^H); conj(S) from (x, C^T): every step of the factorisation conjugated
    x, CT = sys.poles, sys.C.swapaxes(-1, -2)
    xs, CH = (x, CT) if conj_S else (x.conj(), CT.conj())
    if product and rank_tol is not None:
        S, s_tail = cauchy_factor(xs, CH, disc, horizon, rank_tol, return_tail=True)
        weights = _row_norms2(S)  # (..., n)
        R, r_tail = cauchy_factor(x, sys.B, disc, horizon, rank_tol, True, weights)
    elif rank_tol is None and sys.m == sys.p:
        # one pivoting loop for both factors (the loop's Python overhead is the factors' cost);
        # not with rank_tol, where each factor must be allowed to stop at its own rank
        both, tails = cauchy_factor(
            np.stack([x, xs]), np.stack([sys.B, CH]), disc, horizon, return_tail=True
        )
        (R, S), (r_tail, s_tail) = both, tails
    else:
        R, r_tail = cauchy_factor(x, sys.B, disc, horizon, rank_tol, return_tail=True)
        S, s_tail = cauchy_factor(xs, CH, disc, horizon, rank_tol, return_tail=True)
    if not sys.is_complex:
        R, S = R.real, S.real
    if horizon is not None:
        path = "diagonal-horizon"
    else:
        path = "diagonal-lowrank" if rank_tol is not None else "diagonal"
    return R, S, path, r_tail, s_tail


def _row_norms2(F):
    """Squared row norms of complex ``F`` (..., n, k) in one pass (no temporaries) when ``F``
    is the transposed view of an array with contiguous rows, as the Cauchy factors are (also
    when truncated: a slice of the full (..., n, n) factor)."""
    Ft = F.swapaxes(-1, -2)
    if F.dtype == np.complex128 and Ft.ndim >= 2 and Ft.strides[-1] == Ft.itemsize:
        v = Ft.view(np.float64)  # (..., k, 2n): interleaved real and imaginary parts
        sq = np.einsum("...kj,...kj->...j", v, v)  # (..., 2n)
        return sq[..., 0::2] + sq[..., 1::2]
    return (F.real**2 + F.imag**2).sum(axis=-1)


def gramian_traces(sys, horizon=None):
    """``trace P`` and ``trace Q`` of a diagonal system (= the squared Frobenius norms of their
    square-root factors), in O(n): ``sum_i ||b_i||^2 w_i`` and ``sum_i ||c_i||^2 w_i`` with
    ``w_i = 1 / (-2 Re l_i)`` (ct), ``1 / (1 - |a_i|^2)`` (dt) or, for the time-limited
    Gramians, ``sum_{k<L} |a_i|^{2k}`` (``horizon=L``, no stability needed).
    """
    x = sys.poles
    if horizon is not None:
        w = geometric_sum(x.real**2 + x.imag**2, horizon).real  # (..., n)
    elif sys.is_discrete:
        w = 1.0 / (1.0 - (x.real**2 + x.imag**2))
    else:
        w = -0.5 / x.real
    b2 = (np.abs(sys.B) ** 2).sum(axis=-1)  # (..., n)
    c2 = (np.abs(sys.C) ** 2).sum(axis=-2)  # (..., n)
    return (b2 * w).sum(axis=-1), (c2 * w).sum(axis=-1)


#: ``backend="slycot"``: SB03OD factors whose relative residual exceeds ``SLYCOT_RESIDUAL * n``
#: are replaced by sysred's own (with a :class:`BackendWarning`). sysred's Hammarling solver
#: leaves ~1e-16 and less on the property check's systems.
SLYCOT_RESIDUAL = 100 * np.finfo(float).eps


def _checked_slycot(A, G, disc):
    """SB03OD's factor, or sysred's when SB03OD's residual is poor (with a warning)."""
    F = slycot_factor(A, G, disc)
    res = factor_residual(A, G, F, disc)
    if not res <= SLYCOT_RESIDUAL * max(A.shape[0], 1):
        warnings.warn(
            f"SLICOT SB03OD's Gramian factor has relative residual {res:.2g} (> "
            f"{SLYCOT_RESIDUAL * max(A.shape[0], 1):.2g}); using sysred's Hammarling solver "
            "instead (backend='numpy')",
            BackendWarning,
            stacklevel=5,
        )
        F = hammarling_factor(A, G, disc)
    return F


def _dense_factors(sys, backend):
    """Hammarling (or SLICOT) factors, one batch entry at a time."""
    path = _dense_path(sys, backend)
    solve = _checked_slycot if path == "slycot" else hammarling_factor
    disc = sys.is_discrete
    b = int(np.prod(sys.batch_shape, dtype=int))
    A = sys.A.reshape((b,) + sys.A.shape[-2:])
    B = sys.B.reshape((b,) + sys.B.shape[-2:])
    C = sys.C.reshape((b,) + sys.C.shape[-2:])
    shape = sys.batch_shape + (sys.n, sys.n)
    dtype = complex if sys.is_complex else float
    R, S = np.zeros((b, sys.n, sys.n), dtype), np.zeros((b, sys.n, sys.n), dtype)
    for k in range(b):
        R[k] = solve(A[k], B[k], disc)
        S[k] = solve(A[k].conj().T, C[k].conj().T, disc)
    return R.reshape(shape), S.reshape(shape), path


def gramians(sys, backend="auto"):
    """Controllability and observability Gramians ``P, Q`` (see the module conventions).

    For diagonal systems the closed forms are used entrywise:
    ``P_ij = -b_i b_j^H / (l_i + conj(l_j))``, ``Q_ij = -c_i^H c_j / (conj(l_i) + l_j)`` (ct),
    ``P_ij = b_i b_j^H / (1 - a_i conj(a_j))``, ``Q_ij = c_i^H c_j / (1 - conj(a_i) a_j)`` (dt),
    with ``b_i`` the rows of ``B`` and ``c_j`` the columns of ``C``.

    Returns
    -------
    P, Q : ndarray, shape (..., n, n)
    """
    if isinstance(sys, DiagonalStateSpace):
        require_stable(sys, "Gramian computation")
        x = sys.poles
        xi, xjc = x[..., :, None], x[..., None, :].conj()
        den = (1.0 - xi * xjc) if sys.is_discrete else -(xi + xjc)  # (..., n, n)
        BBh = sys.B @ sys.B.conj().swapaxes(-1, -2)  # (..., n, n)
        ChC = sys.C.conj().swapaxes(-1, -2) @ sys.C  # (..., n, n)
        P, Q = BBh / den, ChC / den.conj()
        if not sys.is_complex:
            P, Q = P.real, Q.real
        return P, Q
    R, S, _ = gramian_factors(sys, backend)
    return R @ R.conj().swapaxes(-1, -2), S @ S.conj().swapaxes(-1, -2)


def hankel_singular_values(sys, backend="auto", horizon=None, accuracy="standard"):
    """Hankel singular values ``sigma_1 >= ... >= sigma_n >= 0``, shape (..., n).

    ``sigma = sv(S^H R)`` from the directly computed square-root factors; see
    :func:`gramian_factors`. A complex system's HSVs are those of its realification
    (:func:`sysred.realify`), each appearing once here and twice there.

    Parameters
    ----------
    sys : StateSpace or DiagonalStateSpace
    backend : {"auto", "numpy", "slycot"}
        Dense systems' Lyapunov solver, see :func:`gramian_factors`.
    horizon : int, optional
        Time-limited HSVs (discrete-time diagonal systems), see :func:`gramian_factors`.
    accuracy : {"standard", "high"}
        ``"standard"``: LAPACK's SVD of ``S^H R`` in double precision; measured on the
        diagonal path, HSVs down to ``1e-12 sigma_1`` within ~1e-11 relative and down to
        ``1e-30 sigma_1`` within ~1e-8. ``"high"`` (SISO diagonal systems): extended
        precision factors and a QR-preconditioned one-sided Jacobi SVD
        (:mod:`sysred.precise`), every HSV down to ``1e-30 sigma_1`` within ~1e-13
        relative; 10-100x slower.

    Examples
    --------
    >>> import sysred
    >>> G = sysred.StateSpace([[-1.0]], [[1.0]], [[1.0]])  # 1/(s+1): sigma = 1/2
    >>> sysred.hankel_singular_values(G).round(12).tolist()
    [0.5]
    """

    require_system(sys)
    if check_accuracy(accuracy, sys, horizon):
        require_stable(sys, "Hankel singular values")
        scaled, eb, ec = io_scaled(sys)
        out = map_batch(lambda ch: (precise_factors_and_svd(ch, vectors=False)[3],), scaled)[0]
        return np.ldexp(out, (eb + ec)[..., None])
    if horizon is not None:
        _require_horizon_ok(sys, horizon)
    else:
        require_stable(sys, "Hankel singular values")
    scaled, eb, ec = io_scaled(sys)

    def hsv(chunk):
        R, S, _, _, _ = factors_with_tails(chunk, backend, horizon)
        if R.shape[-1] == 0:
            return (np.zeros(R.shape[:-2] + (R.shape[-2],)),)
        sv = np.linalg.svd(S.conj().swapaxes(-1, -2) @ R, compute_uv=False)
        return (_pad_to(sv, chunk.n),)  # n m columns (MIMO diagonal): the rest are zeros

    return np.ldexp(map_batch(hsv, scaled)[0], (eb + ec)[..., None])
