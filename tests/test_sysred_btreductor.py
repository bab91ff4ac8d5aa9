"""BTReductor: Gramian factors once, then any order; the all-orders bound."""

import numpy as np
import pytest
from _systems import random_dense, random_diagonal

import sysred
from sysred import reductors


def _same_result(a, b):
    assert a.order == b.order and a.path == b.path
    for name in ("A", "B", "C", "D"):
        np.testing.assert_array_equal(getattr(a.system, name), getattr(b.system, name))
    np.testing.assert_array_equal(a.hsv, b.hsv)
    np.testing.assert_array_equal(a.bound, b.bound)


CASES = {
    "diagonal-batch": lambda rng: random_diagonal(rng, 12, 1, 1, discrete=True, batch=(20,)),
    "diagonal-ct-mimo": lambda rng: random_diagonal(rng, 9, 2, 3),
    "dense-ct": lambda rng: random_dense(rng, 8, 2, 2),
    "dense-dt-complex": lambda rng: random_dense(rng, 7, 1, 2, discrete=True, complex_=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_reductor_gives_the_same_model_as_balanced_truncation(case):
    G = CASES[case](np.random.default_rng(0))
    red = sysred.BTReductor(G)
    for r in (1, 3, 5):
        _same_result(red.reduce(r), sysred.balanced_truncation(G, order=r))
    for tol in (1e-1, 1e-3):
        assert red.reduce(tol=tol).order == sysred.balanced_truncation(G, tol=tol).order


def test_reductor_with_rank_tol_and_horizon_matches_balanced_truncation():
    rng = np.random.default_rng(1)
    G = random_diagonal(rng, 16, 1, 1, discrete=True, batch=(17,))
    _same_result(
        sysred.BTReductor(G, rank_tol=1e-14).reduce(4),
        sysred.balanced_truncation(G, order=4, rank_tol=1e-14),
    )
    a = sysred.BTReductor(G, horizon=50).reduce(4)
    b = sysred.balanced_truncation(G, order=4, horizon=50)
    np.testing.assert_array_equal(a.system.A, b.system.A)
    np.testing.assert_array_equal(a.error, b.error)
    assert np.all(np.isnan(sysred.BTReductor(G, horizon=50).error_bounds()))


def test_factors_are_computed_once_for_many_orders(monkeypatch):
    calls = []
    real = reductors._factors_and_svd
    monkeypatch.setattr(
        reductors, "_factors_and_svd", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    G = random_diagonal(np.random.default_rng(2), 10, 1, 1, discrete=True, batch=(8,))
    red = sysred.BTReductor(G, workers=1)
    assert len(calls) == 1
    for r in range(1, 8):
        red.reduce(r)
    red.error_bounds()
    red.order_for(1e-2)
    assert len(calls) == 1


def test_error_bounds_for_every_order_match_tail_bound_and_hold():
    rng = np.random.default_rng(3)
    G = random_diagonal(rng, 8, 1, 1)
    red = sysred.BTReductor(G)
    bounds = red.error_bounds()
    assert bounds.shape == (9,) and bounds[-1] == 0.0
    assert np.all(np.diff(bounds) <= 0)
    for r in range(1, 8):
        assert bounds[r] == sysred.tail_bound(red.hsv, r)
        err = sysred.hinf_norm(G, red.reduce(r).system)
        assert red.hsv[r] * (1 - 1e-8) <= err <= bounds[r] * (1 + 1e-8)


def test_tail_bounds_count_repeated_values_once():
    # a realified complex system has every HSV twice: each distinct value enters once
    hsv = np.array([3.0, 3.0, 1.0, 1.0, 0.5, 0.5])
    np.testing.assert_allclose(sysred.tail_bounds(hsv), [9.0, 3.0, 3.0, 1.0, 1.0, 0.0, 0.0])
    assert sysred.tail_bound(hsv, 2) == 3.0
    # batched
    both = sysred.tail_bounds(np.stack([hsv, hsv / 2]))
    np.testing.assert_allclose(both[1], both[0] / 2)


@pytest.mark.parametrize("order", [-1, 1.5, 7, True, "2"])
def test_tail_bound_refuses_bad_orders(order):
    with pytest.raises(sysred.OrderError, match="order must be an integer between 0 and n = 6"):
        sysred.tail_bound(np.ones(6), order)


@pytest.mark.parametrize("tol", ["1e-3", float("nan"), -1.0, None])
def test_order_for_refuses_bad_tolerances(tol):
    red = sysred.BTReductor(random_diagonal(np.random.default_rng(4), 5, 1, 1))
    with pytest.raises(sysred.OrderError, match="tol must be a non-negative number"):
        red.order_for(tol)


def test_reduce_refuses_bad_method_and_order_requests():
    red = sysred.BTReductor(random_diagonal(np.random.default_rng(5), 5, 1, 1))
    with pytest.raises(sysred.SysredError, match="method must be 'sqrt' or 'bfsr'"):
        red.reduce(2, method="foo")
    with pytest.raises(sysred.OrderError, match="exactly one of order"):
        red.reduce()
    with pytest.raises(sysred.OrderError, match="between 1 and n = 5"):
        red.reduce(6)
