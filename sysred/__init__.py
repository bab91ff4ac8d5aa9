"""sysred: balanced truncation for dense and diagonal, real and complex, continuous and
discrete-time LTI systems, batched.

Layout (models / algorithms / reductors, as in pyMOR):

* :mod:`sysred.systems` -- what a system is: :class:`StateSpace`, :class:`DiagonalStateSpace`,
  :func:`diagonalize`, :func:`realify`,
  :func:`real_part`.
* :mod:`sysred.lyapunov`, :mod:`sysred.gramians`, :mod:`sysred.norms` -- algorithms:
  Gramian square-root factors, Hankel singular values, H-infinity and H2 norms.
* :mod:`sysred.reductors` -- what produces a reduced system: :func:`balanced_truncation`
  (square-root, balancing-free, time-limited), :class:`BTReductor` (factors once, then any
  order), :func:`modal_truncation`; :mod:`sysred.spa`: :func:`singular_perturbation` (balanced
  SPA, also ``BTReductor.reduce(order, method="spa")``).
* :mod:`sysred.impulse` -- finite-horizon impulse-response norms of diagonal systems.
* :mod:`sysred.interop` -- python-control and pyMOR conversion.
"""

from sysred._parallel import worker_threads
from sysred.errors import (
    BackendWarning,
    HSVTieError,
    HSVTieWarning,
    IllConditionedError,
    IllConditionedWarning,
    NonFiniteError,
    NotASystemError,
    OptionError,
    OrderError,
    RankDeficientWarning,
    ShapeError,
    SysredError,
    UnstableSystemError,
)
from sysred.gramians import gramian_factors, gramians, hankel_singular_values
from sysred.impulse import impulse_norm
from sysred.interop import from_control, from_pymor, to_control, to_pymor
from sysred.norms import bilinear_to_continuous, difference, h2_norm, hinf_norm, peak_gain
from sysred.reductors import (
    BTReductor,
    BTResult,
    ModalResult,
    balanced_truncation,
    impulse_error,
    modal_truncation,
    tail_bound,
    tail_bounds,
)
from sysred.spa import singular_perturbation
from sysred.systems import DiagonalStateSpace, StateSpace, diagonalize, real_part, realify

__all__ = [
    "StateSpace",
    "DiagonalStateSpace",
    "diagonalize",
    "realify",
    "real_part",
    "gramian_factors",
    "gramians",
    "hankel_singular_values",
    "hinf_norm",
    "h2_norm",
    "peak_gain",
    "difference",
    "bilinear_to_continuous",
    "balanced_truncation",
    "BTReductor",
    "BTResult",
    "modal_truncation",
    "singular_perturbation",
    "ModalResult",
    "impulse_error",
    "impulse_norm",
    "tail_bound",
    "tail_bounds",
    "from_control",
    "to_control",
    "from_pymor",
    "to_pymor",
    "SysredError",
    "ShapeError",
    "NonFiniteError",
    "UnstableSystemError",
    "OrderError",
    "HSVTieError",
    "HSVTieWarning",
    "RankDeficientWarning",
    "NotASystemError",
    "OptionError",
    "IllConditionedError",
    "IllConditionedWarning",
    "BackendWarning",
    "worker_threads",
]
__version__ = "0.1.0"
