"""Linear time-invariant systems: what a system *is* (no algorithms beyond evaluation).

Conventions
-----------
A system is ``(A, B, C, D, dt)`` with

* continuous time (``dt=None``):  ``x' = A x + B u``,  ``y = C x + D u``,
  ``G(s) = C (sI - A)^{-1} B + D``;
* discrete time (``dt > 0``, the sample time): ``x[k+1] = A x[k] + B u[k]``,
  ``y[k] = C x[k] + D u[k]``, ``G(z) = C (zI - A)^{-1} B + D``, Markov parameters
  ``h_0 = D``, ``h_k = C A^{k-1} B``.

Matrices may be real or complex. Complex systems have no conjugate symmetry: their frequency
response at ``-w`` is unrelated to the one at ``w``.

Every array carries any number of leading *batch* dimensions: ``A`` is ``(..., n, n)``, ``B``
``(..., n, m)``, ``C`` ``(..., p, n)``, ``D`` ``(..., p, m)``; batch dimensions broadcast
against each other like numpy's. A batch shares ``n, m, p`` and ``dt``.
"""

from __future__ import annotations

import warnings

import numpy as np

from sysred._parallel import map_batch
from sysred.errors import (
    IllConditionedError,
    IllConditionedWarning,
    NonFiniteError,
    OptionError,
    ShapeError,
    SysredError,
)

__all__ = ["StateSpace", "DiagonalStateSpace", "diagonalize", "realify", "real_part"]


def _as_float_array(x, name):
    """Cast to float64 or complex128.

    Integer storage (uint8, int16, ...) is cast *before* any arithmetic: negating a uint8
    matrix wraps around silently (several SLICOT benchmark files store matrices that way).
    """
    if hasattr(x, "toarray"):  # scipy.sparse (e.g. matrices read by scipy.io.loadmat)
        x = x.toarray()
    x = np.asarray(x)
    if x.dtype == object or not (
        np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.bool_)
    ):
        raise SysredError(f"{name} must be a numeric array, got dtype {x.dtype}")
    dtype = np.complex128 if np.iscomplexobj(x) else np.float64
    x = x.astype(dtype, copy=True)
    if not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        where = tuple(int(i) for i in bad)
        raise NonFiniteError(f"{name} holds NaN or Inf (first at index {where})")
    return x


def _pow2_exponent(X, axes):
    """Per batch entry, ``e`` with ``max|X| < 2^e`` over ``axes`` (0 where ``X`` is zero)."""
    big = np.max(np.abs(X), axis=axes, initial=0.0)
    e = np.frexp(big)[1]
    return np.where(big > 0, e, 0)


#: ``2^e`` is a normal float64 for these exponents, so ``X * 2^e`` is exact as ``ldexp`` is.
_POW2_SAFE = 1000


def _ldexp(X, e):
    """``X * 2^e`` exactly (barring under/overflow of the result); real or complex ``X``.

    ``e`` broadcasts against ``X``. Returns ``X`` itself when every ``e`` is 0. For
    ``|e| <= 1000`` a multiplication by the (exact) power of two, which rounds exactly as
    ``ldexp`` does, in one pass instead of ``ldexp``'s three for complex data.
    """
    e = np.asarray(e)
    if not np.any(e):
        return X
    if np.all(np.abs(e) <= _POW2_SAFE):
        return X * np.ldexp(1.0, e)
    if np.iscomplexobj(X):
        return np.ldexp(X.real, e) + 1j * np.ldexp(X.imag, e)
    return np.ldexp(X, e)


def scaled_eig(A, vectors=False):
    """Eigenvalues (and unit eigenvectors) of ``A`` (..., n, n), computed on ``A / 2^e``.

    The scaling by a power of two per batch entry is exact and leaves the eigenvectors alone;
    it keeps LAPACK's own scaling out of play (measured with this build's ``dgeev``: for
    ``||A|| > ~1e138`` or ``< ~1e-138`` it returned eigenvalues off by up to 60 orders of
    magnitude).
    """
    e = _pow2_exponent(A, (-2, -1))  # (...)
    As = _ldexp(A, -e[..., None, None])
    if vectors:
        lam, V = np.linalg.eig(As)
        return _ldexp(lam.astype(complex), e[..., None]), V
    return _ldexp(np.linalg.eigvals(As).astype(complex), e[..., None])


def _check_dt(dt):
    if dt is None:
        return None
    if isinstance(dt, bool):
        raise SysredError("dt must be None (continuous time) or a positive sample time, not a bool")
    dt = float(dt)
    if not (np.isfinite(dt) and dt > 0):
        raise SysredError(
            f"dt must be None (continuous time) or a positive finite sample time, got {dt!r}"
        )
    return dt


def _broadcast_batch(arrays, core_ndims, names):
    """Broadcast the leading (batch) dimensions of ``arrays``; return arrays and batch shape."""
    try:
        batch = np.broadcast_shapes(
            *[a.shape[: a.ndim - k] for a, k in zip(arrays, core_ndims, strict=True)]
        )
    except ValueError:
        shapes = ", ".join(f"{nm} {a.shape}" for nm, a in zip(names, arrays, strict=True))
        raise ShapeError(f"batch dimensions do not broadcast: {shapes}") from None
    out = [
        np.broadcast_to(a, batch + a.shape[a.ndim - k :]).copy()
        for a, k in zip(arrays, core_ndims, strict=True)
    ]
    return out, batch


class _LTIBase:
    """Shared behaviour of dense and diagonal systems (shapes, dt, evaluation helpers)."""

    B: np.ndarray
    C: np.ndarray
    D: np.ndarray
    dt: float | None

    @property
    def n(self) -> int:
        """State dimension."""
        return self.B.shape[-2]

    @property
    def m(self) -> int:
        """Number of inputs."""
        return self.B.shape[-1]

    @property
    def p(self) -> int:
        """Number of outputs."""
        return self.C.shape[-2]

    @property
    def batch_shape(self) -> tuple:
        return self.B.shape[:-2]

    @property
    def is_discrete(self) -> bool:
        return self.dt is not None

    @property
    def is_complex(self) -> bool:
        return any(np.iscomplexobj(x) for x in self._arrays())

    def _check_io(self, B, C, D):
        n = self.n
        if B.ndim < 2 or C.ndim < 2:
            raise ShapeError(f"B and C need >= 2 dimensions, got B {B.shape}, C {C.shape}")
        if C.shape[-1] != n:
            raise ShapeError(f"C has {C.shape[-1]} columns but the system has n = {n} states")
        p, m = C.shape[-2], B.shape[-1]
        if D is None:
            D = np.zeros((p, m))
        D = _as_float_array(D, "D")
        if D.ndim < 2 or D.shape[-2:] != (p, m):
            raise ShapeError(f"D must be (..., p, m) = (..., {p}, {m}), got {D.shape}")
        return D

    def is_stable(self) -> np.ndarray:
        """Asymptotic stability per batch entry: ``Re(poles) < 0`` (ct) or ``|poles| < 1`` (dt)."""
        poles = self.poles
        if self.is_discrete:
            return np.all(np.abs(poles) < 1.0, axis=-1)
        return np.all(poles.real < 0.0, axis=-1)

    def frequency_response(self, omega) -> np.ndarray:
        """``G(i w)`` (continuous) or ``G(exp(i w dt))`` (discrete), w in rad per time unit.

        Parameters
        ----------
        omega : array_like, shape (k,)
            Real frequencies. For complex systems negative frequencies matter as well.

        Returns
        -------
        ndarray, shape (..., k, p, m)
        """
        omega = np.atleast_1d(np.asarray(omega, dtype=float))
        if self.is_discrete:
            return self.transfer(np.exp(1j * omega * self.dt))
        return self.transfer(1j * omega)

    def markov_parameters(self, k: int) -> np.ndarray:
        """``[D, CB, CAB, ..., C A^{k-2} B]``, shape ``(..., k, p, m)``.

        In discrete time these are the impulse response samples ``h_0 .. h_{k-1}``.
        """
        k = int(k)
        if k < 1:
            raise SysredError(f"need k >= 1 Markov parameters, got {k}")
        dtype = np.result_type(*self._arrays())
        out = np.empty(self.batch_shape + (k, self.p, self.m), dtype=dtype)
        out[..., 0, :, :] = self.D
        out[..., 1:, :, :] = self._cakb(k - 1)
        return out

    def impulse_response(self, length: int) -> np.ndarray:
        """Discrete-time impulse response ``h_0 .. h_{L-1}``, shape ``(..., L, p, m)``."""
        if not self.is_discrete:
            raise SysredError(
                "impulse_response samples a discrete-time system; for continuous time use "
                "markov_parameters or discretise first"
            )
        return self.markov_parameters(length)

    def __getitem__(self, index):
        """Index the batch dimensions (never the matrix dimensions)."""
        if not self.batch_shape:
            raise SysredError("this system has no batch dimensions to index")
        if not isinstance(index, tuple):
            index = (index,)
        if any(i is Ellipsis for i in index):
            raise SysredError("Ellipsis indexing of a batch is not supported")
        # pad so that matrix dimensions are always kept whole
        sel = index + (slice(None),) * (len(self.batch_shape) - len(index))
        return self._index(sel)

    def __len__(self):
        if not self.batch_shape:
            raise TypeError("a single system has no len(); it has no batch dimension")
        return self.batch_shape[0]

    def _repr_fields(self):
        kind = "complex" if self.is_complex else "real"
        time = "continuous" if self.dt is None else f"discrete dt={self.dt:g}"
        batch = f" batch={self.batch_shape}" if self.batch_shape else ""
        return f"n={self.n}, m={self.m}, p={self.p}, {kind}, {time}{batch}"


class StateSpace(_LTIBase):
    """A (batch of) dense state-space system(s) ``(A, B, C, D, dt)``; see the module docstring.

    Parameters
    ----------
    A : array_like, shape (..., n, n)
    B : array_like, shape (..., n, m)
    C : array_like, shape (..., p, n)
    D : array_like, shape (..., p, m), optional
        Feed-through; zero if omitted.
    dt : float or None
        ``None`` for continuous time, else the positive sample time.

    Raises
    ------
    ShapeError
        Inconsistent matrix shapes or batch dimensions that do not broadcast.
    NonFiniteError
        A matrix holds NaN or Inf.

    Examples
    --------
    >>> import numpy as np, sysred
    >>> G = sysred.StateSpace([[-1.0]], [[1.0]], [[2.0]])
    >>> complex(G.transfer([0.0])[0, 0, 0])
    (2+0j)
    """

    def __init__(self, A, B, C, D=None, dt=None):
        A = _as_float_array(A, "A")
        B = _as_float_array(B, "B")
        C = _as_float_array(C, "C")
        if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
            raise ShapeError(f"A must be (..., n, n), got {A.shape}")
        if B.ndim < 2 or B.shape[-2] != A.shape[-1]:
            raise ShapeError(f"B must be (..., n, m) with n = {A.shape[-1]}, got {B.shape}")
        self.B, self.C = B, C
        D = self._check_io(B, C, D)
        (self.A, self.B, self.C, self.D), _ = _broadcast_batch(
            [A, B, C, D], [2, 2, 2, 2], ["A", "B", "C", "D"]
        )
        self.dt = _check_dt(dt)
        self._poles = None

    def _arrays(self):
        return (self.A, self.B, self.C, self.D)

    def _index(self, sel):
        return StateSpace(self.A[sel], self.B[sel], self.C[sel], self.D[sel], self.dt)

    @property
    def poles(self) -> np.ndarray:
        """Eigenvalues of ``A``, shape (..., n) (computed once, then cached)."""
        if self._poles is None:
            self._poles = scaled_eig(self.A) if self.n else np.zeros(self.A.shape[:-1], complex)
        return self._poles

    def transfer(self, s) -> np.ndarray:
        """Evaluate ``G(s) = C (sI - A)^{-1} B + D`` at points ``s`` (k,): (..., k, p, m)."""
        s = np.atleast_1d(np.asarray(s, dtype=complex))
        eye = np.eye(self.n)
        M = s[:, None, None] * eye - self.A[..., None, :, :]  # (..., k, n, n)
        X = np.linalg.solve(M, np.broadcast_to(self.B[..., None, :, :], M.shape[:-1] + (self.m,)))
        return self.C[..., None, :, :] @ X + self.D[..., None, :, :]

    def _cakb(self, k):
        out = []
        X = self.B
        for _ in range(k):
            out.append(self.C @ X)
            X = self.A @ X
        shape = self.batch_shape + (0, self.p, self.m)
        return np.stack(out, axis=-3) if out else np.zeros(shape)

    def to_dense(self) -> StateSpace:
        return self

    def __repr__(self):
        return f"StateSpace({self._repr_fields()})"


class DiagonalStateSpace(_LTIBase):
    """A (batch of) system(s) with diagonal ``A = diag(poles)``, as in modal form or DSS layers.

    Parameters
    ----------
    poles : array_like, shape (..., n)
        The diagonal of ``A`` (complex in general).
    B : array_like, shape (..., n, m)
    C : array_like, shape (..., p, n)
    D : array_like, shape (..., p, m), optional
    dt : float or None
        ``None`` for continuous time, else the positive sample time.

    Examples
    --------
    One discrete-time channel with poles ``a`` has impulse response
    ``h_k = sum_i C_i a_i^{k-1} B_i``:

    >>> import numpy as np, sysred
    >>> G = sysred.DiagonalStateSpace([0.5, -0.25], [[1.0], [1.0]], [[1.0, 2.0]], dt=1.0)
    >>> G.impulse_response(3)[:, 0, 0].real.tolist()
    [0.0, 3.0, 0.0]
    """

    def __init__(self, poles, B, C, D=None, dt=None):
        poles = _as_float_array(poles, "poles")
        B = _as_float_array(B, "B")
        C = _as_float_array(C, "C")
        if poles.ndim < 1:
            raise ShapeError("poles must be (..., n)")
        if B.ndim < 2 or B.shape[-2] != poles.shape[-1]:
            raise ShapeError(f"B must be (..., n, m) with n = {poles.shape[-1]}, got {B.shape}")
        self.B, self.C = B, C
        D = self._check_io(B, C, D)
        (self.poles_, self.B, self.C, self.D), _ = _broadcast_batch(
            [poles, B, C, D], [1, 2, 2, 2], ["poles", "B", "C", "D"]
        )
        self.dt = _check_dt(dt)

    def _arrays(self):
        return (self.poles_, self.B, self.C, self.D)

    def _index(self, sel):
        return DiagonalStateSpace(self.poles_[sel], self.B[sel], self.C[sel], self.D[sel], self.dt)

    @property
    def poles(self) -> np.ndarray:
        """The diagonal of ``A``, shape (..., n)."""
        return self.poles_

    @property
    def A(self) -> np.ndarray:
        """Dense ``diag(poles)``, shape (..., n, n) (built on request: O(n^2) memory)."""
        A = np.zeros(self.poles_.shape + (self.n,), dtype=self.poles_.dtype)
        idx = np.arange(self.n)
        A[..., idx, idx] = self.poles_
        return A

    def transfer(self, s) -> np.ndarray:
        """Evaluate ``G(s) = C diag(1/(s - poles)) B + D`` at points ``s`` (k,): (..., k, p, m)."""
        s = np.atleast_1d(np.asarray(s, dtype=complex))
        resolvent = 1.0 / (s[:, None] - self.poles_[..., None, :])  # (..., k, n)
        G = np.einsum("...pn,...kn,...nm->...kpm", self.C, resolvent, self.B)
        return G + self.D[..., None, :, :]

    def _cakb(self, k):
        powers = self.poles_[..., None, :] ** np.arange(k)[:, None]  # (..., k, n)
        return np.einsum("...pn,...kn,...nm->...kpm", self.C, powers, self.B)

    def to_dense(self) -> StateSpace:
        """The same system with a dense ``A`` matrix."""
        return StateSpace(self.A, self.B, self.C, self.D, self.dt)

    def __repr__(self):
        return f"DiagonalStateSpace({self._repr_fields()})"


#: :func:`diagonalize` warns above this eigenvector condition number (about half the digits of
#: the modal form may be lost) ...
COND_WARN = 1e8
#: ... and refuses above this one by default (``max_cond``): the modal form then carries
#: relative errors of ``eps * cond >= 1e-4``, and for a (nearly) defective ``A`` residues of size
#: ``~cond`` that cancel only to rounding, so that anything computed from single modes
#: (modal truncation, its bound) is meaningless.
COND_MAX = 1e12


def diagonalize(sys, max_cond=COND_MAX) -> tuple[DiagonalStateSpace, np.ndarray]:
    """Modal form: ``A = V diag(l) V^{-1}`` gives ``(diag(l), V^{-1} B, C V, D)``.

    The eigenvectors are normalised to unit 2-norm (near-optimal for the condition number
    among column scalings, van der Sluis), and ``cond_2(V)`` is returned: the factor by which
    the modal form can amplify errors (its entries are accurate to about ``eps * cond``).
    Above ``1e8`` an :class:`IllConditionedWarning` is issued; above ``max_cond`` (default
    ``1e12``) the modal form is refused: ``A`` is then (nearly) defective, e.g. a Jordan block,
    and the modal form's residues are huge and cancel only to rounding.

    Parameters
    ----------
    sys : StateSpace or DiagonalStateSpace
    max_cond : float
        Largest eigenvector condition number accepted (``np.inf``: never refuse).

    Returns
    -------
    modal : DiagonalStateSpace
        Complex in general, even for real input.
    cond : ndarray, shape batch_shape
        2-norm condition number of the eigenvector matrix (1.0 for diagonal input).

    Raises
    ------
    IllConditionedError
        ``cond > max_cond`` in some batch entry (a nearly defective ``A``): use a method that
        needs no eigenvectors (:func:`sysred.balanced_truncation`), or pass
        ``max_cond=np.inf`` to get the modal form anyway.
    NotASystemError
        ``sys`` is not a sysred system.

    Examples
    --------
    >>> import numpy as np, sysred
    >>> G = sysred.StateSpace([[-1.0, 1.0], [0.0, -2.0]], [[0.0], [1.0]], [[1.0, 0.0]])
    >>> modal, cond = sysred.diagonalize(G)
    >>> bool(np.allclose(modal.transfer([1j]), G.transfer([1j])))
    True
    """
    from sysred._checks import require_system

    require_system(sys)
    if not (isinstance(max_cond, int | float | np.integer | np.floating) and max_cond >= 1):
        raise OptionError(f"max_cond must be a number >= 1 (or np.inf), got {max_cond!r}")
    if isinstance(sys, DiagonalStateSpace):
        return sys, np.ones(sys.batch_shape)
    if sys.n == 0:
        return DiagonalStateSpace(sys.poles, sys.B, sys.C, sys.D, sys.dt), np.ones(sys.batch_shape)
    if sys.batch_shape:  # batch chunks on sysred's worker threads (eig frees the GIL)
        poles, B, C, cond = map_batch(_modal_form, sys)
    else:
        poles, B, C, cond = _modal_form(sys)
    worst = float(np.max(cond))
    if not np.isfinite(worst):
        raise IllConditionedError(
            "A is defective (its eigenvector matrix is singular): it has no modal form. Use "
            "sysred.balanced_truncation, which needs no eigenvectors."
        )
    if not worst <= max_cond:
        raise IllConditionedError(
            f"A is (nearly) defective: its eigenvector matrix has condition number {worst:.3g} "
            f"> max_cond = {max_cond:.3g}, so the modal form (huge residues that cancel only to "
            "rounding) means nothing. Use sysred.balanced_truncation, which needs no "
            "eigenvectors, or pass max_cond=np.inf to get the modal form anyway."
        )
    if worst > COND_WARN:
        warnings.warn(
            f"the eigenvector matrix has condition number {worst:.3g}: the modal form may have "
            f"lost about {np.log10(worst):.0f} of its 16 digits",
            IllConditionedWarning,
            stacklevel=2,
        )
    return DiagonalStateSpace(poles, B, C, sys.D, sys.dt), cond


def _modal_form(sys):
    """``(poles, V^{-1} B, C V, cond_2(V))`` of a (flat batch of) dense system(s); ``cond`` is
    inf where ``V`` is singular (``B``, ``C`` are then meaningless and the caller refuses)."""
    poles, V = scaled_eig(sys.A, vectors=True)  # (..., n), (..., n, n)
    with np.errstate(all="ignore"):
        sv = np.linalg.svd(V, compute_uv=False)  # (..., n)
        cond = np.where(sv[..., -1] > 0, sv[..., 0] / sv[..., -1], np.inf)
    if not np.all(np.isfinite(cond)):
        return poles, sys.B, sys.C, cond
    return poles, np.linalg.solve(V, sys.B), sys.C @ V, cond  # (..., n), (..., n, m), (..., p, n)


def realify(sys) -> StateSpace:
    """Real realisation of a complex system: ``X -> [[Re X, -Im X], [Im X, Re X]]``.

    Applied to ``A, B, C, D``, this gives a real system of order ``2n`` with ``2m`` inputs and
    ``2p`` outputs whose transfer function is the real representation of ``G(s)`` for real
    ``s``. Its H-infinity norm equals that of the complex system and its Hankel singular values
    are those of the complex system, each twice. This is how real-only oracles (SLICOT)
    check complex results. A real system is returned unchanged (as a dense ``StateSpace``).
    """
    from sysred._checks import require_system

    dense = require_system(sys).to_dense()
    if not dense.is_complex:
        return dense

    def real_block(X):
        X = np.asarray(X, dtype=complex)
        top = np.concatenate([X.real, -X.imag], axis=-1)
        bottom = np.concatenate([X.imag, X.real], axis=-1)
        return np.concatenate([top, bottom], axis=-2)

    return StateSpace(*(real_block(X) for X in dense._arrays()), dt=dense.dt)


def real_part(sys, form="real"):
    """The real system ``u -> Re(G u)`` of a complex system driven by real inputs.

    A complex system ``x' = A x + B u``, ``y = C x + D u`` (or its discrete-time analogue) fed
    real inputs ``u`` (m) has the real output ``Re y`` (p) of a real system of order ``2n``.
    With the state ``w = (Re x_1, -Im x_1, ..., Re x_n, -Im x_n)`` (the real form of the
    conjugate state, one pair per complex state) each complex entry becomes a 2x2 block:

    * ``A``: ``a -> [[Re a, Im a], [-Im a, Re a]]`` (block diagonal when ``A`` is diagonal:
      one block per mode),
    * ``B``: ``b -> [Re b, -Im b]^T`` (two rows), ``C``: ``c -> [Re c, Im c]`` (two columns),
    * ``D -> Re D``.

    Its transfer function is ``H(s) = (G(s) + conj(G(conj s))) / 2`` (real on the real axis),
    its impulse response / Markov parameters are ``Re`` of those of ``G``, and

    * ``||H||_inf <= ||G||_inf``, ``||G||_inf <= ||H||_inf + ||K||_inf``,
    * ``||H||_2^2 + ||K||_2^2 = ||G||_2^2``,

    where ``K = real_part(-i G)`` is the map ``u -> Im(G u)``. Its Hankel singular values are
    *not* those of ``G`` (a different Hankel operator). For a DSS/S4D channel (SISO) this is the
    layer's actual real map, the "natural real form" a real-only tool (python-control,
    SLICOT, pyMOR) would reduce. Unlike :func:`realify` (2m inputs, 2p outputs, the same
    Hankel operator as ``G``), inputs and outputs are not doubled.

    Parameters
    ----------
    sys : StateSpace or DiagonalStateSpace
        Complex (or real) system(s), any batch shape.
    form : {"real", "conjugate-pairs"}
        ``"real"`` (default): the real dense ``StateSpace`` above (``A`` 2x2-block diagonal
        for diagonal input). ``"conjugate-pairs"``: the same map realised with
        complex matrices as ``G`` beside its conjugate, state ``(x, conj x)``:
        ``A -> diag(A, conj A)``, ``B -> [B; conj B]``, ``C -> [C, conj C] / 2``,
        ``D -> Re D``; a ``DiagonalStateSpace`` (poles ``(l, conj l)``) when ``sys`` is one,
        so sysred's diagonal algorithms apply. It is similar to the real form (same transfer
        function, same HSVs).

    Returns
    -------
    StateSpace or DiagonalStateSpace
        Order ``2n``, ``m`` inputs, ``p`` outputs, the batch shape and ``dt`` of ``sys``. A real
        system is returned as it is (as a dense ``StateSpace`` for ``form="real"``): its output
        is already real.

    Raises
    ------
    SysredError
        Not a sysred system or an unknown ``form``.

    Examples
    --------
    One complex mode ``x[k+1] = a x[k] + b u[k]``, ``y = c x``: the real form's impulse
    response is the real part of the complex one.

    >>> import numpy as np, sysred
    >>> G = sysred.DiagonalStateSpace([0.9 * np.exp(0.5j)], [[1.0 + 0.5j]], [[2.0 - 1.0j]], dt=1.0)
    >>> R = sysred.real_part(G)
    >>> R.A.round(3).tolist(), R.B.ravel().tolist(), R.C.ravel().tolist()
    ([[0.79, 0.431], [-0.431, 0.79]], [1.0, -0.5], [2.0, -1.0])
    >>> bool(np.allclose(R.impulse_response(20), G.impulse_response(20).real))
    True
    """
    if not isinstance(sys, StateSpace | DiagonalStateSpace):
        raise SysredError(
            f"expected a sysred.StateSpace or sysred.DiagonalStateSpace, got {type(sys).__name__}"
        )
    if form not in ("real", "conjugate-pairs"):
        raise SysredError(f"form must be 'real' or 'conjugate-pairs', got {form!r}")
    if not sys.is_complex:
        return sys.to_dense() if form == "real" else sys
    if form == "conjugate-pairs":
        B = np.concatenate([sys.B, sys.B.conj()], axis=-2)  # (..., 2n, m)
        C = np.concatenate([sys.C, sys.C.conj()], axis=-1) / 2  # (..., p, 2n)
        if isinstance(sys, DiagonalStateSpace):
            poles = np.concatenate([sys.poles_, sys.poles_.conj()], axis=-1)  # (..., 2n)
            return DiagonalStateSpace(poles, B, C, sys.D.real, sys.dt)
        n = sys.n
        A = np.zeros(sys.batch_shape + (2 * n, 2 * n), dtype=complex)  # (..., 2n, 2n)
        A[..., :n, :n], A[..., n:, n:] = sys.A, sys.A.conj()
        return StateSpace(A, B, C, sys.D.real, sys.dt)

    n = sys.n
    A = np.zeros(sys.batch_shape + (2 * n, 2 * n))  # (..., 2n, 2n)
    if isinstance(sys, DiagonalStateSpace):
        k = np.arange(n)
        l = sys.poles_.astype(complex)  # (..., n)
        A[..., 2 * k, 2 * k] = A[..., 2 * k + 1, 2 * k + 1] = l.real
        A[..., 2 * k, 2 * k + 1], A[..., 2 * k + 1, 2 * k] = l.imag, -l.imag
    else:
        Ac = sys.A.astype(complex)  # (..., n, n)
        A[..., 0::2, 0::2] = A[..., 1::2, 1::2] = Ac.real
        A[..., 0::2, 1::2], A[..., 1::2, 0::2] = Ac.imag, -Ac.imag
    Bc, Cc = sys.B.astype(complex), sys.C.astype(complex)
    B = np.empty(sys.batch_shape + (2 * n, sys.m))  # (..., 2n, m)
    B[..., 0::2, :], B[..., 1::2, :] = Bc.real, -Bc.imag
    C = np.empty(sys.batch_shape + (sys.p, 2 * n))  # (..., p, 2n)
    C[..., 0::2], C[..., 1::2] = Cc.real, Cc.imag
    return StateSpace(A, B, C, sys.D.real, sys.dt)
