"""s4dss: S4 models with Diagonal State Space (DSS) layers, compressed through ``sysred``.

Public API: :class:`DSS`, :class:`DSSKernel`, :class:`S4Model`, :func:`param_groups`, and the
initialisations in :mod:`s4dss.dss`.
"""

from s4dss.dss import DSS, INITS, DSSKernel, causal_conv, random_init, s4d_inv, s4d_lin, skew_hippo
from s4dss.model import S4Model, S4State, param_groups

__all__ = [
    "DSS",
    "DSSKernel",
    "INITS",
    "S4Model",
    "S4State",
    "causal_conv",
    "param_groups",
    "random_init",
    "s4d_inv",
    "s4d_lin",
    "skew_hippo",
]
