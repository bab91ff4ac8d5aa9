"""peak_gain: a cheap lower bound on the H-infinity norm, close to it for modal systems."""

import numpy as np
import pytest
from _systems import random_dense, random_diagonal

import sysred

CASES = {
    "diagonal-ct": lambda rng: random_diagonal(rng, 10, 1, 1, batch=(6,)),
    "diagonal-dt": lambda rng: random_diagonal(rng, 10, 1, 2, discrete=True, batch=(6,)),
    "dense-ct": lambda rng: random_dense(rng, 8, 2, 2, batch=(3,)),
    "dense-dt-complex": lambda rng: random_dense(rng, 6, 1, 1, discrete=True, complex_=True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_peak_gain_is_a_close_lower_bound_of_the_hinf_norm(case):
    G = CASES[case](np.random.default_rng(0))
    peak, norm = sysred.peak_gain(G), sysred.hinf_norm(G)
    assert np.shape(peak) == G.batch_shape
    assert np.all(peak <= norm * (1 + 1e-10))
    assert np.all(peak >= 0.9 * norm), peak / norm


def test_peak_gain_finds_a_sharp_resonance_off_the_grid():
    # damping 1e-6 at w = 3.3: the peak (1e6) is far narrower than any grid spacing
    G = sysred.DiagonalStateSpace([-1e-6 + 3.3j, -1.0], [[1.0], [1.0]], [[1.0, 1.0]])
    assert sysred.peak_gain(G, n_grid=8) == pytest.approx(sysred.hinf_norm(G), rel=1e-6)
