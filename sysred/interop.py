"""Conversion to and from python-control ``StateSpace`` objects (real systems only)."""

from __future__ import annotations

import numpy as np

from sysred._checks import require_system
from sysred.errors import ShapeError, SysredError
from sysred.systems import StateSpace, realify

__all__ = ["from_control", "to_control"]


def from_control(sys) -> StateSpace:
    """A python-control ``StateSpace`` (or anything with ``A, B, C, D, dt``) as a sysred system.

    python-control's ``dt=0`` is continuous time (``dt=None`` here); its ``dt=True``
    ("discrete, sample time unspecified") becomes ``dt=1.0``.
    """
    try:
        A, B, C, D, dt = sys.A, sys.B, sys.C, sys.D, sys.dt
    except AttributeError:
        raise SysredError(
            f"from_control expects a python-control StateSpace, got {type(sys).__name__} "
            "(transfer functions: control.ss(tf) first)"
        ) from None
    if dt is None or dt is True:
        dt = 1.0 if dt is True else None
    elif dt == 0:
        dt = None
    return StateSpace(np.asarray(A), np.asarray(B), np.asarray(C), np.asarray(D), dt)


def to_control(sys):
    """A single real sysred system as a python-control ``StateSpace``.

    Raises
    ------
    SysredError
        For complex systems (python-control is real-only: convert with ``sysred.realify``,
        which keeps the H-infinity norm and doubles every Hankel singular value) and for
        batches (index one entry first).
    ShapeError
        For systems without inputs or outputs, which python-control cannot represent.
    """
    import control

    require_system(sys)
    if sys.batch_shape:
        raise SysredError(
            f"to_control converts one system; this is a batch of shape {sys.batch_shape}: "
            "index it first (sys[i])"
        )
    if sys.is_complex:
        raise SysredError(
            "python-control supports real systems only; convert with sysred.realify(sys) "
            "(same H-inf norm, each Hankel singular value twice)"
        )
    if sys.m == 0 or sys.p == 0:
        raise ShapeError(
            f"python-control cannot represent a system without inputs or outputs (m = {sys.m}, "
            f"p = {sys.p}); keep it as a sysred system"
        )
    dense = realify(sys)
    return control.ss(dense.A, dense.B, dense.C, dense.D, 0 if dense.dt is None else dense.dt)
