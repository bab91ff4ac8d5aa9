"""Reductors: algorithms that produce a reduced system and report how good it is."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from sysred import _svd_kernel
from sysred._checks import require_stable, require_system
from sysred._compensated import dot2, matmul2
from sysred._parallel import join_chunks, one_blas_thread, run_chunks, split_batch
from sysred.errors import (
    HSVTieError,
    HSVTieWarning,
    OptionError,
    OrderError,
    RankDeficientWarning,
    ShapeError,
    SysredError,
)
from sysred.gramians import factors_with_tails, gramian_traces, io_scaled
from sysred.precise import check_accuracy, precise_factors_and_svd
from sysred.spa import perturb_balanced
from sysred.systems import COND_MAX, DiagonalStateSpace, StateSpace, _ldexp, diagonalize

__all__ = [
    "BTReductor",
    "BTResult",
    "ModalResult",
    "balanced_truncation",
    "modal_truncation",
    "tail_bound",
    "tail_bounds",
]

#: Two consecutive HSVs closer than ``TIE_RTOL * sigma_i`` count as equal.
TIE_RTOL = 1e-9


def _noise_floor(hsv):
    """HSVs below ``n * eps * sigma_1`` are rounding noise of the square-root method."""
    n = hsv.shape[-1]
    return 10 * n * np.finfo(float).eps * hsv[..., :1]  # (..., 1)


def _tied(hsv):
    """``tied[..., i]`` is True when sigma_i and sigma_{i+1} are numerically equal, (..., n-1)."""
    upper, lower = hsv[..., :-1], hsv[..., 1:]
    close = upper - lower <= TIE_RTOL * upper
    return close | (upper <= _noise_floor(hsv))


def _distinct(hsv):
    """``hsv`` with every value that equals its predecessor (a repeated HSV) set to 0."""
    out = np.array(hsv, dtype=float, copy=True)
    out[..., 1:] = np.where(_tied(hsv), 0.0, out[..., 1:])
    return out


def tail_bounds(hsv):
    """The a-priori BT error bound for every order at once, shape (..., n + 1).

    ``bounds[..., r] = 2 * sum of the distinct sigma_i, i > r`` for ``r = 0 .. n``
    (``bounds[..., n] = 0``), see :func:`tail_bound`. One reverse cumulative sum: O(n).

    Examples
    --------
    >>> import sysred
    >>> sysred.tail_bounds([4.0, 2.0, 1.0]).tolist()
    [14.0, 6.0, 2.0, 0.0]
    """
    hsv = np.asarray(hsv, dtype=float)
    if hsv.ndim == 0:
        raise OrderError("tail_bounds needs an array of Hankel singular values, got a scalar")
    kept = _distinct(hsv)  # (..., n)
    tails = np.cumsum(kept[..., ::-1], axis=-1)[..., ::-1]  # (..., n): sum_{i >= r}
    return 2.0 * np.concatenate([tails, np.zeros(hsv.shape[:-1] + (1,))], axis=-1)


def tail_bound(hsv, order):
    """A-priori BT error bound ``2 * sum of the distinct sigma_i, i > order``, shape (...).

    Numerically equal HSVs (relative gap below ``TIE_RTOL``, or all below the noise floor
    ``10 n eps sigma_1``) are counted once, as the theory allows: each *distinct* value enters
    the bound once whatever its multiplicity (e.g. the doubled HSVs of a realified complex
    system).

    Parameters
    ----------
    hsv : array_like, shape (..., n)
        Hankel singular values, descending.
    order : int
        ``0 <= order <= n``.

    Raises
    ------
    OrderError
        ``order`` not an integer in ``[0, n]``.
    """
    hsv = np.asarray(hsv, dtype=float)
    if hsv.ndim == 0:
        raise OrderError("tail_bound needs an array of Hankel singular values, got a scalar")
    n = hsv.shape[-1]
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or not 0 <= order <= n:
        raise OrderError(f"order must be an integer between 0 and n = {n}, got {order!r}")
    return tail_bounds(hsv)[..., int(order)]


@dataclass
class BTResult:
    """What :func:`balanced_truncation` returns.

    Attributes
    ----------
    system : StateSpace
        The reduced system(s), same batch shape and time domain as the input.
    hsv : ndarray, shape (..., n)
        Hankel singular values of the original system(s), descending.
    bound : ndarray, shape (...)
        ``2 * sum of the distinct HSVs beyond order`` (plus ``2 (n - r) hsv_error`` with
        ``rank_tol``): ``sigma_{r+1} <= ||G - G_r||_inf <= bound`` (ct and dt alike).
    order : int
        The reduced order r, the same for the whole batch.
    method : str
        ``"sqrt"`` or ``"bfsr"``.
    path : str
        Which Gramian-factor algorithm ran (see :mod:`sysred.gramians`).
    T, W : ndarray, shape (..., n, r)
        The projection: ``A_r = W^H A T``, ``B_r = W^H B``, ``C_r = C T``, ``W^H T = I``.
    horizon : int or None
        Time-limited BT: the horizon L. Then ``hsv`` are the time-limited HSVs, ``bound`` is
        NaN (no a-priori bound exists) and ``error`` holds the measured error.
    error : ndarray, shape (...), or None
        Time-limited BT only: ``||h - h_r||_2`` over the impulse response samples
        ``h_0 .. h_L`` (Frobenius norm over samples, outputs and inputs).
    hsv_error : ndarray, shape (...)
        With ``rank_tol``: how far (absolutely) the HSVs may be from the full factors' ones;
        zero otherwise. Padded (not computed) HSVs are reported as 0.
    """

    system: StateSpace
    hsv: np.ndarray
    bound: np.ndarray
    order: int
    method: str
    path: str
    T: np.ndarray
    W: np.ndarray
    horizon: int | None = None
    error: np.ndarray | None = None
    hsv_error: np.ndarray | float = 0.0


def _order_from_tol(hsv, tol):
    """Smallest r (same for the batch, never splitting a tie) with bound(r) <= tol everywhere."""
    n = hsv.shape[-1]
    if n == 0 or not np.any(hsv):  # no states, inputs or outputs: G is its feed-through
        return 0
    flat = hsv.reshape(-1, n)
    rank = int(np.max(np.sum(flat > _noise_floor(flat), axis=-1)))
    tied = _tied(flat) & (flat[:, :-1] > _noise_floor(flat))  # (batch, n-1)
    for r in range(0, n + 1):
        if 0 < r < n and np.any(tied[:, r - 1]):
            continue
        if r >= rank or np.all(tail_bound(flat, r) <= tol):
            return max(min(r, rank), 1)
    return max(rank, 1)


def _refuse_or_warn(msg, strict, error, warning):
    if strict:
        raise error(msg)
    warnings.warn(msg, warning, stacklevel=4)  # reported at balanced_truncation


def _check_order(hsv, order, strict):
    n = hsv.shape[-1]
    if isinstance(order, bool) or not isinstance(order, int | np.integer):
        raise OrderError(f"order must be an integer, got {order!r}")
    order = int(order)
    if order == 0 and not np.any(hsv):  # no states, inputs or outputs: G is D
        return 0
    if not 1 <= order <= n:
        lowest = 0 if not np.any(hsv) else 1
        raise OrderError(f"order must be between {lowest} and n = {n}, got {order}")
    floor = _noise_floor(hsv)[..., 0]
    kept = hsv[..., order - 1]
    if np.any(kept <= floor):
        rank = int(np.min(np.sum(hsv > floor[..., None], axis=-1)))
        msg = (
            f"order {order} keeps Hankel singular values at rounding level "
            f"(<= 10 n eps sigma_1) in some batch entry: the reduced model would be "
            f"numerically non-minimal and its balancing ill-defined. The smallest numerical "
            f"rank in the batch is {rank}; use order <= {rank} or tol=..."
        )
        _refuse_or_warn(msg, strict, OrderError, RankDeficientWarning)
    if order < n:
        tie = _tied(hsv)[..., order - 1] & (kept > floor)
        if np.any(tie):
            i = np.argwhere(np.atleast_1d(tie))[0].tolist()
            where = f" (e.g. batch entry {i})" if hsv.ndim > 1 else ""
            msg = (
                f"order {order} splits a group of numerically equal Hankel singular values"
                f"{where}: sigma_{order} ~= sigma_{order + 1}. Balanced truncation then has no "
                f"unique answer and the reduced model may lose asymptotic stability and the "
                f"error bound; pick an order at a gap (e.g. {order - 1} or {order + 1})."
            )
            _refuse_or_warn(msg, strict, HSVTieError, HSVTieWarning)
    return order


def _ct(X):
    return X.conj().swapaxes(-1, -2)


def _pad_last(X, size):
    """Zero-pad the last axis of ``X`` to ``size`` (no copy when it has that size)."""
    if X.shape[-1] == size:
        return X
    out = np.zeros(X.shape[:-1] + (size,), dtype=X.dtype)
    out[..., : X.shape[-1]] = X
    return out


@dataclass
class _Factored:
    """One chunk's Gramian factors and the SVD ``S^H R = U diag(s) Vh`` (unpadded).

    Either ``U, Vh`` (numpy's full SVD) or ``leading`` (the compiled bidiagonal SVD, which
    back-transforms only the leading vectors once the order is known) is set.
    """

    R: np.ndarray  # (b, n, kR), of the io-scaled system (B / 2^eb): see _factors_and_svd
    Sc: np.ndarray  # (b, n, kS), conj(S), of C / 2^ec (conjugated: S^H R needs no pass)
    U: np.ndarray | None  # (b, kS, k), k = min(kS, kR)
    s: np.ndarray  # (b, k)
    Vh: np.ndarray | None  # (b, k, kR)
    path: str
    delta: np.ndarray  # (b,)
    scaled: object  # the io-scaled chunk the factors belong to (sysred.gramians.io_scaled)
    eb: np.ndarray  # (b,) the io scaling's exponents
    ec: np.ndarray  # (b,)
    leading: _svd_kernel.BidiagonalSVD | None = None

    def scaled_s(self):
        """The singular values of ``S^H R`` for the io-scaled factors, ``s / 2^(eb + ec)``."""
        return _ldexp(self.s, -(self.eb + self.ec)[..., None])

    def vectors(self, order):
        """``U_r`` (b, kS, r), ``V_r`` (b, kR, r), zero-padded beyond the rank."""
        if self.leading is not None:
            U, V = self.leading.leading(order)
        else:
            U, V = self.U[..., :, :order], _ct(self.Vh[..., :order, :])
        return _pad_last(U, order), _pad_last(V, order)


def _svd(R, Sc):
    """All singular values of ``S^H R`` (``Sc = conj(S)``); vectors now (numpy) or on demand
    (compiled kernel).

    The compiled path (complex factors, numba available) gets ``(S^H R)^T = R^T conj(S)`` in
    C order, which is ``S^H R`` in the Fortran order LAPACK wants: no transposing copy.
    """
    if min(R.shape[-1], Sc.shape[-1], R.shape[-2]) == 0:  # no states (or empty factors)
        k = min(R.shape[-1], Sc.shape[-1])
        dtype = np.result_type(R, Sc)
        empty = np.zeros(R.shape[:-2] + (Sc.shape[-1], k), dtype)
        return (
            empty,
            np.zeros(R.shape[:-2] + (k,)),
            _ct(np.zeros(R.shape[:-2] + (R.shape[-1], k), dtype)),
            None,
        )
    if np.iscomplexobj(R) and np.iscomplexobj(Sc) and R.ndim == 3 and _svd_kernel.available():
        bsvd = _svd_kernel.bidiagonal_svd(MT=R.swapaxes(-1, -2) @ Sc)
        return None, bsvd.s, None, bsvd
    U, s, Vh = np.linalg.svd(Sc.swapaxes(-1, -2) @ R, full_matrices=False)  # S^H R
    return U, s, Vh, None


def _factors_and_svd(sys, backend, horizon, rank_tol, high=False):
    """Gramian factors and the SVD of ``S^H R`` for a chunk of a batch.

    Also returns ``delta``, a bound on how far the HSVs may be from those of the full
    factors when ``rank_tol`` truncated them: with ``R = [R_k, R_t]``, ``S = [S_k, S_t]``,
    ``S^H R - S_k^H R_k = S_t^H R + S_k^H R_t``, so
    ``||S^H R - S_k^H R_k||_2 <= |S_t| |R| + |S_k^H R_t|`` (Frobenius norms; the last term is
    bounded by the weighted truncation of ``R``), and each HSV moves at most that much (Weyl).
    Only diagonal systems truncate; dense factors are always full.

    Everything is computed for ``B / 2^eb``, ``C / 2^ec`` (:func:`sysred.gramians.io_scaled`:
    exact, no overflow or underflow inside for data of any magnitude). The HSVs are scaled back,
    ``sigma = 2^(eb + ec) sigma~``; the factors stay scaled (``R = 2^eb R~``, ``S = 2^ec S~``)
    and :func:`_project` scales its ``n x r`` results instead; the singular vectors are the same.
    """
    scaled, eb, ec = io_scaled(sys)
    leading = None
    if high:
        R, S, U, hsv, Vh = precise_factors_and_svd(scaled)
        Sc = S.conj()
        path, delta = "diagonal-extended", np.zeros(sys.batch_shape)
    else:
        diagonal = isinstance(sys, DiagonalStateSpace)
        R, Sc, path, r_tail, s_tail = factors_with_tails(
            scaled, backend, horizon, rank_tol, diagonal, conj_S=True
        )
        U, hsv, Vh, leading = _svd(R, Sc)
        hsv = hsv[..., : sys.n]  # MIMO diagonal factors have n m columns: the rest are zeros
        delta = np.zeros(sys.batch_shape)
        if rank_tol is not None and diagonal:  # dense factors are never truncated: tails are 0
            # ||R||_F = sqrt(trace P) in O(n); r_tail bounds ||S_k^H R_dropped||_F (weighted
            # truncation of R, see factors_with_tails)
            rn = np.sqrt(gramian_traces(scaled, horizon)[0])
            delta = s_tail * rn + r_tail
    up = eb + ec  # (...)
    hsv, delta = _ldexp(hsv, up[..., None]), _ldexp(delta, up)
    return _Factored(R, Sc, U, hsv, Vh, path, delta, scaled, eb, ec, leading)


def _biorthogonal(T, Wh):
    """``(W (T^H W)^{-1})^H = M^{-1} W^H`` with ``M = W^H T``, so that the new ``W^H T = I`` to
    rounding. Takes and returns ``W^H`` (the projection only ever needs ``W^H``).

    In exact arithmetic ``W^H T = Sigma^{-1/2} U^H S^H R V Sigma^{-1/2} = I`` already. In
    floating point the SVD's rounding errors, magnified by ``Sigma^{-1/2}``, leave
    ``W^H T = I + E`` with ``||E|| ~ eps sigma_1 / sigma_r``, and ``W^H A T`` is then not a
    projection of ``A``: this was where dense BT lost digits against SLICOT ``AB09AD`` (on the
    property check's random systems where sysred was above both the bound and 2x
    ``AB09AD``'s error, the correction cut the error 2-500x, e.g. at r = n, where the bound is
    0, from 36 eps ||G|| to below 1 eps ||G||). With the correction the reduced model is the
    oblique projection onto ``span(T)`` along ``span(W)``'s complement, which depends only on
    the (accurately computed) dominant singular subspaces, and stays balanced to first order.
    Batch entries where ``W^H T`` is far from ``I`` (zero-padded triplets of low-rank
    factors) are left alone.
    """
    M = Wh @ T  # (..., r, r)
    eye = np.eye(M.shape[-1])
    ok = np.linalg.norm(M - eye, axis=(-2, -1)) < 0.5  # (...)
    M = np.where(ok[..., None, None], M, eye)
    # a solve, not W @ inv(M)^H (5 ms faster per 256 channels of order 64): the 5,000-system
    # property check (tests/test_sysred_property_check.py) was validated with the solve
    return np.linalg.solve(M, Wh)  # (..., r, n)


def _project(f, order, method):
    """The projection ``T, W`` (n, r) and the reduced matrices of one chunk (factored in ``f``).

    Computed for the io-scaled system (``B~ = B / 2^eb``, ``C~ = C / 2^ec``, kept with its
    factors in ``f``), then scaled back exactly (:func:`sysred.gramians.io_scaled`):
    ``T = 2^((eb - ec)/2) T~``, ``W = 2^((ec - eb)/2) W~``, ``A_r = A_r~``,
    ``B_r = 2^((eb + ec)/2) B_r~``, ``C_r = 2^((eb + ec)/2) C_r~``.
    """
    T, W, Ar, Br, Cr = _project_scaled(f.scaled, f, order, method)
    half = (f.eb - f.ec) // 2  # (b,), exact: eb - ec is even
    mid = (f.eb + f.ec) // 2
    return (
        _ldexp(T, half[..., None, None]),
        _ldexp(W, -half[..., None, None]),
        Ar,
        _ldexp(Br, mid[..., None, None]),
        _ldexp(Cr, mid[..., None, None]),
    )


def _project_scaled(sys, f, order, method):
    """:func:`_project` for the io-scaled system."""
    # low-rank factors of lower rank than the order give zero singular triplets (padding)
    Ur, Vr = f.vectors(order)  # (..., kS, r), (..., kR, r)
    s = _pad_last(f.scaled_s()[..., :order], order)
    if method == "sqrt":
        scale = 1.0 / np.sqrt(np.maximum(s[..., None, :order], np.finfo(float).tiny))
        T = f.R @ (Vr * scale)  # (..., n, r); scaling the small factor saves a pass over T
        # W = S U_r s^-1/2, so W^H = s^-1/2 U_r^H S^H = (Sc conj(U_r) s^-1/2)^T: W^H needs
        # no conjugating pass over an n x r array (Sc = conj(S) is stored)
        Wh = _biorthogonal(T, (f.Sc @ (Ur.conj() * scale)).swapaxes(-1, -2))  # (..., r, n)
        W = _ct(Wh)  # (..., n, r)
    else:
        T = np.linalg.qr(f.R @ Vr)[0]  # (..., n, r)
        Y = np.linalg.qr((f.Sc @ Ur.conj()).conj())[0]  # (..., n, r)
        W = Y @ _ct(np.linalg.inv(_ct(Y) @ T))  # W^H = (Y^H T)^{-1} Y^H
        Wh = _ct(W)
    if isinstance(sys, DiagonalStateSpace):
        AT = sys.poles[..., :, None] * T  # (..., n, r): one product per entry, no cancellation
        return T, W, Wh @ AT, Wh @ sys.B, sys.C @ T
    # dense A: the products cancel when A is far from normal (entries much larger than its
    # small eigenvalues); formed in twice the working precision (sysred._compensated)
    AT, AT_lo = dot2(sys.A, T)  # (..., n, r) each
    Ar, Ar_lo = dot2(Wh, AT)  # (..., r, r) each
    Ar = Ar + (Ar_lo + Wh @ AT_lo)
    return T, W, Ar, matmul2(Wh, sys.B), matmul2(sys.C, T)


class BTReductor:
    """Square-root balanced truncation, split in two: Gramian factors once, then any order.

    Constructing the reductor does the expensive part, O(b n^3) for a batch of ``b`` systems of
    order ``n``: the square-root Gramian factors ``P = R R^H``, ``Q = S S^H`` and the SVD
    ``S^H R = U Sigma V^H`` (see :func:`balanced_truncation` for the algorithms). After that,
    :attr:`hsv` and :meth:`error_bounds` (every order at once) are free, and :meth:`reduce` costs
    only the projection, O(b n^2 r). This is what choosing orders from the HSVs needs
    (order selection by tolerance, budgets shared between systems, reducing one model to
    several orders): no recomputation per order. The design follows pyMOR's ``BTReductor``.

    Parameters
    ----------
    sys : StateSpace or DiagonalStateSpace
        Asymptotically stable (unless ``horizon``), possibly batched.
    backend, horizon, workers, rank_tol, accuracy
        As in :func:`balanced_truncation`.

    Attributes
    ----------
    fom : StateSpace or DiagonalStateSpace
        The full-order system(s).
    hsv : ndarray, shape (..., n)
        Hankel singular values, descending (zero-padded beyond a low-rank factor's rank).
    hsv_error : ndarray, shape (...)
        With ``rank_tol``: how far (absolutely) the HSVs may be from the full factors' ones.
    path : str
        The Gramian-factor algorithm that ran (see :mod:`sysred.gramians`).

    Raises
    ------
    UnstableSystemError
        Unstable or marginally stable input (and no ``horizon``).

    Examples
    --------
    >>> import numpy as np, sysred
    >>> d = np.array([1.0, 2.0, 5.0, 10.0])
    >>> G = sysred.DiagonalStateSpace(-d, np.ones((4, 1)), np.ones((1, 4)))
    >>> red = sysred.BTReductor(G)
    >>> bool(np.all(np.diff(red.error_bounds()) <= 0))  # bound(r) for r = 0..n, decreasing
    True
    >>> [red.reduce(r).system.n for r in (1, 2, 3)]  # no recomputation per order
    [1, 2, 3]
    """

    def __init__(
        self, sys, backend="auto", horizon=None, workers=None, rank_tol=None, accuracy="standard"
    ):
        if rank_tol is not None and not (
            isinstance(rank_tol, float | int)
            and not isinstance(rank_tol, bool)
            and 0 <= rank_tol < 1
        ):
            raise OrderError(f"rank_tol must be a number in [0, 1), got {rank_tol!r}")
        require_system(sys)
        if horizon is None:
            require_stable(sys, "balanced truncation")
        high = check_accuracy(accuracy, sys, horizon, rank_tol)
        self.fom, self.horizon = sys, horizon
        with one_blas_thread():  # small batched matrices: BLAS threads only oversubscribe
            self._chunks = split_batch(sys, workers)
            self._parts = run_chunks(
                lambda ch: _factors_and_svd(ch, backend, horizon, rank_tol, high), self._chunks
            )
        hsv, delta = join_chunks(
            [(_pad_last(f.s, sys.n), f.delta) for f in self._parts], sys.batch_shape
        )
        self.hsv, self.hsv_error, self.path = hsv, delta, self._parts[0].path

    def error_bounds(self):
        """A-priori bound on ``||G - G_r||_inf`` for every order ``r = 0 .. n``, (..., n + 1).

        ``2 * sum of the distinct sigma_i, i > r`` (plus ``2 (n - r) hsv_error`` with
        ``rank_tol``); NaN for time-limited BT (``horizon``), which has no a-priori bound.
        """
        n = self.fom.n
        if self.horizon is not None:
            return np.full(self.fom.batch_shape + (n + 1,), np.nan)
        slack = 2.0 * np.arange(n, -1, -1) * np.asarray(self.hsv_error)[..., None]  # (..., n+1)
        return tail_bounds(self.hsv) + slack

    def order_for(self, tol):
        """Smallest order (common to the batch) whose bound is ``<= tol`` in every entry.

        Never splits a group of equal HSVs and never exceeds the numerical rank.

        Raises
        ------
        OrderError
            ``tol`` not a non-negative number, or time-limited BT (no a-priori bound).
        """
        if self.horizon is not None:
            raise OrderError("time-limited BT has no a-priori bound: give order, not tol")
        if isinstance(tol, bool) or not isinstance(tol, int | float | np.floating | np.integer):
            raise OrderError(f"tol must be a non-negative number, got {tol!r}")
        if not tol >= 0:
            raise OrderError(f"tol must be a non-negative number, got {tol!r}")
        n = self.fom.n
        return _order_from_tol(self.hsv, float(tol) - 2 * n * np.max(self.hsv_error))

    def reduce(self, order=None, tol=None, method="sqrt", strict=True):
        """The reduced system at ``order`` (or the smallest order meeting ``tol``).

        Parameters
        ----------
        order : int, optional
            ``1 <= order <= n``, common to the batch.
        tol : float, optional
            Instead of ``order``: see :meth:`order_for`.
        method : {"sqrt", "bfsr", "spa"}
            Projection, see :func:`balanced_truncation`; or ``"spa"``: balanced singular
            perturbation approximation from the same factors (:mod:`sysred.spa`: matches the
            steady-state gain, same bound, ``D_r != D``; not with ``horizon``).
        strict : bool
            Refuse (True) or warn about (False) a degenerate order, see
            :func:`balanced_truncation`.

        Returns
        -------
        BTResult
            At ``order = n`` nothing is truncated and the result is the input system itself
            (as a dense :class:`StateSpace`, ``T = W = I``, error exactly 0 = the bound), not
            a balanced realisation of it: any change of basis perturbs the matrices by a few
            ulps, and next to a lightly damped pole that moves the transfer function by far
            more than ``n eps ||G||`` (measured: up to ``2e-9 ||G||`` for ``n = 1``). SLICOT
            ``AB09AD``'s balancing-free variant does the same. For the balanced realisation
            use :meth:`balanced_realization`.
        """
        if (order is None) == (tol is None):
            raise OrderError("give exactly one of order (an integer) or tol (an error bound)")
        if method == "spa":
            return self._singular_perturbation(order, tol, strict)
        _check_method(method)
        if tol is not None:
            order = self.order_for(tol)
        order = _check_order(self.hsv, order, strict)
        return self._truncate(order, method, whole=order == self.fom.n)

    def balanced_realization(self, method="sqrt", strict=True):
        """The square-root BT projection at the full order ``n``: a balanced realisation.

        What :meth:`reduce` computed at ``order = n`` before it returned the system itself:
        ``T = R V Sigma^{-1/2}``, ``W = S U Sigma^{-1/2}`` (``W^H T = I``), both Gramians of the
        result equal ``diag(hsv)`` (``method="sqrt"``). The transfer function equals ``G``'s
        up to the rounding sensitivity of the change of basis (not to ``n eps ||G||``).

        Raises
        ------
        OrderError
            Some HSV at rounding level (with ``strict``): the system is numerically
            non-minimal and has no well-defined balanced realisation.
        """
        _check_method(method)
        n = self.fom.n
        order = _check_order(self.hsv, n, strict) if n else 0
        return self._truncate(order, method, whole=False)

    def _truncate(self, order, method, whole):
        """The BTResult at ``order`` (checked); ``whole``: the system itself, T = W = I."""
        sys, batch = self.fom, self.fom.batch_shape
        if whole:
            dense = sys.to_dense()
            T = np.broadcast_to(np.eye(sys.n, dtype=dense.A.dtype), batch + (sys.n,) * 2).copy()
            W = T.copy()
            Ar, Br, Cr = (np.array(X, copy=True) for X in (dense.A, dense.B, dense.C))
        elif order == 0:  # every HSV is zero: the reduced model is the feed-through D
            dtype = complex if sys.is_complex else float
            T = W = np.zeros(batch + (sys.n, 0), dtype)
            Ar, Br, Cr = (
                np.zeros(batch + shape, dtype) for shape in ((0, 0), (0, sys.m), (sys.p, 0))
            )
        else:
            with one_blas_thread():
                projected = run_chunks(lambda f: _project(f, order, method), self._parts)
            T, W, Ar, Br, Cr = join_chunks(projected, batch)
        reduced = StateSpace(Ar, Br, Cr, sys.D, sys.dt)
        delta = self.hsv_error
        if self.horizon is not None:
            nan = np.full(batch, np.nan)
            err = impulse_error(sys, reduced, self.horizon + 1)
            return BTResult(
                reduced, self.hsv, nan, order, method, self.path, T, W, self.horizon, err, delta
            )
        bound = self.error_bounds()[..., order]
        return BTResult(reduced, self.hsv, bound, order, method, self.path, T, W, hsv_error=delta)

    def _singular_perturbation(self, order, tol, strict):
        """``reduce(method="spa")``: balanced realisation to the minimal order, then SPA."""
        if self.horizon is not None:
            raise SysredError(
                "method='spa' needs the infinite-horizon balanced realisation; time-limited BT "
                "(horizon=...) has none: use method='sqrt' or a reductor without horizon"
            )
        if tol is not None:
            order = self.order_for(tol)
        order = _check_order(self.hsv, order, strict)
        sys, batch = self.fom, self.fom.batch_shape

        def chunk(ch, f):
            # numerical minimal order of each entry (at least r: strict=False may keep noise)
            s = _pad_last(f.s, ch.n)  # (b, n), the HSVs as _check_order sees them
            minimal = np.maximum(np.sum(s > _noise_floor(s), axis=-1), order)  # (b,)
            k = int(np.max(minimal))
            T, W, A, B, C = _project(f, k, "sqrt")
            Ar, Br, Cr, Dr = perturb_balanced(A, B, C, ch.D, order, minimal, ch.is_discrete)
            return T[..., :order], W[..., :order], Ar, Br, Cr, Dr

        with one_blas_thread():
            parts = run_chunks(chunk, self._chunks, self._parts)
        T, W, Ar, Br, Cr, Dr = join_chunks(parts, batch)
        reduced = StateSpace(Ar, Br, Cr, Dr, sys.dt)
        bound = self.error_bounds()[..., order]
        return BTResult(
            reduced, self.hsv, bound, order, "spa", self.path, T, W, hsv_error=self.hsv_error
        )

    def admissible_orders(self):
        """Which orders ``r = 0 .. n`` :meth:`reduce` accepts with ``strict=True``, (n + 1,).

        ``r`` is admissible when ``1 <= r <= n`` and, in every batch entry, ``sigma_r`` is above
        the rounding level (``10 n eps sigma_1``) and not numerically equal to ``sigma_{r+1}``
        (see :func:`balanced_truncation`). For choosing orders from :meth:`error_bounds`
        without trial and error.
        """
        n = self.fom.n
        if n == 0:  # no states: order 0 (the system itself) is the only one
            return np.array([True])
        flat = self.hsv.reshape(-1, n)  # (b, n)
        ok = np.all(flat > _noise_floor(flat), axis=0)  # (n,): sigma_r kept above noise
        ok[:-1] &= ~np.any(_tied(flat) & (flat[:, :-1] > _noise_floor(flat)), axis=0)
        return np.concatenate([[False], ok])


def _check_method(method):
    if not isinstance(method, str) or method not in ("sqrt", "bfsr"):
        raise OptionError(f"method must be 'sqrt' or 'bfsr', got {method!r}")


def balanced_truncation(
    sys,
    order=None,
    tol=None,
    method="sqrt",
    strict=True,
    backend="auto",
    horizon=None,
    workers=None,
    rank_tol=None,
    accuracy="standard",
):
    """Square-root balanced truncation (Laub/Tombs-Laub; Varga's balancing-free variant).

    With ``P = R R^H``, ``Q = S S^H`` (:func:`sysred.gramian_factors`) and the SVD
    ``S^H R = U Sigma V^H``:

    * ``method="sqrt"``: ``T = R V_r Sigma_r^{-1/2}``, ``W = S U_r Sigma_r^{-1/2}``; the reduced
      system is balanced (both Gramians ``= Sigma_r``). ``W`` is then replaced by
      ``W (T^H W)^{-1}``, so that ``W^H T = I`` holds to rounding and not only to
      ``eps sigma_1 / sigma_r``: the reduced model is then an oblique projection of ``G`` to
      rounding (without it, dense BT was less accurate than SLICOT ``AB09AD``'s, and above
      the bound at ``r = n``, where the bound is 0).
    * ``method="bfsr"``: ``X = orth(R V_r)``, ``Y = orth(S U_r)``, ``T = X``,
      ``W = Y (X^H Y)^{-1}``; the same transfer function, better conditioned projection when
      ``Sigma_r`` spans many decades, not balanced.

    Then ``A_r = W^H A T``, ``B_r = W^H B``, ``C_r = C T``, ``D_r = D``; for dense ``A`` these
    products are formed in twice the working precision (:mod:`sysred._compensated`): when
    ``A`` is far from normal they cancel, and in double precision they moved small, lightly
    damped reduced poles enough to put the error 2-40x above the bound and SLICOT ``AB09AD``'s.
    At ``order = n`` nothing is truncated and the result is ``sys`` itself (``T = W = I``,
    error 0); :meth:`BTReductor.balanced_realization` gives the balanced realisation. For a
    stable system with ``sigma_r > sigma_{r+1}``, the reduced system is stable and

    ``sigma_{r+1} <= ||G - G_r||_inf <= 2 * (sum of the distinct sigma_i, i > r)``

    in continuous and discrete time, real or complex.

    Cost: for a batch of ``b`` diagonal SISO systems (the DSS case), O(b n^2) for the Gramian
    factors, O(b n^3) for ``S^H R`` and its SVD (the dominant term; O(b n k^2) with
    ``rank_tol`` and numerical ranks k), O(b n^2 r) for the projection; memory O(b n^2). No
    Python loop runs over the systems: with numba installed (the ``fast`` extra) the factors
    and the SVD run in compiled loops that release the GIL, and only the ``r`` leading
    singular vectors are formed (``sysred._svd_kernel``); without numba, numpy vectorises over
    the batch (loops over the ``n`` pivots) and ``np.linalg.svd`` forms all of them. Batches
    are split over ``workers`` threads. Measured (2 cores, b = 256, n = 64, r = 16): ~0.1 s,
    ~0.03 s with ``rank_tol=1e-16`` on smooth (fast-decaying) channels; see
    ``benchmarks/sysred_speed.py``. Dense systems cost O(n^3) each (Hammarling), one batch
    entry at a time.

    Parameters
    ----------
    sys : StateSpace or DiagonalStateSpace
        Asymptotically stable; batched input gives batched output with one common order.
    order : int, optional
        Reduced order r, ``1 <= r <= n``.
    tol : float, optional
        Instead of ``order``: the smallest r whose bound is ``<= tol`` for every batch entry
        (never splitting equal HSVs, never beyond the numerical rank).
    method : {"sqrt", "bfsr"}
    strict : bool
        What to do with a degenerate ``order``. ``True`` (default) *refuses*, raising
        :class:`HSVTieError` when ``sigma_r`` and ``sigma_{r+1}`` are numerically equal
        (relative gap below ``1e-9``): the truncation is then not unique, and stability and
        the bound are no longer guaranteed; and :class:`OrderError` when ``sigma_r`` is at
        rounding level (``<= 10 n eps sigma_1``): ``Sigma_r^{-1/2}`` would amplify noise.
        ``False`` issues :class:`HSVTieWarning` / :class:`RankDeficientWarning` and computes
        the truncation anyway (useful for big batches, where one bad entry should not stop the
        rest; check the result).
    backend : {"auto", "numpy", "slycot"}
        Dense Lyapunov solver, see :func:`sysred.gramian_factors`.
    horizon : int, optional
        Time-limited BT (discrete-time diagonal systems): balance the Gramians of the first
        ``L = horizon`` impulse-response samples (:func:`sysred.gramian_factors`), which is
        what a convolution kernel of length L uses. Needs no stability, gives no a-priori
        bound (``bound`` is NaN, ``tol`` is not allowed) and reports the measured
        ``error`` instead. The reduced model need not be stable.
    workers : int, optional
        Threads over which a batch is split (chunks of >= 16 systems); default: the CPUs
        available (``$SYSRED_WORKERS`` overrides). The result does not depend on it.
    rank_tol : float, optional
        Diagonal systems: low-rank square-root BT. The pivoted Cholesky factors stop once the
        dropped columns are ``<= rank_tol`` of the factor in Frobenius norm (trained layers'
        Gramians are numerically low rank: O(n k^2) instead of O(n^3) per system). The HSVs
        are then known to ``+- hsv_error`` (reported, absolute), the bound adds
        ``2 (n - r) hsv_error``, and the model is the low-rank square-root one (exact BT of
        the truncated Gramians). ``None`` (default): full factors.
    accuracy : {"standard", "high"}
        How the HSVs (and the SVD behind the projection) are computed, see
        :func:`sysred.hankel_singular_values`: ``"high"`` (SISO diagonal systems, path
        ``"diagonal-extended"``) gives every HSV to high relative accuracy, 10-100x slower.

    Returns
    -------
    BTResult

    Raises
    ------
    UnstableSystemError
        Unstable or marginally stable input (see ``sysred._checks.MARGIN``).
    OrderError, HSVTieError
        ``order`` out of range or degenerate (see ``strict``), or neither/both of
        ``order`` and ``tol`` given.

    See Also
    --------
    BTReductor : the same in two steps (factors once, then reduce to any number of orders).

    Examples
    --------
    >>> import numpy as np, sysred
    >>> d = np.array([1.0, 2.0, 5.0, 10.0])
    >>> G = sysred.DiagonalStateSpace(-d, np.ones((4, 1)), np.ones((1, 4)))
    >>> res = sysred.balanced_truncation(G, order=2)
    >>> res.system.n, bool(sysred.hinf_norm(G, res.system) <= res.bound * (1 + 1e-12))
    (2, True)
    """
    if (order is None) == (tol is None):
        raise OrderError("give exactly one of order (an integer) or tol (an error bound)")
    _check_method(method)
    if horizon is not None and tol is not None:
        raise OrderError("time-limited BT has no a-priori bound: give order, not tol")
    reductor = BTReductor(sys, backend, horizon, workers, rank_tol, accuracy)
    return reductor.reduce(order, tol, method, strict)


def impulse_error(G1, G2, length, chunk=128):
    """``||h1 - h2||_2`` over the samples ``h_0 .. h_{length-1}`` (discrete time), shape (...).

    Computed in chunks of samples, so memory stays O(batch * chunk * n).

    Raises
    ------
    ShapeError, SysredError
        Systems that differ in inputs, outputs or sample time, or a continuous-time system.
    OrderError
        ``length`` is not a positive integer.
    """
    for G in (G1, G2):
        if not require_system(G).is_discrete:
            raise SysredError("impulse_error compares discrete-time impulse responses")
    if (G1.m, G1.p, G1.dt) != (G2.m, G2.p, G2.dt):
        raise ShapeError(
            f"impulse_error needs systems with equal (m, p, dt): {(G1.m, G1.p, G1.dt)} vs "
            f"{(G2.m, G2.p, G2.dt)}"
        )
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
        raise OrderError(f"length must be a positive integer (samples), got {length!r}")
    total = 0.0
    states = [_impulse_state(G) for G in (G1, G2)]
    for start in range(0, length, chunk):
        k = min(chunk, length - start)
        h1, h2 = (_impulse_chunk(G, st, start, k) for G, st in zip((G1, G2), states, strict=True))
        total = total + np.sum(np.abs(h1 - h2) ** 2, axis=(-3, -2, -1))
    return np.sqrt(total)


def _impulse_state(G):
    return {"X": G.B} if not isinstance(G, DiagonalStateSpace) else {}


def _impulse_chunk(G, state, start, k):
    """Samples h_start .. h_{start+k-1}, shape (..., k, p, m)."""
    idx = np.arange(start, start + k)
    if isinstance(G, DiagonalStateSpace):
        powers = G.poles[..., None, :] ** np.maximum(idx - 1, 0)[:, None]  # (..., k, n)
        h = np.einsum("...pn,...kn,...nm->...kpm", G.C, powers, G.B)
    else:  # dense: march X = A^(j-1) B forward, kept in ``state`` between chunks
        out = []
        for j in idx:
            if j == 0:
                out.append(np.zeros(G.batch_shape + (G.p, G.m), dtype=complex))
                continue
            out.append(G.C @ state["X"])
            state["X"] = G.A @ state["X"]
        h = np.stack(out, axis=-3)
    h = h.astype(complex)
    if start == 0:
        h[..., 0, :, :] = G.D
    return h


@dataclass
class ModalResult:
    """What :func:`modal_truncation` returns.

    Attributes
    ----------
    system : DiagonalStateSpace
        The kept modes (complex in general), same batch shape and time domain.
    order : int
    bound : ndarray, shape (...)
        Sum of the dropped modes' H-infinity norms (triangle inequality):
        ``||G - G_r||_inf <= bound``.
    contributions : ndarray, shape (..., n)
        Each mode's H-infinity norm ``||c_i|| ||b_i|| / |Re l_i|`` (ct) or
        ``||c_i|| ||b_i|| / (1 - |a_i|)`` (dt), in the input's mode order.
    kept : ndarray of int, shape (..., r)
        Indices of the kept modes, by decreasing contribution.
    cond : ndarray, shape (...)
        Condition number of the eigenvector matrix used to diagonalise (1 for diagonal input).
    """

    system: DiagonalStateSpace
    order: int
    bound: np.ndarray
    contributions: np.ndarray
    kept: np.ndarray
    cond: np.ndarray


def modal_truncation(sys, order, max_cond=COND_MAX):
    """Modal truncation: keep the r modes with the largest H-infinity contribution.

    In modal form ``G(s) = D + sum_i c_i b_i / (s - l_i)`` (``c_i`` the columns of C, ``b_i``
    the rows of B), mode i alone has H-infinity norm
    ``||c_i|| ||b_i|| / |Re l_i|`` (ct, peak at ``w = Im l_i``) or
    ``||c_i|| ||b_i|| / (1 - |a_i|)`` (dt, peak at ``z = a_i / |a_i|``). Keeping the r largest
    gives the error bound ``||G - G_r||_inf <= sum of the dropped contributions``. The baseline
    reductor of the DSS-compression literature (LAST uses the same per-state score).

    Dense input is diagonalised first (see :func:`sysred.diagonalize`: complex modes, the
    eigenvector condition number is reported). Conjugate pairs of a real system may be split.
    A (nearly) defective ``A`` -- a Jordan block such as ``1/(s+1)^2`` -- has no meaningful
    modal form: its modes carry huge residues that cancel, and dropping one of them leaves an
    error of the size of that residue. It is refused (:class:`IllConditionedError`) when the
    eigenvector condition number exceeds ``max_cond``, and warned about above ``1e8``.

    Parameters
    ----------
    sys : StateSpace or DiagonalStateSpace
        Asymptotically stable.
    order : int
        ``1 <= order <= n`` (``0`` for a system without states).
    max_cond : float
        Largest eigenvector condition number accepted, see :func:`sysred.diagonalize`
        (default ``1e12``; ``np.inf`` never refuses).

    Returns
    -------
    ModalResult

    Raises
    ------
    IllConditionedError
        The eigenvector matrix's condition number exceeds ``max_cond``: use
        :func:`balanced_truncation` (no eigenvectors needed).
    OrderError
        ``order`` out of range.

    Examples
    --------
    >>> import sysred
    >>> G = sysred.DiagonalStateSpace([-1.0, -10.0], [[1.0], [1.0]], [[1.0, 1.0]])
    >>> res = sysred.modal_truncation(G, 1)
    >>> res.system.poles.real.tolist(), float(res.bound)
    ([-1.0], 0.1)
    """
    require_system(sys)
    require_stable(sys, "modal truncation")
    if isinstance(order, bool) or not isinstance(order, int | np.integer):
        raise OrderError(f"order must be an integer, got {order!r}")
    if not (1 <= order <= sys.n or order == sys.n == 0):
        raise OrderError(f"order must be between 1 and n = {sys.n}, got {order}")
    modal, cond = diagonalize(sys, max_cond)
    poles = modal.poles  # (..., n)
    gain = np.linalg.norm(modal.C, axis=-2) * np.linalg.norm(modal.B, axis=-1)  # (..., n)
    damping = (1.0 - np.abs(poles)) if modal.is_discrete else -poles.real
    contrib = gain / damping  # (..., n)
    order_idx = np.argsort(-contrib, axis=-1, kind="stable")
    kept, dropped = order_idx[..., :order], order_idx[..., order:]
    reduced = DiagonalStateSpace(
        np.take_along_axis(poles, kept, axis=-1),
        np.take_along_axis(modal.B, kept[..., :, None], axis=-2),
        np.take_along_axis(modal.C, kept[..., None, :], axis=-1),
        modal.D,
        modal.dt,
    )
    bound = np.take_along_axis(contrib, dropped, axis=-1).sum(axis=-1)
    return ModalResult(reduced, int(order), bound, contrib, kept, cond)
