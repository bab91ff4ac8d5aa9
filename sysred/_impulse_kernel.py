"""Compiled (numba) kernel for the closed-form impulse-response energy of diagonal systems.

The same sum as the numpy version in :mod:`sysred.impulse` (the reference and the fallback),
written as plain loops over one SISO system at a time: each pair ``(i, k)`` of modes is visited
once (the Gram matrices are Hermitian, resp. symmetric), no ``(n, n)`` temporaries, real
arithmetic in a branch-free main loop, and the GIL released, so the batch threads of
:mod:`sysred._parallel` run on all cores. Used when numba is importable and ``SYSRED_NUMBA`` is
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


def _kernel(a, aJ, la, g, J, real, near, out):  # pragma: no cover - compiled
    """``out[s] = sum_{j<J} |sum_i g[s, i] a[s, i]^j|^2`` for every SISO system ``s`` (or,
    with ``real``, of the real part), from ``S_J(z) = (1 - z^J)/(1 - z)`` per pair of modes;
    pairs with ``|1 - z| < near`` are then corrected with ``expm1(J w)/expm1(w)``, ``w`` the
    sum of the poles' logs (a second, rare pass keeps the main loop branch-free)."""
    b, n = a.shape
    near2 = near * near
    for s in range(b):
        acc = 0.0
        close = 0
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
                close += d2 < near2
                t = (wr * (nr * dr + ni * di) - wi * (ni * dr - nr * di)) / d2
                if real:
                    # symmetric part: weight g_i g_k, z = a_i a_k
                    wr, wi = gr * hr - gi * hi, gr * hi + gi * hr
                    dr, di = 1.0 - (air * akr - aii * aki), -(air * aki + aii * akr)
                    nr, ni = 1.0 - (bir * bkr - bii * bki), -(bir * bki + bii * bkr)
                    d2 = dr * dr + di * di
                    close += d2 < near2
                    t = 0.5 * (t + (wr * (nr * dr + ni * di) - wi * (ni * dr - nr * di)) / d2)
                acc += f * t
        if close:
            acc += _near_correction(a, aJ, la, g, J, real, near2, s)
        out[s] = acc


def _near_correction(a, aJ, la, g, J, real, near2, s):  # pragma: no cover - compiled
    """What the pairs with ``|1 - z|^2 < near2`` add once ``S_J`` is taken accurately."""
    n = a.shape[1]
    corr = 0.0
    half = 0.5 if real else 1.0
    for i in range(n):
        for k in range(i, n):
            f = half if k == i else 2.0 * half
            for sym in range(2 if real else 1):
                if sym:
                    z, zJ = a[s, i] * a[s, k], aJ[s, i] * aJ[s, k]
                    w, wt = la[s, i] + la[s, k], g[s, i] * g[s, k]
                else:
                    z, zJ = np.conj(a[s, i]) * a[s, k], np.conj(aJ[s, i]) * aJ[s, k]
                    w, wt = np.conj(la[s, i]) + la[s, k], np.conj(g[s, i]) * g[s, k]
                d = 1.0 - z
                if d.real * d.real + d.imag * d.imag >= near2:
                    continue
                exact = complex(J, 0.0) if w == 0 else _expm1(J * w) / _expm1(w)
                # what the main loop added: the quotient (inf/nan at d = 0; removed here)
                quotient = (1.0 - zJ) / d if d != 0 else 0j
                corr += f * (wt * (exact - quotient)).real
    return corr


def _expm1(w):  # pragma: no cover - compiled
    """``exp(w) - 1`` accurate near 0: ``expm1(x) cos y - 2 sin^2(y/2) + i e^x sin y``."""
    x, y = w.real, w.imag
    h = np.sin(0.5 * y)
    return complex(np.expm1(x) * np.cos(y) - 2.0 * h * h, np.exp(x) * np.sin(y))


_compiled = None
_compile_lock = threading.Lock()


def _get_kernel():
    """The compiled kernel (compiled once, or loaded from numba's cache; the batch threads
    may ask at the same time). The helpers become compiled functions first, because the
    kernel binds the globals it calls when it is compiled."""
    global _compiled, _expm1, _near_correction
    with _compile_lock:
        if _compiled is None:
            import numba

            # error_model="numpy": x / 0 gives inf or nan (fixed by the near-one pass), no raise
            opts = dict(nogil=True, cache=True, error_model="numpy")
            _expm1 = numba.njit(**opts)(_expm1)
            _near_correction = numba.njit(**opts)(_near_correction)
            _compiled = numba.njit(**opts)(_kernel)
    return _compiled


def energies(a, aJ, la, B, C, J: int, real: bool, near: float) -> np.ndarray:
    """Energies of a flat batch: ``a, aJ = a^J, la = log a`` ``(b, n)``, ``B (b, n, m)``,
    ``C (b, p, n)``; returns ``(b,)`` float64 (module docstring).

    A MIMO system's energy is the sum over its ``p m`` SISO entries ``g = C[q, :] * B[:, r]``
    (same poles), so the kernel only handles SISO rows.
    """
    b, n = a.shape
    g = C[..., :, None, :] * np.swapaxes(B, -1, -2)[..., None, :, :]  # (b p m n)
    P = g.shape[1] * g.shape[2]
    rows = [np.repeat(x, P, axis=0) if P > 1 else x for x in (a, aJ, la)]  # (bP n)
    rows = [np.ascontiguousarray(x, dtype=np.complex128) for x in (*rows, g.reshape(b * P, n))]
    out = np.empty(b * P)
    _get_kernel()(*rows, int(J), bool(real), float(near), out)
    return out.reshape(b, P).sum(-1)
