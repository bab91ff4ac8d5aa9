"""accuracy="high" (sysred.precise): the Jacobi SVD, its preconditioning, and clear refusals.

The accuracy itself is tested against mpmath in test_sysred_mpmath.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from _systems import random_dense, random_diagonal
from hypothesis import given
from hypothesis import strategies as st

import sysred
from sysred.precise import extended_precision_available, jacobi_columns

needs_extended = pytest.mark.skipif(
    not extended_precision_available(),
    reason="np.longdouble is plain double here; accuracy='high' refuses (tested below)",
)


def test_the_project_machines_have_extended_precision():
    # CI runs on x86-64 Linux: the accuracy='high' tests below must not be skipped there
    import platform

    if platform.machine() in ("x86_64", "AMD64") and platform.system() == "Linux":
        assert extended_precision_available()


@pytest.mark.parametrize("dtype", [np.complex128, np.clongdouble])
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 9), extra_rows=st.integers(0, 3))
def test_jacobi_columns_is_an_svd(dtype, seed, n, extra_rows):
    # full column rank (m >= n) apart from an exactly zero column and a parallel pair
    rng = np.random.default_rng(seed)
    m = n + extra_rows
    A = rng.standard_normal((2, m, n)) + 1j * rng.standard_normal((2, m, n))
    if n > 2:
        A[1, :, 2] = 0.0  # a zero column
        A[1, :, 0] = 3.0 * A[1, :, 1]  # two parallel columns
    G, V, sweeps = jacobi_columns(
        A.astype(dtype), np.eye(n, dtype=dtype)[None].repeat(2, 0), orthogonal=True
    )
    assert sweeps < 20
    Gd, Vd = G.astype(complex), V.astype(complex)
    # G = A V with V unitary, and G's columns orthogonal: G^H G diagonal
    np.testing.assert_allclose(Gd, A @ Vd, atol=1e-12)
    np.testing.assert_allclose(
        Vd.conj().swapaxes(-1, -2) @ Vd, np.eye(n)[None].repeat(2, 0), atol=1e-13
    )
    gram = Gd.conj().swapaxes(-1, -2) @ Gd
    off = gram - np.einsum("bii->bi", gram)[..., None] * np.eye(n)
    assert np.abs(off).max() <= 1e-12 * max(1.0, np.abs(gram).max())
    sv = np.sort(np.linalg.norm(Gd, axis=-2), axis=-1)[..., ::-1][..., : min(m, n)]
    np.testing.assert_allclose(sv, np.linalg.svd(A, compute_uv=False), rtol=1e-12, atol=1e-13)


def test_jacobi_columns_keeps_a_graded_matrix_relatively_accurate():
    # G = B D with B well conditioned and D spanning 40 decades: one-sided Jacobi keeps the
    # tiny singular values to relative accuracy (Demmel-Veselic), LAPACK's SVD does not
    rng = np.random.default_rng(0)
    n = 8
    B = np.linalg.qr(rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))[0]
    d = 10.0 ** -np.linspace(0, 40, n)
    G, _, _ = jacobi_columns((B * d)[None], orthogonal=False)
    sv = np.sort(np.linalg.norm(G[0], axis=0))[::-1]
    np.testing.assert_allclose(sv, d, rtol=1e-13)  # B unitary: the singular values are d


@needs_extended
def test_high_accuracy_matches_standard_on_well_conditioned_systems():
    rng = np.random.default_rng(1)
    for discrete in (False, True):
        G = random_diagonal(rng, 10, 1, 1, discrete=discrete, batch=(3,))
        hi = sysred.hankel_singular_values(G, accuracy="high")
        std = sysred.hankel_singular_values(G)
        keep = std >= 1e-8 * std[..., :1]
        np.testing.assert_allclose(hi[keep], std[keep], rtol=1e-9)


@needs_extended
def test_high_accuracy_real_system_and_balanced_truncation_bound():
    d = np.array([1.0, 2.0, 5.0, 10.0, 20.0])
    G = sysred.DiagonalStateSpace(-d, np.ones((5, 1)), np.ones((1, 5)))
    res = sysred.balanced_truncation(G, order=2, accuracy="high")
    assert res.path == "diagonal-extended"
    assert not np.iscomplexobj(res.hsv)
    err = sysred.hinf_norm(G, res.system)
    # state-space-symmetric SISO: the error equals the bound (reference.md section 9)
    assert err == pytest.approx(float(res.bound), rel=1e-8)


@needs_extended
def test_high_accuracy_non_minimal_system():
    # an uncontrollable mode (b_2 = 0) and an unobservable one (c_4 = 0): two zero HSVs
    rng = np.random.default_rng(5)
    G = random_diagonal(rng, 7, 1, 1, discrete=True)
    B, C = G.B.copy(), G.C.copy()
    B[2], C[0, 4] = 0, 0
    G = sysred.DiagonalStateSpace(G.poles, B, C, dt=1.0)
    hi = sysred.hankel_singular_values(G, accuracy="high")
    assert np.all(hi[-2:] <= 1e-14 * hi[0])
    minimal = sysred.DiagonalStateSpace(
        np.delete(G.poles, [2, 4]), np.delete(B, [2, 4], 0), np.delete(C, [2, 4], 1), dt=1.0
    )
    ref = sysred.hankel_singular_values(minimal, accuracy="high")
    np.testing.assert_allclose(hi[:5], ref, rtol=1e-12)


@pytest.mark.parametrize(
    "make, kwargs, match",
    [
        (lambda rng: random_dense(rng, 4, 1, 1), {}, "DiagonalStateSpace"),
        (lambda rng: random_diagonal(rng, 4, 2, 1), {}, "single-input single-output"),
        (lambda rng: random_diagonal(rng, 4, 1, 1, discrete=True), {"horizon": 8}, "time-limited"),
        (lambda rng: random_diagonal(rng, 4, 1, 1), {"rank_tol": 1e-12}, "rank_tol"),
    ],
)
def test_high_accuracy_refusals_are_specific(make, kwargs, match):
    G = make(np.random.default_rng(2))
    if not extended_precision_available() and match in ("rank_tol", "time-limited"):
        match = "."  # the platform refusal may come first
    with pytest.raises(sysred.SysredError, match=match):
        sysred.balanced_truncation(G, order=2, accuracy="high", **kwargs)


def test_accuracy_value_is_checked():
    G = random_diagonal(np.random.default_rng(3), 4, 1, 1)
    with pytest.raises(sysred.SysredError, match="accuracy must be one of"):
        sysred.hankel_singular_values(G, accuracy="best")
    with pytest.raises(sysred.SysredError, match="accuracy must be one of"):
        sysred.balanced_truncation(G, order=2, accuracy=None)


def test_high_accuracy_refuses_without_extended_precision(monkeypatch):
    import sysred.precise as precise

    monkeypatch.setattr(precise, "extended_precision_available", lambda: False)
    G = random_diagonal(np.random.default_rng(4), 4, 1, 1)
    with pytest.raises(sysred.SysredError, match="extended precision"):
        sysred.hankel_singular_values(G, accuracy="high")


def test_high_accuracy_refuses_unstable_input():
    G = sysred.DiagonalStateSpace([0.5, -1.0], np.ones((2, 1)), np.ones((1, 2)))
    with pytest.raises(sysred.UnstableSystemError):
        sysred.hankel_singular_values(G, accuracy="high")
