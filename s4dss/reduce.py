r"""Compress every DSS layer of a model through ``sysred``, and report what it cost.

For each DSS layer: :func:`~s4dss.adapters.to_system` (``H`` channel systems) ->
``sysred.balanced_truncation`` (or ``sysred.modal_truncation``) at order ``r`` ->
``sysred.diagonalize`` -> :func:`~s4dss.adapters.from_system` -> a per-channel layer with
``Lambda`` ``(H, r)``, ``W`` ``(H, r)``, the same ``log_dt``, and the feed-through correction
added to the skip term (``reference.md`` sections 2-4, 7).

Measured error: per channel, :math:`e_h = \| K_h + D_h\delta - K^r_h - D^r_h\delta \|_2` over the
first ``L`` taps, in closed form from the two layers' state-space forms
(:func:`sysred.impulse_norm`, ``reference.md`` section 10). For each discrete SISO channel
:math:`e_h \le \|G_h - G^r_h\|_{H_2} \le \|G_h - G^r_h\|_{H_\infty} \le` ``bound[h]``
(``2 * sum of the distinct tail HSVs``), and taking the real part never increases it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

import sysred
from s4dss.adapters import from_system, to_system
from s4dss.dss import DSS

METHODS = ("bt", "modal")


@dataclass
class LayerReport:
    """What reducing one DSS layer did.

    Attributes
    ----------
    name : str
        Module path of the layer in the model.
    n, order : int
        State dimension before and after.
    hsv : ndarray ``(H, n)``
        Hankel singular values per channel, descending (``None`` if the method gives none).
    bound : ndarray ``(H,)``
        A-priori H-infinity error bound per channel (``None`` if the method gives none).
    kernel_error : ndarray ``(H,)``
        Measured 2-norm of the layer's kernel change (skip included) over ``L`` taps.
    kernel_norm : ndarray ``(H,)``
        2-norm of the original kernel (skip included), for relative errors.
    cond : ndarray ``(H,)``
        Condition number of the eigenvector matrix of the re-diagonalisation.
    params_before, params_after : int
        Parameter counts of the layer (SSM, skip, output linear).
    """

    name: str
    n: int
    order: int
    hsv: np.ndarray | None
    bound: np.ndarray | None
    kernel_error: np.ndarray
    kernel_norm: np.ndarray
    cond: np.ndarray
    params_before: int
    params_after: int


@dataclass
class ReductionReport:
    """Per-layer :class:`LayerReport` list plus model totals; ``str(report)`` is a table."""

    method: str
    L: int
    layers: list[LayerReport] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0

    def __str__(self) -> str:
        lines = [
            f"reduction ({self.method}), errors over L = {self.L} taps; "
            f"parameters {self.params_before} -> {self.params_after}",
            f"{'layer':<12}{'n->r':>8}{'max bound':>12}{'max err':>12}{'max err/bound':>15}"
            f"{'max cond':>11}{'params':>16}",
        ]
        for r in self.layers:
            bound = np.full_like(r.kernel_error, np.inf) if r.bound is None else r.bound
            pos = bound > 0
            ratio = f"{np.max(r.kernel_error[pos] / bound[pos]):.3f}" if pos.any() else "-"
            lines.append(
                f"{r.name:<12}{f'{r.n}->{r.order}':>8}{bound.max():>12.3e}"
                f"{r.kernel_error.max():>12.3e}{ratio:>15}{r.cond.max():>11.3g}"
                f"{f'{r.params_before}->{r.params_after}':>16}"
            )
        return "\n".join(lines)


def dss_layers(model: nn.Module) -> list[tuple[str, DSS]]:
    """``(name, layer)`` for every :class:`~s4dss.dss.DSS` module, in ``named_modules`` order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, DSS)]


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def layer_map(layer: DSS, L: int) -> np.ndarray:
    """The layer's linear map before the activation as a kernel: ``K + D delta``, ``(H, L)``.

    Materialised from the torch layer (``O(H N L)``); the report's numbers come from the
    closed form of :func:`kernel_errors` / :func:`kernel_norms` instead.
    """
    with torch.no_grad():
        K = layer.kernel(L).double()  # (H L)
        K[:, 0] += layer.D.double()
    return K.numpy()


def layer_system(layer: DSS, L: int) -> sysred.DiagonalStateSpace:
    """The same map as a batch of ``H`` diagonal systems: :func:`~s4dss.adapters.to_system`
    with the skip term added to the feed-through, so the real part of its impulse response
    (``L`` samples) is :func:`layer_map`."""
    G = to_system(layer, L)
    skip = layer.D.detach().double().cpu().numpy()[:, None, None]  # (H 1 1)
    return sysred.DiagonalStateSpace(G.poles, G.B, G.C, G.D + skip, dt=G.dt)


def kernel_errors(layer: DSS, other: DSS, L: int) -> np.ndarray:
    """Per-channel 2-norm of the difference of two layers' maps over ``L`` taps, ``(H,)``.

    In closed form from the two state-space forms (:func:`sysred.impulse_norm` of the
    real part, ``O(H (N + r)^2)``), equal to ``||layer_map(layer) - layer_map(other)||`` to
    ~1e-8 relative without forming the ``(H, N, L)`` powers.
    """
    return sysred.impulse_norm(layer_system(layer, L), L, other=layer_system(other, L), real=True)


def kernel_norms(layer: DSS, L: int) -> np.ndarray:
    """Per-channel 2-norm of a layer's map over ``L`` taps, ``(H,)`` (closed form, as above)."""
    return sysred.impulse_norm(layer_system(layer, L), L, real=True)


def _truncate(system, method: str, rank, tol, strict: bool, horizon, rank_tol=None):
    if method == "bt":
        return sysred.balanced_truncation(
            system, order=rank, tol=tol, strict=strict, horizon=horizon, rank_tol=rank_tol
        )
    if horizon is not None:
        raise ValueError("horizon= applies to method='bt' (time-limited BT) only")
    if rank is None:
        raise ValueError("method='modal' needs rank= (it has no error-bound order selection)")
    return sysred.modal_truncation(system, rank)


def _check_request(layers, rank, tol, method, L) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if (rank is None) == (tol is None):
        raise ValueError("give exactly one of rank (state dimension r) or tol (error bound)")
    if rank is not None:
        if isinstance(rank, bool) or not isinstance(rank, int | np.integer):
            raise ValueError(f"rank must be an integer, got {rank!r}")
        for name, layer in layers:
            if not 1 <= rank <= layer.N:
                raise ValueError(
                    f"rank {rank} out of range for layer {name!r} with N = {layer.N} states: "
                    f"need 1 <= rank <= {layer.N}"
                )
    if tol is not None and not (isinstance(tol, int | float) and tol > 0 and np.isfinite(tol)):
        raise ValueError(f"tol must be a positive finite number, got {tol!r}")
    if isinstance(L, bool) or not isinstance(L, int | np.integer) or L < 1:
        raise ValueError(f"L must be a positive integer, got {L!r}")


def _check_stable(system, name: str) -> None:
    """Name the channels whose poles are on or outside the unit circle (softmax only)."""
    worst = np.max(np.abs(system.poles), axis=-1)  # (H)
    if np.any(worst >= 1.0):
        bad = np.nonzero(worst >= 1.0)[0]
        raise sysred.UnstableSystemError(
            f"layer {name!r}: softmax channels {bad[:16].tolist()}"
            f"{'...' if len(bad) > 16 else ''} ({len(bad)} of {len(worst)}) have poles with "
            f"|exp(Delta*lambda)| >= 1 (Re lambda >= 0, max |a| = {worst.max():.6g}): "
            "infinite-horizon balanced truncation needs stable channels; use horizon=L "
            "(time-limited BT over the kernel length), which needs no stability."
        )


def reduce(
    model: nn.Module,
    rank: int | None = None,
    tol: float | None = None,
    method: str = "bt",
    horizon: int | None = None,
    L: int = 1024,
    strict: bool = True,
    rank_tol: float | None = None,
) -> nn.Module:
    """A copy of ``model`` with every DSS layer reduced to ``rank`` states (or per ``tol``).

    Parameters
    ----------
    model : nn.Module
        Any module containing :class:`~s4dss.dss.DSS` layers (usually :class:`~s4dss.S4Model`);
        left untouched.
    rank : int, optional
        State dimension r of every reduced layer, ``1 <= r <= N``.
    tol : float, optional
        Instead of ``rank``: per layer, the smallest r whose error bound is ``<= tol`` on
        every channel (sysred's order selection; orders can differ between layers).
    method : {"bt", "modal"}
        Square-root balanced truncation, or ``sysred.modal_truncation`` (baseline; needs
        ``rank``).
    horizon : int, optional
        Time-limited BT (``method="bt"``): balance the Gramians of the first ``horizon``
        impulse-response samples (``sysred.balanced_truncation(..., horizon=...)``); use
        ``horizon=L`` to match a kernel of length L. Needs no stability (DSS-softmax poles may
        leave the unit disc); there is no a-priori bound (reported as NaN), the measured
        kernel errors are in the report.
    L : int
        Sequence length: the length the ``"softmax"`` kernels are normalised over (their
        state-space form depends on it, and the reduced layer is exact for this length), and the
        number of taps the kernel errors are measured over.
    strict : bool
        Passed to ``sysred.balanced_truncation``: refuse (True) or only warn (False) about
        degenerate orders (tied or rounding-level HSVs).
    rank_tol : float, optional
        Passed to ``sysred.balanced_truncation`` (``method="bt"``): low-rank Gramian factors,
        truncated where they change ``S^H R`` by at most ``rank_tol`` relative. Trained
        kernels are smooth and their Gramians numerically low rank, so e.g. ``1e-16`` is
        several times faster and changes nothing visible; the HSV uncertainty is added to the
        reported bound.

    Returns
    -------
    nn.Module
        A new model of the same class; reduced layers have per-channel ``Lambda`` ``(H, r)``.
        ``config`` (if the model has one) is updated so ``type(model)(**config)`` rebuilds it.
        ``reduced.reduction_report`` is a :class:`ReductionReport`.

    Raises
    ------
    ValueError
        No DSS layer, ``rank``/``tol``/``method``/``L`` invalid.
    sysred.UnstableSystemError
        ``"softmax"`` channels with poles on or outside the unit circle (named in the message).
    sysred.NonFiniteError
        NaN or inf in a layer's parameters.
    sysred.SysredError
        Any refusal by sysred (e.g. a degenerate order), prefixed with the layer's name.
    """
    layers = dss_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no s4dss.DSS layer to reduce")
    _check_request(layers, rank, tol, method, L)
    reduced = copy.deepcopy(model)
    report = ReductionReport(method, int(L), params_before=_n_params(model))
    for (name, layer), (_, new) in zip(layers, dss_layers(reduced), strict=True):
        try:
            system = to_system(layer, L)
            if layer.kernel.mode == "softmax" and horizon is None:
                _check_stable(system, name)
            result = _truncate(system, method, rank, tol, strict, horizon, rank_tol)
        except sysred.SysredError as err:
            raise type(err)(f"layer {name!r}: {err}") from err
        old = layer.kernel
        params = from_system(result.system, old.log_dt, old.mode, L, layer.D)
        new.kernel = params.kernel(
            old.mode, lr=old.optim["lr"], kernel_dtype=old.kernel_dtype,
            param_dtype=old.Lambda_im.dtype,
        ).to(layer.D.device)  # fmt: skip
        with torch.no_grad():
            new.D.copy_(params.skip)
        new._step_params = None  # the copied step cache belongs to the old kernel
        report.layers.append(
            LayerReport(
                name=name,
                n=layer.N,
                order=new.N,
                hsv=getattr(result, "hsv", None),
                bound=getattr(result, "bound", None),
                kernel_error=kernel_errors(layer, new, L),
                kernel_norm=kernel_norms(layer, L),
                cond=params.cond,
                params_before=_n_params(layer),
                params_after=_n_params(new),
            )
        )
    config = getattr(reduced, "config", None)
    if isinstance(config, dict) and "d_state" in config:
        config["d_state"] = [r.order for r in report.layers]
        config["lambda_per_channel"] = True
    report.params_after = _n_params(reduced)
    reduced.reduction_report = report
    return reduced
