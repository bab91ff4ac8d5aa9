"""Conversion to and from python-control ``StateSpace`` and pyMOR ``LTIModel`` objects.

Both libraries are optional and imported only when a conversion needs them.
"""

from __future__ import annotations

import numpy as np

from sysred._checks import require_system
from sysred.errors import ShapeError, SysredError
from sysred.systems import StateSpace, realify

__all__ = ["from_control", "to_control", "from_pymor", "to_pymor"]


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


#: ``from_pymor`` refuses a descriptor matrix ``E`` whose 2-norm condition number exceeds this:
#: ``E^{-1} A`` and ``E^{-1} B`` then carry relative errors up to ``cond(E) * eps`` (~1e-8).
MAX_COND_E = 1e8


def _pymor_lti_class():
    try:
        from pymor.models.iosys import LTIModel
    except ImportError as exc:
        raise ImportError(
            "this conversion needs pyMOR: pip install pymor (or the 'pymor' extra: "
            "pip install 'sysred-s4dss[pymor]')"
        ) from exc
    return LTIModel


def from_pymor(model, mu=None, max_cond_e=MAX_COND_E) -> StateSpace:
    """A pyMOR ``LTIModel`` as a dense sysred system.

    pyMOR's ``E x' = A x + B u``, ``y = C x + D u`` (``sampling_time = 0``; discrete time
    ``E x[k+1] = A x[k] + B u[k]`` for ``sampling_time > 0``) becomes ``(A, B, C, D, dt)`` with
    ``dt = None`` or ``dt = sampling_time``. Operators are assembled to dense matrices (sparse
    ones included: sysred is dense). A model with ``E != I`` is converted by solving with ``E``,
    ``A <- E^{-1} A``, ``B <- E^{-1} B`` (same state, same transfer function, same Hankel
    singular values), when ``cond_2(E) <= max_cond_e``; a singular or ill-conditioned ``E``
    (a differential-algebraic system) is refused.

    Parameters
    ----------
    model : pymor.models.iosys.LTIModel
        Any ``LTIModel`` (``PHLTIModel`` included). A ``SecondOrderModel`` needs
        ``model.to_lti()`` first.
    mu : dict or pyMOR Mu, optional
        Parameter values, required when the model is parametric.
    max_cond_e : float
        Largest accepted condition number of ``E`` (default ``MAX_COND_E`` = 1e8).

    Returns
    -------
    StateSpace
        Real unless the model's matrices are complex.

    Raises
    ------
    SysredError
        Not an ``LTIModel``; a parametric model without ``mu``; operators that cannot be
        assembled to matrices; ``E`` singular or with ``cond_2(E) > max_cond_e``.

    Examples
    --------
    >>> import numpy as np, sysred
    >>> from pymor.models.iosys import LTIModel
    >>> fom = LTIModel.from_matrices(np.array([[-1.0]]), np.array([[1.0]]), np.array([[2.0]]))
    >>> G = sysred.from_pymor(fom)
    >>> G.dt is None, complex(G.transfer([0.0])[0, 0, 0])
    (True, (2+0j))
    """
    try:
        LTIModel = _pymor_lti_class()
    except ImportError:
        LTIModel = None
    if LTIModel is None or not isinstance(model, LTIModel):
        hint = " (convert it with model.to_lti() first)" if hasattr(model, "to_lti") else ""
        raise SysredError(f"from_pymor expects a pyMOR LTIModel, got {type(model).__name__}{hint}")
    if model.parametric:
        if mu is None:
            raise SysredError(
                f"the model is parametric ({model.parameters}): pass mu=... to from_pymor"
            )
        mu = model.parameters.parse(mu)
    from pymor.core.exceptions import NoMatchingRuleError

    try:
        A, B, C, D, E = model.to_abcde_matrices(format="dense", mu=mu)
    except (NoMatchingRuleError, NotImplementedError) as exc:
        raise SysredError(
            f"the model's operators cannot be assembled to matrices ({exc}); sysred needs "
            "NumPy-based operators"
        ) from None
    if E is not None and E.shape[0] > 0:
        cond = np.linalg.cond(E)
        if not cond <= max_cond_e:  # also catches inf / nan (singular E)
            raise SysredError(
                f"E is singular or ill-conditioned (cond_2(E) = {cond:.1e} > max_cond_e = "
                f"{max_cond_e:.0e}): sysred handles E = I only, and E^-1 A would lose "
                "accuracy (a differential-algebraic system cannot be converted)"
            )
        A, B = np.linalg.solve(E, A), np.linalg.solve(E, B)
    dt = None if model.sampling_time == 0 else float(model.sampling_time)
    return StateSpace(A, B, C, D, dt)


def to_pymor(sys):
    """A single real sysred system as a pyMOR ``LTIModel`` (``E = I``).

    ``dt = None`` becomes ``sampling_time = 0`` (continuous time), ``dt > 0`` the sampling time.
    A ``DiagonalStateSpace`` is converted to dense ``A``; a zero ``D`` becomes pyMOR's
    ``ZeroOperator``. Beware that in discrete time pyMOR's ``freq_resp(w)`` evaluates at
    ``exp(i w)`` (``w`` in rad per sample) while sysred's ``frequency_response(w)`` evaluates
    at ``exp(i w dt)`` (rad per time unit); ``transfer``/``eval_tf`` at a point agree.

    Raises
    ------
    SysredError
        For batches (pyMOR models are single systems: convert ``sys[i]``, e.g.
        ``[sysred.to_pymor(G[i]) for i in range(len(G))]``) and for complex systems (pyMOR's
        system-theoretic methods assume real matrices: ``sysred.realify`` gives the real
        system with the same H-inf norm and each HSV twice; ``sysred.real_part`` the real map
        ``u -> Re(G u)`` for real inputs). Complex arrays whose imaginary parts are all zero
        count as real.
    ImportError
        pyMOR is not installed.

    Examples
    --------
    >>> import sysred
    >>> fom = sysred.to_pymor(sysred.StateSpace([[0.5]], [[1.0]], [[1.0]], dt=1.0))
    >>> fom.sampling_time, fom.order
    (1.0, 1)
    """
    require_system(sys)
    if sys.batch_shape:
        raise SysredError(
            f"to_pymor converts one system; this is a batch of shape {sys.batch_shape}: "
            "index it first, e.g. [sysred.to_pymor(G[i]) for i in range(len(G))]"
        )
    dense = sys.to_dense()
    if dense.is_complex:
        if any(np.any(X.imag != 0) for X in dense._arrays()):
            raise SysredError(
                "pyMOR assumes real systems; convert with sysred.realify(sys) (same H-inf "
                "norm, each Hankel singular value twice) or sysred.real_part(sys) (the real "
                "map u -> Re(G u) for real inputs)"
            )
        dense = StateSpace(*(X.real for X in dense._arrays()), dt=dense.dt)
    LTIModel = _pymor_lti_class()
    D = dense.D if np.any(dense.D != 0) else None
    return LTIModel.from_matrices(
        dense.A, dense.B, dense.C, D, sampling_time=0 if dense.dt is None else dense.dt
    )
