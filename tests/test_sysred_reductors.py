"""Time-limited balanced truncation and modal truncation."""

import numpy as np
import pytest
from _systems import random_dense, random_diagonal

import sysred


def brute_force_time_limited_gramians(G, L):
    A = G.to_dense().A
    P = np.zeros((G.n, G.n), dtype=complex)
    Q = np.zeros_like(P)
    Ak = np.eye(G.n)
    for _ in range(L):
        P += Ak @ G.B @ G.B.conj().T @ Ak.conj().T
        Q += Ak.conj().T @ G.C.conj().T @ G.C @ Ak
        Ak = A @ Ak
    return P, Q


@pytest.mark.parametrize("unstable", [False, True])
def test_time_limited_gramians_match_brute_force_sum(unstable):
    rng = np.random.default_rng(0)
    G = random_diagonal(rng, 10, 1, 1, discrete=True)
    if unstable:  # DSS-softmax can have poles outside the unit circle: fine on a finite horizon
        G = sysred.DiagonalStateSpace(G.poles * 1.2, G.B, G.C, G.D, dt=1.0)
    L = 40
    R, S, path = sysred.gramian_factors(G, horizon=L)
    assert path == "diagonal-horizon"
    P, Q = brute_force_time_limited_gramians(G, L)
    np.testing.assert_allclose(R @ R.conj().T, P, atol=1e-11 * np.abs(P).max())
    np.testing.assert_allclose(S @ S.conj().T, Q, atol=1e-11 * np.abs(Q).max())
    hsv = sysred.hankel_singular_values(G, horizon=L)
    ref = np.sort(np.sqrt(np.abs(np.linalg.eigvals(P @ Q))))[::-1]
    big = ref > 1e-6 * ref[0]
    np.testing.assert_allclose(hsv[big], ref[big], rtol=1e-8)


def test_time_limited_bt_reports_kernel_error_of_truncated_kernel():
    rng = np.random.default_rng(1)
    G = random_diagonal(rng, 16, 1, 1, discrete=True, batch=(3,))
    L = 60
    res = sysred.balanced_truncation(G, order=6, horizon=L)
    assert res.horizon == L and np.all(np.isnan(res.bound))
    # brute force: the two kernels sample by sample, by matrix powers of the dense realisations
    for b in range(3):
        full, red = G[b].to_dense(), res.system[b]
        err2 = np.sum(np.abs(full.D - red.D) ** 2)
        X1, X2 = full.B, red.B
        for _ in range(L):
            err2 += np.sum(np.abs(full.C @ X1 - red.C @ X2) ** 2)
            X1, X2 = full.A @ X1, red.A @ X2
        assert abs(res.error[b] - np.sqrt(err2)) <= 1e-9 * np.sqrt(err2) + 1e-14


def test_time_limited_hsvs_tend_to_infinite_horizon_ones():
    G = random_diagonal(np.random.default_rng(2), 12, 1, 1, discrete=True)
    h_inf = sysred.hankel_singular_values(G)
    h_L = sysred.hankel_singular_values(G, horizon=20000)
    np.testing.assert_allclose(h_L, h_inf, rtol=1e-8, atol=1e-12 * h_inf[0])


def test_time_limited_bad_input():
    Gc = random_diagonal(np.random.default_rng(3), 4, 1, 1)
    with pytest.raises(sysred.SysredError, match="discrete-time"):
        sysred.balanced_truncation(Gc, order=2, horizon=10)
    Gd = random_dense(np.random.default_rng(3), 4, 1, 1, discrete=True)
    with pytest.raises(sysred.SysredError, match="diagonalize"):
        sysred.balanced_truncation(Gd, order=2, horizon=10)
    Gdiag = random_diagonal(np.random.default_rng(3), 4, 1, 1, discrete=True)
    with pytest.raises(sysred.SysredError, match="positive integer"):
        sysred.balanced_truncation(Gdiag, order=2, horizon=0)
    with pytest.raises(sysred.OrderError, match="no a-priori bound"):
        sysred.balanced_truncation(Gdiag, tol=1e-3, horizon=10)


@pytest.mark.parametrize("discrete", [False, True])
def test_modal_truncation_bound_holds_and_keeps_dominant_modes(discrete):
    rng = np.random.default_rng(4)
    G = random_diagonal(rng, 20, 2, 2, discrete=discrete, batch=(3,))
    for r in (3, 10):
        res = sysred.modal_truncation(G, r)
        assert res.system.n == r and res.system.batch_shape == (3,)
        err = sysred.hinf_norm(G, res.system)
        assert np.all(err <= res.bound * (1 + 1e-9))
        # each mode's contribution is its own H-inf norm (independent check)
        b = 0
        i = int(res.kept[b, 0])
        sl = slice(i, i + 1)
        mode = sysred.DiagonalStateSpace(G.poles[b, sl], G.B[b, sl], G.C[b, :, sl], dt=G.dt)
        assert (
            abs(sysred.hinf_norm(mode) - res.contributions[b, i]) <= 1e-8 * res.contributions[b, i]
        )
        kept_min = np.take_along_axis(res.contributions, res.kept, -1).min(-1)
        dropped = np.ones(res.contributions.shape, bool)
        np.put_along_axis(dropped, res.kept, False, -1)
        assert np.all(np.where(dropped, res.contributions, 0).max(-1) <= kept_min)


def test_modal_truncation_of_dense_system_diagonalises():
    G = random_dense(np.random.default_rng(5), 8, 1, 1)
    res = sysred.modal_truncation(G, 8)
    assert sysred.hinf_norm(G, res.system) <= 1e-8 * sysred.hinf_norm(G)
    assert res.bound == 0.0 and res.cond >= 1.0
    with pytest.raises(sysred.OrderError):
        sysred.modal_truncation(G, 9)


def decaying_batch(H=20, N=24, seed=0):
    """S4D-Lin channels with smooth kernels: numerically low-rank observability Gramians."""
    rng = np.random.default_rng(seed)
    lam = -0.5 + 1j * np.pi * np.arange(N)
    dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), H))[:, None]
    a = np.exp(dt * lam)
    b = (a - 1) / lam
    c = (rng.standard_normal((H, N)) + 1j * rng.standard_normal((H, N))) * np.exp(
        -2.0 * np.arange(N)
    )
    return sysred.DiagonalStateSpace(a, b[..., None], (c * a)[:, None, :], dt=1.0)


def test_low_rank_factors_report_their_truncation_exactly():
    from sysred.lyapunov import cauchy_factor

    G = decaying_batch()
    CH = G.C.conj().swapaxes(-1, -2)
    full = cauchy_factor(G.poles.conj(), CH, True)
    low, tail = cauchy_factor(G.poles.conj(), CH, True, rank_tol=1e-12, return_tail=True)
    assert low.shape[-1] < G.n  # it did truncate
    Q_full = full @ full.conj().swapaxes(-1, -2)
    Q_low = low @ low.conj().swapaxes(-1, -2)
    # the dropped part is PSD with trace = tail^2, and tail <= rank_tol * ||F||_F
    np.testing.assert_allclose(np.trace(Q_full - Q_low, axis1=-2, axis2=-1).real, tail**2,
                               rtol=1e-6, atol=1e-30)  # fmt: skip
    assert np.all(tail <= 1e-12 * np.linalg.norm(full, axis=(-2, -1)))


def test_low_rank_bt_agrees_with_full_bt_within_reported_error():
    G = decaying_batch()
    full = sysred.balanced_truncation(G, order=6)
    low = sysred.balanced_truncation(G, order=6, rank_tol=1e-15)
    assert low.path == "diagonal-lowrank" and full.path == "diagonal"
    assert np.all(low.hsv_error > 0) and np.all(low.hsv_error <= 1e-12 * full.hsv[:, 0])
    slack = low.hsv_error[:, None] + 1e-13 * full.hsv[:, :1]
    assert np.all(np.abs(low.hsv - full.hsv) <= slack)
    assert np.all(low.bound >= full.bound * (1 - 1e-12))
    for k in range(0, 20, 7):
        err = sysred.hinf_norm(G[k], low.system[k])
        assert err <= low.bound[k] * (1 + 1e-9)
        assert sysred.hinf_norm(low.system[k], full.system[k]) <= 1e-9 * full.hsv[k, 0]


def test_time_limited_low_rank_hsv_error_bounds_the_change():
    # horizon + rank_tol on unstable channels: hsv_error must bound the HSV change, which needs
    # the time-limited Gramian's trace (the infinite-horizon formula is meaningless there)
    rng = np.random.default_rng(0)
    n = 12
    a = np.exp(0.05 * (-0.5 + 1j * np.pi * np.arange(n))) * np.r_[np.ones(n - 2), 1.1, 1.08]
    C = (rng.standard_normal((3, 1, n)) + 0j) * np.exp(-0.8 * np.arange(n))
    B = np.ones((3, n, 1)) + 0j
    B[:, -2:] = 6.0  # input energy in the unstable modes (|a| > 1: 1/(1 - |a|^2) < 0 there)
    G = sysred.DiagonalStateSpace(a, B, C, dt=1.0)
    full = sysred.balanced_truncation(G, order=2, horizon=16)
    for rank_tol in (1e-4, 1e-2):
        low = sysred.balanced_truncation(G, order=2, horizon=16, rank_tol=rank_tol)
        assert np.all(low.hsv_error > 0)
        assert np.all(np.abs(low.hsv - full.hsv).max(axis=-1) <= low.hsv_error)
