"""Leading singular triplets of a batch of small complex matrices (numba + LAPACK, optional).

Balanced truncation needs every singular value of ``S^H R`` (the HSVs) but only the leading
``r`` singular vectors. ``np.linalg.svd`` (LAPACK ``zgesdd``) forms all of them, which for a
batch of 64 x 64 matrices is more than half of its time. Here, per matrix ``M`` (m x n):

1. ``zgebrd``: ``M = Q B P^H`` with ``B`` real bidiagonal (k = min(m, n));
2. ``dlasq1`` (dqds): the singular values of ``B``, to high relative accuracy, O(k^2), no
   vectors (``dbdsdc`` without vectors if dqds fails to converge);
3. later, once the order ``r`` is known, the leading ``r`` singular vectors of ``B`` by
   inverse iteration on its Golub-Kahan tridiagonal (O(k) per vector and step, close values
   reorthogonalised as LAPACK ``dstein`` does; each set checked for orthonormality and
   ``B v = sigma u``, else ``dbdsdc`` with vectors), and ``zunmbr`` applies ``Q`` and ``P``
   to those ``r`` vectors only.

Steps 1-2 are ``zgesdd``'s own first steps, so the singular values are LAPACK's; the vectors
agree with ``zgesdd``'s up to a unit phase per pair (tests: residual ``||M V - U S||`` and
orthogonality below ``100 eps``). The loop over the batch runs compiled with the GIL released.
LAPACK comes from scipy (``scipy.linalg.cython_lapack``), called through numba, which is
optional: :func:`available` tells whether this path runs (it is not used with
``SYSRED_NUMBA=0``), otherwise sysred uses ``np.linalg.svd``.

Measured (one thread, 256 matrices of 64 x 64): values 85 ms (``zgebrd`` 69 ms of it) against
168 ms with ``dbdsdc``'s vectors; the 16 leading vectors then 48 ms (inverse iteration ~25 ms,
back-transformation ~25 ms).
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

from sysred import _cauchy_kernel

__all__ = ["available", "bidiagonal_svd"]


def available() -> bool:
    """Whether the compiled path runs (numba importable and not disabled)."""
    return _cauchy_kernel.available()


_lapack_functions = None

# LAPACK's one-character options, as bytes
_U, _L, _I, _Q, _P, _N = (ord(c) for c in "ULIQPN")


def _lapack():
    """ctypes handles of the LAPACK routines scipy exports (built once)."""
    global _lapack_functions
    if _lapack_functions is None:
        from numba.extending import get_cython_function_address

        def handle(name, nargs):
            address = get_cython_function_address("scipy.linalg.cython_lapack", name)
            return ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * nargs))(address)

        _lapack_functions = {
            "zgebrd": handle("zgebrd", 11),  # m n a lda d e tauq taup work lwork info
            "dbdsdc": handle("dbdsdc", 14),  # uplo compq n d e u ldu vt ldvt q iq work iwork info
            "zunmbr": handle("zunmbr", 14),  # vect side trans m n k a lda tau c ldc work lwork info
            "dlasq1": handle("dlasq1", 5),  # n d e work info
        }
    return _lapack_functions


def _bidiag(A, m, tauq, taup, s, D, E, infos, zgebrd, dlasq1, dbdsdc):  # pragma: no cover
    """Per matrix, in place: ``A[t]`` (n, m) holds M[t] (m x n) in Fortran order and receives
    zgebrd's reflectors; ``D[t]``, ``E[t]`` the real bidiagonal (diagonal, off-diagonal);
    ``s[t]`` its singular values, descending (dqds, ``dlasq1``; ``dbdsdc`` without vectors if
    dqds does not converge). No singular vector is formed here."""
    b, n = A.shape[0], A.shape[1]
    k = min(m, n)
    # integer arguments by reference; every pointer is taken inline in the call, so that numba
    # keeps the array alive across it (a pointer taken earlier dangles once the array is freed)
    m_, n_ = np.full(1, m, np.int32), np.full(1, n, np.int32)
    lw_, k_ = np.full(1, 64 * (m + n), np.int32), np.full(1, k, np.int32)
    d = np.empty(k)
    e = np.empty(max(k - 1, 1))
    work = np.empty(64 * (m + n), np.complex128)
    dwork = np.empty(max(4 * k, 1))
    info = np.zeros(1, np.int32)
    dummy = np.zeros(1)
    idummy = np.zeros(1, np.int32)
    uplo = np.full(1, _U if m >= n else _L, np.uint8)  # zgebrd: upper bidiagonal iff m >= n
    compq = np.full(1, _N, np.uint8)
    for t in range(b):
        zgebrd(m_.ctypes.data, n_.ctypes.data, A[t].ctypes.data, m_.ctypes.data, D[t].ctypes.data,
               E[t].ctypes.data, tauq[t].ctypes.data, taup[t].ctypes.data, work.ctypes.data,
               lw_.ctypes.data, info.ctypes.data)  # fmt: skip
        if info[0] != 0:
            infos[t] = info[0]
            continue
        d[:] = D[t]
        e[: k - 1] = E[t, : k - 1]
        dlasq1(k_.ctypes.data, d.ctypes.data, e.ctypes.data, dwork.ctypes.data, info.ctypes.data)
        if info[0] != 0:  # dqds did not converge (rare): divide and conquer, values only
            d[:] = D[t]
            e[: k - 1] = E[t, : k - 1]
            dbdsdc(uplo.ctypes.data, compq.ctypes.data, k_.ctypes.data, d.ctypes.data,
                   e.ctypes.data, dummy.ctypes.data, k_.ctypes.data, dummy.ctypes.data,
                   k_.ctypes.data, dummy.ctypes.data, idummy.ctypes.data, dwork.ctypes.data,
                   idummy.ctypes.data, info.ctypes.data)  # fmt: skip
        infos[t] = info[0]
        for i in range(k):
            s[t, i] = d[i]
    return infos


#: Largest ``|V_r^T V_r - I|`` or ``|B v - sigma u| / sigma_1`` accepted from inverse iteration
#: before the bidiagonal's vectors are recomputed by divide and conquer.
VECTOR_TOL = 1e-12


def _tgk_factor(te, lam, dl, dd, du, du2, ipiv, tiny):  # pragma: no cover - compiled
    """LU with partial pivoting (LAPACK ``dgttrf``) of ``T - lam I``, ``T`` the zero-diagonal
    tridiagonal with off-diagonal ``te``; ``dd`` receives the pivots' reciprocals. A zero pivot
    is replaced by ``tiny`` (as ``dlagts`` does), so an exact eigenvalue still gives its
    eigenvector."""
    n = dd.shape[0]
    for i in range(n):
        dd[i] = -lam
    for i in range(n - 1):
        dl[i] = te[i]
        du[i] = te[i]
        du2[i] = 0.0
        ipiv[i] = i
    for i in range(n - 1):
        if abs(dd[i]) >= abs(dl[i]):
            if dd[i] == 0.0:
                dd[i] = tiny
            fact = dl[i] / dd[i]
            dl[i] = fact
            dd[i + 1] -= fact * du[i]
        else:
            fact = dd[i] / dl[i]
            dd[i] = dl[i]
            dl[i] = fact
            temp = du[i]
            du[i] = dd[i + 1]
            dd[i + 1] = temp - fact * dd[i + 1]
            if i < n - 2:
                du2[i] = du[i + 1]
                du[i + 1] = -fact * du[i + 1]
            ipiv[i] = i + 1
    if dd[n - 1] == 0.0:
        dd[n - 1] = tiny
    for i in range(n):
        dd[i] = 1.0 / dd[i]


def _tgk_solve(x, dl, dd, du, du2, ipiv):  # pragma: no cover - compiled
    """``x <- (T - lam I)^{-1} x`` from :func:`_tgk_factor`'s LU (``dgttrs``)."""
    n = x.shape[0]
    for i in range(n - 1):
        if ipiv[i] == i:
            x[i + 1] -= dl[i] * x[i]
        else:
            temp = x[i]
            x[i] = x[i + 1]
            x[i + 1] = temp - dl[i] * x[i]
    x[n - 1] *= dd[n - 1]
    if n > 1:
        x[n - 2] = (x[n - 2] - du[n - 2] * x[n - 1]) * dd[n - 2]
    for i in range(n - 3, -1, -1):
        x[i] = (x[i] - du[i] * x[i + 1] - du2[i] * x[i + 2]) * dd[i]


#: Inverse-iteration steps per vector: the singular values from dqds are accurate to a few
#: ulps relative, so one step from a generic start leaves a relative error ~ eps sigma / gap
#: in the vector and a second squares it (the check below catches the rest).
_STEPS = 2

#: Vectors whose singular values are closer than this (relative to sigma_1) are
#: reorthogonalised against each other after every step, as LAPACK ``dstein`` does.
_CLUSTER = 1e-3


def _bidiagonal_leading(d, e, s, r, upper, Ub, Vb, dbdsdc):  # pragma: no cover
    """The leading ``r`` singular vectors of one real bidiagonal ``B`` (diagonal ``d``,
    off-diagonal ``e``, singular values ``s``), into rows of ``Ub``/``Vb`` (r, k).

    Inverse iteration on the Golub-Kahan tridiagonal: the perfect shuffle of
    ``[[0, B'^T], [B', 0]]`` (``B'`` upper bidiagonal: ``B`` or ``B^T``) is tridiagonal with zero
    diagonal and off-diagonal ``(d_1, e_1, d_2, ..., e_{k-1}, d_k)``; its eigenvector for
    ``+sigma`` interleaves ``(v_1, u_1, v_2, u_2, ...) / sqrt(2)``. O(k) per step and vector
    instead of all ``k^2`` entries of ``dbdsdc``; close singular values are reorthogonalised
    (Gram-Schmidt, twice). Checked: both sets orthonormal and ``B v = sigma u`` to
    :data:`VECTOR_TOL`, otherwise ``dbdsdc`` with vectors (returns 1 then, else 0)."""
    k = d.shape[0]
    k2 = 2 * k
    te = np.zeros(max(k2 - 1, 1))
    norm = 0.0
    for i in range(k):
        te[2 * i] = d[i]
        norm = max(norm, abs(d[i]))
        if i < k - 1:
            te[2 * i + 1] = e[i]
            norm = max(norm, abs(e[i]))
    tiny = max(norm, 1e-300) * 2.220446049250313e-16
    dl, dd, du, du2 = np.empty(k2), np.empty(k2), np.empty(k2), np.empty(k2)
    ipiv = np.empty(k2, np.int64)
    Z = np.zeros((r, k2))  # row i: eigenvector for +s[i]
    x = np.empty(k2)
    ok = True
    for i in range(r):
        g = 0.5 + 0.1 * i  # a fixed generic start (a Weyl sequence): no structure shared
        for q in range(k2):  # with T's eigenvectors
            g += 0.6180339887498949
            g -= np.floor(g)
            x[q] = 0.5 + g
        first = i
        while first > 0 and s[first - 1] - s[i] < _CLUSTER * s[0]:
            first -= 1
        _tgk_factor(te, s[i], dl, dd, du, du2, ipiv, tiny)
        for _ in range(_STEPS):
            _tgk_solve(x, dl, dd, du, du2, ipiv)
            for _twice in range(2):
                for j in range(first, i):
                    dot = 0.0
                    for q in range(k2):
                        dot += Z[j, q] * x[q]
                    for q in range(k2):
                        x[q] -= dot * Z[j, q]
            nx = 0.0
            for q in range(k2):
                nx += x[q] * x[q]
            nx = np.sqrt(nx)
            if not (nx > 0.0 and np.isfinite(nx)):
                ok = False
                break
            for q in range(k2):
                x[q] /= nx
        if not ok:
            break
        for q in range(k2):
            Z[i, q] = x[q]
    for i in range(r if ok else 0):
        nv, nu = 0.0, 0.0
        for q in range(k):
            nv += Z[i, 2 * q] ** 2
            nu += Z[i, 2 * q + 1] ** 2
        if nv == 0.0 or nu == 0.0:
            ok = False
            break
        nv, nu = np.sqrt(nv), np.sqrt(nu)
        for q in range(k):
            if upper:
                Vb[i, q], Ub[i, q] = Z[i, 2 * q] / nv, Z[i, 2 * q + 1] / nu
            else:  # B = B'^T: left and right swap
                Ub[i, q], Vb[i, q] = Z[i, 2 * q] / nv, Z[i, 2 * q + 1] / nu
    if ok:  # orthonormality and residual B v - sigma u, relative to sigma_1
        scale = max(s[0], 1e-300)
        for i in range(r):
            for j in range(i + 1):
                gu, gv = 0.0, 0.0
                for q in range(k):
                    gu += Ub[i, q] * Ub[j, q]
                    gv += Vb[i, q] * Vb[j, q]
                target = 1.0 if i == j else 0.0
                if abs(gu - target) > VECTOR_TOL or abs(gv - target) > VECTOR_TOL:
                    ok = False
            for q in range(k):  # (B v)_q: upper d_q v_q + e_q v_{q+1}; lower e_{q-1} v_{q-1}
                bv = d[q] * Vb[i, q]
                if upper and q < k - 1:
                    bv += e[q] * Vb[i, q + 1]
                if not upper and q > 0:
                    bv += e[q - 1] * Vb[i, q - 1]
                if abs(bv - s[i] * Ub[i, q]) > VECTOR_TOL * scale:
                    ok = False
    if ok:
        return 0
    # divide and conquer with every vector (what zgesdd does), the leading r kept
    dd, ee = d.copy(), np.zeros(max(k - 1, 1))
    ee[: k - 1] = e[: k - 1]
    UB = np.empty((k, k))
    VB = np.empty((k, k))
    k_ = np.full(1, k, np.int32)
    dwork = np.empty(3 * k * k + 4 * k)
    iw = np.empty(8 * k, np.int32)
    uplo = np.full(1, _U if upper else _L, np.uint8)
    compq = np.full(1, _I, np.uint8)
    dummy = np.zeros(1)
    idummy = np.zeros(1, np.int32)
    info = np.zeros(1, np.int32)
    dbdsdc(uplo.ctypes.data, compq.ctypes.data, k_.ctypes.data, dd.ctypes.data, ee.ctypes.data,
           UB.ctypes.data, k_.ctypes.data, VB.ctypes.data, k_.ctypes.data, dummy.ctypes.data,
           idummy.ctypes.data, dwork.ctypes.data, iw.ctypes.data, info.ctypes.data)  # fmt: skip
    for i in range(r):
        for q in range(k):
            Ub[i, q] = UB[i, q]  # Fortran u(q, i)
            Vb[i, q] = VB[q, i]  # Fortran vt(i, q)
    return 1 if info[0] == 0 else -1


def _vectors(A, tauq, taup, D, E, s, r, m, n, U, V, infos, zunmbr, dbdsdc):  # pragma: no cover
    """U[t] (m, r) = Q [U_B[:, :r]; 0], V[t] (n, r) = P [V_B[:, :r]; 0]; ``infos[t]`` LAPACK's
    error, or -1 where the bidiagonal's vectors failed. Returns how many matrices needed the
    divide-and-conquer fallback."""
    b = A.shape[0]
    k = min(m, n)
    lwork = 64 * max(m, n)
    m_, n_ = np.full(1, m, np.int32), np.full(1, n, np.int32)  # by reference; pointers inline
    r_, lw_ = np.full(1, r, np.int32), np.full(1, lwork, np.int32)
    work = np.empty(lwork, np.complex128)
    info = np.zeros(1, np.int32)
    C1 = np.zeros((r, m), np.complex128)  # Fortran (m, r)
    C2 = np.zeros((r, n), np.complex128)  # Fortran (n, r)
    Ub = np.zeros((r, k))
    Vb = np.zeros((r, k))
    vq, vp = np.full(1, _Q, np.uint8), np.full(1, _P, np.uint8)
    left, notrans = np.full(1, _L, np.uint8), np.full(1, _N, np.uint8)
    fallbacks = 0
    for t in range(b):
        got = _bidiagonal_leading(D[t], E[t], s[t], r, m >= n, Ub, Vb, dbdsdc)
        if got < 0:
            infos[t] = -1
            continue
        fallbacks += got
        C1[:] = 0
        C2[:] = 0
        for j in range(r):
            for i in range(k):
                C1[j, i] = Ub[j, i]
                C2[j, i] = Vb[j, i]
        # Q is m x m, from an m x n zgebrd (K = n); P is n x n (K = m)
        zunmbr(vq.ctypes.data, left.ctypes.data, notrans.ctypes.data, m_.ctypes.data,
               r_.ctypes.data, n_.ctypes.data, A[t].ctypes.data, m_.ctypes.data,
               tauq[t].ctypes.data, C1.ctypes.data, m_.ctypes.data, work.ctypes.data,
               lw_.ctypes.data, info.ctypes.data)  # fmt: skip
        infos[t] = info[0]
        zunmbr(vp.ctypes.data, left.ctypes.data, notrans.ctypes.data, n_.ctypes.data,
               r_.ctypes.data, m_.ctypes.data, A[t].ctypes.data, m_.ctypes.data,
               taup[t].ctypes.data, C2.ctypes.data, n_.ctypes.data, work.ctypes.data,
               lw_.ctypes.data, info.ctypes.data)  # fmt: skip
        infos[t] = max(infos[t], info[0])
        for j in range(r):
            for i in range(m):
                U[t, i, j] = C1[j, i]
            for i in range(n):
                V[t, i, j] = C2[j, i]
    return fallbacks


_compiled = {}
_compile_lock = threading.Lock()


def _kernel(name):
    """The compiled kernel (numba, cached on disk; LAPACK handles are arguments, not constants,
    so the cache stays valid across processes)."""
    global _bidiagonal_leading, _tgk_factor, _tgk_solve
    with _compile_lock:  # threads reducing several batches at once may ask at the same time
        if name in _compiled:
            return _compiled[name]
        import numba

        if not isinstance(_bidiagonal_leading, numba.core.dispatcher.Dispatcher):
            # called from the compiled _vectors: they must be compiled themselves
            _tgk_factor = numba.njit(nogil=True, cache=True)(_tgk_factor)
            _tgk_solve = numba.njit(nogil=True, cache=True)(_tgk_solve)
            _bidiagonal_leading = numba.njit(nogil=True, cache=True)(_bidiagonal_leading)
        fn = {"bidiag": _bidiag, "vectors": _vectors}[name]
        _compiled[name] = numba.njit(nogil=True, cache=True)(fn)
        return _compiled[name]


class BidiagonalSVD:
    """A batch's bidiagonalisation and singular values; :meth:`leading` gives the vectors.

    Attributes
    ----------
    s : ndarray, shape (b, k)
        Singular values, descending.
    fallbacks : int
        How many matrices' vectors came from ``dbdsdc`` because inverse iteration missed
        :data:`VECTOR_TOL` (in the last :meth:`leading` call).
    """

    def __init__(self, A, tauq, taup, s, D, E, shape):
        self._A, self._tauq, self._taup, self._D, self._E = A, tauq, taup, D, E
        self.s = s  # (b, k), descending
        self.m, self.n = shape
        self.fallbacks = 0

    def leading(self, r):
        """``U_r`` (b, m, r), ``V_r`` (b, n, r): ``M V_r = U_r diag(s[:r])``."""
        b = self.s.shape[0]
        r = min(int(r), self.s.shape[1])
        U = np.empty((b, self.m, r), np.complex128)
        V = np.empty((b, self.n, r), np.complex128)
        if r == 0:
            return U, V
        infos = np.zeros(b, np.int32)
        lapack = _lapack()
        self.fallbacks = _kernel("vectors")(
            self._A, self._tauq, self._taup, self._D, self._E, self.s, r, self.m, self.n, U, V,
            infos, lapack["zunmbr"], lapack["dbdsdc"],
        )  # fmt: skip
        _check(infos, "inverse iteration/dbdsdc/zunmbr")
        return U, V


def _check(infos, routine):
    if np.any(infos != 0):
        bad = int(np.flatnonzero(infos)[0])
        raise np.linalg.LinAlgError(f"LAPACK {routine} failed (info {infos[bad]}) at entry {bad}")


def bidiagonal_svd(M=None, MT=None):
    """Singular values of a batch (b, m, n), complex, keeping what :meth:`leading` needs.

    Give ``M`` or, to save a transposing copy, ``MT`` with ``MT[s] = M[s].T`` (b, n, m); it is
    overwritten. Raises ``np.linalg.LinAlgError`` if LAPACK reports a failure.

    Examples
    --------
    >>> import numpy as np
    >>> from sysred import _svd_kernel
    >>> M = np.random.default_rng(0).standard_normal((3, 6, 5)) + 0j
    >>> f = _svd_kernel.bidiagonal_svd(M)
    >>> bool(np.allclose(f.s, np.linalg.svd(M, compute_uv=False)))
    True
    >>> U, V = f.leading(2)
    >>> bool(np.allclose(M @ V, U * f.s[:, None, :2]))
    True
    """
    if MT is None:
        MT = np.swapaxes(M, -1, -2).astype(np.complex128, order="C", copy=True)
    elif not (MT.dtype == np.complex128 and MT.flags.c_contiguous):
        MT = np.ascontiguousarray(MT, dtype=np.complex128)
    b, n, m = MT.shape
    k = min(m, n)
    tauq = np.empty((b, k), np.complex128)
    taup = np.empty((b, k), np.complex128)
    s = np.empty((b, k))
    D = np.empty((b, k))
    E = np.zeros((b, max(k, 1)))
    infos = np.zeros(b, np.int32)
    lapack = _lapack()
    _kernel("bidiag")(
        MT, m, tauq, taup, s, D, E, infos, lapack["zgebrd"], lapack["dlasq1"], lapack["dbdsdc"]
    )
    _check(infos, "zgebrd/dlasq1")
    return BidiagonalSVD(MT, tauq, taup, s, D, E, (m, n))
