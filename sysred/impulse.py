r"""Finite-horizon 2-norms of impulse responses of diagonal systems, in closed form.

For a discrete-time system with ``A = diag(a)`` the impulse response is ``h_0 = D`` and
``h_{j+1} = C diag(a)^j B`` (``j >= 0``). Its energy over the first ``L`` samples is a quadratic
form in the geometric sums of the pole products, so it costs ``O(n^2 (p + m))`` per system
instead of the ``O(n L p m)`` of materialising the samples:

.. math::

    \sum_{k<L} \|h_k\|_F^2 = \|D\|_F^2 + \sum_{n,n'} (C^H C)_{nn'}\,
        \overline{(B B^H)_{nn'}}\; S_{L-1}(\bar a_n a_{n'}),
    \qquad S_J(z) = \sum_{j<J} z^j = \frac{1 - z^J}{1 - z}\ (= J \text{ at } z = 1).

The real part, what a real layer computes from a complex system, uses
:math:`\|\mathrm{Re}\,h\|^2 = (\|h\|^2 + \mathrm{Re}\sum h^2)/2` with
:math:`\sum_{k} \sum_{pm} h_{k,pm}^2 = \sum \mathrm{Re} (D^2) + \sum_{n,n'} (C^T C)_{nn'}
(B B^T)_{nn'} S_{L-1}(a_n a_{n'})` (``reference.md`` section 10).

The norm of a difference ``G1 - G2`` is the norm of the parallel connection (poles stacked,
``C = [C1, -C2]``, ``D = D1 - D2``), which never needs the two responses.
"""

from __future__ import annotations

import numpy as np

from sysred import _impulse_kernel
from sysred._checks import require_system
from sysred._parallel import run_chunks, split_batch
from sysred.errors import ShapeError, SysredError
from sysred.systems import DiagonalStateSpace

__all__ = ["impulse_norm"]

#: Where ``|1 - z| < NEAR_ONE`` the quotient ``(1 - z^J)/(1 - z)`` loses
#: ``log10(1/|1 - z|)`` digits; there :math:`S_J` is evaluated as
#: ``expm1(J w)/expm1(w)`` with ``w = log z`` formed from the poles' logarithms.
NEAR_ONE = 1e-2

#: Samples per block of the explicit summation (the fallback), bounding its memory.
_CHUNK = 256


def impulse_norm(
    sys, length, other=None, real=False, rtol=1e-8, workers=None, return_sys_norm=False
):
    r"""2-norm of the first ``length`` impulse-response samples of a diagonal discrete system.

    .. math::

        \|h\|_{2,L} = \Big(\sum_{k=0}^{L-1} \|h_k\|_F^2\Big)^{1/2}, \qquad h_0 = D, \quad
        h_k = C\,\mathrm{diag}(a)^{k-1} B,

    of ``sys``, or of ``sys - other`` (the two responses' difference) if ``other`` is given, or
    of the real part :math:`\mathrm{Re}\,h_k` with ``real=True``. Computed in closed form from
    the Gram matrix of the pole powers (module docstring): ``O(n^2 (p + m))`` per system, no
    sample is formed. Unstable poles are fine (the horizon is finite).

    Parameters
    ----------
    sys : DiagonalStateSpace
        Discrete time, any batch shape.
    length : int
        Number of samples ``L >= 1`` (``h_0 .. h_{L-1}``).
    other : DiagonalStateSpace, optional
        Same ``m``, ``p``, ``dt``, batch shape broadcastable with ``sys``'s; any order.
    real : bool
        Norm of the real part of the (complex) response.
    rtol : float
        Relative accuracy wanted. The closed form sums terms of size up to
        :math:`T = (\sum_n \|h^{(n)}\|)^2` (the modes' separate response norms) into a result
        that may be much smaller (two nearly equal systems), so its absolute rounding error is
        at most about :math:`c\,\epsilon\,T` with :math:`c = 4n + 216` (measured: below
        :math:`\epsilon T`). Batch entries where that estimate exceeds ``rtol`` relative of the
        norm are summed explicitly instead (``O(n L p m)`` each; an exact difference or a zero
        response always is). Not counted: the powers :math:`a^k` themselves carry the relative
        error :math:`k\epsilon|\log a|` of any float64 evaluation (also of a materialised
        response), the conditioning of the data.
    workers : int, optional
        Threads over the batch (default: sysred's, ``$SYSRED_WORKERS``).
    return_sys_norm : bool
        With ``other``: also return the norm of ``sys`` alone (broadcast to the common batch
        shape), from the same pass over the pairs of modes (its Gram matrix is a block of the
        difference's), with the same accuracy control.

    Returns
    -------
    ndarray
        Shape ``batch_shape``, float64. ``inf`` where the response overflows float64 (unstable
        poles with :math:`|a|^L` beyond ~1e150).
    ndarray
        With ``return_sys_norm``: the norm of ``sys``, same shape.

    Raises
    ------
    SysredError
        Not a ``DiagonalStateSpace`` (dense systems: :func:`sysred.diagonalize` first, or
        :func:`sysred.impulse_error`), continuous time, ``length < 1``, mismatched ``other``.

    Examples
    --------
    One pole ``a = 0.5``, ``B = C = 1``, ``D = 0``: ``h = (0, 1, 0.5, 0.25, ...)``, so over
    three samples the norm is :math:`\sqrt{1 + 1/4}`:

    >>> import numpy as np, sysred
    >>> from sysred.impulse import impulse_norm
    >>> G = sysred.DiagonalStateSpace([0.5], [[1.0]], [[1.0]], dt=1.0)
    >>> bool(np.isclose(impulse_norm(G, 3), np.sqrt(1.25)))
    True
    >>> G1 = sysred.DiagonalStateSpace([0.5, 0.1], [[1.0], [1.0]], [[1.0, 1e-3]], dt=1.0)
    >>> bool(np.isclose(impulse_norm(G1, 50, other=G), 1e-3 * np.sqrt(1 / (1 - 0.01))))
    True
    """
    G = _combined(sys, other)
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 1:
        raise SysredError(f"length must be an integer >= 1 (number of samples), got {length!r}")
    if not (isinstance(rtol, int | float) and rtol > 0):
        raise SysredError(f"rtol must be a positive number, got {rtol!r}")
    if return_sys_norm and other is None:
        raise SysredError("return_sys_norm=True needs other= (the norm of sys is the result)")
    batch = G.batch_shape
    if G.n == 0 or length == 1:  # only h_0 = D (no batch split: nothing to share out)
        value = np.sqrt(_norm_sq(G, int(length), bool(real), float(rtol))).reshape(batch)
        if return_sys_norm:
            return value, impulse_norm(_broadcast(sys, batch), length, None, real, rtol)
        return value
    chunks = split_batch(G, workers)
    owns = split_batch(_broadcast(sys, batch), workers) if return_sys_norm else [None] * len(chunks)
    parts = run_chunks(
        lambda chunk, own: _norm_sq(chunk, int(length), bool(real), float(rtol), own),
        chunks,
        owns,
    )
    if not return_sys_norm:
        return np.sqrt(np.concatenate([np.atleast_1d(p) for p in parts]).reshape(batch))
    diff, own = (np.concatenate([np.atleast_1d(p[i]) for p in parts]) for i in (0, 1))
    return np.sqrt(diff).reshape(batch), np.sqrt(own).reshape(batch)


def _broadcast(sys: DiagonalStateSpace, batch) -> DiagonalStateSpace:
    """``sys`` with its arrays broadcast to the batch shape ``batch``."""
    if sys.batch_shape == tuple(batch):
        return sys
    k = len(sys.batch_shape)
    poles, B, C, D = (np.broadcast_to(x, tuple(batch) + x.shape[k:]) for x in sys._arrays())
    return DiagonalStateSpace(poles, B, C, D, dt=sys.dt)


def _combined(sys, other) -> DiagonalStateSpace:
    """``sys`` (checked), or the parallel connection ``sys - other`` as one diagonal system."""
    for name, G in (("sys", sys), ("other", other)):
        if G is None:
            continue
        require_system(G)
        if not isinstance(G, DiagonalStateSpace):
            raise SysredError(
                f"impulse_norm needs a DiagonalStateSpace ({name} is a dense StateSpace): "
                "sysred.diagonalize it first, or use sysred.impulse_error"
            )
        if not G.is_discrete:
            raise SysredError(f"impulse_norm samples a discrete-time system; {name} has dt=None")
    if other is None:
        return sys
    if (sys.m, sys.p) != (other.m, other.p):
        raise ShapeError(f"systems differ in (m, p): {(sys.m, sys.p)} vs {(other.m, other.p)}")
    if sys.dt != other.dt:
        raise SysredError(f"systems differ in sample time: dt={sys.dt} vs dt={other.dt}")
    try:
        batch = np.broadcast_shapes(sys.batch_shape, other.batch_shape)
    except ValueError:
        raise ShapeError(
            f"batch shapes do not broadcast: {sys.batch_shape} vs {other.batch_shape}"
        ) from None

    def cat(x1, x2, axis):
        x1 = np.broadcast_to(x1, batch + x1.shape[len(sys.batch_shape) :])
        x2 = np.broadcast_to(x2, batch + x2.shape[len(other.batch_shape) :])
        return np.concatenate([x1, x2], axis=axis)

    return DiagonalStateSpace(
        cat(sys.poles, other.poles, -1),
        cat(sys.B, other.B, -2),
        cat(sys.C, -other.C, -1),
        sys.D - other.D,
        dt=sys.dt,
    )


def _geometric(z, J, logs=None):
    r""":math:`S_J(z) = \sum_{j<J} z^j` for products ``z = u v`` given as ``(u, v)`` pairs.

    ``z`` is ``(u, v, uJ, vJ)`` with ``u``, ``v`` broadcasting to the result's shape and
    ``uJ = u^J``, ``vJ = v^J``: the quotient ``(1 - uJ vJ)/(1 - u v)`` needs no power per
    entry. ``logs = (log u, log v)`` (same shapes) are used where ``|1 - u v| < NEAR_ONE``.
    """
    u, v, uJ, vJ = z
    prod = u * v
    one_minus = 1.0 - prod
    with np.errstate(divide="ignore", invalid="ignore"):
        S = (1.0 - uJ * vJ) / one_minus
    near = np.abs(one_minus) < NEAR_ONE
    if np.any(near):
        lu, lv = (np.broadcast_to(x, near.shape)[near] for x in logs)
        w = lu + lv
        with np.errstate(divide="ignore", invalid="ignore"):
            Sn = np.expm1(J * w) / np.expm1(w)
        S[near] = np.where(w == 0, J, Sn)
    return S


def _flat_arrays(G: DiagonalStateSpace):
    """``a, B, C, D`` of ``G`` as complex arrays with one flat batch axis (unbatched: 1)."""
    b = int(np.prod(G.batch_shape))
    return tuple(
        x.astype(complex).reshape((b,) + x.shape[x.ndim - k :])
        for x, k in ((G.poles, 1), (G.B, 2), (G.C, 2), (G.D, 2))
    )


def _norm_sq(G: DiagonalStateSpace, L: int, real: bool, rtol: float, first=None):
    """Squared norms of one flat chunk (closed form, explicit where it is not accurate).

    ``first``: the subsystem of ``G``'s first ``first.n`` modes with its own feed-through
    (``sys`` of ``sys - other``); its squared norms are returned too, from the same pass.
    """
    n = G.n
    a, B, C, D = _flat_arrays(G)
    J = L - 1  # J: samples h_1 .. h_{L-1} carried by the modes
    Dr = D.real if real else D
    value = np.sum(np.abs(Dr) ** 2, axis=(-2, -1))  # (b)
    if J == 0 or n == 0:
        return value if first is None else (value, _norm_sq(first, L, real, rtol))
    with np.errstate(over="ignore", invalid="ignore"):
        aJ = a**J  # (b n) one power per mode
    with np.errstate(divide="ignore"):
        la = np.log(a)  # (b n) only used near z = 1, where a != 0
    k = None if first is None else first.n
    if _impulse_kernel.available():
        energy = _impulse_kernel.energies(a, aJ, la, B, C, J, real, NEAR_ONE, k)  # (b)
    else:
        energy = _energy(a, aJ, la, B, C, J, real, k)  # (b)
    if first is None:
        return _checked(value + energy, (a, aJ, la, B, C, Dr), L, real, rtol)
    D1 = _flat_arrays(first)[3]
    D1r = D1.real if real else D1
    own = np.sum(np.abs(D1r) ** 2, axis=(-2, -1)) + energy[1]  # (b)
    modes = (a[:, :k], aJ[:, :k], la[:, :k], B[:, :k], C[..., :k], D1r)
    return (
        _checked(value + energy[0], (a, aJ, la, B, C, Dr), L, real, rtol),
        _checked(own, modes, L, real, rtol),
    )


def _checked(value, arrays, L: int, real: bool, rtol: float) -> np.ndarray:
    """``value`` (closed-form squared norms), re-summed explicitly where its rounding estimate
    exceeds ``rtol``; ``arrays`` = ``(a, a^J, log a, B, C, D)`` of the system."""
    a, aJ, la, B, C, Dr = arrays
    n, J = a.shape[-1], L - 1
    # Rounding estimate: |S_nn'| <= sqrt(S_nn S_n'n') (Cauchy-Schwarz on the power sequences),
    # so every term is at most |mode n| |mode n'| in size, and their sum T = (sum |mode|)^2;
    # the sums and the quotients (|1 - z| >= NEAR_ONE) lose at most c eps T.
    with np.errstate(over="ignore", invalid="ignore"):
        S_diag = _geometric((np.abs(a) ** 2, 1.0, np.abs(aJ) ** 2, 1.0), J, (2 * la.real, 0.0))
        mode = np.linalg.norm(C, axis=-2) * np.linalg.norm(B, axis=-1) * np.sqrt(S_diag.real)
    T = np.sum(mode, axis=-1) ** 2  # (b)
    est = (4 * n + 2 / NEAR_ONE + 16) * np.finfo(float).eps * T
    overflow = ~np.isfinite(T)
    redo = ~overflow & ~(est <= 2 * rtol * np.maximum(value, 0.0))
    if np.any(redo):
        value[redo] = _explicit_sq(a[redo], B[redo], C[redo], Dr[redo], L, real)
    value[overflow] = np.inf
    return np.maximum(value, 0.0)


def _energy(a, aJ, la, B, C, J: int, real: bool, split=None):
    """``sum_{j<J} ||C diag(a)^j B||^2`` (or of the real part) from the ``(n, n)`` Gram sums;
    with ``split`` also that of the first ``split`` modes (the leading block of the same
    terms)."""
    CH = np.swapaxes(C.conj(), -1, -2)  # (b n p)
    herm = (CH @ C) * (B @ np.swapaxes(B, -1, -2).conj()).conj()  # (b n n)
    with np.errstate(over="ignore", invalid="ignore"):
        S = _geometric(
            (a.conj()[..., :, None], a[..., None, :], aJ.conj()[..., :, None], aJ[..., None, :]),
            J,
            (la.conj()[..., :, None], la[..., None, :]),
        )  # (b n n)
        terms = herm * S  # (b n n)
        if real:
            sym = (np.swapaxes(C, -1, -2) @ C) * (B @ np.swapaxes(B, -1, -2))  # (b n n)
            S = _geometric(
                (a[..., :, None], a[..., None, :], aJ[..., :, None], aJ[..., None, :]),
                J,
                (la[..., :, None], la[..., None, :]),
            )  # (b n n)
            terms = (terms + sym * S) / 2
    energy = np.sum(terms, axis=(-2, -1)).real  # (b)
    if split is None:
        return energy
    return energy, np.sum(terms[..., :split, :split], axis=(-2, -1)).real


def _explicit_sq(a, B, C, Dr, L: int, real: bool) -> np.ndarray:
    """The same squared norms by summing the samples, ``_CHUNK`` at a time (the fallback).

    Powers by blocks: ``a^(start + i) = a^start a^i`` with the ``a^i`` (``i < _CHUNK``) formed
    once, so each block costs one multiplication per entry.
    """
    value = np.sum(np.abs(Dr) ** 2, axis=(-2, -1))
    base = a[..., None, :] ** np.arange(min(_CHUNK, L - 1))[:, None]  # (b k n)
    for start in range(0, L - 1, _CHUNK):
        k = min(_CHUNK, L - 1 - start)
        powers = base[..., :k, :] * (a**start)[..., None, :]  # (b k n) exponents start + i
        h = np.einsum("...pn,...kn,...nm->...kpm", C, powers, B)  # (b k p m) samples h_{j+1}
        h = h.real if real else h
        value = value + np.sum(np.abs(h) ** 2, axis=(-3, -2, -1))
    return value
