"""Compiled (numba) kernel for the closed-form impulse-response energy of diagonal systems.

The same sum as the numpy version in :mod:`sysred.impulse` (the reference and the fallback),
written as plain loops over one SISO system at a time: each pair ``(i, k)`` of modes is visited
once (the Gram matrices are Hermitian, resp. symmetric), no ``(n, n)`` temporaries, real
arithmetic in a branch-free loop, and the GIL released, so the batch threads of
:mod:`sysred._parallel` run on all cores. Systems with a pair of poles whose product is near 1
(where ``(1 - z^J)/(1 - z)`` loses digits) are flagged and left to the numpy version, which
evaluates those pairs as ``expm1(J w)/expm1(w)``; one small compiled function loads fast from
numba's cache. Used when numba is importable and ``SYSRED_NUMBA`` is
not 0 (:func:`sysred._cauchy_kernel.available`); both give the same energies up to rounding
(tested).
"""

from __future__ import annotations

import threading

import numpy as np

from sysred import _cauchy_kernel

__all__ = ["available", "energies"]


def available() -> bool:
    """Whether the compiled kernel will be used (same switch as the Gramian kernel)."""
    return _cauchy_kernel.available()


def _kernel(a, aJ, g, real, near, out, close):  # pragma: no cover - compiled
    """``out[s] = sum_{j<J} |sum_i g[s, i] a[s, i]^j|^2`` for every SISO system ``s`` (or,
    with ``real``, of the real part), from ``S_J(z) = (1 - z^J)/(1 - z)`` per pair of modes
    (``aJ = a^J``). ``close[s]`` counts the pairs with ``|1 - z| < near``, where the quotient
    loses digits: the caller recomputes those systems (branch-free main loop)."""
    b, n = a.shape
    near2 = near * near
    for s in range(b):
        acc = 0.0
        count = 0
        for i in range(n):
            air, aii = a[s, i].real, a[s, i].imag
            bir, bii = aJ[s, i].real, aJ[s, i].imag
            gr, gi = g[s, i].real, g[s, i].imag
            for k in range(i, n):
                f = 1.0 if k == i else 2.0  # (i, k) and (k, i) together
                akr, aki = a[s, k].real, a[s, k].imag
                bkr, bki = aJ[s, k].real, aJ[s, k].imag
                hr, hi = g[s, k].real, g[s, k].imag
                # Hermitian part: weight conj(g_i) g_k, z = conj(a_i) a_k; S = (1 - zJ)/(1 - z)
                wr, wi = gr * hr + gi * hi, gr * hi - gi * hr
                dr, di = 1.0 - (air * akr + aii * aki), -(air * aki - aii * akr)
                nr, ni = 1.0 - (bir * bkr + bii * bki), -(bir * bki - bii * bkr)
                d2 = dr * dr + di * di
                count += d2 < near2
                t = (wr * (nr * dr + ni * di) - wi * (ni * dr - nr * di)) / d2
                if real:
                    # symmetric part: weight g_i g_k, z = a_i a_k
                    wr, wi = gr * hr - gi * hi, gr * hi + gi * hr
                    dr, di = 1.0 - (air * akr - aii * aki), -(air * aki + aii * akr)
                    nr, ni = 1.0 - (bir * bkr - bii * bki), -(bir * bki + bii * bkr)
                    d2 = dr * dr + di * di
                    count += d2 < near2
                    t = 0.5 * (t + (wr * (nr * dr + ni * di) - wi * (ni * dr - nr * di)) / d2)
                acc += f * t
        out[s] = acc
        close[s] = count


_compiled = None
_compile_lock = threading.Lock()


def _get_kernel():
    """The compiled kernel (compiled once, or loaded from numba's cache; the batch threads
    may ask at the same time)."""
    global _compiled
    with _compile_lock:
        if _compiled is None:
            import numba

            # error_model="numpy": x / 0 gives inf or nan (such systems are recomputed), no raise
            _compiled = numba.njit(nogil=True, cache=True, error_model="numpy")(_kernel)
    return _compiled


def energies(a, aJ, B, C, real: bool, near: float) -> tuple[np.ndarray, np.ndarray]:
    """Energies of a flat batch: ``a, aJ = a^J`` ``(b, n)``, ``B (b, n, m)``, ``C (b, p, n)``.

    Returns ``(energy, close)``, both ``(b,)``: the energies (module docstring) and whether
    some pair of modes had ``|1 - z| < near`` (those energies must be recomputed).
    A MIMO system's energy is the sum over its ``p m`` SISO entries ``g = C[q, :] * B[:, r]``
    (same poles), so the kernel only handles SISO rows.
    """
    b, n = a.shape
    g = C[..., :, None, :] * np.swapaxes(B, -1, -2)[..., None, :, :]  # (b p m n)
    P = g.shape[1] * g.shape[2]
    rows = [np.repeat(x, P, axis=0) if P > 1 else x for x in (a, aJ)]  # (bP n)
    rows = [np.ascontiguousarray(x, dtype=np.complex128) for x in (*rows, g.reshape(b * P, n))]
    out = np.empty(b * P)
    close = np.empty(b * P, dtype=np.int64)
    _get_kernel()(*rows, bool(real), float(near), out, close)
    return out.reshape(b, P).sum(-1), close.reshape(b, P).sum(-1) > 0
