"""Issue 10 (bad input): systems without states, inputs or outputs get a defined result from
every public function; malformed arguments get a specific ``SysredError`` subclass whose message
says what to pass, never a raw numpy error."""

import control
import numpy as np
import pytest
from _systems import random_dense, random_diagonal

import sysred

Z = np.zeros


def empty_systems():
    """(name, system): no states, no inputs, no outputs; dense and diagonal; batched."""
    return [
        ("n0-ct", sysred.StateSpace(Z((0, 0)), Z((0, 2)), Z((3, 0)), np.ones((3, 2)))),
        ("n0-dt", sysred.StateSpace(Z((0, 0)), Z((0, 2)), Z((3, 0)), np.ones((3, 2)), dt=1.0)),
        ("m0-ct", sysred.StateSpace(-np.eye(2), Z((2, 0)), np.ones((1, 2)), Z((1, 0)))),
        ("p0-dt", sysred.StateSpace(0.5 * np.eye(2), np.ones((2, 1)), Z((0, 2)), Z((0, 1)), 1.0)),
        ("diag-n0", sysred.DiagonalStateSpace(Z(0), Z((0, 1)), Z((1, 0)), [[2.0]])),
        ("diag-m0", sysred.DiagonalStateSpace([0.5, 0.2j], Z((2, 0)), np.ones((1, 2)), dt=1.0)),
        ("batch-n0", sysred.StateSpace(Z((4, 0, 0)), Z((4, 0, 1)), Z((4, 1, 0)), np.ones((4, 1, 1)))),  # noqa: E501
    ]  # fmt: skip


EMPTY = empty_systems()
IDS = [name for name, _ in EMPTY]


def _d_norm(G):
    D = G.D.reshape((int(np.prod(G.batch_shape)),) + G.D.shape[-2:])
    return np.array([np.linalg.norm(d, 2) if d.size else 0.0 for d in D]).reshape(G.batch_shape)


@pytest.mark.parametrize("name, G", EMPTY, ids=IDS)
def test_hsvs_factors_and_gramians_of_empty_systems(name, G):
    hsv = sysred.hankel_singular_values(G)
    assert hsv.shape == G.batch_shape + (G.n,) and not np.any(hsv)
    R, S, _ = sysred.gramian_factors(G)
    assert R.shape == S.shape == G.batch_shape + (G.n, G.n)
    P, Q = sysred.gramians(G)
    assert P.shape == Q.shape == G.batch_shape + (G.n, G.n)
    if G.m == 0:
        assert not np.any(P)
    assert sysred.tail_bounds(hsv).shape == G.batch_shape + (G.n + 1,)
    assert not np.any(sysred.tail_bound(hsv, 0))


@pytest.mark.parametrize("name, G", EMPTY, ids=IDS)
def test_norms_of_empty_systems(name, G):
    np.testing.assert_allclose(sysred.hinf_norm(G), _d_norm(G), rtol=1e-15)
    norm, freq = sysred.hinf_norm(G, return_frequency=True)
    assert np.all(np.isfinite(norm)) and np.shape(freq) == G.batch_shape
    assert not np.any(sysred.hinf_norm(G, G))  # G - G = 0
    if G.is_discrete or not np.any(G.D):
        fro = np.sqrt(np.sum(np.abs(G.D) ** 2, axis=(-2, -1))) if G.is_discrete else 0.0
        np.testing.assert_allclose(sysred.h2_norm(G), fro, rtol=1e-15)
    else:
        with pytest.raises(sysred.SysredError, match="infinite for a nonzero feed-through"):
            sysred.h2_norm(G)
    assert sysred.difference(G, G).n == 2 * G.n


@pytest.mark.parametrize("name, G", EMPTY, ids=IDS)
def test_reduction_of_empty_systems_returns_the_feedthrough(name, G):
    for res in (sysred.balanced_truncation(G, order=0), sysred.balanced_truncation(G, tol=1e-3)):
        assert res.order == 0 and res.system.n == 0
        assert res.system.batch_shape == G.batch_shape
        np.testing.assert_array_equal(res.system.D, G.D)
        assert not np.any(res.bound)
    red = sysred.BTReductor(G)
    assert red.error_bounds().shape == G.batch_shape + (G.n + 1,)
    assert not np.any(red.error_bounds())
    if G.n == 0:
        assert sysred.modal_truncation(G, 0).system.n == 0
    else:  # no inputs: every mode contributes nothing
        res = sysred.modal_truncation(G, 1)
        assert not np.any(res.contributions) and not np.any(res.bound)
    with pytest.raises(sysred.OrderError, match="between 0 and n"):
        sysred.balanced_truncation(G, order=G.n + 1)


@pytest.mark.parametrize("name, G", EMPTY, ids=IDS)
def test_forms_and_evaluation_of_empty_systems(name, G):
    modal, cond = sysred.diagonalize(G)
    assert modal.n == G.n and np.all(cond == 1.0)
    assert sysred.realify(G).n == (2 if G.is_complex else 1) * G.n
    H = G.transfer([0.3j])
    assert H.shape == G.batch_shape + (1, G.p, G.m)
    assert G.markov_parameters(3).shape == G.batch_shape + (3, G.p, G.m)
    if G.is_discrete:
        assert not np.any(sysred.impulse_error(G, G, 5))
        assert sysred.bilinear_to_continuous(G).n == G.n


def test_python_control_round_trip_of_empty_systems():
    G = sysred.StateSpace(Z((0, 0)), Z((0, 2)), Z((3, 0)), np.ones((3, 2)), dt=0.1)
    back = sysred.from_control(sysred.to_control(G))
    assert back.n == 0 and back.dt == 0.1 and np.array_equal(back.D, G.D)
    for gain in (
        control.ss([], [], [], [[2.0]]),  # a static gain
        control.ss(control.tf(2, 1)),
        control.tf2ss(control.tf([2.0], [1.0])),
    ):
        S = sysred.from_control(gain)
        assert S.n == 0 and sysred.hinf_norm(S) == 2.0
        assert sysred.hankel_singular_values(S).shape == (0,)
    for _, E in EMPTY[2:4]:  # no inputs / no outputs: python-control cannot hold them
        with pytest.raises(sysred.ShapeError, match="cannot represent a system without inputs"):
            sysred.to_control(E)


# --------------------------------------------------------------------- malformed arguments

NOT_SYSTEMS = [
    ("python-control", control.ss([[-1.0]], [[1.0]], [[1.0]], [[0.0]]), "sysred.from_control"),
    ("ndarray", np.eye(3), "sysred.StateSpace(A, B, C, D, dt)"),
    ("tuple", (np.eye(2), np.ones((2, 1)), np.ones((1, 2))), "sysred.StateSpace"),
]


def _public_calls():
    G = random_dense(np.random.default_rng(0), 3, 1, 1)
    return {
        "hankel_singular_values": sysred.hankel_singular_values,
        "diagonalize": sysred.diagonalize,
        "gramian_factors": sysred.gramian_factors,
        "gramians": sysred.gramians,
        "hinf_norm": sysred.hinf_norm,
        "hinf_norm(G, x)": lambda x: sysred.hinf_norm(G, x),
        "h2_norm": sysred.h2_norm,
        "balanced_truncation": lambda x: sysred.balanced_truncation(x, order=1),
        "BTReductor": sysred.BTReductor,
        "modal_truncation": lambda x: sysred.modal_truncation(x, 1),
        "realify": sysred.realify,
        "difference": lambda x: sysred.difference(x, G),
        "bilinear_to_continuous": sysred.bilinear_to_continuous,
        "impulse_error": lambda x: sysred.impulse_error(x, G, 4),
        "to_control": sysred.to_control,
    }


@pytest.mark.parametrize("fn_name", list(_public_calls()))
@pytest.mark.parametrize("kind, obj, hint", NOT_SYSTEMS, ids=[k for k, _, _ in NOT_SYSTEMS])
def test_not_a_system_is_refused_with_what_to_pass(fn_name, kind, obj, hint):
    with pytest.raises(sysred.NotASystemError, match="expected a sysred.StateSpace") as info:
        _public_calls()[fn_name](obj)
    assert hint in str(info.value)


def test_hinf_norm_of_systems_with_mismatched_batch_shapes():
    G1 = random_diagonal(np.random.default_rng(1), 4, 1, 1, batch=(2,))
    G2 = random_diagonal(np.random.default_rng(2), 3, 1, 1, batch=(3,))
    with pytest.raises(sysred.ShapeError, match=r"batch shapes \(2,\) and \(3,\) do not broadcast"):
        sysred.hinf_norm(G1, G2)
    with pytest.raises(sysred.ShapeError, match="do not broadcast"):
        sysred.difference(G1, G2)
    G3 = random_diagonal(np.random.default_rng(2), 3, 2, 1)
    with pytest.raises(sysred.ShapeError, match="inputs m, outputs p"):
        sysred.hinf_norm(G1, G3)


@pytest.mark.parametrize("method", ["foo", "SQRT", None, 3])
def test_unknown_method_is_refused(method):
    G = random_dense(np.random.default_rng(0), 4, 1, 1)
    with pytest.raises(sysred.OptionError, match="method must be 'sqrt' or 'bfsr'"):
        sysred.balanced_truncation(G, order=2, method=method)
    with pytest.raises(sysred.OptionError, match="method must be 'sqrt' or 'bfsr'"):
        sysred.BTReductor(G).reduce(2, method=method)


@pytest.mark.parametrize("tol", ["1e-3", float("nan"), -1e-3, 1.0, np.inf, None, True, [1e-3]])
def test_hinf_norm_tol_must_be_a_number_in_0_1(tol):
    G = random_dense(np.random.default_rng(0), 4, 1, 1)
    with pytest.raises(sysred.OptionError, match=r"tol must be a number in \[0, 1\) such as 1e-10"):
        sysred.hinf_norm(G, tol=tol)


def test_hinf_norm_tol_zero_and_integers_are_fine():
    G = sysred.StateSpace([[-1.0]], [[1.0]], [[1.0]])
    assert sysred.hinf_norm(G, tol=0) == pytest.approx(1.0, rel=1e-14)
    assert sysred.hinf_norm(G, tol=np.float32(1e-6)) == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("tol", ["1e-3", float("nan"), -1.0])
def test_balanced_truncation_tol_must_be_a_nonnegative_number(tol):
    G = random_dense(np.random.default_rng(0), 4, 1, 1)
    with pytest.raises(sysred.OrderError, match="tol must be a non-negative number"):
        sysred.balanced_truncation(G, tol=tol)


@pytest.mark.parametrize("workers", ["two", 0, -1, 1.5, True])
def test_workers_must_be_a_positive_integer(workers):
    G = random_diagonal(np.random.default_rng(0), 6, 1, 1, batch=(40,))
    with pytest.raises(sysred.OptionError, match="workers must be a positive integer"):
        sysred.balanced_truncation(G, order=2, workers=workers)
    with pytest.raises(sysred.OptionError, match="workers must be a positive integer"):
        sysred.BTReductor(G[0], workers=workers)  # refused for a single system too


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_sysred_workers_environment_variable_must_be_a_positive_integer(monkeypatch, value):
    monkeypatch.setenv("SYSRED_WORKERS", value)
    G = random_diagonal(np.random.default_rng(0), 6, 1, 1, batch=(40,))
    with pytest.raises(
        sysred.OptionError, match=f"SYSRED_WORKERS must be a positive integer.*{value!r}"
    ):
        sysred.hankel_singular_values(G)
    monkeypatch.setenv("SYSRED_WORKERS", "2")
    assert sysred.hankel_singular_values(G).shape == (40, 6)


@pytest.mark.parametrize("order", [-1, 1.5, "2", 7, True])
def test_tail_bound_order_must_be_an_integer_in_range(order):
    with pytest.raises(sysred.OrderError, match="order must be an integer between 0 and n = 6"):
        sysred.tail_bound(np.arange(6.0, 0.0, -1.0), order)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda G: sysred.hankel_singular_values(G, backend="foo"), "backend must be one of"),
        (lambda G: sysred.gramian_factors(G, backend="lapack"), "backend must be one of"),
        (lambda G: sysred.hankel_singular_values(G, accuracy="best"), "accuracy must be one of"),
        (lambda G: sysred.diagonalize(G, max_cond="big"), "max_cond must be a number >= 1"),
        (lambda G: sysred.modal_truncation(G, 2, max_cond=0.5), "max_cond must be a number >= 1"),
    ],
)
def test_unknown_options_are_refused(call, match):
    with pytest.raises(sysred.OptionError, match=match):
        call(random_dense(np.random.default_rng(0), 4, 1, 1))


def test_impulse_error_arguments():
    G = random_diagonal(np.random.default_rng(0), 4, 1, 1, discrete=True)
    with pytest.raises(sysred.OrderError, match="length must be a positive integer"):
        sysred.impulse_error(G, G, 0)
    with pytest.raises(sysred.SysredError, match="discrete-time impulse responses"):
        sysred.impulse_error(random_dense(np.random.default_rng(0), 4, 1, 1), G, 3)
    H = random_diagonal(np.random.default_rng(0), 4, 2, 1, discrete=True)
    with pytest.raises(sysred.ShapeError, match="equal \\(m, p, dt\\)"):
        sysred.impulse_error(G, H, 3)


def test_bilinear_map_with_a_pole_at_minus_one():
    G = sysred.StateSpace([[-1.0]], [[1.0]], [[1.0]], dt=1.0)
    with pytest.raises(sysred.SysredError, match="z = -1 is a pole"):
        sysred.bilinear_to_continuous(G)
