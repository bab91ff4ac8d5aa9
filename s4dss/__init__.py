"""s4dss: S4 models with Diagonal State Space (DSS) layers, compressed through ``sysred``.

Public API:

- layers and models: :class:`DSS`, :class:`DSSKernel`, :class:`S4Model`, :func:`param_groups`,
  the initialisations :func:`skew_hippo`, :func:`s4d_lin`, :func:`s4d_inv`, :func:`random_init`;
- adapters: :func:`to_system` (layer -> batched ``sysred.DiagonalStateSpace``),
  :func:`from_system` (system -> :class:`DSSParams`);
- compression: :func:`reduce` (model -> reduced copy with a :class:`ReductionReport`; global
  budgets, singular perturbation, shared poles), :func:`to_shared_system` /
  :func:`from_shared_system` (a shared-pole layer as one continuous-time system).
"""

from s4dss.adapters import DSSParams, from_shared_system, from_system, to_shared_system, to_system
from s4dss.budget import BudgetError
from s4dss.dss import DSS, INITS, DSSKernel, causal_conv, random_init, s4d_inv, s4d_lin, skew_hippo
from s4dss.model import S4Model, S4State, param_groups
from s4dss.reduce import (
    LayerReport,
    ParameterIncreaseWarning,
    ReductionReport,
    dss_layers,
    reduce,
)

__all__ = [
    "BudgetError",
    "DSS",
    "DSSKernel",
    "DSSParams",
    "INITS",
    "LayerReport",
    "ParameterIncreaseWarning",
    "ReductionReport",
    "S4Model",
    "S4State",
    "causal_conv",
    "dss_layers",
    "from_shared_system",
    "from_system",
    "param_groups",
    "random_init",
    "reduce",
    "s4d_inv",
    "s4d_lin",
    "skew_hippo",
    "to_shared_system",
    "to_system",
]
