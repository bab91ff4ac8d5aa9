"""Input checks shared by the algorithms (stability margins, system types)."""

from __future__ import annotations

import numpy as np

from sysred.errors import NotASystemError, UnstableSystemError
from sysred.systems import DiagonalStateSpace, StateSpace

#: Stability margin, relative to the system's own time scale: continuous time needs
#: ``max Re(l) < -MARGIN * ||A||`` (``max |l|`` for diagonal systems), discrete time
#: ``max |l| < 1 - MARGIN``. Poles closer to the boundary than this are "marginally stable":
#: the Gramians exist in exact arithmetic but are dominated by rounding. Relative in continuous
#: time because a time scaling ``A -> c A`` changes nothing but the units: a system whose poles
#: all lie in ``[-2e-13, 0)`` is as stable as one with poles in ``[-2, 0)``.
MARGIN = 1e3 * np.finfo(float).eps


def require_system(sys):
    if not isinstance(sys, StateSpace | DiagonalStateSpace):
        hint = (
            "python-control systems: sysred.from_control(sys)"
            if hasattr(sys, "A") and hasattr(sys, "dt")
            else "build one with sysred.StateSpace(A, B, C, D, dt) or sysred.DiagonalStateSpace"
        )
        raise NotASystemError(
            f"expected a sysred.StateSpace or sysred.DiagonalStateSpace, got "
            f"{type(sys).__name__} ({hint})"
        )
    return sys


def require_stable(sys, what):
    """Raise :class:`UnstableSystemError` unless every batch entry is asymptotically stable.

    A system without states is stable (it has no poles).
    """
    require_system(sys)
    if sys.n == 0:
        return
    poles = sys.poles
    if sys.is_discrete:
        worst = np.max(np.abs(poles), axis=-1)  # (...)
        bad = worst >= 1.0 - MARGIN
        limit = f"|pole| < 1 - {MARGIN:.1e}"
    else:
        if isinstance(sys, DiagonalStateSpace):
            scale = np.max(np.abs(poles), axis=-1)
        else:
            scale = _norm_inf(sys.A)
        worst = np.max(poles.real, axis=-1)
        bad = ~(worst < -MARGIN * scale)
        limit = f"Re(pole) < -{MARGIN:.1e} * ||A||"
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


def _norm_inf(A):
    """``||A||_inf`` per batch entry, without overflow for entries near the double range."""
    big = np.max(np.abs(A), axis=(-2, -1), initial=0.0)
    safe = np.where(big > 0, big, 1.0)
    return big * np.max(np.sum(np.abs(A) / safe[..., None, None], axis=-1), axis=-1)
