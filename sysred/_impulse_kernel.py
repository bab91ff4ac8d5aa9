"""Compiled (numba) kernel for the closed-form impulse-response energy of diagonal systems.

The same sum as the numpy version in :mod:`sysred.impulse` (the reference and the fallback),
written as plain loops over one SISO system at a time: each pair ``(i, k)`` of modes is visited
once (the Gram matrices are Hermitian, resp. symmetric), no ``(n, n)`` temporaries, real
arithmetic, and the GIL released, so the batch threads of :mod:`sysred._parallel` run on all
cores. Pairs of poles whose product is near 1 (where ``(1 - z^J)/(1 - z)`` loses digits; for
slowly decaying channels that is every pair of neighbouring modes) take the ``expm1`` branch.
Used when numba is importable and ``SYSRED_NUMBA`` is not 0
(:func:`sysred._cauchy_kernel.available`); both give the same energies up to rounding (tested).
"""

from __future__ import annotations

import threading

import numpy as np

from sysred import _cauchy_kernel

__all__ = ["available", "energies"]


def available() -> bool:
    """Whether the compiled kernel will be used (same switch as the Gramian kernel)."""
    return _cauchy_kernel.available()


def _kernel(a, aJ, la, g, J, real, near, split, out, out_first):  # pragma: no cover - compiled
    """``out[s] = sum_{j<J} |sum_i g[s, i] a[s, i]^j|^2`` for every SISO system ``s`` (or,
    with ``real``, of the real part), from ``S_J(z) = (1 - z^J)/(1 - z)`` per pair of modes
    (``aJ = a^J``); where ``|1 - z| < near`` (the quotient would lose digits) as
    ``expm1(J w)/expm1(w)`` with ``w = log z`` from the poles' logs ``la``. ``out_first[s]``:
    the same over the first ``split`` modes only (pairs with both indices below it)."""
    b, n = a.shape
    near2 = near * near
    for s in range(b):
        acc = 0.0
        acc_first = 0.0
        for i in range(n):
            air, aii = a[s, i].real, a[s, i].imag
            bir, bii = aJ[s, i].real, aJ[s, i].imag
            gr, gi = g[s, i].real, g[s, i].imag
            for k in range(i, n):
                f = 1.0 if k == i else 2.0  # (i, k) and (k, i) together
                akr, aki = a[s, k].real, a[s, k].imag
                bkr, bki = aJ[s, k].real, aJ[s, k].imag
                hr, hi = g[s, k].real, g[s, k].imag
                # Hermitian part: weight conj(g_i) g_k, z = conj(a_i) a_k
                wr, wi = gr * hr + gi * hi, gr * hi - gi * hr
                dr, di = 1.0 - (air * akr + aii * aki), -(air * aki - aii * akr)
                d2 = dr * dr + di * di
                if d2 >= near2:
                    nr, ni = 1.0 - (bir * bkr + bii * bki), -(bir * bki - bii * bkr)
                    Sr, Si = (nr * dr + ni * di) / d2, (ni * dr - nr * di) / d2
                else:
                    Sr, Si = _near_one(la[s, i].conjugate() + la[s, k], J)
                t = wr * Sr - wi * Si
                if real:
                    # symmetric part: weight g_i g_k, z = a_i a_k
                    wr, wi = gr * hr - gi * hi, gr * hi + gi * hr
                    dr, di = 1.0 - (air * akr - aii * aki), -(air * aki + aii * akr)
                    d2 = dr * dr + di * di
                    if d2 >= near2:
                        nr, ni = 1.0 - (bir * bkr - bii * bki), -(bir * bki + bii * bkr)
                        Sr, Si = (nr * dr + ni * di) / d2, (ni * dr - nr * di) / d2
                    else:
                        Sr, Si = _near_one(la[s, i] + la[s, k], J)
                    t = 0.5 * (t + wr * Sr - wi * Si)
                acc += f * t
                if k < split:
                    acc_first += f * t
        out[s] = acc
        out_first[s] = acc_first


def _near_one(w, J):  # pragma: no cover - compiled
    """``S_J = expm1(J w)/expm1(w)`` (``J`` at ``w = 0``) as ``(re, im)``; ``expm1`` of a
    complex ``x + iy`` as ``expm1(x) cos y - 2 sin^2(y/2) + i e^x sin y`` (accurate near 0)."""
    if w == 0:
        return float(J), 0.0
    x, y = w.real, w.imag
    h = np.sin(0.5 * y)
    er, ei = np.expm1(x) * np.cos(y) - 2.0 * h * h, np.exp(x) * np.sin(y)
    x, y = J * x, J * y
    h = np.sin(0.5 * y)
    nr, ni = np.expm1(x) * np.cos(y) - 2.0 * h * h, np.exp(x) * np.sin(y)
    d2 = er * er + ei * ei
    return (nr * er + ni * ei) / d2, (ni * er - nr * ei) / d2


_compiled = None
_compile_lock = threading.Lock()


def _get_kernel():
    """The compiled kernel (compiled once, or loaded from numba's cache; the batch threads
    may ask at the same time)."""
    global _compiled, _near_one
    with _compile_lock:
        if _compiled is None:
            import numba

            # error_model="numpy": x / 0 gives inf or nan (overflowing responses), no raise
            opts = dict(nogil=True, cache=True, error_model="numpy")
            _near_one = numba.njit(**opts)(_near_one)  # before the kernel, which binds it
            _compiled = numba.njit(**opts)(_kernel)
    return _compiled


def energies(a, aJ, la, B, C, J: int, real: bool, near: float, split=None):
    """Energies of a flat batch: ``a, aJ = a^J, la = log a`` ``(b, n)``, ``B (b, n, m)``,
    ``C (b, p, n)``; returns ``(b,)`` float64 (module docstring), and with ``split`` also the
    energies of the subsystems of the first ``split`` modes, ``(b,)``, from the same pass.

    A MIMO system's energy is the sum over its ``p m`` SISO entries ``g = C[q, :] * B[:, r]``
    (same poles), so the kernel only handles SISO rows.
    """
    b, n = a.shape
    g = C[..., :, None, :] * np.swapaxes(B, -1, -2)[..., None, :, :]  # (b p m n)
    P = g.shape[1] * g.shape[2]
    rows = [np.repeat(x, P, axis=0) if P > 1 else x for x in (a, aJ, la)]  # (bP n)
    rows = [np.ascontiguousarray(x, dtype=np.complex128) for x in (*rows, g.reshape(b * P, n))]
    out, out_first = np.empty(b * P), np.empty(b * P)
    first = n if split is None else int(split)
    _get_kernel()(*rows, int(J), bool(real), float(near), first, out, out_first)
    if split is None:
        return out.reshape(b, P).sum(-1)
    return out.reshape(b, P).sum(-1), out_first.reshape(b, P).sum(-1)
