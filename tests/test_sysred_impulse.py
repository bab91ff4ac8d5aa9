"""sysred.impulse: closed-form finite-horizon impulse-response norms against explicit sums."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest

import sysred
from sysred import _impulse_kernel, impulse
from sysred.impulse import impulse_norm


def _random(rng, batch, n, m, p, radius=0.99):
    """A random complex diagonal dt system with poles in the disc of ``radius``."""
    a = (
        radius
        * np.sqrt(rng.uniform(size=batch + (n,)))
        * np.exp(2j * np.pi * rng.uniform(size=batch + (n,)))
    )

    def cn(*shape):
        return rng.standard_normal(batch + shape) + 1j * rng.standard_normal(batch + shape)

    return sysred.DiagonalStateSpace(a, cn(n, m), cn(p, n), cn(p, m), dt=1.0)


def _explicit(G, L, other=None, real=False):
    """The oracle: materialise sysred's impulse response ``h_0 .. h_{L-1}`` and sum."""
    h = G.impulse_response(L)
    if other is not None:
        h = h - other.impulse_response(L)
    h = h.real if real else h
    return np.sqrt(np.sum(np.abs(h) ** 2, axis=(-3, -2, -1)))


@pytest.fixture(params=["numba", "numpy"])
def path(request, monkeypatch):
    """Run a test with the compiled kernel and with the numpy fallback."""
    monkeypatch.setenv("SYSRED_NUMBA", "1" if request.param == "numba" else "0")
    assert _impulse_kernel.available() == (request.param == "numba")
    return request.param


@pytest.mark.parametrize("mp", [(1, 1), (2, 3)])
@pytest.mark.parametrize("L", [1, 2, 37, 1000])
@pytest.mark.parametrize("real", [False, True])
def test_matches_materialised_response(path, mp, L, real):
    rng = np.random.default_rng(L + 10 * mp[0])
    G1, G2 = _random(rng, (4,), 7, *mp), _random(rng, (4,), 3, *mp)
    for other in (None, G2):
        got = impulse_norm(G1, L, other=other, real=real)
        np.testing.assert_allclose(got, _explicit(G1, L, other, real), rtol=1e-12)


def test_batch_broadcasts_with_other(path):
    rng = np.random.default_rng(1)
    G1, G2 = _random(rng, (3, 1), 5, 1, 1), _random(rng, (4,), 2, 1, 1)
    got = impulse_norm(G1, 50, other=G2, real=True)
    assert got.shape == (3, 4)
    ref = [[_explicit(G1[i, 0], 50, G2[j], True) for j in range(4)] for i in range(3)]
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def _mp_norm(a, g, L, real):
    """``sqrt(sum_{j<L} |sum_n g_n a_n^j|^2)`` (or of the real part) in 40-digit arithmetic."""
    with mpmath.workdps(40):
        a = [mpmath.mpc(complex(x)) for x in a]
        g = [mpmath.mpc(complex(x)) for x in g]
        powers = [mpmath.mpc(1)] * len(a)
        total = mpmath.mpf(0)
        for _ in range(L):
            x = sum(gi * pi for gi, pi in zip(g, powers, strict=True))
            total += mpmath.re(x) ** 2 if real else abs(x) ** 2
            powers = [pi * ai for pi, ai in zip(powers, a, strict=True)]
        return float(mpmath.sqrt(total))


@pytest.mark.parametrize("real", [False, True])
def test_products_near_one_and_long_horizon_against_mpmath(path, real):
    # |a| within 1e-9 of the circle, nearly equal phases (conj(a_n) a_m -> 1), one pole exactly
    # 1 (the limit S = L) and one exactly on the circle: the quotient (1 - z^L)/(1 - z) would
    # lose up to 9 digits; the expm1 form keeps them.
    L = 3000
    theta = 0.3
    a = np.array(
        [
            np.exp(-1e-9 + 1j * theta),
            np.exp(-2e-9 + 1j * (theta + 1e-10)),
            1.0 + 0j,
            np.exp(1j * 2.0),
            np.exp(-1e-9 - 1j * theta),  # conjugate-ish: a_n a_m -> 1 for the real part
        ]
    )
    g = np.array([1.0 + 0.5j, -0.7 + 0.2j, 0.3, 0.1 - 0.4j, 0.25j])
    # impulse_norm's samples h_{j+1} = C a^j B: put g in C and a unit feed-through D = 0
    G = sysred.DiagonalStateSpace(a, np.ones((5, 1)), g[None, :], dt=1.0)
    got = impulse_norm(G, L + 1, real=real)  # h_0 = D = 0, then L samples of the modes
    ref = _mp_norm(a, g, L, real)
    assert abs(got - ref) <= 1e-12 * ref


@pytest.mark.parametrize("real", [False, True])
def test_near_one_products_batched_against_explicit(path, real):
    # many channels with slow decay and clustered phases, long horizon (float64 explicit sum
    # is accurate here: no cancellation between modes of very different size)
    rng = np.random.default_rng(3)
    b, n, L = 6, 8, 20000
    phase = 0.5 + 1e-6 * rng.standard_normal((b, n))
    a = np.exp(-(10.0 ** rng.uniform(-9, -4, (b, n))) + 1j * phase)
    B = rng.standard_normal((b, n, 1)) + 0j
    C = rng.standard_normal((b, 1, n)) + 1j * rng.standard_normal((b, 1, n))
    G = sysred.DiagonalStateSpace(a, B, C, dt=1.0)
    np.testing.assert_allclose(impulse_norm(G, L, real=real), _explicit(G, L, real=real), rtol=1e-9)


def test_cancellation_falls_back_to_explicit_sum(path, monkeypatch):
    # Two systems differing by 1e-9 relative: the Gram form would cancel ~18 digits in the
    # squared norm, so those entries are summed explicitly (and are accurate).
    rng = np.random.default_rng(4)
    G = _random(rng, (3,), 10, 1, 1, radius=0.999)
    C2 = G.C.copy()
    C2[..., 0] *= 1 + 1e-9
    G2 = sysred.DiagonalStateSpace(G.poles, G.B, C2, G.D, dt=1.0)
    calls = []
    explicit = impulse._explicit_sq
    monkeypatch.setattr(
        impulse, "_explicit_sq", lambda a, *r: calls.append(a.shape[0]) or explicit(a, *r)
    )
    for real in (False, True):
        got = impulse_norm(G, 500, other=G2, real=real)
        ref = _explicit(G, 500, G2, real)
        # the oracle's own error: its samples carry ~eps * |h| each
        np.testing.assert_allclose(got, ref, rtol=1e-6)
    assert calls == [3, 3]
    # and the difference of a system with itself is 0 up to the samples' rounding
    assert np.all(impulse_norm(G, 500, other=G, real=True) <= 1e-14 * impulse_norm(G, 500))


def test_unstable_poles_finite_horizon_and_overflow(path):
    G = sysred.DiagonalStateSpace([1.01, -0.5j], [[1.0], [2.0]], [[1.0, 1.0j]], [[0.5]], dt=1.0)
    for real in (False, True):
        np.testing.assert_allclose(
            impulse_norm(G, 300, real=real), _explicit(G, 300, real=real), rtol=1e-12
        )
    huge = sysred.DiagonalStateSpace([2.0], [[1.0]], [[1.0]], dt=1.0)
    assert impulse_norm(huge, 5000) == np.inf


def test_edge_cases(path):
    # no states: the norm of D; one sample: |D| (or |Re D|); zero poles
    G0 = sysred.DiagonalStateSpace(
        np.zeros((2, 0)), np.zeros((2, 0, 1)), np.zeros((2, 1, 0)), [[[3.0 + 4j]], [[0.0]]], dt=1.0
    )
    np.testing.assert_allclose(impulse_norm(G0, 10), [5.0, 0.0])
    np.testing.assert_allclose(impulse_norm(G0, 10, real=True), [3.0, 0.0])
    G = sysred.DiagonalStateSpace([0.0, 0.5], [[1.0], [1.0]], [[2.0, 1.0]], [[1.0j]], dt=1.0)
    assert impulse_norm(G, 1) == pytest.approx(1.0)
    np.testing.assert_allclose(
        impulse_norm(G, 40, real=True), _explicit(G, 40, real=True), rtol=1e-13
    )


def test_bad_input_is_refused():
    G = sysred.DiagonalStateSpace([0.5], [[1.0]], [[1.0]], dt=1.0)
    with pytest.raises(sysred.SysredError, match="DiagonalStateSpace"):
        impulse_norm(G.to_dense(), 10)
    with pytest.raises(sysred.SysredError, match="discrete-time"):
        impulse_norm(sysred.DiagonalStateSpace([-0.5], [[1.0]], [[1.0]]), 10)
    with pytest.raises(sysred.SysredError, match="length"):
        impulse_norm(G, 0)
    with pytest.raises(sysred.SysredError, match="length"):
        impulse_norm(G, 2.5)
    with pytest.raises(sysred.ShapeError, match=r"\(m, p\)"):
        impulse_norm(G, 10, other=sysred.DiagonalStateSpace([0.5], [[1.0, 1.0]], [[1.0]], dt=1.0))
    with pytest.raises(sysred.SysredError, match="sample time"):
        impulse_norm(G, 10, other=sysred.DiagonalStateSpace([0.5], [[1.0]], [[1.0]], dt=0.5))
    with pytest.raises(sysred.NotASystemError, match="expected a sysred.StateSpace"):
        impulse_norm(np.eye(2), 10)


def test_numba_and_numpy_paths_agree(monkeypatch):
    rng = np.random.default_rng(7)
    G = _random(rng, (40,), 24, 1, 1, radius=0.9999)
    out = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("SYSRED_NUMBA", flag)
        out[flag] = [impulse_norm(G, 4096, real=real) for real in (False, True)]
    np.testing.assert_allclose(out["1"], out["0"], rtol=1e-12)


@pytest.mark.parametrize("mp", [(1, 1), (2, 3)])
@pytest.mark.parametrize("L", [1, 37, 1000])
def test_return_sys_norm_gives_both_norms_from_one_pass(path, mp, L):
    rng = np.random.default_rng(L + mp[1])
    G1, G2 = _random(rng, (1,), 6, *mp), _random(rng, (4,), 3, *mp)  # sys broadcast to (4,)
    for real in (False, True):
        diff, own = impulse_norm(G1, L, other=G2, real=real, return_sys_norm=True)
        assert diff.shape == own.shape == (4,)
        np.testing.assert_allclose(diff, _explicit(G1, L, G2, real), rtol=1e-12)
        np.testing.assert_allclose(own, np.broadcast_to(_explicit(G1, L, None, real), (4,)),
                                   rtol=1e-12)  # fmt: skip
    # an exact difference: the difference is summed explicitly, the norm of sys is not zero
    diff, own = impulse_norm(G1, 50, other=G1, real=True, return_sys_norm=True)
    assert diff[0] < 1e-12 * own[0]
    with pytest.raises(sysred.SysredError, match="needs other="):
        impulse_norm(G1, 50, return_sys_norm=True)
