"""pyMOR interop (``from_pymor`` / ``to_pymor``) and the real-output form ``real_part``.

pyMOR is the oracle for the conversions: its own transfer-function evaluation and its own
``hsv()`` must agree with sysred's on the converted systems.
"""

import numpy as np
import pytest
from pymor.core.exceptions import NoMatchingRuleError
from pymor.core.logger import set_log_levels
from pymor.models.iosys import LTIModel, SecondOrderModel
from pymor.operators.numpy import NumpyMatrixOperator
from pymor.parameters.functionals import ProjectionParameterFunctional

import sysred
from tests._systems import load_slicot, random_dense, random_diagonal, slycot_bt

set_log_levels({"pymor": "WARN"})

S = np.array([0.0, 0.3j, 1.1j, 2.9j, 0.4 + 0.7j, 1.5])  # points s (or z) where G is evaluated


def _pymor_tf(fom, points):
    """pyMOR's own evaluation C (sE - A)^-1 B + D, (k, p, m). (Its ``freq_resp`` takes rad per
    *sample* in discrete time, exp(i w), ignoring sampling_time; sysred's frequency_response
    takes rad per time unit, exp(i w dt): so compare at points, not frequencies.)"""
    return np.stack([fom.transfer_function.eval_tf(s) for s in points])


def _same_matrices(G1, G2):
    for X1, X2 in zip(G1.to_dense()._arrays(), G2.to_dense()._arrays(), strict=True):
        np.testing.assert_array_equal(X1, X2)
    assert G1.dt == G2.dt


# ---------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize(("m", "p"), [(1, 1), (2, 3)])
def test_to_pymor_round_trip_and_pymor_transfer_function(discrete, m, p):
    G = random_dense(np.random.default_rng(10 + m + 2 * discrete), 7, m, p, discrete=discrete)
    if discrete:
        G = sysred.StateSpace(G.A, G.B, G.C, G.D, dt=0.5)
    assert np.any(G.D != 0)
    fom = sysred.to_pymor(G)
    assert (fom.order, fom.dim_input, fom.dim_output) == (7, m, p)
    assert fom.sampling_time == (0.5 if discrete else 0.0)
    np.testing.assert_allclose(_pymor_tf(fom, S), G.transfer(S), rtol=1e-12)
    _same_matrices(sysred.from_pymor(fom), G)


@pytest.mark.parametrize("sampling_time", [0, 1.0])
def test_from_pymor_round_trip(sampling_time):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((6, 6)) / 3 - (1.5 if sampling_time == 0 else 0.0) * np.eye(6)
    B, C, D = rng.standard_normal((6, 2)), rng.standard_normal((3, 6)), rng.standard_normal((3, 2))
    fom = LTIModel.from_matrices(A, B, C, D, sampling_time=sampling_time)
    G = sysred.from_pymor(fom)
    assert G.dt == (None if sampling_time == 0 else 1.0)
    back = sysred.to_pymor(G).to_abcde_matrices(format="dense")
    for X, Y in zip(back[:4], (A, B, C, D), strict=True):
        np.testing.assert_array_equal(X, Y)
    assert back[4] is None  # E = I
    np.testing.assert_allclose(G.transfer(S), _pymor_tf(fom, S), rtol=1e-12)


def test_from_pymor_sparse_parametric_and_zero_d():
    rng = np.random.default_rng(4)
    A0, A1 = -2.0 * np.eye(4), rng.standard_normal((4, 4)) / 10
    A = NumpyMatrixOperator(A0) + ProjectionParameterFunctional("p") * NumpyMatrixOperator(A1)
    fom = LTIModel(A, NumpyMatrixOperator(np.ones((4, 1))), NumpyMatrixOperator(np.ones((1, 4))))
    G = sysred.from_pymor(fom, mu={"p": 0.5})
    np.testing.assert_allclose(G.A, A0 + 0.5 * A1, rtol=1e-15)
    np.testing.assert_array_equal(G.D, np.zeros((1, 1)))  # pyMOR's ZeroOperator
    # a sparse A (as SLICOT .mat files hold) is assembled densely
    import scipy.sparse as sps

    S = sysred.from_pymor(LTIModel.from_matrices(sps.csc_matrix(A0), np.ones((4, 1)), np.eye(4)))
    np.testing.assert_array_equal(S.A, A0)
    assert sysred.to_pymor(G).D.__class__.__name__ == "ZeroOperator"


def test_to_pymor_diagonal_and_real_valued_complex_arrays():
    D = random_diagonal(np.random.default_rng(5), 5, 2, 2, complex_=False, discrete=True)
    fom = sysred.to_pymor(D)
    np.testing.assert_array_equal(fom.to_abcde_matrices(format="dense")[0], D.A)
    # complex dtype, zero imaginary parts: a real system
    Z = sysred.DiagonalStateSpace(D.poles + 0j, D.B + 0j, D.C, D.D, dt=1.0)
    A = sysred.to_pymor(Z).to_abcde_matrices(format="dense")[0]
    assert not np.iscomplexobj(A)
    np.testing.assert_array_equal(A, D.A)


def test_zero_state_system_round_trip():
    G = sysred.StateSpace(np.zeros((0, 0)), np.zeros((0, 2)), np.zeros((1, 0)), [[1.0, 2.0]])
    back = sysred.from_pymor(sysred.to_pymor(G))
    assert back.n == 0
    np.testing.assert_array_equal(back.D, [[1.0, 2.0]])


def test_descriptor_model_is_solved_with_e():
    rng = np.random.default_rng(6)
    n = 8
    A = rng.standard_normal((n, n)) / 3 - 2.0 * np.eye(n)
    E = np.eye(n) + 0.2 * rng.standard_normal((n, n))
    B, C = rng.standard_normal((n, 2)), rng.standard_normal((2, n))
    fom = LTIModel.from_matrices(A, B, C, E=E)
    G = sysred.from_pymor(fom)
    np.testing.assert_allclose(G.transfer(S), _pymor_tf(fom, S), rtol=1e-10)
    hsv = sysred.hankel_singular_values(G)
    np.testing.assert_allclose(hsv, fom.hsv(), rtol=1e-7)  # pyMOR: generalised Gramians


# ---------------------------------------------------------------------------------------------
# Hankel singular values against pyMOR's own


@pytest.mark.parametrize("seed", range(6))
def test_hsv_match_pymor_above_a_floor(seed):
    """pyMOR's ``hsv()`` takes square roots of computed Gramian products: its relative error
    grows like eps (sigma_1 / sigma_i)^2 (measured on 100 random systems: max 7.7e-11 above
    1e-3 sigma_1, 5.8e-10 above 1e-4, 1.9e-8 above 1e-5; sysred vs SLICOT AB09AD: 6.9e-13
    above 1e-5). So compare above 1e-4 sigma_1."""
    rng = np.random.default_rng(100 + seed)
    G = random_dense(rng, 5 + 3 * seed, 1 + seed % 3, 1 + seed % 2, discrete=bool(seed % 2))
    ours, theirs = sysred.hankel_singular_values(G), sysred.to_pymor(G).hsv()
    keep = ours >= 1e-4 * ours[0]
    assert keep.sum() >= 3
    np.testing.assert_allclose(ours[keep], theirs[keep], rtol=1e-7)


def test_hsv_match_pymor_on_slicot_building(slicot_dir):
    G, published = load_slicot(slicot_dir / "building.mat")  # n = 48, C stored as uint8
    fom = sysred.to_pymor(G)
    ours, theirs = sysred.hankel_singular_values(G), fom.hsv()
    # all 48 HSVs lie within 2.7e-6 sigma_1: compare all (measured: 6.6e-10 relative)
    np.testing.assert_allclose(ours, theirs, rtol=1e-8)
    np.testing.assert_allclose(theirs, published, rtol=1e-8)
    _same_matrices(sysred.from_pymor(fom), G)


# ---------------------------------------------------------------------------------------------
# refusals


def test_to_pymor_refuses_batches_complex_and_non_systems():
    with pytest.raises(sysred.SysredError, match="index it first"):
        sysred.to_pymor(random_dense(np.random.default_rng(7), 3, 1, 1, batch=(2,)))
    with pytest.raises(sysred.SysredError, match=r"realify.*real_part"):
        sysred.to_pymor(random_diagonal(np.random.default_rng(7), 3, 1, 1))
    with pytest.raises(sysred.SysredError, match="expected a sysred"):
        sysred.to_pymor(np.eye(2))


def test_to_pymor_without_pymor_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pymor.models.iosys", None)  # import now fails
    with pytest.raises(ImportError, match="needs pyMOR"):
        sysred.to_pymor(sysred.StateSpace([[-1.0]], [[1.0]], [[1.0]]))


def test_from_pymor_refusals(monkeypatch):
    with pytest.raises(sysred.SysredError, match="expects a pyMOR LTIModel"):
        sysred.from_pymor(sysred.StateSpace([[-1.0]], [[1.0]], [[1.0]]))
    so = SecondOrderModel.from_matrices(
        np.eye(2), np.eye(2), 2 * np.eye(2), np.ones((2, 1)), np.ones((1, 2))
    )
    with pytest.raises(sysred.SysredError, match=r"model.to_lti\(\) first"):
        sysred.from_pymor(so)
    assert sysred.from_pymor(so.to_lti()).n == 4  # E = diag(I, M) solved
    A = NumpyMatrixOperator(-np.eye(2)) * ProjectionParameterFunctional("p")
    para = LTIModel(A, NumpyMatrixOperator(np.ones((2, 1))), NumpyMatrixOperator(np.ones((1, 2))))
    with pytest.raises(sysred.SysredError, match="parametric.*pass mu"):
        sysred.from_pymor(para)
    singular = LTIModel.from_matrices(
        -np.eye(2), np.ones((2, 1)), np.ones((1, 2)), E=np.diag([1.0, 0.0])
    )
    with pytest.raises(sysred.SysredError, match="E is singular or ill-conditioned"):
        sysred.from_pymor(singular)
    ill = LTIModel.from_matrices(-np.eye(2), np.ones((2, 1)), np.ones((1, 2)), E=np.diag([1, 1e-9]))
    with pytest.raises(sysred.SysredError, match="max_cond_e"):
        sysred.from_pymor(ill)
    assert sysred.from_pymor(ill, max_cond_e=1e10).A[1, 1] == pytest.approx(-1e9)

    def unassemblable(self, *args, **kwargs):
        raise NoMatchingRuleError("no rule")

    monkeypatch.setattr(LTIModel, "to_abcde_matrices", unassemblable)
    with pytest.raises(sysred.SysredError, match="cannot be assembled"):
        sysred.from_pymor(LTIModel.from_matrices(-np.eye(1), np.ones((1, 1)), np.ones((1, 1))))


# ---------------------------------------------------------------------------------------------
# real_part: the real map u -> Re(G u)


def _complex_batches():
    rng = np.random.default_rng(20)
    return [
        random_diagonal(rng, 6, 1, 1, discrete=True, batch=(4,)),
        random_diagonal(rng, 5, 2, 3, discrete=True, batch=(2, 3)),
        random_dense(rng, 5, 2, 2, discrete=True, complex_=True, batch=(3,)),
        random_diagonal(rng, 6, 1, 2, discrete=False, batch=(3,)),
        random_dense(rng, 4, 1, 1, discrete=False, complex_=True, batch=(2,)),
    ]


@pytest.mark.parametrize("k", range(5))
def test_real_part_impulse_response_is_the_real_part(k):
    G = _complex_batches()[k]
    R = sysred.real_part(G)
    assert not R.is_complex
    assert (R.n, R.m, R.p, R.batch_shape, R.dt) == (2 * G.n, G.m, G.p, G.batch_shape, G.dt)
    # Markov parameters (the impulse response in discrete time)
    h, hr = G.markov_parameters(30), R.markov_parameters(30)
    np.testing.assert_allclose(hr, h.real, atol=1e-12 * np.max(np.abs(h)))
    assert np.max(np.abs(h.imag)) > 1e-3 * np.max(np.abs(h))  # the test can tell Re from G
    # the conjugate-pair form realises the same map
    P = sysred.real_part(G, form="conjugate-pairs")
    assert isinstance(P, type(G)) and P.n == 2 * G.n
    s = np.array([0.3 + 0.2j, -0.1 + 1.5j, 2.0])
    np.testing.assert_allclose(P.transfer(s), R.transfer(s), rtol=1e-11, atol=1e-13)
    # H(s) = (G(s) + conj(G(conj s))) / 2
    np.testing.assert_allclose(
        R.transfer(s), (G.transfer(s) + G.transfer(s.conj()).conj()) / 2, rtol=1e-11, atol=1e-13
    )


def test_real_part_blocks_and_dense_diagonal_agree():
    G = _complex_batches()[0]
    R = sysred.real_part(G)
    np.testing.assert_array_equal(R.A, sysred.real_part(G.to_dense()).A)
    a, b, c = G.poles[0, 2], G.B[0, 2, 0], G.C[0, 0, 2]
    np.testing.assert_array_equal(R.A[0, 4:6, 4:6], [[a.real, a.imag], [-a.imag, a.real]])
    np.testing.assert_array_equal(R.B[0, 4:6, 0], [b.real, -b.imag])
    np.testing.assert_array_equal(R.C[0, 0, 4:6], [c.real, c.imag])
    np.testing.assert_array_equal(R.D, G.D.real)
    assert np.count_nonzero(R.A[0]) == 4 * G.n  # 2x2-block diagonal


def _imag_part(G):
    """u -> Im(G u) = Re(-i G u)."""
    cls = type(G)
    first = G.poles if cls is sysred.DiagonalStateSpace else G.A
    return sysred.real_part(cls(first, G.B, -1j * G.C, -1j * G.D, G.dt))


@pytest.mark.parametrize("k", [0, 2, 3])
def test_real_part_norm_relations_on_batches(k):
    G = _complex_batches()[k]
    H, K = sysred.real_part(G), _imag_part(G)
    g, h, kk = sysred.hinf_norm(G), sysred.hinf_norm(H), sysred.hinf_norm(K)
    assert g.shape == G.batch_shape
    assert np.all(h <= g * (1 + 1e-8))
    assert np.all(g <= (h + kk) * (1 + 1e-8))
    assert np.any(h < 0.999 * g)  # a real restriction, not a copy of G
    if G.is_discrete:  # ||Re g||^2 + ||Im g||^2 = ||g||^2, entrywise on the impulse response
        np.testing.assert_allclose(
            sysred.h2_norm(H) ** 2 + sysred.h2_norm(K) ** 2, sysred.h2_norm(G) ** 2, rtol=1e-9
        )


def test_real_part_hsv_conjugate_pairs_match_slycot_on_the_real_form():
    G = random_diagonal(np.random.default_rng(21), 8, 1, 1, discrete=True)
    R, P = sysred.real_part(G), sysred.real_part(G, form="conjugate-pairs")
    _, oracle = slycot_bt(R, 1)
    ours = sysred.hankel_singular_values(P)
    keep = oracle >= 1e-10 * oracle[0]
    np.testing.assert_allclose(ours[keep], oracle[keep], rtol=1e-8)
    # a different Hankel operator from G's (whose HSVs realify doubles)
    assert not np.allclose(ours[::2], sysred.hankel_singular_values(G), rtol=1e-3)


def test_real_part_of_real_system_and_bad_input():
    G = random_dense(np.random.default_rng(22), 3, 1, 1)
    assert sysred.real_part(G) is G
    Dg = random_diagonal(np.random.default_rng(22), 3, 1, 1, complex_=False)
    assert isinstance(sysred.real_part(Dg), sysred.StateSpace)
    assert sysred.real_part(Dg, form="conjugate-pairs") is Dg
    with pytest.raises(sysred.SysredError, match="form must be"):
        sysred.real_part(random_diagonal(np.random.default_rng(22), 3, 1, 1), form="blocks")
    with pytest.raises(sysred.SysredError, match="expected a sysred"):
        sysred.real_part(np.eye(2))
