"""Adapters and reduce: layer <-> sysred systems, exactness at full order, errors vs bounds."""

import io

import numpy as np
import pytest
import torch

import sysred
from s4dss import DSS, S4Model, from_system, param_groups, reduce, to_system

torch.set_num_threads(1)


def layer_map(layer: DSS, L: int) -> np.ndarray:
    """``K + D delta`` of a layer, ``(H, L)``, from the torch layer itself."""
    with torch.no_grad():
        K = layer.kernel(L).double().numpy().copy()
        K[:, 0] += layer.D.double().numpy()
    return K


def small_model(mode="exp", dtype=torch.float32, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = dict(d_output=3, d_input=2, d_model=6, n_layers=2, d_state=6, mode=mode)
    return S4Model(**{**cfg, **kw}).to(dtype).eval()


@pytest.mark.parametrize("mode", ["exp", "softmax"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_kernel_is_impulse_response_of_system(mode, per_channel):
    torch.manual_seed(0)
    layer = DSS(d_model=5, d_state=7, mode=mode, per_channel=per_channel, dt_max=0.5)
    L = 64
    system = to_system(layer, L)
    assert system.batch_shape == (5,) and (system.n, system.m, system.p) == (7, 1, 1)
    assert system.dt == 1.0
    h = system.impulse_response(L)[:, :, 0, 0]  # sysred's h_0 = D, h_k = C A^{k-1} B
    assert np.abs(h.real - layer.kernel(L).detach().numpy()).max() < 1e-6


def test_softmax_to_system_needs_L():
    with pytest.raises(ValueError, match="softmax"):
        to_system(DSS(d_model=2, d_state=2, mode="softmax"))


@pytest.mark.parametrize("mode", ["exp", "softmax"])
def test_from_system_inverts_to_system_through_a_dense_similarity(mode):
    # Hide the diagonal structure behind a random similarity: from_system must diagonalise,
    # and the rebuilt layer must have exactly the original layer map (skip included).
    torch.manual_seed(1)
    layer = DSS(d_model=3, d_state=4, mode=mode).double()
    L = 40
    diag = to_system(layer, L)
    rng = np.random.default_rng(0)
    T = np.eye(4) + 0.3 * (rng.standard_normal((3, 4, 4)) + 1j * rng.standard_normal((3, 4, 4)))
    Ti = np.linalg.inv(T)
    A = Ti @ (diag.poles[..., None] * T)
    dense = sysred.StateSpace(A, Ti @ diag.B, diag.C @ T, diag.D, dt=1.0)
    params = from_system(dense, layer.kernel.log_dt, mode, L, skip=layer.D)
    assert np.all(params.cond > 1.0)
    new = DSS(d_model=3, d_state=4, mode=mode).double()
    new.kernel = params.kernel(mode, param_dtype=torch.float64)
    with torch.no_grad():
        new.D.copy_(params.skip)
    assert np.abs(layer_map(new, L) - layer_map(layer, L)).max() < 1e-9


@pytest.mark.parametrize("mode", ["exp", "softmax"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reduce_full_rank_keeps_outputs(mode, dtype):
    model = small_model(mode, dtype)
    L = 50
    x = torch.randn(4, L, 2, dtype=dtype)
    reduced = reduce(model, rank=6, L=L)
    assert (reduced(x) - model(x)).abs().max() < 1e-5
    assert all(layer.kernel.per_channel for layer in reduced.layers)


@pytest.mark.parametrize("mode", ["exp", "softmax"])
def test_reduced_kernel_errors_below_bound(mode):
    model = small_model(mode, torch.float64, seed=2, d_state=8)
    L = 400
    reduced = reduce(model, rank=3, L=L)
    report = reduced.reduction_report
    for layer, new, rep in zip(model.layers, reduced.layers, report.layers, strict=True):
        assert new.N == 3 and rep.order == 3 and rep.n == 8
        # Independent of the report's own numbers: recompute from the torch layers.
        err = np.linalg.norm(layer_map(layer, L) - layer_map(new, L), axis=-1)
        assert np.allclose(err, rep.kernel_error, rtol=1e-8, atol=1e-12)
        assert np.all(err <= rep.bound * (1 + 1e-8) + 1e-12), (err, rep.bound)
        assert np.all(err > 0)  # something was actually truncated
        assert rep.hsv.shape == (6, 8) and np.all(np.diff(rep.hsv, axis=-1) <= 0)
        # The bound is sysred's: 2 * sum of the tail HSVs (distinct here).
        assert np.allclose(rep.bound, 2 * rep.hsv[:, 3:].sum(-1), rtol=1e-10)


# With tol = 1e-9 only the full order meets it: sysred's order search must reach r = n.
@pytest.mark.parametrize("tol", [1.5, 1e-9])
def test_reduce_with_tol_meets_it(tol):
    model = small_model(seed=3, d_state=8)
    reduced = reduce(model, tol=tol, L=100)
    for rep in reduced.reduction_report.layers:
        assert np.all(rep.bound <= tol) and rep.order <= 8
    assert reduced.config["d_state"] == [r.order for r in reduced.reduction_report.layers]


def test_reduce_passes_rank_tol_to_sysred():
    # (truncation itself, its bound and the low-rank error are tested in test_sysred_reductors;
    # this small random model's Gramians are not low rank, so nothing visible may change)
    rank_tol = 1e-14
    model = small_model("exp", torch.float64, seed=2, d_state=16)
    L = 400
    full = reduce(model, rank=4, L=L)
    low = reduce(model, rank=4, L=L, rank_tol=rank_tol)
    for layer, b, ra, rb in zip(
        model.layers, low.layers, full.reduction_report.layers, low.reduction_report.layers,
        strict=True,
    ):  # fmt: skip
        err = np.linalg.norm(layer_map(layer, L) - layer_map(b, L), axis=-1)
        assert np.all(err <= rb.bound * (1 + 1e-8) + 1e-12)
        assert np.all(rb.bound >= ra.bound * (1 - 1e-12))  # plus the HSV uncertainty
        np.testing.assert_allclose(rb.kernel_error, ra.kernel_error, rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(rb.hsv[:, :4], ra.hsv[:, :4], rtol=1e-8)
    with pytest.raises(sysred.OrderError, match="rank_tol"):
        reduce(model, rank=4, L=L, rank_tol=2.0)


def test_full_rank_exact_when_poles_alias():
    # Delta * Im(lambda) up to 0.37 * 5 pi > pi: the principal log gives other lambdas (and so
    # other W), but the same discrete kernel, so the map must not change.
    model = small_model(dtype=torch.float64, seed=6, init="s4d-lin", dt_min=0.37, dt_max=0.37)
    kernel = model.layers[0].kernel
    assert (kernel.Lambda().imag.abs() * kernel.log_dt.exp()[:, None]).max() > torch.pi
    reduced = reduce(model, rank=6, L=60)
    assert not torch.allclose(reduced.layers[0].kernel.Lambda().imag.abs().max(),
                              kernel.Lambda().imag.abs().max())  # fmt: skip
    x = torch.randn(3, 60, 2, dtype=torch.float64)
    assert (reduced(x) - model(x)).abs().max() < 1e-9


@pytest.mark.parametrize("mode", ["exp", "softmax"])
def test_original_untouched_and_step_mode_of_reduced_model(mode):
    model = small_model(mode, seed=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.setup_step(30)
    reduced = reduce(model, rank=3, L=30)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert model.layers[0].N == 6
    x = torch.randn(2, 30, 2)
    reduced.setup_step(30)
    state = reduced.initial_state(2)
    assert [s.shape[-1] for s in state.layers] == [3, 3]
    for t in range(30):
        out, state = reduced.step(x[:, t], state)
    assert (out - reduced(x)).abs().max() < 1e-5


def test_reduced_model_saves_loads_and_trains():
    model = small_model(seed=5)
    reduced = reduce(model, rank=2, L=20).train()
    buf = io.BytesIO()
    torch.save(reduced.state_dict(), buf)
    clone = S4Model(**reduced.config)
    clone.load_state_dict(torch.load(io.BytesIO(buf.getvalue())))
    x = torch.randn(32, 20, 2)
    assert torch.equal(clone.eval()(x), reduced.eval()(x))
    y = (x[..., 0].sum(1) > 0).long()
    opt = torch.optim.AdamW(param_groups(clone, lr=1e-2))
    clone.train()
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(clone(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_reduce_bad_input():
    model = small_model()
    with pytest.raises(ValueError, match="no s4dss.DSS layer"):
        reduce(torch.nn.Linear(2, 2), rank=1)
    for rank in (0, 7):
        with pytest.raises(ValueError, match=f"rank {rank} out of range .* N = 6"):
            reduce(model, rank=rank)
    with pytest.raises(ValueError, match="integer"):
        reduce(model, rank=2.5)
    with pytest.raises(ValueError, match="exactly one of rank"):
        reduce(model, rank=2, tol=0.1)
    with pytest.raises(ValueError, match="exactly one of rank"):
        reduce(model)
    with pytest.raises(ValueError, match="method"):
        reduce(model, rank=2, method="pod")
    with pytest.raises(ValueError, match="horizon= applies to method='bt'"):
        reduce(model, rank=2, method="modal", horizon=100)
    with pytest.raises(sysred.SysredError, match="no a-priori bound"):
        reduce(model, tol=0.1, horizon=100)


def test_time_limited_reduction_handles_unstable_softmax_channels():
    model = small_model("softmax")
    with torch.no_grad():
        model.layers[1].kernel.Lambda_re[2] = 0.3  # every channel of layer 1 goes unstable
    L = 50
    reduced = reduce(model, rank=6, horizon=L, L=L, strict=False)  # full order: map kept
    x = torch.randn(2, L, 2)
    torch.testing.assert_close(reduced(x), model(x), atol=1e-4, rtol=1e-4)
    small = reduce(model, rank=3, horizon=L, L=L)
    for rep in small.reduction_report.layers:
        assert np.all(np.isnan(rep.bound)) and np.all(np.isfinite(rep.kernel_error))


def test_reduce_names_unstable_softmax_channels():
    model = small_model("softmax")
    with torch.no_grad():
        model.layers[1].kernel.Lambda_re[2] = 0.3  # shared Lambda: every channel goes unstable
    with pytest.raises(sysred.UnstableSystemError, match=r"layer 'layers.1': softmax channels \["):
        reduce(model, rank=2, L=50)


def test_reduce_rejects_nan_parameters():
    model = small_model()
    with torch.no_grad():
        model.layers[0].kernel.W[1, 2, 0] = float("nan")
    with pytest.raises(sysred.NonFiniteError, match="layers.0.*parameter W"):
        reduce(model, rank=2)


def test_modal_method_baseline():
    model = small_model()
    reduced = reduce(model, rank=2, method="modal", L=50)
    assert [layer.N for layer in reduced.layers] == [2, 2]
    x = torch.randn(2, 50, 2)
    assert torch.isfinite(reduced(x)).all()
