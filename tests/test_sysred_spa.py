"""Balanced singular perturbation approximation: bound, steady-state gain, stability, oracles."""

import warnings

import control
import numpy as np
import pytest
from _systems import _pad_inputs, gap_orders, random_dense, random_diagonal, slycot_spa

import sysred


def _dc_point(G):
    """Where SPA matches the transfer function: s = 0 (ct) or z = 1 (dt)."""
    return np.array([1.0 if G.is_discrete else 0.0])


def _doubled(G):
    """``diag(G, G)`` (two inputs, two outputs): every HSV of ``G`` twice."""
    zB, zC = np.zeros_like(G.B), np.zeros_like(G.C)
    B = np.block([[G.B, zB], [zB, G.B]])  # (2n, 2)
    C = np.block([[G.C, zC], [zC, G.C]])  # (2, 2n)
    return sysred.DiagonalStateSpace(np.concatenate([G.poles, G.poles]), B, C, dt=G.dt)


def _rel_hinf(G1, G2, scale):
    return sysred.hinf_norm(G1, G2) / scale


CASES = {
    "dense-ct-mimo": lambda rng: random_dense(rng, 10, 2, 3),
    "dense-dt-mimo": lambda rng: random_dense(rng, 10, 2, 3, discrete=True),
    "dense-ct-complex": lambda rng: random_dense(rng, 8, 1, 2, complex_=True),
    "dense-dt-complex": lambda rng: random_dense(rng, 8, 2, 1, discrete=True, complex_=True),
    "diagonal-ct": lambda rng: random_diagonal(rng, 12, 1, 1),
    "diagonal-dt": lambda rng: random_diagonal(rng, 12, 1, 1, discrete=True),
    "diagonal-dt-real": lambda rng: random_diagonal(rng, 9, 2, 2, discrete=True, complex_=False),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_spa_bound_dc_gain_and_stability(case, seed):
    G = CASES[case](np.random.default_rng(seed))
    red = sysred.BTReductor(G)
    norm = sysred.hinf_norm(G)
    for r in (1, 3, 5):
        res = red.reduce(r, method="spa")
        Gr = res.system
        assert res.method == "spa" and Gr.n == r and res.order == r
        assert res.bound == pytest.approx(sysred.tail_bound(res.hsv, r))
        err = sysred.hinf_norm(G, Gr)
        assert res.hsv[r] * (1 - 1e-8) <= err <= res.bound * (1 + 1e-8) + 1e-12 * norm
        z = _dc_point(G)
        dc = np.abs(G.transfer(z) - Gr.transfer(z)).max()
        assert dc <= 1e-10 * norm, dc  # the steady-state gain is matched exactly
        assert np.all(Gr.is_stable())
        # BT matches at infinity, SPA at 0: the feed-through changes, BT's does not
        assert not np.allclose(Gr.D, G.D)


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spa_agrees_with_slycot_ab09bd_on_real_systems(discrete, seed):
    G = random_dense(np.random.default_rng(10 + seed), 12, 2, 2, discrete=discrete)
    norm = sysred.hinf_norm(G)
    for r in (2, 5, 8):
        ours = sysred.singular_perturbation(G, order=r)
        theirs, hsv = slycot_spa(G, r, job="N")
        np.testing.assert_allclose(ours.hsv, hsv, rtol=1e-8, atol=1e-12 * hsv[0])
        assert _rel_hinf(ours.system, theirs, norm) < 1e-8
        if not discrete:  # square-root AB09BD is right in continuous time
            assert _rel_hinf(ours.system, slycot_spa(G, r, job="B")[0], norm) < 1e-8


@pytest.mark.parametrize("discrete", [False, True])
def test_complex_spa_agrees_with_ab09bd_on_the_realification(discrete):
    # realify(G) has every HSV twice; its SPA at 2r is the realification of the complex SPA at r
    rng = np.random.default_rng(20)
    for G in (
        random_diagonal(rng, 8, 1, 1, discrete=discrete),
        random_dense(rng, 7, 1, 2, discrete=discrete, complex_=True),
    ):
        norm = sysred.hinf_norm(G)
        for r in (2, 4):
            ours = sysred.singular_perturbation(G, order=r)
            theirs, hsv = slycot_spa(sysred.realify(G), 2 * r, job="N")
            np.testing.assert_allclose(hsv[::2], ours.hsv, rtol=1e-8, atol=1e-12 * hsv[0])
            np.testing.assert_allclose(hsv[1::2], ours.hsv, rtol=1e-8, atol=1e-12 * hsv[0])
            assert _rel_hinf(sysred.realify(ours.system), theirs, norm) < 1e-8


def test_spa_agrees_with_python_control_matchdc():
    for seed in range(3):
        G = random_dense(np.random.default_rng(seed), 10, 1, 2)
        norm = sysred.hinf_norm(G)
        # slycot's AB09ND wrapper has the same too-small integer workspace as AB09BD's (see
        # _systems.slycot_spa): zero inputs up to 2n give it room and change nothing else
        B, D = _pad_inputs(G, 2 * G.n)
        for r in (2, 4, 6):
            pc = control.balred(control.ss(G.A, B, G.C, D), r, method="matchdc")
            theirs = sysred.StateSpace(pc.A, pc.B[:, : G.m], pc.C, pc.D[:, : G.m])
            ours = sysred.singular_perturbation(G, order=r)
            assert _rel_hinf(ours.system, theirs, norm) < 1e-8


def test_python_control_matchdc_treats_discrete_systems_as_continuous():
    """Why the discrete-time oracle is AB09BD and not python-control (0.10): ``balred`` always
    passes ``dico='C'``, so a discrete-time system is reduced as if it were continuous, and the
    result is a continuous-time system, unstable here, that misses G(1). sysred matches G(1)."""
    G = random_dense(np.random.default_rng(0), 8, 1, 1, discrete=True)
    B, D = _pad_inputs(G, 2 * G.n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pc = control.balred(control.ss(G.A, B, G.C, D, dt=1.0), 3, method="matchdc")
    assert pc.dt == 0  # the sample time is dropped
    theirs = sysred.StateSpace(pc.A, pc.B[:, :1], pc.C, pc.D[:, :1], dt=1.0)
    assert not theirs.is_stable()
    ours = sysred.singular_perturbation(G, order=3).system
    one = np.array([1.0])
    assert abs(ours.transfer(one) - G.transfer(one)).max() < 1e-12
    assert abs(theirs.transfer(one) - G.transfer(one)).max() > 1.0


@pytest.mark.parametrize("discrete", [False, True])
def test_batched_equals_looped_including_different_minimal_orders(discrete):
    rng = np.random.default_rng(40)
    G = random_diagonal(rng, 10, 1, 1, discrete=discrete, batch=(24,))
    B = G.B.copy()
    B[3, 7:] = 0.0  # entry 3: three uncontrollable modes, minimal order 7
    B[10, 5:] = 0.0  # entry 10: minimal order 5
    G = sysred.DiagonalStateSpace(G.poles, B, G.C, G.D, G.dt)
    res = sysred.BTReductor(G, workers=2).reduce(4, method="spa")
    assert res.system.batch_shape == (24,)
    z = np.array([0.3, 1.0, 2.0]) if discrete else np.array([0.0, 0.5j, 3.0j])
    for b in (0, 3, 10, 23):
        one = sysred.singular_perturbation(G[b], order=4)
        np.testing.assert_allclose(res.system[b].transfer(z), one.system.transfer(z), rtol=1e-10)
        np.testing.assert_allclose(res.bound[b], one.bound)
    dc = np.abs(G.transfer(_dc_point(G)) - res.system.transfer(_dc_point(G)))  # (24, 1, 1, 1)
    assert dc.max() < 1e-10 * np.abs(G.transfer(_dc_point(G))).max()
    err = sysred.hinf_norm(G, res.system)
    assert np.all(err <= res.bound * (1 + 1e-8))


def test_spa_of_a_dense_batch_equals_the_loop():
    G = random_dense(np.random.default_rng(41), 6, 1, 1, discrete=True, batch=(5,))
    res = sysred.singular_perturbation(G, order=3)
    for b in range(5):
        one = sysred.singular_perturbation(G[b], order=3)
        z = np.array([0.5, 1.0, -1.0])
        np.testing.assert_allclose(res.system[b].transfer(z), one.system.transfer(z), rtol=1e-10)


def test_spa_tol_and_full_order():
    G = random_dense(np.random.default_rng(42), 8, 1, 1)
    res = sysred.singular_perturbation(G, tol=1e-2)
    assert res.bound <= 1e-2 and res.order == sysred.balanced_truncation(G, tol=1e-2).order
    full = sysred.singular_perturbation(G, order=8)  # nothing to perturb: balanced realisation
    assert sysred.hinf_norm(G, full.system) < 1e-10 * sysred.hinf_norm(G)


def test_spa_refusals():
    G = random_diagonal(np.random.default_rng(43), 6, 1, 1, discrete=True)
    with pytest.raises(sysred.SysredError, match="method='spa' needs the infinite-horizon"):
        sysred.BTReductor(G, horizon=20).reduce(2, method="spa")
    with pytest.raises(sysred.OrderError, match="between 1 and n = 6"):
        sysred.singular_perturbation(G, order=7)
    # two identical channels in one system: every HSV twice, odd orders split a pair
    twice = _doubled(G)
    with pytest.raises(sysred.HSVTieError):
        sysred.singular_perturbation(twice, order=3)
    assert sysred.singular_perturbation(twice, order=4).system.n == 4


def test_admissible_orders_follow_the_refusals():
    G = random_diagonal(np.random.default_rng(44), 6, 1, 1, discrete=True)
    twice = _doubled(G)
    ok = sysred.BTReductor(twice).admissible_orders()
    assert ok.tolist() == [False] + [r % 2 == 0 for r in range(1, 13)]
    B = G.B.copy()
    B[4:] = 0.0  # minimal order 4: orders 5, 6 keep rounding-level HSVs
    low = sysred.BTReductor(sysred.DiagonalStateSpace(G.poles, B, G.C, dt=1.0))
    assert low.admissible_orders().tolist() == [False, True, True, True, True, False, False]
    for r in range(1, 7):
        if low.admissible_orders()[r]:
            low.reduce(r)
        else:
            with pytest.raises(sysred.OrderError):
                low.reduce(r)


@pytest.mark.slow
def test_spa_on_many_random_systems_against_ab09bd():
    """400 random stable real systems (ct and dt, n = 2..20, up to 3 inputs/outputs), every
    order at a clear HSV gap: bound, steady-state gain, stability, and AB09BD's model."""
    rng = np.random.default_rng(2024)
    checked = 0
    for k in range(400):
        discrete = bool(k % 2)
        n, m, p = int(rng.integers(2, 21)), int(rng.integers(1, 4)), int(rng.integers(1, 4))
        G = random_dense(rng, n, m, p, discrete=discrete)
        red = sysred.BTReductor(G)
        norm = sysred.hinf_norm(G)
        ok = red.admissible_orders()
        for r in gap_orders(red.hsv, range(1, n), ratio=1.05):
            if not ok[r]:
                continue
            res = red.reduce(r, method="spa")
            err = sysred.hinf_norm(G, res.system)
            assert err <= res.bound * (1 + 1e-7) + 1e-10 * norm, (k, r)
            z = _dc_point(G)
            assert np.abs(G.transfer(z) - res.system.transfer(z)).max() <= 1e-8 * norm, (k, r)
            assert np.all(res.system.is_stable()), (k, r)
            theirs, _ = slycot_spa(G, r, job="N")
            assert _rel_hinf(res.system, theirs, norm) < 1e-6, (k, r)
            checked += 1
    assert checked > 1000
