"""The compiled Cauchy factor kernel (numba) against the vectorised numpy loop it replaces."""

from __future__ import annotations

import numpy as np
import pytest
from _systems import random_diagonal

import sysred
from sysred import _cauchy_kernel
from sysred.lyapunov import cauchy_factor


def test_numba_is_installed_with_the_test_extra():
    # the [test] extra installs numba: the comparisons below must run in CI, not skip
    assert _cauchy_kernel.numba is not None


def _both(monkeypatch, *args, **kwargs):
    monkeypatch.setenv("SYSRED_NUMBA", "1")
    assert _cauchy_kernel.available()
    fast = cauchy_factor(*args, return_tail=True, **kwargs)
    monkeypatch.setenv("SYSRED_NUMBA", "0")
    assert not _cauchy_kernel.available()
    slow = cauchy_factor(*args, return_tail=True, **kwargs)
    return fast, slow


@pytest.mark.parametrize("discrete", [False, True])
def test_kernel_gives_the_numpy_factor(monkeypatch, discrete):
    G = random_diagonal(np.random.default_rng(0), 12, 1, 1, discrete=discrete, batch=(5,))
    (F, tf), (N, tn) = _both(monkeypatch, G.poles, G.B, discrete)
    assert F.shape == N.shape == (5, 12, 12)
    assert np.all(tf == 0) and np.all(tn == 0)
    # the same pivot order and the same arithmetic up to rounding: entrywise relative agreement
    np.testing.assert_allclose(F, N, rtol=1e-12, atol=0)
    P = F @ F.conj().swapaxes(-1, -2)
    A = np.broadcast_to(G.poles[..., :, None] * np.eye(12), (5, 12, 12))
    BBh = G.B @ G.B.conj().swapaxes(-1, -2)
    res = (
        A @ P @ A.conj().swapaxes(-1, -2) - P + BBh
        if discrete
        else A @ P + P @ A.conj().swapaxes(-1, -2) + BBh
    )
    assert np.abs(res).max() <= 1e-12 * np.abs(BBh).max()


def test_kernel_rank_tol_truncates_each_entry_at_its_own_rank(monkeypatch):
    rng = np.random.default_rng(1)
    n = 24
    a = np.exp(0.01 * (-0.5 + 1j * np.pi * np.arange(n)))
    g = rng.standard_normal((3, n)) + 0j
    g[0] *= np.exp(-2.0 * np.arange(n))  # fast decay: low rank
    g[1] *= np.exp(-0.5 * np.arange(n))
    (F, tf), (N, tn) = _both(monkeypatch, a, g[..., None], True, rank_tol=1e-12)
    full = cauchy_factor(a, g[..., None], True)
    norms = np.linalg.norm(full, axis=(-2, -1))
    kept = (np.abs(F) > 0).any(axis=-2).sum(axis=-1)
    for k in range(3):
        # the same pivots: the kept columns are the full factor's first ones, and the reported
        # tail is the Frobenius norm of the rest, below rank_tol relative
        np.testing.assert_allclose(F[k][:, : kept[k]], full[k][:, : kept[k]], rtol=1e-12)
        dropped = np.linalg.norm(full[k][:, kept[k] :])
        assert dropped == pytest.approx(tf[k], rel=1e-6, abs=1e-300)
        assert tf[k] <= 1e-12 * norms[k]
    # per-entry truncation: the fast-decaying entry keeps fewer columns than the slow one
    assert kept[0] < kept[1] <= kept[2]
    assert F.shape[-1] == kept.max() <= N.shape[-1]


def test_kernel_zero_generator_and_hsv_agree(monkeypatch):
    G = random_diagonal(np.random.default_rng(2), 9, 1, 1, discrete=True, batch=(4,))
    B = G.B.copy()
    B[1] = 0.0  # an uncontrollable batch entry: zero factor, zero HSVs
    G = sysred.DiagonalStateSpace(G.poles, B, G.C, dt=1.0)
    (F, _), _ = _both(monkeypatch, G.poles, B, True)
    assert np.all(F[1] == 0)
    monkeypatch.setenv("SYSRED_NUMBA", "1")
    h1 = sysred.hankel_singular_values(G)
    monkeypatch.setenv("SYSRED_NUMBA", "0")
    h0 = sysred.hankel_singular_values(G)
    np.testing.assert_allclose(h1, h0, rtol=1e-11, atol=1e-14 * h0.max())
    assert np.all(h1[1] == 0)


@pytest.mark.parametrize("discrete", [False, True])
def test_gramian_traces(discrete):
    from sysred.gramians import gramian_traces

    G = random_diagonal(np.random.default_rng(3), 6, 2, 3, discrete=discrete, batch=(4,))
    P, Q = sysred.gramians(G)
    tp, tq = gramian_traces(G)
    np.testing.assert_allclose(tp, np.trace(P, axis1=-2, axis2=-1).real, rtol=1e-12)
    np.testing.assert_allclose(tq, np.trace(Q, axis1=-2, axis2=-1).real, rtol=1e-12)


def test_gramian_traces_time_limited_against_the_sum():
    from sysred.gramians import gramian_traces

    rng = np.random.default_rng(7)
    G = random_diagonal(rng, 5, 2, 1, discrete=True, batch=(3,))
    poles = G.poles * np.array([1.0, 1.0, 1.0, 3.0, 4.0])  # two unstable modes: no stability
    G = sysred.DiagonalStateSpace(poles, G.B, G.C, dt=1.0)
    L = 20
    A = poles[..., :, None] * np.eye(5)  # (3, 5, 5)
    P = sum(
        np.linalg.matrix_power(A, k) @ G.B @ G.B.conj().swapaxes(-1, -2)
        @ np.linalg.matrix_power(A, k).conj().swapaxes(-1, -2)
        for k in range(L)
    )  # fmt: skip
    tp, _ = gramian_traces(G, horizon=L)
    np.testing.assert_allclose(tp, np.trace(P, axis1=-2, axis2=-1).real, rtol=1e-10)


@pytest.mark.parametrize("compiled", ["1", "0"])
def test_weighted_truncation_bounds_the_product(monkeypatch, compiled):
    # R truncated for the product S^H R: what its dropped columns add is at most the tail
    monkeypatch.setenv("SYSRED_NUMBA", compiled)
    rng = np.random.default_rng(4)
    n = 32
    a = np.exp(0.02 * (-0.5 + 1j * np.pi * np.arange(n)))
    b = (a - 1) / (-0.5 + 1j * np.pi * np.arange(n))
    c = (rng.standard_normal((3, n)) + 1j * rng.standard_normal((3, n))) * np.exp(
        -1.5 * np.arange(n)
    )
    S, s_tail = cauchy_factor(a.conj(), c.conj()[..., None], True, rank_tol=1e-14, return_tail=True)
    w = (np.abs(S) ** 2).sum(axis=-1)
    R, r_tail = cauchy_factor(a, b[:, None], True, rank_tol=1e-14, return_tail=True, weights=w)
    full = cauchy_factor(a, b[:, None], True, rank_tol=0.0, weights=w)  # same pivots, no stop
    alone = cauchy_factor(a, b[:, None], True, rank_tol=1e-14)  # truncated for R itself
    assert full.shape[-1] == alone.shape[-1] == n  # R alone has full numerical rank ...
    assert R.shape[-1] <= n - 8  # ... S^H R does not need all of it
    for k in range(3):
        j = int((np.abs(R[k]) > 0).any(axis=0).sum())
        np.testing.assert_allclose(R[k][:, :j], full[k][:, :j], rtol=1e-12)
        dropped = np.linalg.norm(S[k].conj().T @ full[k][:, j:])
        assert dropped <= r_tail[k] * (1 + 1e-10)
        limit = 1e-14 * np.linalg.norm(S[k]) * np.linalg.norm(full[k])
        assert r_tail[k] <= limit * (1 + 1e-10)


@pytest.mark.parametrize("rank_tol", [None, 1e-15])
def test_balanced_truncation_with_and_without_numba(monkeypatch, rank_tol):
    # the compiled kernels (factors, leading-r SVD) against the numpy path, whole pipeline
    rng = np.random.default_rng(6)
    n = 20
    lam = -0.5 + 1j * np.pi * np.arange(n)
    a = np.exp(np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), (40, 1))) * lam)
    c = (rng.standard_normal((40, n)) + 1j * rng.standard_normal((40, n))) * np.exp(
        -0.7 * np.arange(n)
    )
    G = sysred.DiagonalStateSpace(a, ((a - 1) / lam)[..., None], (c * a)[:, None, :], dt=1.0)
    out = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("SYSRED_NUMBA", flag)
        out[flag] = sysred.balanced_truncation(G, order=5, rank_tol=rank_tol, workers=2)
    fast, slow = out["1"], out["0"]
    keep = slow.hsv >= 1e-10 * slow.hsv[:, :1]
    np.testing.assert_allclose(fast.hsv[keep], slow.hsv[keep], rtol=1e-9)
    for k in range(0, 40, 13):
        assert sysred.hinf_norm(fast.system[k], slow.system[k]) <= 1e-8 * slow.hsv[k, 0]
        np.testing.assert_allclose(fast.W[k].conj().T @ fast.T[k], np.eye(5), atol=1e-10)
