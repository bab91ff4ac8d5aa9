"""Input checks shared by the algorithms (stability margins, system types)."""

from __future__ import annotations

import numpy as np

from sysred.errors import SysredError, UnstableSystemError
from sysred.systems import DiagonalStateSpace, StateSpace

#: Stability margin, relative: continuous time needs ``max Re(l) < -MARGIN * max(1, ||A||)``,
#: discrete time ``max |l| < 1 - MARGIN``. Poles closer to the boundary than this are
#: "marginally stable": the Gramians exist in exact arithmetic but are dominated by rounding.
MARGIN = 1e3 * np.finfo(float).eps


def require_system(sys):
    if not isinstance(sys, StateSpace | DiagonalStateSpace):
        raise SysredError(
            f"expected a sysred.StateSpace or sysred.DiagonalStateSpace, got {type(sys).__name__}"
            " (python-control systems: sysred.from_control)"
        )
    return sys


def require_stable(sys, what):
    """Raise :class:`UnstableSystemError` unless every batch entry is asymptotically stable."""
    require_system(sys)
    poles = sys.poles
    if sys.is_discrete:
        worst = np.max(np.abs(poles), axis=-1)  # (...)
        bad = worst >= 1.0 - MARGIN
        limit = f"|pole| < 1 - {MARGIN:.1e}"
    else:
        if isinstance(sys, DiagonalStateSpace):
            scale = np.max(np.abs(poles), axis=-1)
        else:
            scale = np.linalg.norm(sys.A, ord=np.inf, axis=(-2, -1))
        worst = np.max(poles.real, axis=-1)
        bad = worst >= -MARGIN * np.maximum(1.0, scale)
        limit = f"Re(pole) < -{MARGIN:.1e} * max(1, ||A||)"
    if np.any(bad):
        idx = np.argwhere(np.atleast_1d(bad))
        where = "" if not sys.batch_shape else f" (batch entries {idx[:5].tolist()}...)"
        kind = "discrete" if sys.is_discrete else "continuous"
        raise UnstableSystemError(
            f"{what} needs an asymptotically stable system, but the {kind}-time system has poles "
            f"on or beyond the stability boundary{where}: worst "
            f"{'|pole|' if sys.is_discrete else 'Re(pole)'} = {np.max(worst):.6g}; "
            f"required {limit}. Remove or shift the unstable part first."
        )
