"""Shared-pole reduction (parameter-honest) and singular perturbation in s4dss.reduce."""

import warnings

import numpy as np
import pytest
import torch

import sysred
from s4dss import (
    DSS,
    ParameterIncreaseWarning,
    S4Model,
    from_shared_system,
    reduce,
    to_shared_system,
    to_system,
)
from s4dss.plans import ssm_params

torch.set_num_threads(1)


def layer_map(layer: DSS, L: int) -> np.ndarray:
    with torch.no_grad():
        K = layer.kernel(L).double().numpy().copy()
        K[:, 0] += layer.D.double().numpy()
    return K


def model(mode="exp", seed=0, H=6, N=8, **kw):
    torch.manual_seed(seed)
    cfg = dict(d_output=3, d_input=2, d_model=H, n_layers=2, d_state=N, mode=mode)
    return S4Model(**{**cfg, **kw}).double().eval()


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def dc_gain(layer: DSS) -> np.ndarray:
    """The layer map's steady-state gain per channel: sum of the whole kernel plus the skip."""
    G = to_system(layer)  # exp mode: no L needed
    return G.transfer([1.0])[:, 0, 0, 0].real + layer.D.detach().double().numpy()


@pytest.mark.parametrize("mode", ["exp", "softmax"])
def test_shared_system_reproduces_the_layer(mode):
    torch.manual_seed(0)
    layer = DSS(5, 6, mode=mode).double()
    L = 50
    G = to_shared_system(layer, L)
    assert (G.n, G.m, G.p, G.dt, G.batch_shape) == (6, 1, 5, None, ())
    params = from_shared_system(G, layer.kernel.log_dt, mode, L, layer.D)
    assert params.Lambda.shape == (6,) and params.W.shape == (5, 6)
    new = DSS(5, 6, mode=mode).double()
    new.kernel = params.kernel(mode, param_dtype=torch.float64)
    with torch.no_grad():
        new.D.copy_(params.skip)
    assert np.abs(layer_map(new, L) - layer_map(layer, L)).max() < 1e-12
    with pytest.raises(ValueError, match="per-channel poles"):
        to_shared_system(DSS(5, 6, per_channel=True))


@pytest.mark.parametrize("mode", ["exp", "softmax"])
def test_shared_full_order_keeps_the_model(mode):
    m = model(mode)
    L = 40
    x = torch.randn(3, L, 2, dtype=torch.float64)
    reduced = reduce(m, rank=8, L=L, poles="shared")
    assert (reduced(x) - m(x)).abs().max() < 1e-9
    assert n_params(reduced) == n_params(m)
    assert not any(layer.kernel.per_channel for layer in reduced.layers)


@pytest.mark.parametrize("r", [1, 2, 4, 7])
def test_shared_reduction_has_fewer_parameters_and_keeps_shared_poles(r):
    m = model(seed=1)
    H, N = 6, 8
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParameterIncreaseWarning)  # must not warn
        shared = reduce(m, rank=r, L=32, poles="shared")
    rep = shared.reduction_report
    assert rep.poles == "shared" and "shared poles" in str(rep)
    for layer, lr in zip(shared.layers, rep.layers, strict=True):
        kernel = layer.kernel
        assert kernel.Lambda().shape == (r,) and layer.N == r
        assert kernel.Lambda().real.max() < 0
        assert lr.params_after < lr.params_before
        assert lr.params_after - lr.params_before == ssm_params(H, r, True) - ssm_params(H, N, True)
        assert lr.hsv.shape == (N,) and lr.bound.shape == (H,) and lr.cond.shape == (H,)
        assert np.all(np.isfinite(lr.cond)) and np.all(lr.cond >= 1)
    assert rep.params_after == n_params(shared) < n_params(m)
    # rebuilds from its config (shared poles: lambda_per_channel stays False)
    assert shared.config["d_state"] == [r, r] and not shared.config["lambda_per_channel"]
    clone = S4Model(**shared.config).double()
    clone.load_state_dict(shared.state_dict())
    x = torch.randn(2, 20, 2, dtype=torch.float64)
    assert torch.equal(clone.eval()(x), shared(x))


def test_continuous_time_bound_holds_per_channel_and_kernel_errors_are_measured():
    m = model(seed=2)
    L = 64
    shared = reduce(m, rank=3, L=L, poles="shared")
    for old, new, rep in zip(m.layers, shared.layers, shared.reduction_report.layers, strict=True):
        G, Gr = to_shared_system(old, L), to_shared_system(new, L)
        for h in range(old.H):
            Gh = sysred.DiagonalStateSpace(G.poles, G.B, G.C[h : h + 1])
            # the skip term got Re D_r (zero for BT): compare the continuous-time channels only
            Grh = sysred.DiagonalStateSpace(Gr.poles, Gr.B, Gr.C[h : h + 1])
            err = sysred.hinf_norm(Gh, Grh)
            assert err <= rep.bound[h] * (1 + 1e-8)
        # the report's kernel errors are the torch layers' own
        err = np.linalg.norm(layer_map(old, L) - layer_map(new, L), axis=-1)
        np.testing.assert_allclose(rep.kernel_error, err, rtol=1e-8, atol=1e-12)


def test_per_channel_reduction_warns_when_it_adds_parameters():
    m = model(seed=3)  # H = 6, N = 8: per-channel r > N/2 + N/(2H) = 4.67 adds parameters
    with pytest.warns(ParameterIncreaseWarning, match=r"MORE parameters .* poles='shared'"):
        reduce(m, rank=5, L=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ParameterIncreaseWarning)
        reduce(m, rank=4, L=16)
        reduce(m, rank=8, L=16, poles="shared")


def test_shared_poles_refusals():
    m = model(seed=4, lambda_per_channel=True)
    with pytest.raises(ValueError, match="layer 'layers.0'.*per-channel poles"):
        reduce(m, rank=2, poles="shared")
    with pytest.raises(ValueError, match="poles must be one of"):
        reduce(model(), rank=2, poles="both")
    with pytest.raises(ValueError, match="horizon= .* per-channel only"):
        reduce(model(), rank=2, poles="shared", horizon=16)
    soft = model("softmax", seed=5)
    with torch.no_grad():
        soft.layers[1].kernel.Lambda_re[2] = 0.3
    with pytest.raises(sysred.UnstableSystemError, match="layer 'layers.1'"):
        reduce(soft, rank=2, L=16, poles="shared")


@pytest.mark.parametrize("poles", ["per-channel", "shared"])
def test_spa_keeps_every_channels_steady_state_gain(poles):
    m = model(seed=6)
    L = 400
    spa = reduce(m, rank=3, L=L, method="spa", poles=poles)
    bt = reduce(m, rank=3, L=L, method="bt", poles=poles)
    for old, new, other in zip(m.layers, spa.layers, bt.layers, strict=True):
        scale = np.abs(dc_gain(old)).max()
        assert np.abs(dc_gain(new) - dc_gain(old)).max() < 1e-9 * scale
        assert np.abs(dc_gain(other) - dc_gain(old)).max() > 1e-6 * scale  # BT does not
    assert spa.reduction_report.method == "spa"


def test_per_channel_spa_kernel_errors_below_the_bound():
    m = model(seed=7)
    L = 400
    spa = reduce(m, rank=3, L=L, method="spa")
    for old, new, rep in zip(m.layers, spa.layers, spa.reduction_report.layers, strict=True):
        err = np.linalg.norm(layer_map(old, L) - layer_map(new, L), axis=-1)
        assert np.all(err <= rep.bound * (1 + 1e-8)) and np.all(err > 0)
        np.testing.assert_allclose(rep.bound, 2 * rep.hsv[:, 3:].sum(-1), rtol=1e-10)


def test_modal_with_shared_poles_keeps_a_subset_of_the_poles():
    m = model(seed=8)
    red = reduce(m, rank=3, L=32, method="modal", poles="shared")
    for old, new in zip(m.layers, red.layers, strict=True):
        kept = new.kernel.Lambda().detach().numpy()
        full = old.kernel.Lambda().detach().numpy()
        assert kept.shape == (3,)
        assert all(np.min(np.abs(full - lam)) < 1e-12 for lam in kept)


def test_step_mode_of_a_shared_reduced_model():
    m = model(seed=9)
    L = 30
    red = reduce(m, rank=3, L=L, poles="shared", method="spa").float()
    x = torch.randn(2, L, 2)
    red.setup_step(L)
    state = red.initial_state(2)
    for t in range(L):
        out, state = red.step(x[:, t], state)
    assert (out - red(x)).abs().max() < 1e-5
