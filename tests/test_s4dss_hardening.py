"""s4dss on bad input: non-finite layers refused by reduce, CIFAR pickles read without code."""

from __future__ import annotations

import pytest
import torch

import sysred
from s4dss import S4Model, reduce


def small_model():
    torch.manual_seed(0)
    return S4Model(d_output=3, d_input=2, d_model=5, n_layers=2, d_state=4).eval()


@pytest.mark.parametrize(
    ("param", "index", "value", "shown"),
    [
        ("D", (3,), float("nan"), r"parameter D \(shape \(5,\)\) has 1 non-finite.*at \[\[3\]\]"),
        ("D", (0,), float("inf"), r"parameter D .*\[inf\] at \[\[0\]\]"),
        ("output_linear.weight", (1, 2), float("nan"), r"parameter output_linear\.weight"),
        ("output_linear.bias", (4,), float("-inf"), r"parameter output_linear\.bias"),
        ("kernel.log_dt", (2,), float("nan"), r"parameter log_dt"),
        ("kernel.Lambda_im", (1,), float("inf"), r"parameter Lambda_im"),
    ],
)
def test_reduce_refuses_any_non_finite_layer_parameter(param, index, value, shown):
    """The skip term and the copied output linear are checked, not only the SSM parameters."""
    model = small_model()
    layer = model.layers[1]
    with torch.no_grad():
        layer.get_parameter(param)[index] = value
    with pytest.raises(sysred.NonFiniteError, match=r"layer 'layers\.1': " + shown):
        reduce(model, rank=2, L=32)


def test_reduce_of_a_finite_model_is_finite():
    """The check above is not trivially raising: a finite model reduces to a finite one."""
    reduced = reduce(small_model(), rank=2, L=32)
    assert all(torch.isfinite(p).all() for p in reduced.parameters())
