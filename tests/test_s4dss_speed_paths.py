"""The fast paths of s4dss against the slow, obvious computations they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from s4dss import DSS, S4Model, reduce
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
