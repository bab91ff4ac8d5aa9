"""s4dss.flops: analytic counts against torch's FLOP counter and against hand counts."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from s4dss import flops
from s4dss.model import S4Model

CONFIGS = [
    dict(d_input=1, d_output=10, d_model=8, n_layers=2, d_state=4),
    # (N >= 2 everywhere: torch's einsum turns a contraction over one state into an elementwise
    # product, which its FLOP counter does not see)
    dict(d_input=3, d_output=2, d_model=6, n_layers=3, d_state=[5, 2, 3], lambda_per_channel=True),
    dict(vocab_size=7, d_output=4, d_model=5, n_layers=1, d_state=3, pool="last"),
    dict(d_input=2, d_output=3, d_model=4, n_layers=2, d_state=2, pool="none", mode="softmax"),
]


def _model(cfg):
    torch.manual_seed(0)
    return S4Model(**cfg)


def _input(cfg, B, L):
    if cfg.get("vocab_size"):
        return torch.randint(0, cfg["vocab_size"], (B, L))
    return torch.randn(B, L, cfg["d_input"])


@pytest.mark.parametrize("cfg", CONFIGS)
def test_param_count_matches_the_model(cfg):
    model = _model(cfg)
    assert flops.n_params(cfg) == sum(p.numel() for p in model.parameters())
    assert flops.n_params(model) == flops.n_params(cfg)  # a model works as well as its config
    assert flops.state_size(cfg) == sum(layer.N for layer in model.layers) * cfg["d_model"]


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("B, L", [(1, 1), (3, 16), (2, 33)])
def test_matrix_products_agree_with_torch_flop_counter(cfg, B, L):
    model = _model(cfg)
    x = _input(cfg, B, L)
    with FlopCounterMode(display=False) as fc:
        model(x)
    assert fc.get_total_flops() == flops.matmul_flops(cfg, L, B)
    with FlopCounterMode(display=False) as fc:
        model(x).sum().backward()
    assert fc.get_total_flops() == flops.matmul_flops(cfg, L, B, backward=True)


def test_forward_total_by_hand():
    """d_input 1, H 2, one layer N 3, C 2, B 1, L 4, mean pooling, written out term by term."""
    cfg = dict(d_input=1, d_output=2, d_model=2, n_layers=1, d_state=3)
    B, L, H, N, C = 1, 4, 2, 3, 2
    BLH = B * L * H  # 8
    encoder = 2 * 8 * 1 + 8  # matmul (2 per MAC, 8 MACs) + bias
    norm = 8 * 8
    b, q = 2, 2  # blocked powers: ceil(sqrt(4)) taps per block, 2 blocks
    # b + q complex exps (exponent 2 + exp 5), coefficients 6 per block, product (q,2N)@(2N,b)
    kernel = H * N * (7 * (b + q) + 6 * q + 4 * q * b) + 25 * H * N  # 6 * 56 + 150
    fft8 = 2.5 * 8 * 3  # real FFT of 2L = 8 points: 2.5 n log2 n
    # forward FFTs of u (B H = 2 rows) and K (H = 2 rows), inverse FFT of u*K (2 rows), product
    conv = (2 + 2 + 2) * fft8 + 6 * H * (L + 1)
    skip, act, out_lin, res = 2 * BLH, 5 * BLH, 2 * BLH * H + BLH, BLH
    pool = 2 * BLH + H
    decoder = 2 * H * C + C
    want = encoder + norm + kernel + conv + skip + act + out_lin + res + pool + decoder
    got = flops.forward_flops(cfg, L=L, batch=B)
    assert got.total == pytest.approx(want, rel=1e-15)
    assert got.kernel == 6 * 56 + 150 and got.conv == pytest.approx(6 * 60 + 60)
    # a training step: forward + backward (2x) + AdamW/clipping per parameter
    P = flops.n_params(cfg)
    assert P == (1 * 2 + 2) + (2 * 3 + 2 + 2 * 2 * 3 + 2 + 2 * 2 + 2 + 2 * 2) + (2 * 2 + 2)
    assert flops.train_step_flops(cfg, L, B) == pytest.approx(3 * want + 15 * P)


def test_scaling_with_state_length_and_batch():
    cfg = dict(d_input=1, d_output=10, d_model=16, n_layers=2, d_state=8)
    a = flops.forward_flops(cfg, L=64, batch=4)
    b = flops.forward_flops(dict(cfg, d_state=16), L=64, batch=4)
    # only the kernel depends on N, linearly, and it does not depend on the batch
    assert {k for k in a.parts() if a.parts()[k] != b.parts()[k]} == {"kernel"}
    assert b.kernel == pytest.approx(2 * a.kernel)
    assert flops.forward_flops(cfg, L=64, batch=9).kernel == a.kernel
    # the FFT part grows as L log L
    c = flops.forward_flops(cfg, L=128, batch=4)
    per = lambda f, L: (f.conv - 2 * 6 * 4 * 16 * (L + 1)) / (2 * L * math.log2(2 * L))  # noqa: E731
    assert per(c, 128) == pytest.approx(per(a, 64))


def test_epoch_counts_the_last_partial_batch_and_validation():
    cfg = dict(d_input=1, d_output=10, d_model=8, n_layers=1, d_state=4)
    step = lambda b: flops.train_step_flops(cfg, 32, b)  # noqa: E731
    fwd = lambda b: flops.forward_flops(cfg, 32, b).total  # noqa: E731
    got = flops.epoch_flops(cfg, 32, n_train=70, batch_size=32, n_val=150, eval_batch=128)
    assert got == pytest.approx(2 * step(32) + step(6) + fwd(128) + fwd(22))


def test_step_flops_by_hand_and_matrix_products():
    cfg = dict(d_input=1, d_output=3, d_model=2, n_layers=2, d_state=[4, 1])
    H, C = 2, 3
    per_layer = lambda N: 8 * H + 10 * H * N + 4 * H * N + 2 * H + 5 * H + 2 * H * H + H + H  # noqa: E731
    want = (2 * H + H) + per_layer(4) + per_layer(1) + 2 * H + (2 * H * C + C)
    assert flops.step_flops(cfg) == want
    model = _model(cfg).eval()
    model.setup_step()
    state = model.initial_state(1)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model.step(torch.randn(1, 1), state)
    assert fc.get_total_flops() == 2 * 1 * H + 2 * (2 * H * H) + 2 * H * C  # the linears


def test_bad_input():
    cfg = CONFIGS[0]
    with pytest.raises(ValueError, match="L must be a positive integer"):
        flops.forward_flops(cfg, L=0)
    with pytest.raises(ValueError, match="batch"):
        flops.forward_flops(cfg, L=4, batch=1.5)
    with pytest.raises(ValueError, match="pair"):
        flops.forward_flops({"kind": "pair", **cfg}, L=4)
    with pytest.raises(ValueError, match="d_input and vocab_size"):
        flops.n_params(dict(cfg, vocab_size=3))
    with pytest.raises(ValueError, match="2 entries for 3 layers"):
        flops.n_params(dict(cfg, n_layers=3, d_state=[1, 2]))
    with pytest.raises(TypeError, match="S4Model or its config"):
        flops.n_params(3)


def test_hsv_regulariser_flops_by_hand_and_its_matrix_product():
    from s4dss.regularizers import hsv_penalty

    cfg = dict(d_input=1, d_output=3, d_model=5, n_layers=2, d_state=[4, 3])
    per = lambda N: 19 * N**2 + 8 * N**3 / 3 + 8 * N**3 + 6 * N**2 + 32 * N**3 / 3  # noqa: E731
    assert flops.hsv_reg_flops(cfg) == pytest.approx(3 * 5 * (per(4) + per(3)))
    assert flops.hsv_reg_flops(cfg, channels=2) == pytest.approx(3 * 2 * (per(4) + per(3)))
    assert flops.hsv_reg_flops(cfg, channels=9) == flops.hsv_reg_flops(cfg)  # at most H
    trace = flops.hsv_reg_flops(cfg, "trace")
    assert trace == pytest.approx(3 * 5 * 33 * (16 + 9))
    # the one matrix product, L^T (g L), is what torch's counter sees: 2 N^3 per channel
    model = _model(cfg)
    with FlopCounterMode(display=False) as fc:
        hsv_penalty(model, "tail", order=1, channels=2, generator=torch.Generator().manual_seed(0))
    assert fc.get_total_flops() == 2 * 2 * (4**3 + 3**3)
    with pytest.raises(ValueError, match="kind"):
        flops.hsv_reg_flops(cfg, "bogus")
