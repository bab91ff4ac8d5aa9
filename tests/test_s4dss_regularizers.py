"""HSV regulariser: values against sysred, Gramians by residual, tr(PQ) against Markov
parameters, gradients against finite differences, robustness, and its training callback."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.func import functional_call

import s4dss
import sysred
from s4dss.data import get_task
from s4dss.regularizers import (
    HSVRegConfig,
    channel_gramians,
    discrete64,
    hankel_singular_values,
    hankel_trace,
    hsv_penalty,
    layer_penalty,
)
from s4dss.train import build_model, train


def layer(H=4, N=8, seed=0, **kw):
    torch.manual_seed(seed)
    kw = {"init": "s4d-lin", "dt_min": 0.05, "dt_max": 0.2, **kw}
    return s4dss.DSS(H, N, **kw)


def npy(t):
    return t.detach().numpy()


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("init", ["s4d-lin", "random", "skew-hippo"])
def test_hsv_match_sysred(init, per_channel):
    lay = layer(H=5, N=12, init=init, per_channel=per_channel)
    ref = sysred.hankel_singular_values(s4dss.to_system(lay))  # (H N)
    sigma = npy(hankel_singular_values(*discrete64(lay), jitter=0.0))
    np.testing.assert_allclose(sigma, ref, rtol=0, atol=1e-12 * ref.max())


def test_hsv_of_clustered_poles_match_sysred_to_the_shift():
    # N = 64 skew-HiPPO with large steps: the poles exp(Delta lambda) wrap around the circle and
    # cluster, K (so P and Q) is numerically singular and a plain Cholesky fails
    lay = layer(H=8, N=64, init="skew-hippo", dt_min=0.1, dt_max=1.0)
    a = discrete64(lay)[0].detach()
    assert (torch.linalg.cholesky_ex(s4dss.regularizers.pole_kernel(a))[1] > 0).any()
    ref = sysred.hankel_singular_values(s4dss.to_system(lay))
    assert (ref[:, -1] / ref[:, 0]).max() < 1e-10
    sigma = npy(hankel_singular_values(*discrete64(lay)))  # default jitter 1e-12, escalated
    assert np.abs(sigma - ref).max() < 1e-8 * ref.max()
    np.testing.assert_allclose(sigma[:, :8], ref[:, :8], rtol=1e-8)


def test_softmax_layer_uses_time_limited_hsvs():
    lay = layer(H=3, N=6, mode="softmax")
    with torch.no_grad():  # push some poles out of the unit disc
        lay.kernel.Lambda_re[:2] = 0.3
    L = 32
    a, b, c = discrete64(lay, L)
    assert (a.abs() > 1).any()
    with pytest.raises(ValueError, match="horizon"):
        hankel_singular_values(a, b, c)
    ref = sysred.hankel_singular_values(s4dss.to_system(lay, L), horizon=L)
    sigma = npy(hankel_singular_values(a, b, c, horizon=L, jitter=0.0))
    np.testing.assert_allclose(sigma, ref, rtol=0, atol=1e-10 * ref.max())
    # the layer penalty picks the horizon by itself
    tail = npy(layer_penalty(lay, "tail", order=2, L=L))
    np.testing.assert_allclose(tail, ref[:, 2:].sum(-1) / ref.sum(-1), rtol=1e-9)


def test_gramians_solve_the_lyapunov_equations():
    a, b, c = (t.detach() for t in discrete64(layer()))
    P, Q = channel_gramians(a, b, c)
    A = torch.diag_embed(a)  # (H N N)
    B, C = b[..., None], (c * a)[..., None, :]
    rP = A @ P @ A.mH - P + B @ B.mH
    rQ = A.mH @ Q @ A - Q + C.mH @ C
    assert rP.abs().max() < 1e-12 * P.abs().max() and rQ.abs().max() < 1e-12 * Q.abs().max()


@pytest.mark.parametrize("horizon", [None, 20])
def test_trace_equals_weighted_markov_energy(horizon):
    lay = layer(H=3, N=6)
    a, b, c = discrete64(lay)
    K = 4000 if horizon is None else 2 * horizon
    h = sysred.DiagonalStateSpace(
        npy(a), npy(b)[..., None], npy(c * a)[:, None, :], dt=1.0
    ).impulse_response(K)[:, 1:, 0, 0]  # (H K-1): h_1 .. h_{K-1}
    k = np.arange(1, K)
    weight = (
        k if horizon is None else np.minimum(k, 2 * horizon - k)
    )  # entries of the Hankel matrix
    expected = (weight * np.abs(h) ** 2).sum(-1)
    got = npy(hankel_trace(a, b, c, horizon))
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    sigma = hankel_singular_values(a, b, c, horizon, jitter=0.0)
    np.testing.assert_allclose(npy((sigma**2).sum(-1)), got, rtol=1e-10)


def _abc_inputs(H=2, N=4, seed=1):
    a, b, c = (t.detach() for t in discrete64(layer(H, N, seed=seed)))
    return [torch.view_as_real(t).clone().requires_grad_() for t in (a, b, c)]


@pytest.mark.parametrize("kind", ["tail", "nuclear", "trace"])
def test_gradcheck_against_finite_differences(kind):
    def f(ar, br, cr):
        a, b, c = (torch.view_as_complex(t) for t in (ar, br, cr))
        if kind == "trace":
            return hankel_trace(a, b, c)
        sigma = hankel_singular_values(a, b, c, jitter=0.0)
        return sigma[:, 1:].sum(-1) / sigma.sum(-1) if kind == "tail" else sigma.sum(-1)

    assert torch.autograd.gradcheck(f, _abc_inputs(), eps=1e-7, atol=1e-6, rtol=1e-5)


def test_gradcheck_through_the_layer_parameters():
    lay = layer(H=2, N=3).double()

    class Penalty(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lay = lay

        def forward(self):
            return layer_penalty(self.lay, "tail", order=1, jitter=0.0)

    mod = Penalty()
    names = [n for n, _ in mod.named_parameters() if ".kernel." in n]
    params = [dict(mod.named_parameters())[n].detach().clone().requires_grad_() for n in names]

    def f(*ps):
        return functional_call(mod, dict(zip(names, ps, strict=True)), ())

    assert torch.autograd.gradcheck(f, params, eps=1e-7, atol=1e-6, rtol=1e-5)


def test_gradient_is_accurate_on_ill_conditioned_gramians():
    # sum sigma^2 by the Cholesky + SVD route and by the closed-form trace are the same function:
    # their gradients must agree although cond(K) ~ 1e12
    lay = layer(H=8, N=48, init="skew-hippo", dt_min=0.05, dt_max=0.3).double()
    a, b, c = discrete64(lay)
    K = s4dss.regularizers.pole_kernel(a.detach())
    assert torch.linalg.cond(K).max() > 1e10
    params = list(lay.kernel.parameters())
    g_svd = torch.autograd.grad(
        (hankel_singular_values(a, b, c, jitter=0.0) ** 2).sum(), params, retain_graph=True,
        allow_unused=True,
    )  # fmt: skip
    g_tr = torch.autograd.grad(hankel_trace(a, b, c).sum(), params, allow_unused=True)
    for x, y in zip(g_svd, g_tr, strict=True):
        if x is None:
            assert y is None
            continue
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-9 * float(y.abs().max()))


def test_degenerate_channels_give_finite_gradients():
    a, b, c = (t.detach().clone() for t in discrete64(layer(H=3, N=6)))
    b[0] = 0  # no controllability: every HSV of channel 0 is 0 (P = 0)
    c[1, :3] = 0  # three unobservable modes: three zero HSVs, tied
    a[2, 1] = a[2, 0]  # a repeated pole: K singular, Q of rank N - 1
    b[2, 1] = b[2, 0]
    ins = [t.clone().requires_grad_() for t in (a, b, c)]
    sigma = hankel_singular_values(*ins)
    s = sigma.detach()
    assert torch.isfinite(s).all() and float(s[0].max()) < 1e-6 * float(s.max())
    for value in ((sigma[:, 2:].sum(-1) / sigma.sum(-1).clamp_min(1e-300)).sum(), sigma.sum()):
        grads = torch.autograd.grad(value, ins, retain_graph=True)
        assert all(torch.isfinite(torch.view_as_real(g)).all() for g in grads)


def test_penalty_over_a_model_and_channel_subsets():
    torch.manual_seed(0)
    model = s4dss.S4Model(d_output=2, d_input=1, d_model=6, n_layers=2, d_state=8)
    layers = [m for m in model.modules() if isinstance(m, s4dss.DSS)]
    tails = []
    for lay in layers:
        ref = sysred.hankel_singular_values(s4dss.to_system(lay))
        tails.append(ref[:, 3:].sum(-1) / ref.sum(-1))

    def value(**kw):
        with torch.no_grad():
            return float(hsv_penalty(model, "tail", order=3, **kw))

    full = value()
    np.testing.assert_allclose(full, np.concatenate(tails).mean(), rtol=1e-9)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    sub = value(channels=2, generator=g1)
    assert sub == value(channels=2, generator=g2) and sub != full
    assert value(channels=6) == pytest.approx(full)  # all channels
    with pytest.raises(ValueError, match="no s4dss.DSS"):
        hsv_penalty(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="target order"):
        hsv_penalty(model, "tail")
    with pytest.raises(ValueError, match="kind"):
        hsv_penalty(model, "frobenius")


def test_config_section_is_checked():
    assert HSVRegConfig.from_dict({"weight": 0.1, "order": 4}).kind == "tail"
    for bad, msg in [
        ({"order": 4}, "needs a weight"),
        ({"weight": -1, "order": 4}, "weight"),
        ({"weight": 1, "kind": "tail"}, "target order"),
        ({"weight": 1, "kind": "nuc"}, "kind"),
        ({"weight": 1, "kind": "trace", "channels": 0}, "channels"),
        ({"weight": 1, "kind": "trace", "jitter": 1.0}, "jitter"),
        ({"weight": 1, "kind": "trace", "ordr": 3}, "unknown keys"),
    ]:
        with pytest.raises(ValueError, match=msg):
            HSVRegConfig.from_dict(bad)


def _tail_of(model, r):
    out = []
    for lay in (m for m in model.modules() if isinstance(m, s4dss.DSS)):
        hsv = sysred.hankel_singular_values(s4dss.to_system(lay))
        out.append(hsv[:, r:].sum(-1) / hsv.sum(-1))
    return float(np.concatenate(out).mean())


def test_training_with_the_regulariser(tmp_path):
    task = get_task("majority", n_train=96, n_val=32, n_test=32, length=16)
    spec = {"name": "s4", "d_model": 8, "n_layers": 1, "d_state": 8}
    cfg = dict(epochs=2, batch_size=16, lr=1e-2, progress=False, log_every=1, num_threads=1)
    reg = {"weight": 1.0, "order": 2, "channels": 4}
    runs = {}
    for name, extra in (("plain", {}), ("reg", {"hsv_reg": reg})):
        torch.manual_seed(0)
        model = build_model(spec, task)
        runs[name] = (model, train(model, task, {**cfg, **extra}, tmp_path / name))
    rows = [json.loads(x) for x in (tmp_path / "reg" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if r["event"] == "train"]
    assert all("hsv_reg" in r and r["hsv_reg_seconds"] > 0 for r in logged)
    assert logged[-1]["hsv_reg"] < logged[0]["hsv_reg"]  # the penalty goes down
    assert runs["reg"][1]["hsv_reg_seconds_per_step"] > 0
    assert _tail_of(runs["reg"][0], 2) < _tail_of(runs["plain"][0], 2)
    # exact resume with the per-step channel draw
    torch.manual_seed(0)
    cut = build_model(spec, task)
    s = train(cut, task, {**cfg, "hsv_reg": reg, "interrupt_after_steps": 7}, tmp_path / "cut")
    assert s["status"] == "interrupted"
    torch.manual_seed(123)
    resumed = build_model(spec, task)
    train(resumed, task, {**cfg, "hsv_reg": reg}, tmp_path / "cut", resume=True)
    a, b = runs["reg"][0].state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_overrides_switch_it_on_and_bad_values_are_refused(tmp_path, capsys):
    import yaml

    from s4dss.cli import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "task": {"name": "majority", "n_train": 48, "n_val": 16, "n_test": 16},
                "model": {"name": "s4", "d_model": 4, "n_layers": 1, "d_state": 4},
                "train": {"epochs": 1, "batch_size": 16, "progress": False, "num_threads": 1},
            }
        )
    )
    run = ["train", "--config", str(cfg), "--run-dir"]
    on = ["train.hsv_reg.weight=0.5", "train.hsv_reg.order=2", "train.log_every=1"]
    assert main([*run, str(tmp_path / "a"), *on]) == 0
    rows = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert all("hsv_reg" in r for r in rows if r["event"] == "train")
    capsys.readouterr()
    assert main([*run, str(tmp_path / "b"), "train.hsv_reg.weight=0.5"]) == 2
    assert "train.hsv_reg: kind 'tail' needs the target order" in capsys.readouterr().err
    assert main([*run, str(tmp_path / "c"), "train.hsv_reg.wieght=1"]) == 2
    assert "unknown keys ['wieght'] in train.hsv_reg" in capsys.readouterr().err
