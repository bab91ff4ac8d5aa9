r"""DSS layer <-> batched ``sysred`` systems (``reference.md`` section 2).

Each channel ``h`` of a layer is one discrete-time SISO system with time step one sequence index
(``dt = 1.0``: :math:`\Delta_h` is folded into the poles):

.. math::

    A = \mathrm{diag}(a), \quad B = b, \quad C = c \odot a, \quad D = \textstyle\sum_n c_n b_n,

with :math:`a = e^{\Delta\lambda}`, :math:`b = (e^{\Delta\lambda} - 1)/\lambda` and :math:`c` from
:meth:`s4dss.dss.DSSKernel.discrete`. Its Markov parameters :math:`h_0 = D`,
:math:`h_k = C A^{k-1} B = \sum_n c_n b_n a_n^k` are the channel's complex kernel; the layer uses
the real part. The layer's skip term is *not* in the system.

Back-mapping (any diagonal realisation :math:`(a_r, B_r, C_r, D_r)`, e.g. after balanced
truncation and :func:`sysred.diagonalize`): :math:`\lambda_r = \log(a_r)/\Delta` (principal log:
the discrete kernel is exact for this :math:`\Delta`), the kernel coefficient
:math:`(cb)_r = C_r B_r / a_r` and :math:`W_r = (cb)_r / b(\lambda_r)` (``"exp"``) or
:math:`W_r = (cb)_r (a_r^L - 1) / b(\lambda_r)` (``"softmax"``). Then :math:`K_k = \mathrm{Re}\,
h_k` for ``k >= 1``, and :math:`\mathrm{Re}(D_r - \sum (cb)_r)` is added to the skip term so that
the layer map is exact at ``k = 0`` too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import sysred
from s4dss.dss import DSS, DSSKernel

#: ``exp(L * Re(Delta * lambda))`` overflows float64 beyond this exponent.
_EXP_OVERFLOW = 700.0


def _kernel_of(layer: DSS | DSSKernel) -> DSSKernel:
    if isinstance(layer, DSS):
        return layer.kernel
    if isinstance(layer, DSSKernel):
        return layer
    raise TypeError(f"expected an s4dss.DSS layer or DSSKernel, got {type(layer).__name__}")


def _check_finite(kernel: DSSKernel) -> None:
    """A clear error naming the parameter and channels, before any NaN reaches sysred."""
    for name, p in kernel.named_parameters():
        bad = ~torch.isfinite(p.detach())
        if bad.any():
            where_bad = torch.nonzero(bad)[:4].tolist()
            raise sysred.NonFiniteError(
                f"DSS parameter {name} has {int(bad.sum())} non-finite entries (e.g. at "
                f"{where_bad}; shape {tuple(p.shape)}): the layer has no valid kernel"
            )


def channel_arrays(
    layer: DSS | DSSKernel, L: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The channel systems' arrays ``(poles, B, C, D)`` in complex128 (module docstring).

    Returns
    -------
    poles : ``(H, N)``; B : ``(H, N, 1)``; C : ``(H, 1, N)``; D : ``(H, 1, 1)``
    """
    kernel = _kernel_of(layer)
    _check_finite(kernel)
    with torch.no_grad():
        if kernel.mode == "softmax" and L is not None:
            x_re = kernel.log_dt.double().exp()[:, None] * kernel.Lambda().real.double()  # (H N)
            over = (L * x_re > _EXP_OVERFLOW).any(-1)  # (H)
            if over.any():
                raise ValueError(
                    f"softmax channels {torch.nonzero(over).flatten()[:8].tolist()} have "
                    f"L * Re(Delta * lambda) > {_EXP_OVERFLOW:g} at L = {L}: C = W / (e^(L x) - 1)"
                    " underflows, so no state-space form reproduces their kernel in float64"
                )
        a, b, c = (t.to(torch.complex128).numpy() for t in kernel.discrete(L))  # (H N)
    return a, b[..., None], (c * a)[:, None, :], (c * b).sum(-1)[:, None, None]


def to_system(layer: DSS | DSSKernel, L: int | None = None) -> sysred.DiagonalStateSpace:
    """The layer's channels as one batched discrete-time ``sysred.DiagonalStateSpace``.

    Parameters
    ----------
    layer : DSS or DSSKernel
    L : int, optional
        Sequence length; required for ``mode="softmax"``, whose ``C`` depends on ``L``.

    Returns
    -------
    sysred.DiagonalStateSpace
        Batch shape ``(H,)``, ``n = N``, ``m = p = 1``, ``dt = 1.0``, complex. Its impulse
        response ``(H, L, 1, 1)`` has real part equal to the layer's kernel ``(H, L)``.
        For ``"softmax"`` the poles may lie outside the unit circle (unstable systems).
    """
    poles, B, C, D = channel_arrays(layer, L)
    return sysred.DiagonalStateSpace(poles, B, C, D, dt=1.0)


@dataclass
class DSSParams:
    """Layer parameters recovered from a system by :func:`from_system`.

    Attributes
    ----------
    Lambda : ``(H, r)`` complex128, per channel.
    W : ``(H, r)`` complex128.
    log_dt : ``(H,)`` float64 (unchanged from the input).
    skip : ``(H,)`` float64, the skip term that makes the layer map exact.
    cond : ``(H,)``, condition number of the eigenvector matrix used to diagonalise
        (1.0 when the system was already diagonal).
    """

    Lambda: torch.Tensor
    W: torch.Tensor
    log_dt: torch.Tensor
    skip: torch.Tensor
    cond: np.ndarray

    def kernel(self, mode: str = "exp", **kwargs) -> DSSKernel:
        """A :class:`~s4dss.dss.DSSKernel` with these parameters (``kwargs`` to ``from_params``)."""
        return DSSKernel.from_params(self.Lambda, self.W, self.log_dt, mode, **kwargs)


def from_system(
    system,
    log_dt,
    mode: str = "exp",
    L: int | None = None,
    skip=None,
) -> DSSParams:
    r"""Layer parameters whose channel kernels are the real parts of ``system``'s responses.

    Parameters
    ----------
    system : sysred.DiagonalStateSpace or sysred.StateSpace
        Batch shape ``(H,)``, ``m = p = 1``, ``dt = 1.0``. A dense system is diagonalised with
        :func:`sysred.diagonalize` (its ``cond`` is returned).
    log_dt : array_like ``(H,)``
        The step sizes to express the poles with (any positive values work; keeping the
        original layer's keeps training behaviour comparable).
    mode : {"exp", "softmax"}
    L : int, optional
        Required for ``"softmax"``: the length its kernel is normalised over.
    skip : array_like ``(H,)``, optional
        The layer's current skip term ``D``; the feed-through correction is added to it.

    Returns
    -------
    DSSParams

    Raises
    ------
    ValueError
        Wrong shapes or time step, poles on or outside the unit circle (``"exp"`` needs
        :math:`\mathrm{Re}\lambda < 0`), or a pole at 0 (no logarithm).
    """
    if not isinstance(system, sysred.StateSpace | sysred.DiagonalStateSpace):
        raise TypeError(f"expected a sysred system, got {type(system).__name__}")
    if mode not in ("exp", "softmax"):
        raise ValueError(f"mode must be 'exp' or 'softmax', got {mode!r}")
    log_dt = torch.as_tensor(log_dt).detach().to(torch.float64)  # (H)
    H = log_dt.shape[0] if log_dt.ndim == 1 else None
    if system.batch_shape != (H,) or system.m != 1 or system.p != 1:
        raise ValueError(
            f"from_system needs a batch of H = {H} SISO systems, got batch shape "
            f"{system.batch_shape}, m = {system.m}, p = {system.p}"
        )
    if system.dt != 1.0:
        raise ValueError(f"DSS channels are discrete-time with dt = 1.0, got dt = {system.dt}")
    if isinstance(system, sysred.DiagonalStateSpace):
        diag, cond = system, np.ones(H)
    else:
        diag, cond = sysred.diagonalize(system)
    a = diag.poles  # (H r)
    if np.any(np.abs(a) == 0):
        raise ValueError("a reduced pole is exactly 0: no continuous-time lambda = log(a)/Delta")
    if mode == "exp" and np.any(np.abs(a) >= 1):
        bad = np.nonzero(np.any(np.abs(a) >= 1, axis=-1))[0][:8].tolist()
        raise ValueError(f"mode 'exp' needs |a| < 1 (Re lambda < 0); channels {bad} violate it")
    x = np.log(a)  # (H r) principal log: Delta * lambda
    dt = np.exp(log_dt.numpy())[:, None]  # (H 1)
    Lambda = x / dt  # (H r)
    cb = diag.C[:, 0, :] * diag.B[:, :, 0] / a  # (H r) kernel coefficients c_r b_r
    b = np.expm1(x) * dt / x  # (H r) b(lambda) = (e^x - 1)/lambda, written stably near x = 0
    W = cb / b  # (H r)
    if mode == "softmax":
        if L is None:
            raise ValueError("mode 'softmax' needs L: its C = W / (a^L - 1) depends on L")
        W = W * np.expm1(L * x)  # (H r)
    correction = (diag.D[:, 0, 0] - cb.sum(-1)).real  # (H)
    base = np.zeros(H) if skip is None else torch.as_tensor(skip).detach().double().numpy()
    if not (np.all(np.isfinite(Lambda)) and np.all(np.isfinite(W))):
        raise sysred.NonFiniteError("from_system produced non-finite Lambda or W")
    return DSSParams(
        torch.from_numpy(Lambda),
        torch.from_numpy(W),
        log_dt,
        torch.from_numpy(base + correction),
        np.asarray(cond),
    )


# ------------------------------------------------------------------ shared poles (one system)


def to_shared_system(layer: DSS | DSSKernel, L: int | None = None) -> sysred.DiagonalStateSpace:
    r"""A shared-pole layer as ONE continuous-time system with ``H`` outputs.

    Channel ``h``'s kernel is the zero-order-hold sampling, with step :math:`\Delta_h`, of
    :math:`G_h(s) = \sum_n c_{hn} / (s - \lambda_n)`: with :math:`a = e^{\Delta\lambda}` and
    :math:`b = (a - 1)/\lambda = \int_0^\Delta e^{\lambda\tau} d\tau`,
    :math:`K_{hk} = \mathrm{Re} \sum_n c_{hn} b_{hn} a_{hn}^k` (``reference.md`` section 10). When
    :math:`\Lambda` is shared, all channels are the outputs of

    .. math:: (A, B, C, D) = (\mathrm{diag}(\Lambda), \mathbf{1}_{N \times 1}, c, 0),

    with ``c`` ``(H, N)`` from :meth:`s4dss.dss.DSSKernel.discrete` (``W``, or for ``"softmax"``
    ``W / (e^{L \Delta\lambda} - 1)``). Reducing this system keeps the poles shared.

    Returns
    -------
    sysred.DiagonalStateSpace
        No batch, ``n = N``, ``m = 1``, ``p = H``, ``dt = None`` (continuous time), complex.

    Raises
    ------
    ValueError
        The layer has per-channel poles (``Lambda`` ``(H, N)``).
    """
    kernel = _kernel_of(layer)
    if kernel.per_channel:
        raise ValueError(
            f"the layer has per-channel poles (Lambda {tuple(kernel.Lambda_im.shape)}): a shared-"
            "pole reduction needs Lambda of shape (N,) shared by all channels"
        )
    _check_finite(kernel)
    with torch.no_grad():
        Lambda = kernel.Lambda().to(torch.complex128).numpy()  # (N)
        c = kernel.discrete(L)[2].to(torch.complex128).numpy()  # (H N)
    return sysred.DiagonalStateSpace(Lambda, np.ones((kernel.N, 1)), c, np.zeros((kernel.H, 1)))


def from_shared_system(system, log_dt, mode: str = "exp", L: int | None = None, skip=None):
    r"""Shared-pole layer parameters from a (reduced) continuous-time system with ``H`` outputs.

    Inverse of :func:`to_shared_system`: diagonalise (``sysred.diagonalize``, its ``cond`` is
    reported), scale each mode to input 1: :math:`\Lambda_r` ``(r,)`` = the poles and
    :math:`c_r = C_r \mathrm{diag}(B_r)` ``(H, r)``; then ``W_r = c_r`` (``"exp"``) or
    ``W_r = c_r (e^{L \Delta_h \lambda_r} - 1)`` (``"softmax"``). The per-channel
    :math:`\Delta_h` is unchanged, so channel ``h``'s kernel is the ZOH sampling of the reduced
    :math:`G_h(s)`. A continuous-time feed-through ``D_r`` (singular perturbation) has no place in
    the kernel; it is added to the skip term (``Re D_r``), which keeps the layer's steady-state
    gain: ZOH sampling keeps :math:`G_h(0)`, and ``G_r(0) + D_r = G(0)``.

    Returns
    -------
    DSSParams
        ``Lambda`` ``(r,)``, ``W`` ``(H, r)``, ``cond`` ``(H,)`` (the one condition number).
    """
    if not isinstance(system, sysred.StateSpace | sysred.DiagonalStateSpace):
        raise TypeError(f"expected a sysred system, got {type(system).__name__}")
    if mode not in ("exp", "softmax"):
        raise ValueError(f"mode must be 'exp' or 'softmax', got {mode!r}")
    log_dt = torch.as_tensor(log_dt).detach().to(torch.float64)  # (H)
    H = log_dt.shape[0] if log_dt.ndim == 1 else None
    if system.batch_shape != () or system.m != 1 or system.p != H or system.is_discrete:
        raise ValueError(
            f"from_shared_system needs one continuous-time system with 1 input and H = {H} "
            f"outputs, got batch shape {system.batch_shape}, m = {system.m}, p = {system.p}, "
            f"dt = {system.dt}"
        )
    diag, cond = sysred.diagonalize(system)
    Lambda = diag.poles  # (r)
    if mode == "exp" and np.any(Lambda.real >= 0):
        raise ValueError(
            f"mode 'exp' needs Re(lambda) < 0; the reduced system has a pole at "
            f"{Lambda[np.argmax(Lambda.real)]:.6g} (cond of the eigenvectors {float(cond):.3g})"
        )
    c = diag.C * diag.B[:, 0]  # (H r): each mode scaled to input 1
    if mode == "softmax":
        if L is None:
            raise ValueError("mode 'softmax' needs L: its C = W / (a^L - 1) depends on L")
        dt = np.exp(log_dt.numpy())[:, None]  # (H 1)
        c = c * np.expm1(L * dt * Lambda)  # (H r)
    base = np.zeros(H) if skip is None else torch.as_tensor(skip).detach().double().numpy()
    skip_r = base + diag.D[:, 0].real  # (H)
    if not (np.all(np.isfinite(Lambda)) and np.all(np.isfinite(c))):
        raise sysred.NonFiniteError("from_shared_system produced non-finite Lambda or W")
    return DSSParams(
        torch.from_numpy(np.ascontiguousarray(Lambda)),
        torch.from_numpy(np.ascontiguousarray(c)),
        log_dt,
        torch.from_numpy(skip_r),
        np.full(H, float(cond)),
    )
