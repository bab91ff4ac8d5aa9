r"""One DSS layer set up for reduction: its systems, HSVs and bounds once, then any order.

Two ways to see a layer as systems (``reference.md`` sections 2 and 10):

* :class:`ChannelPlan` (``poles="per-channel"``, the default and the paper's): ``H``
  discrete-time SISO systems (:func:`~s4dss.adapters.to_system`), reduced independently; the
  reduced layer has per-channel poles ``Lambda`` ``(H, r)``.
* :class:`SharedPlan` (``poles="shared"``, for layers whose poles are shared): ONE
  continuous-time system with ``H`` outputs (:func:`~s4dss.adapters.to_shared_system`),
  reduced jointly; the reduced layer keeps shared poles ``Lambda`` ``(r,)`` and ``W`` ``(H, r)``,
  so it has fewer parameters than the original for every ``r < N``. The bound holds for each
  channel's continuous-time ``G_h(s)``, not for the sampled kernel (the report measures that).

Both wrap a ``sysred.BTReductor`` (``"bt"``, ``"spa"``) or modal contributions (``"modal"``),
so the bounds at every order (for budgets) cost nothing beyond the one factorisation.
"""

from __future__ import annotations

import numpy as np

import sysred
from s4dss.adapters import DSSParams, from_shared_system, from_system, to_shared_system, to_system
from s4dss.dss import DSS

POLES = ("per-channel", "shared")


def ssm_params(H: int, r: int, shared: bool) -> int:
    """Parameters of a DSS kernel: ``Lambda`` (2 reals per pole), ``W`` ``(H, r)`` complex,
    ``log_dt`` ``(H,)``."""
    return (2 * r if shared else 2 * H * r) + 2 * H * r + H


def _tails(contrib: np.ndarray) -> np.ndarray:
    """Modal bound at every order from mode contributions ``(..., n)``: ``(..., n + 1)``."""
    ranked = -np.sort(-contrib, axis=-1)  # (..., n) descending
    tails = np.cumsum(ranked[..., ::-1], axis=-1)[..., ::-1]  # (..., n): sum_{i >= r}
    return np.concatenate([tails, np.zeros(contrib.shape[:-1] + (1,))], axis=-1)


class _Plan:
    """Shared machinery: a system, a method, bounds and admissible orders at every order."""

    shared: bool

    def __init__(self, name: str, layer: DSS, system, method: str, L, reductor_kw: dict):
        self.name, self.layer, self.system, self.method, self.L = name, layer, system, method, L
        self.H, self.N = layer.H, layer.N
        if method == "modal":
            self.reductor = None
            self._modal_bounds = _tails(sysred.modal_truncation(system, 1).contributions)
        else:
            self.reductor = sysred.BTReductor(system, **reductor_kw)

    @property
    def hsv(self):
        return None if self.reductor is None else self.reductor.hsv

    def channel_bounds(self) -> np.ndarray:
        """Upper bound on each channel's H-infinity error at every order, ``(H, N + 1)``."""
        b = self._modal_bounds if self.reductor is None else self.reductor.error_bounds()
        return np.broadcast_to(b, (self.H, self.N + 1))

    def admissible(self, strict: bool) -> np.ndarray:
        """Orders ``0..N`` the method accepts, ``(N + 1,)`` bool."""
        ok = np.ones(self.N + 1, dtype=bool)
        ok[0] = False
        if self.reductor is not None and strict:
            ok &= self.reductor.admissible_orders()
        return ok

    def order_for(self, tol: float) -> int:
        if self.reductor is None:
            raise ValueError("method='modal' needs rank= (it has no error-bound order selection)")
        return self.reductor.order_for(tol)

    def params(self, r: int) -> int:
        """The layer's parameter count after reduction to ``r``."""
        other = sum(p.numel() for p in self.layer.parameters()) - sum(
            p.numel() for p in self.layer.kernel.parameters()
        )
        return other + ssm_params(self.H, r, self.shared)

    def _truncate(self, r: int, strict: bool):
        if self.reductor is None:
            return sysred.modal_truncation(self.system, r)
        method = "spa" if self.method == "spa" else "sqrt"
        return self.reductor.reduce(r, method=method, strict=strict)


class ChannelPlan(_Plan):
    """Per-channel: ``H`` discrete-time SISO systems, reduced independently."""

    shared = False

    def __init__(self, name, layer, method, L, horizon=None, rank_tol=None):
        system = to_system(layer, L)
        if layer.kernel.mode == "softmax" and horizon is None:
            _check_stable(system)
        super().__init__(name, layer, system, method, L, dict(horizon=horizon, rank_tol=rank_tol))

    def gains(self) -> np.ndarray:
        """``||G_h + D_h||`` per channel (kernel and skip), ``(H,)``."""
        skip = self.layer.D.detach().double().numpy()[:, None, None]  # (H 1 1)
        s = self.system
        whole = sysred.DiagonalStateSpace(s.poles, s.B, s.C, s.D + skip, s.dt)
        return sysred.peak_gain(whole)

    def reduce(self, r: int, strict: bool) -> tuple[DSSParams, object]:
        result = self._truncate(r, strict)
        old = self.layer.kernel
        return from_system(result.system, old.log_dt, old.mode, self.L, self.layer.D), result


class SharedPlan(_Plan):
    """Shared poles: one continuous-time system with ``H`` outputs, reduced jointly."""

    shared = True

    def __init__(self, name, layer, method, L, rank_tol=None):
        system = to_shared_system(layer, L)
        super().__init__(name, layer, system, method, L, dict(rank_tol=rank_tol))

    def gains(self) -> np.ndarray:
        """``||G_h + D_h||`` per channel of the continuous-time system, ``(H,)``."""
        s = self.system
        skip = self.layer.D.detach().double().numpy()[:, None, None]  # (H 1 1)
        channels = sysred.DiagonalStateSpace(
            np.broadcast_to(s.poles, (self.H, self.N)), np.ones((self.H, self.N, 1)),
            s.C[:, None, :], skip,
        )  # fmt: skip
        return sysred.peak_gain(channels)

    def reduce(self, r: int, strict: bool) -> tuple[DSSParams, object]:
        result = self._truncate(r, strict)
        old = self.layer.kernel
        params = from_shared_system(result.system, old.log_dt, old.mode, self.L, self.layer.D)
        return params, result


def make_plan(name, layer, method, L, poles, horizon=None, rank_tol=None) -> _Plan:
    """The plan for one layer (``poles`` in :data:`POLES`), with sysred errors prefixed by the
    layer's name."""
    try:
        if poles == "shared":
            if horizon is not None:
                raise ValueError("poles='shared' reduces in continuous time: horizon= is for "
                                 "per-channel time-limited BT only")  # fmt: skip
            plan = SharedPlan(name, layer, method, L, rank_tol)
        else:
            plan = ChannelPlan(name, layer, method, L, horizon, rank_tol)
    except sysred.SysredError as err:
        raise type(err)(f"layer {name!r}: {err}") from err
    except ValueError as err:
        raise ValueError(f"layer {name!r}: {err}") from err
    return plan


def _check_stable(system) -> None:
    """Name the channels whose poles are on or outside the unit circle (softmax only)."""
    worst = np.max(np.abs(system.poles), axis=-1)  # (H)
    if np.any(worst >= 1.0):
        bad = np.nonzero(worst >= 1.0)[0]
        raise sysred.UnstableSystemError(
            f"softmax channels {bad[:16].tolist()}"
            f"{'...' if len(bad) > 16 else ''} ({len(bad)} of {len(worst)}) have poles with "
            f"|exp(Delta*lambda)| >= 1 (Re lambda >= 0, max |a| = {worst.max():.6g}): "
            "infinite-horizon balanced truncation needs stable channels; use horizon=L "
            "(time-limited BT over the kernel length), which needs no stability."
        )
