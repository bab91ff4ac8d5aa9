"""System types, evaluation, conversions, and the documented errors on bad input."""

import warnings

import numpy as np
import pytest
from _systems import random_dense, random_diagonal

import sysred


def test_diagonal_transfer_matches_dense_and_markov_matches_power_sum():
    G = random_diagonal(np.random.default_rng(0), 6, 2, 3, discrete=True, batch=(4,))
    D = G.to_dense()
    z = np.exp(1j * np.array([0.1, 1.0, -2.5]))
    np.testing.assert_allclose(G.transfer(z), D.transfer(z), rtol=1e-12)
    h = G.impulse_response(5)
    assert h.shape == (4, 5, 3, 2)
    np.testing.assert_allclose(h, D.impulse_response(5), rtol=1e-12, atol=1e-14)
    # independent: h_k = sum_i C[:, i] a_i^(k-1) B[i, :]
    k = 3
    ref = np.einsum("bpi,bi,bim->bpm", G.C, G.poles ** (k - 1), G.B)
    np.testing.assert_allclose(h[:, k], ref, rtol=1e-12)
    np.testing.assert_allclose(h[:, 0], G.D)


def test_frequency_response_discrete_uses_sample_time():
    G = sysred.StateSpace([[0.5]], [[1.0]], [[1.0]], dt=0.1)
    w = np.array([3.0])
    np.testing.assert_allclose(G.frequency_response(w)[0, 0, 0], 1 / (np.exp(0.3j) - 0.5))


def test_diagonalize_roundtrip_and_condition_number():
    G = random_dense(np.random.default_rng(1), 8, 2, 2)
    modal, cond = sysred.diagonalize(G)
    s = np.array([0.3j, 2.0 + 1j])
    np.testing.assert_allclose(modal.transfer(s), G.transfer(s), rtol=1e-9)
    assert cond >= 1.0
    # a nearly defective matrix is reported as badly conditioned
    J = sysred.StateSpace([[-1.0, 1.0], [0.0, -1.0 - 1e-10]], [[0.0], [1.0]], [[1.0, 0.0]])
    assert sysred.diagonalize(J)[1] > 1e8


def test_realify_doubles_hsvs_and_keeps_hinf():
    G = random_diagonal(np.random.default_rng(2), 5, 1, 1)
    R = sysred.realify(G)
    assert not R.is_complex and R.n == 10
    h, hr = sysred.hankel_singular_values(G), sysred.hankel_singular_values(R)
    np.testing.assert_allclose(np.repeat(h, 2), hr, rtol=1e-10)
    assert abs(sysred.hinf_norm(G) - sysred.hinf_norm(R)) <= 1e-9 * sysred.hinf_norm(G)


def test_integer_storage_is_cast_before_arithmetic():
    # uint8 storage as in several SLICOT files: -C must not wrap around
    C = np.array([[1, 2]], dtype=np.uint8)
    G = sysred.StateSpace(-np.eye(2), np.ones((2, 1)), C)
    assert G.C.dtype == np.float64
    assert (-G.C).min() == -2.0


def test_batch_indexing_and_broadcast():
    rng = np.random.default_rng(3)
    poles = -rng.uniform(0.1, 1, (3, 4))
    G = sysred.DiagonalStateSpace(poles, np.ones((4, 1)), np.ones((1, 4)))  # B, C broadcast
    assert G.batch_shape == (3,) and len(G) == 3
    assert G[1].batch_shape == () and np.allclose(G[1].poles, poles[1])


def test_bt_tol_picks_smallest_order_meeting_bound():
    G = random_diagonal(np.random.default_rng(4), 20, 1, 1, discrete=True)
    hsv = sysred.hankel_singular_values(G)
    tol = 2.5 * hsv[6]
    res = sysred.balanced_truncation(G, tol=tol)
    assert res.bound <= tol
    assert sysred.tail_bound(hsv, res.order - 1) > tol
    assert sysred.hinf_norm(G, res.system) <= res.bound * (1 + 1e-9)


def test_bound_counts_equal_hsvs_once():
    hsv = np.array([3.0, 2.0, 1.0, 1.0, 0.5])
    assert sysred.tail_bound(hsv, 2) == pytest.approx(2 * (1.0 + 0.5))
    assert sysred.tail_bound(hsv, 1) == pytest.approx(2 * (2.0 + 1.0 + 0.5))


# ---------------------------------------------------------------- bad input


def test_unstable_and_marginal_systems_are_refused():
    unstable_ct = sysred.StateSpace([[0.5]], [[1.0]], [[1.0]])
    marginal_ct = sysred.DiagonalStateSpace([-1.0, 1j], np.ones((2, 1)), np.ones((1, 2)))
    unstable_dt = sysred.DiagonalStateSpace([0.5, 1.01], np.ones((2, 1)), np.ones((1, 2)), dt=1)
    marginal_dt = sysred.DiagonalStateSpace([np.exp(0.3j)], [[1.0]], [[1.0]], dt=1.0)
    for G in (unstable_ct, marginal_ct, unstable_dt, marginal_dt):
        with pytest.raises(sysred.UnstableSystemError, match="stable"):
            sysred.balanced_truncation(G, order=1)
        with pytest.raises(sysred.UnstableSystemError):
            sysred.hankel_singular_values(G)
        with pytest.raises(sysred.UnstableSystemError):
            sysred.hinf_norm(G)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_matrices_are_refused(bad):
    with pytest.raises(sysred.NonFiniteError, match="B holds NaN or Inf"):
        sysred.StateSpace(-np.eye(2), [[1.0], [bad]], [[1.0, 1.0]])
    with pytest.raises(sysred.NonFiniteError, match="poles"):
        sysred.DiagonalStateSpace([-1.0, bad], np.ones((2, 1)), np.ones((1, 2)))


def test_wrong_shapes_are_refused():
    with pytest.raises(sysred.ShapeError, match="A must be"):
        sysred.StateSpace(np.ones((2, 3)), np.ones((2, 1)), np.ones((1, 2)))
    with pytest.raises(sysred.ShapeError, match="B must be"):
        sysred.StateSpace(-np.eye(2), np.ones((3, 1)), np.ones((1, 2)))
    with pytest.raises(sysred.ShapeError, match="C has 3 columns"):
        sysred.StateSpace(-np.eye(2), np.ones((2, 1)), np.ones((1, 3)))
    with pytest.raises(sysred.ShapeError, match="D must be"):
        sysred.StateSpace(-np.eye(2), np.ones((2, 1)), np.ones((1, 2)), np.ones((2, 2)))
    with pytest.raises(sysred.ShapeError, match="do not broadcast"):
        sysred.DiagonalStateSpace(-np.ones((3, 2)), np.ones((4, 2, 1)), np.ones((1, 2)))


def test_bad_dt_is_refused():
    for dt in (0, -1.0, np.nan, True):
        with pytest.raises(sysred.SysredError, match="dt must be"):
            sysred.StateSpace(-np.eye(1), [[1.0]], [[1.0]], dt=dt)


def test_order_out_of_range_is_refused():
    G = random_dense(np.random.default_rng(5), 5, 1, 1)
    for order in (0, 6, -1, 2.5, True):
        with pytest.raises(sysred.OrderError, match="order"):
            sysred.balanced_truncation(G, order=order)
    with pytest.raises(sysred.OrderError, match="exactly one"):
        sysred.balanced_truncation(G)
    with pytest.raises(sysred.OrderError, match="exactly one"):
        sysred.balanced_truncation(G, order=2, tol=1e-3)


def test_order_splitting_equal_hsvs_is_refused_or_warned():
    # the realification of a complex system has every HSV twice: odd orders split a pair
    R = sysred.realify(random_diagonal(np.random.default_rng(6), 4, 1, 1))
    with pytest.raises(sysred.HSVTieError, match="splits a group"):
        sysred.balanced_truncation(R, order=3)
    with pytest.warns(sysred.HSVTieWarning):
        res = sysred.balanced_truncation(R, order=3, strict=False)
    assert res.order == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sysred.balanced_truncation(R, order=4).order == 4


def test_order_keeping_rounding_level_hsvs_is_refused():
    # 3 states, 1 of them unobservable: sigma_3 = 0
    G = sysred.DiagonalStateSpace([-1.0, -2.0, -3.0], np.ones((3, 1)), [[1.0, 1.0, 0.0]])
    with pytest.raises(sysred.OrderError, match="rounding level"):
        sysred.balanced_truncation(G, order=3)
    with pytest.warns(sysred.RankDeficientWarning):
        sysred.balanced_truncation(G, order=3, strict=False)
    assert sysred.balanced_truncation(G, tol=0.0).order == 2  # tol never goes past the rank


def test_tol_below_every_bound_gives_the_numerical_rank():
    G = random_diagonal(np.random.default_rng(8), 6, 1, 1)
    res = sysred.balanced_truncation(G, tol=1e-300)
    assert res.order == 6 and res.bound == 0.0


def test_to_control_refuses_complex_and_batches():
    with pytest.raises(sysred.SysredError, match="realify"):
        sysred.to_control(random_diagonal(np.random.default_rng(7), 3, 1, 1))
    with pytest.raises(sysred.SysredError, match="index it first"):
        sysred.to_control(random_dense(np.random.default_rng(7), 3, 1, 1, batch=(2,)))
    with pytest.raises(sysred.SysredError, match="python-control StateSpace"):
        sysred.from_control("not a system")


def test_non_system_input_gets_a_clear_error():
    with pytest.raises(sysred.SysredError, match="expected a sysred.StateSpace"):
        sysred.balanced_truncation(np.eye(3), order=1)


def test_h2_continuous_with_feedthrough_is_refused():
    G = sysred.StateSpace([[-1.0]], [[1.0]], [[1.0]], [[1.0]])
    with pytest.raises(sysred.SysredError, match="infinite"):
        sysred.h2_norm(G)
