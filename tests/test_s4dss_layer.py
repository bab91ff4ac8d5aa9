"""DSS layer: initialisations, kernels against naive sums of the paper's formulas, convolution."""

import cmath
import copy
import math

import numpy as np
import pytest
import torch

from s4dss import DSS, INITS, DSSKernel, causal_conv, param_groups, s4d_inv, s4d_lin, skew_hippo

torch.set_num_threads(1)


def naive_kernel(kernel: DSSKernel, L: int) -> np.ndarray:
    """The kernel formula of reference.md section 1, term by term in Python complex arithmetic."""
    Lam = kernel.Lambda().detach().expand(kernel.H, kernel.N).numpy()
    dt = np.exp(kernel.log_dt.detach().double().numpy())
    W = torch.view_as_complex(kernel.W.detach().double()).numpy()
    K = np.zeros((kernel.H, L))
    for h in range(kernel.H):
        for n in range(kernel.N):
            lam, x = complex(Lam[h, n]), dt[h] * complex(Lam[h, n])
            if kernel.mode == "softmax":
                denom = sum(cmath.exp(j * x) for j in range(L))
            for k in range(L):
                if kernel.mode == "exp":
                    term = W[h, n] * (cmath.exp(x) - 1) / lam * cmath.exp(k * x)
                else:
                    term = W[h, n] / lam * cmath.exp(k * x) / denom
                K[h, k] += term.real
    return K


def test_skew_hippo_matches_reference_values():
    # reference.md section 1, N = 4 (checked numerically there).
    expected = [19.8574, 5.3542, 1.9578, 0.4275]
    Lam = skew_hippo(4)
    assert np.allclose(Lam.real.numpy(), -0.5)
    assert np.allclose(Lam.imag.numpy(), expected, atol=1e-4)


def test_skew_hippo_is_spectrum_of_skew_part():
    # Independent route: general (non-Hermitian) eigensolver on the skew matrix itself.
    N = 12
    i = np.arange(2 * N)
    Hm = np.sqrt(np.outer(2 * i + 1, 2 * i + 1)) * (i[:, None] > i[None, :])
    ev = np.linalg.eigvals((Hm - Hm.T) / 2)
    expected = np.sort(ev.imag[ev.imag > 0])[::-1]
    assert np.allclose(skew_hippo(N).imag.numpy(), expected, rtol=1e-10)


def test_s4d_inits_formulas():
    expected = torch.tensor([-0.5, -0.5 + 1j * math.pi, -0.5 + 2j * math.pi], dtype=torch.cdouble)
    assert torch.allclose(s4d_lin(3), expected)
    N = 3
    assert abs(s4d_inv(N)[1].item() - (-0.5 + 1j * 2 * N / math.pi * (2 * N / 3 - 1))) < 1e-12


@pytest.mark.parametrize("init", list(INITS))
@pytest.mark.parametrize("per_channel", [False, True])
def test_exp_kernel_matches_naive_formula(init, per_channel):
    torch.manual_seed(0)
    k = DSSKernel(H=3, N=5, mode="exp", init=init, per_channel=per_channel, dt_min=0.01, dt_max=0.5)
    L = 17
    assert np.allclose(k(L).detach().numpy(), naive_kernel(k, L), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("per_channel", [False, True])
def test_softmax_kernel_matches_naive_formula_both_signs(per_channel):
    torch.manual_seed(1)
    k = DSSKernel(H=3, N=6, mode="softmax", per_channel=per_channel, dt_min=0.05, dt_max=0.5)
    with torch.no_grad():  # half the poles in the right half-plane: the shifted branch
        k.Lambda_re.copy_(torch.linspace(-1.0, 1.0, 6).expand_as(k.Lambda_re))
    L = 19
    assert np.allclose(k(L).detach().numpy(), naive_kernel(k, L), rtol=1e-9, atol=1e-10)


def test_softmax_kernel_finite_for_large_positive_real_parts():
    k = DSSKernel(H=2, N=4, mode="softmax")
    with torch.no_grad():
        k.Lambda_re.fill_(50.0)
        k.log_dt.fill_(0.0)
    assert torch.isfinite(k(2000)).all()


@pytest.mark.parametrize("mode", ["exp", "softmax"])
def test_discrete_form_reproduces_kernel(mode):
    # K_k = Re sum_n c b a^k with the (a, b, c) that step mode and the adapters use.
    torch.manual_seed(2)
    k = DSSKernel(H=4, N=3, mode=mode, per_channel=True)
    L = 23
    a, b, c = k.discrete(L)
    powers = a[..., None] ** torch.arange(L, dtype=torch.float64)
    K = (c[..., None] * b[..., None] * powers).sum(1).real
    assert torch.allclose(K, k(L), rtol=1e-10, atol=1e-12)


def test_causal_conv_is_linear_convolution_without_wrap():
    torch.manual_seed(3)
    u = torch.randn(2, 3, 11, dtype=torch.float64)
    K = torch.randn(3, 11, dtype=torch.float64)
    y = causal_conv(u, K)
    naive = np.array(
        [[np.convolve(u[b, h].numpy(), K[h].numpy())[:11] for h in range(3)] for b in range(2)]
    )
    assert np.allclose(y.numpy(), naive, atol=1e-12)


def test_layer_forward_matches_definition():
    torch.manual_seed(4)
    layer = DSS(d_model=3, d_state=4).double()
    u = torch.randn(2, 3, 9, dtype=torch.float64)
    K = torch.tensor(naive_kernel(layer.kernel, 9))
    conv = np.array(
        [[np.convolve(u[b, h].numpy(), K[h].numpy())[:9] for h in range(3)] for b in range(2)]
    )
    y = torch.tensor(conv) + layer.D.detach()[:, None] * u
    y = torch.nn.functional.gelu(y)
    expected = torch.einsum("gh,bhl->bgl", layer.output_linear.weight.detach(), y)
    expected = expected + layer.output_linear.bias.detach()[:, None]
    assert torch.allclose(layer(u), expected, atol=1e-10)


@pytest.mark.parametrize("mode", ["exp", "softmax"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_layer_step_matches_convolution(mode, per_channel):
    torch.manual_seed(5)
    layer = DSS(d_model=4, d_state=6, mode=mode, per_channel=per_channel, dt_max=0.5).eval()
    L = 40
    u = torch.randn(3, 4, L)
    y_conv = layer(u)
    layer.setup_step(L)
    state, ys = layer.initial_state(3), []
    for t in range(L):
        y, state = layer.step(u[..., t], state)
        ys.append(y)
    assert state.shape == (3, 4, 6)
    assert (torch.stack(ys, -1) - y_conv).abs().max() < 1e-5


def test_param_groups_split_ssm_parameters():
    layer = DSS(d_model=4, d_state=3, lr=2e-3)
    for module in (layer, copy.deepcopy(layer)):  # the grouping must survive copies
        groups = param_groups(module, lr=1e-2, weight_decay=0.1)
        ssm = {id(p) for p in module.kernel.parameters()}
        assert len(ssm) == 4
        (base,) = [g for g in groups if g["lr"] == 1e-2]
        (ssm_group,) = [g for g in groups if g["lr"] == 2e-3]
        assert ssm_group["weight_decay"] == 0.0 and base["weight_decay"] == 0.1
        assert {id(p) for p in ssm_group["params"]} == ssm
        all_ids = [id(p) for g in groups for p in g["params"]]
        assert sorted(all_ids) == sorted(id(p) for p in module.parameters())
        torch.optim.AdamW(groups)  # accepted as is


def test_bad_input_errors():
    with pytest.raises(ValueError, match="mode"):
        DSSKernel(2, 2, mode="cosine")
    with pytest.raises(ValueError, match="init"):
        DSSKernel(2, 2, init="hippo")
    with pytest.raises(ValueError, match="dt_min"):
        DSSKernel(2, 2, dt_min=0.1, dt_max=0.01)
    with pytest.raises(ValueError, match="N >= 1"):
        DSSKernel(2, 0)
    layer = DSS(d_model=3, d_state=2, mode="softmax")
    with pytest.raises(ValueError, match=r"\(B, H, L\) with H=3"):
        layer(torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match="softmax"):
        layer.setup_step()
    with pytest.raises(RuntimeError, match="setup_step"):
        layer.step(torch.randn(2, 3), layer.initial_state(2))
    with pytest.raises(ValueError, match="Re\\(Lambda\\) < 0"):
        DSSKernel.from_params(torch.tensor([0.1 + 1j]), torch.ones(2, 1) + 0j, torch.zeros(2))
    with pytest.raises(ValueError, match="non-finite"):
        bad = torch.tensor([complex("nan")])
        DSSKernel.from_params(bad, torch.ones(2, 1) + 0j, torch.zeros(2))
