"""The fast paths of s4dss against the slow, obvious computations they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s4dss import DSS, DSSKernel, S4Model, reduce
from s4dss.reduce import kernel_errors, kernel_norms, layer_map

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- report errors


@pytest.mark.parametrize("mode", ["exp", "softmax"])
@pytest.mark.parametrize("L", [64, 4096])
def test_kernel_errors_match_materialised_float64_kernels(mode, L):
    # the report's closed form against the float64 layer maps K + D delta of the torch layers
    torch.manual_seed(0)
    model = S4Model(d_output=2, d_input=1, d_model=8, n_layers=1, d_state=12, mode=mode)
    model = model.double()
    layer = model.layers[0]
    reduced = reduce(model, rank=4, L=L, strict=False)
    new = reduced.layers[0]
    K, Kr = layer_map(layer, L), layer_map(new, L)
    np.testing.assert_allclose(kernel_norms(layer, L), np.linalg.norm(K, axis=-1), rtol=1e-9)
    np.testing.assert_allclose(
        kernel_errors(layer, new, L), np.linalg.norm(K - Kr, axis=-1), rtol=1e-8
    )
    rep = reduced.reduction_report.layers[0]
    np.testing.assert_allclose(rep.kernel_error, np.linalg.norm(K - Kr, axis=-1), rtol=1e-8)


def test_kernel_errors_of_nearly_equal_layers_are_accurate():
    # a layer against a copy with one W entry changed by 1e-9 relative: the closed form alone
    # would cancel ~18 digits; the result must still be the materialised difference
    torch.manual_seed(1)
    layer = DSS(d_model=4, d_state=16).double()
    other = DSS(d_model=4, d_state=16).double()
    other.load_state_dict(layer.state_dict())
    with torch.no_grad():
        other.kernel.W[:, 3, 0] *= 1 + 1e-9
    L = 2048
    ref = np.linalg.norm(layer_map(layer, L) - layer_map(other, L), axis=-1)
    np.testing.assert_allclose(kernel_errors(layer, other, L), ref, rtol=1e-5)


# ----------------------------------------------------------------------------- blocked kernel


def _per_tap(kernel, L):
    """The kernel by one complex128 exp per tap and mode (the S4D formula, materialised)."""
    with torch.no_grad():
        Lambda, x, W = kernel._x(torch.float64)
        k = torch.arange(L, dtype=torch.float64)
        if kernel.mode == "exp":
            coef = W * torch.expm1(x) / Lambda
            return torch.einsum("hn,hnl->hl", coef, (x[..., None] * k).exp()).real
        # softmax, directly from its definition: e^{kx} / sum_j e^{jx} (small L, no overflow)
        powers = (x[..., None] * k).exp()
        return torch.einsum("hn,hnl->hl", W / Lambda, powers / powers.sum(-1, keepdim=True)).real


@pytest.mark.parametrize("L", [1, 2, 5, 63, 64, 65, 1000, 4096])
def test_blocked_kernel_matches_per_tap_exponentials(L):
    # every block layout (L a square, one more or less, prime-ish, tiny): the last block
    # overlaps the one before and no tap may be lost or duplicated
    torch.manual_seed(L)
    k = DSSKernel(H=3, N=16, dt_min=1e-3, dt_max=0.5)  # skew-HiPPO: Im(Delta lambda) up to ~60
    ref = _per_tap(k, L)
    assert k(L).shape == (3, L)
    assert ((k(L) - ref).abs().max() / ref.abs().max()).item() < 1e-12
    k.kernel_dtype = torch.float32
    K32 = k(L)
    assert K32.dtype == torch.float32
    assert ((K32.double() - ref).abs().max() / ref.abs().max()).item() < 2e-6


@pytest.mark.parametrize("L", [7, 100])
def test_blocked_softmax_kernel_both_signs(L):
    torch.manual_seed(3)
    k = DSSKernel(H=2, N=6, mode="softmax", per_channel=True, dt_min=0.05, dt_max=0.3)
    with torch.no_grad():
        k.Lambda_re.copy_(torch.linspace(-1.0, 1.0, 6).expand_as(k.Lambda_re))
    ref = _per_tap(k, L)
    assert ((k(L) - ref).abs().max() / ref.abs().max()).item() < 1e-12


@pytest.mark.parametrize("mode", ["exp", "softmax"])
def test_blocked_kernel_gradient_matches_autograd_of_the_formula(mode):
    # the closed-form backward of the blocked product against autograd through the per-tap
    # formula, for every parameter (Lambda, log_dt, W)
    torch.manual_seed(4)
    L = 300
    k = DSSKernel(H=3, N=5, mode=mode, per_channel=True, dt_min=0.01, dt_max=0.3).double()
    if mode == "softmax":
        with torch.no_grad():
            k.Lambda_re.copy_(torch.linspace(-0.8, 0.6, 5).expand_as(k.Lambda_re))
    G = torch.randn(3, L, dtype=torch.float64)

    def grads(fn):
        k.zero_grad()
        (fn() * G).sum().backward()
        return [p.grad.clone() for p in k.parameters()]

    def formula():
        Lambda, x, W = k._x(torch.float64)
        kk = torch.arange(L, dtype=torch.float64)
        powers = (x[..., None] * kk).exp()
        if mode == "exp":
            return torch.einsum("hn,hnl->hl", W * torch.expm1(x) / Lambda, powers).real
        return torch.einsum("hn,hnl->hl", W / Lambda, powers / powers.sum(-1, keepdim=True)).real

    for got, ref in zip(grads(lambda: k(L)), grads(formula), strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-10)


def test_blocked_kernel_float32_gradient():
    torch.manual_seed(5)
    k64 = DSSKernel(H=4, N=8)
    k32 = DSSKernel(H=4, N=8, kernel_dtype=torch.float32)
    k32.load_state_dict(k64.state_dict())
    for k in (k64, k32):
        k(512).square().sum().backward()
    for a, b in zip(k64.parameters(), k32.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5 * a.grad.abs().max())


# ----------------------------------------------------------------------------- real step


@pytest.mark.parametrize("mode", ["exp", "softmax"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_real_step_matches_convolution_and_complex_step(mode, per_channel):
    torch.manual_seed(6)
    layer = DSS(d_model=5, d_state=7, mode=mode, per_channel=per_channel, dt_max=0.5).eval()
    L = 60
    u = torch.randn(3, 5, L)
    with torch.no_grad():
        y_conv = layer(u)
        layer.setup_step(L)
        states = {real: layer.initial_state(3, real=real) for real in (False, True)}
        assert states[True].shape == (3, 5, 14) and not states[True].is_complex()
        ys = {False: [], True: []}
        for t in range(L):
            for real in (False, True):
                y, states[real] = layer.step(u[..., t], states[real])
                ys[real].append(y)
    y_real = torch.stack(ys[True], -1)
    assert (y_real - y_conv).abs().max() < 1e-5
    assert (y_real - torch.stack(ys[False], -1)).abs().max() < 1e-5
    # the real state is [Re s, Im s] of the complex one
    s = states[False]
    torch.testing.assert_close(
        states[True], torch.cat([s.real, s.imag], -1).float(), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("pool", ["mean", "last", "none"])
def test_model_real_step_matches_convolution_for_a_reduced_model(pool):
    torch.manual_seed(7)
    model = S4Model(d_output=3, vocab_size=11, d_model=8, n_layers=3, d_state=6, pool=pool)
    model = reduce(model.eval(), tol=0.5, L=40, strict=False).eval()  # orders differ by layer
    x = torch.randint(0, 11, (2, 40))
    with torch.no_grad():
        out = model(x)
        model.setup_step()
        state = model.initial_state(2, real=True)
        for t in range(40):
            y, state = model.step(x[:, t], state)
            ref = out[:, t] if pool == "none" else None
            if ref is not None:
                assert (y - ref).abs().max() < 1e-5
    if pool != "none":
        assert (y - out).abs().max() < 1e-5


def test_real_step_rejects_a_wrong_state():
    layer = DSS(d_model=3, d_state=4).eval()
    layer.setup_step()
    with pytest.raises(ValueError, match=r"\(B, H, 2N\) = \(2, 3, 8\)"):
        layer.step(torch.randn(2, 3), torch.zeros(2, 3, 4))


def test_blocked_kernel_refuses_second_derivatives():
    # the closed-form backward is not differentiable again: say so instead of a wrong Hessian
    k = DSSKernel(H=2, N=3)
    with pytest.raises(RuntimeError, match="not differentiable again"):
        torch.autograd.grad(k(16).sum(), k.log_dt, create_graph=True)
