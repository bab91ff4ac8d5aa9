r"""Compress every DSS layer of a model through ``sysred``, and report what it cost.

For each DSS layer (see :mod:`s4dss.plans`): the layer as systems -> ``sysred.BTReductor``
(balanced truncation ``"bt"`` or singular perturbation ``"spa"``) or modal truncation at order
``r`` -> re-diagonalised -> DSS parameters, with the feed-through change added to the skip term
(``reference.md`` sections 2-4, 7, 10). Orders come from ``rank`` (the same for every layer),
``tol`` (per layer, from the bound), or a global ``budget`` / ``param_budget`` allocated over the
layers (:mod:`s4dss.budget`). ``poles="per-channel"`` (default) gives every reduced channel its
own poles; ``poles="shared"`` keeps a shared-pole layer's poles shared (fewer parameters).

Measured error: per channel, :math:`e_h = \| K_h + D_h\delta - K^r_h - D^r_h\delta \|_2` over the
first ``L`` taps, in closed form from the two layers' state-space forms
(:func:`sysred.impulse_norm`, ``reference.md`` section 10). Per-channel: for each discrete SISO
channel :math:`e_h \le \|G_h - G^r_h\|_{H_2} \le \|G_h - G^r_h\|_{H_\infty} \le` ``bound[h]``
(``2 * sum of the distinct tail HSVs``), and taking the real part never increases it. Shared
poles: the bound is on the continuous-time :math:`\|G_h(s) - G^r_h(s)\|_\infty`, not on the
sampled kernel, so only the measured :math:`e_h` describes the kernel.
"""

from __future__ import annotations

import copy
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

import sysred
from s4dss.adapters import to_system
from s4dss.budget import NORMALISATIONS, LayerOptions, allocate, layer_score
from s4dss.dss import DSS
from s4dss.plans import POLES, make_plan

METHODS = ("bt", "spa", "modal")


class ParameterIncreaseWarning(UserWarning):
    """A reduction gave a model with more parameters than the original (e.g. per-channel
    reduction of a shared-pole layer to ``r > N/2``; ``poles="shared"`` avoids it)."""


@dataclass
class LayerReport:
    """What reducing one DSS layer did.

    Attributes
    ----------
    name : str
        Module path of the layer in the model.
    n, order : int
        State dimension before and after.
    hsv : ndarray ``(H, n)``, or ``(n,)`` for ``poles="shared"``
        Hankel singular values per channel (or of the joint system), descending (``None`` if
        the method gives none).
    bound : ndarray ``(H,)``
        A-priori H-infinity error bound per channel (``None`` if the method gives none; for
        ``poles="shared"`` the joint system's bound, on the continuous-time channels).
    kernel_error : ndarray ``(H,)``
        Measured 2-norm of the layer's kernel change (skip included) over ``L`` taps.
    kernel_norm : ndarray ``(H,)``
        2-norm of the original kernel (skip included), for relative errors.
    cond : ndarray ``(H,)``
        Condition number of the eigenvector matrix of the re-diagonalisation.
    params_before, params_after : int
        Parameter counts of the layer (SSM, skip, output linear).
    score : float or None
        With a budget: the normalised bound rho(r) the allocation used
        (:mod:`s4dss.budget`).
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
    score: float | None = None


@dataclass
class ReductionReport:
    """Per-layer :class:`LayerReport` list plus model totals; ``str(report)`` is a table."""

    method: str
    L: int
    layers: list[LayerReport] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0
    poles: str = "per-channel"
    budget: int | None = None
    param_budget: int | None = None
    normalise: str | None = None

    def __str__(self) -> str:
        lines = [
            f"reduction ({self.method}, {self.poles} poles), errors over L = {self.L} taps; "
            f"parameters {self.params_before} -> {self.params_after}",
        ]
        if self.budget is not None or self.param_budget is not None:
            what = (
                f"state budget {self.budget}"
                if self.budget is not None
                else f"parameter budget {self.param_budget}"
            )
            orders = ", ".join(f"{r.name}: {r.order}" for r in self.layers)
            scores = ", ".join(f"{r.score:.3g}" for r in self.layers)
            lines.append(
                f"allocation ({what}, normalised by {self.normalise}): {orders}; "
                f"normalised bounds {scores} (sum {sum(r.score for r in self.layers):.3g})"
            )
        lines.append(
            f"{'layer':<12}{'n->r':>8}{'max bound':>12}{'max err':>12}{'max err/bound':>15}"
            f"{'max cond':>11}{'params':>16}"
        )
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


def kernel_errors_and_norms(layer: DSS, other: DSS, L: int) -> tuple[np.ndarray, np.ndarray]:
    """``(kernel_errors(layer, other, L), kernel_norms(layer, L))`` from one pass over the pairs
    of modes (the norm's Gram matrix is a block of the error's)."""
    return sysred.impulse_norm(
        layer_system(layer, L), L, other=layer_system(other, L), real=True, return_sys_norm=True
    )


def _is_count(x) -> bool:
    return not isinstance(x, bool) and isinstance(x, int | np.integer)


def _check_request(layers, rank, tol, budget, param_budget, method, poles, L, horizon) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if poles not in POLES:
        raise ValueError(f"poles must be one of {POLES}, got {poles!r}")
    given = [x is not None for x in (rank, tol, budget, param_budget)]
    if sum(given) != 1:
        raise ValueError(
            "give exactly one of rank (state dimension r), tol (error bound), budget (total "
            "states) or param_budget (total parameters)"
        )
    if rank is not None:
        if not _is_count(rank):
            raise ValueError(f"rank must be an integer, got {rank!r}")
        for name, layer in layers:
            if not 1 <= rank <= layer.N:
                raise ValueError(
                    f"rank {rank} out of range for layer {name!r} with N = {layer.N} states: "
                    f"need 1 <= rank <= {layer.N}"
                )
    if tol is not None and not (isinstance(tol, int | float) and tol > 0 and np.isfinite(tol)):
        raise ValueError(f"tol must be a positive finite number, got {tol!r}")
    for key, value in (("budget", budget), ("param_budget", param_budget)):
        if value is not None and not (_is_count(value) and value >= 1):
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
    if horizon is not None and method != "bt":
        raise ValueError("horizon= applies to method='bt' (time-limited BT) only")
    if horizon is not None and poles == "shared":
        raise ValueError("horizon= (time-limited BT) is per-channel only: poles='shared' reduces "
                         "in continuous time")  # fmt: skip
    if horizon is not None and (budget is not None or param_budget is not None):
        raise ValueError("budgets need a-priori error bounds; time-limited BT (horizon=) has none")
    if isinstance(L, bool) or not isinstance(L, int | np.integer) or L < 1:
        raise ValueError(f"L must be a positive integer, got {L!r}")


def _check_finite(layers) -> None:
    """Every parameter of every DSS layer is finite: the reduction reads the SSM parameters and
    the skip term ``D`` and copies the rest (``output_linear``) into the reduced model, so a NaN
    anywhere in the layer would come out of ``reduce`` unnoticed."""
    for name, layer in layers:
        for pname, p in layer.named_parameters():
            bad = ~torch.isfinite(p.detach())  # same shape as p
            if bad.any():
                idx = torch.nonzero(bad)[:4].tolist()
                values = [float(p.detach()[tuple(i)]) for i in idx]
                short = pname.removeprefix("kernel.")  # W, log_dt, ...; D; output_linear.weight
                raise sysred.NonFiniteError(
                    f"layer {name!r}: parameter {short} (shape {tuple(p.shape)}) has "
                    f"{int(bad.sum())} non-finite entries, e.g. {values} at {idx}: the layer has "
                    "no valid map to reduce; retrain it or restore it from a checkpoint"
                )


def _named(name: str, fn, *args):
    """``fn(*args)``, with a sysred refusal prefixed by the layer's name."""
    try:
        return fn(*args)
    except sysred.SysredError as err:
        raise type(err)(f"layer {name!r}: {err}") from err


def _budget_orders(model, plans, budget, param_budget, strict, normalise):
    """Orders from a global budget (:func:`s4dss.budget.allocate`) and each layer's score."""
    options, scores = [], []
    for plan in plans:
        rho = layer_score(plan.channel_bounds(), plan.gains(), normalise)  # (N+1)
        orders = np.nonzero(plan.admissible(strict))[0]
        params = np.array([plan.params(int(r)) for r in orders])
        options.append(LayerOptions(plan.name, orders, rho[orders], params))
        scores.append(rho)
    fixed = _n_params(model) - sum(_n_params(plan.layer) for plan in plans)
    orders = allocate(options, states=budget, params=param_budget, fixed=fixed)
    return orders, [float(rho[r]) for rho, r in zip(scores, orders, strict=True)]


def _install(new: DSS, params, old: DSS) -> None:
    """Put reduced parameters into the copied layer ``new``."""
    kernel = old.kernel
    new.kernel = params.kernel(
        kernel.mode, lr=kernel.optim["lr"], kernel_dtype=kernel.kernel_dtype,
        param_dtype=kernel.Lambda_im.dtype,
    ).to(old.D.device)  # fmt: skip
    with torch.no_grad():
        new.D.copy_(params.skip)
    new._step_params = None  # the copied step cache belongs to the old kernel


def _reduce_layer(plan, order: int, score, new: DSS, strict: bool, L: int) -> LayerReport:
    """Reduce one planned layer into its copy ``new`` and measure what that did."""
    params, result = _named(plan.name, plan.reduce, order, strict)
    _install(new, params, plan.layer)
    bound = getattr(result, "bound", None)
    error, norm = kernel_errors_and_norms(plan.layer, new, L)
    return LayerReport(
        name=plan.name,
        n=plan.N,
        order=new.N,
        hsv=plan.hsv,
        bound=None if bound is None else np.broadcast_to(bound, (plan.H,)).copy(),
        kernel_error=error,
        kernel_norm=norm,
        cond=params.cond,
        params_before=_n_params(plan.layer),
        params_after=_n_params(new),
        score=score,
    )


class _LayerPool:
    """Layers on sysred's worker threads, one layer per thread.

    Every step of a layer's reduction (factors, SVD, projection, diagonalisation, kernel
    errors) is a batch over its ``H`` channels. sysred can split one batch over its workers,
    but between the steps the work is serial (Python, small arrays); with one layer per thread
    (and ``sysred.worker_threads(1)`` inside) every step of every layer runs in parallel. With
    fewer layers than workers, the layers run one after the other and sysred splits each.
    """

    def __init__(self, n_layers: int):
        self.threads = min(sysred._parallel.default_workers(), n_layers)
        self._pool = None

    def __enter__(self):
        if self.threads > 1:
            self._blas = sysred._parallel.one_blas_thread()
            self._blas.__enter__()
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="s4dss-reduce")
        return self

    def __exit__(self, *exc):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._blas.__exit__(*exc)
        return False

    def submit_each(self, fn, items) -> list[Future]:
        """``fn(item)`` for every item: futures, in order (run here if single-threaded)."""
        if self._pool is None:
            return [_done(fn, item) for item in items]

        def one_thread(item):
            with sysred.worker_threads(1):
                return fn(item)

        return [self._pool.submit(one_thread, item) for item in items]


def _done(fn, item) -> Future:
    """A future already holding ``fn(item)`` (or its exception)."""
    future = Future()
    try:
        future.set_result(fn(item))
    except BaseException as err:  # noqa: BLE001 - re-raised by .result(), as from a thread
        future.set_exception(err)
    return future


def _warn_if_larger(report: ReductionReport, shareable: bool) -> None:
    """:class:`ParameterIncreaseWarning` if the model grew (``shareable``: some layer had shared
    poles and was reduced per channel, which is the usual cause)."""
    if report.params_after <= report.params_before:
        return
    grown = [f"{r.name} {r.params_before}->{r.params_after}" for r in report.layers
             if r.params_after > r.params_before]  # fmt: skip
    hint = (
        "; a per-channel reduction gives every channel its own poles: poles='shared' keeps "
        "shared poles shared and is smaller for every r < N"
        if shareable
        else ""
    )
    warnings.warn(
        f"the reduced model has MORE parameters than the original ({report.params_before} -> "
        f"{report.params_after}; layers {', '.join(grown)}){hint}",
        ParameterIncreaseWarning,
        stacklevel=3,
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
    budget: int | None = None,
    param_budget: int | None = None,
    poles: str = "per-channel",
    normalise: str = "gain",
) -> nn.Module:
    """A copy of ``model`` with every DSS layer reduced (to ``rank``, per ``tol``, or a budget).

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
    budget : int, optional
        Instead of ``rank``: the total number of states over all DSS layers (the orders sum to
        exactly this), allocated where the normalised error bound drops most
        (:mod:`s4dss.budget`; ``normalise`` chooses the normalisation).
    param_budget : int, optional
        Instead of ``rank``: the reduced *model's* total parameter count (every parameter, as
        in the report's ``params_after``) is at most this; allocated by the same rule.
    method : {"bt", "spa", "modal"}
        Square-root balanced truncation; balanced singular perturbation (matches each
        channel's steady-state gain, same bound; the changed feed-through goes into the skip
        term); or ``sysred.modal_truncation`` (baseline; bounds from the dropped modes' norms).
    poles : {"per-channel", "shared"}
        ``"per-channel"`` (default, the paper's): every channel is reduced on its own and the
        reduced layer has ``Lambda`` ``(H, r)``. ``"shared"`` (layers with shared poles only):
        the layer's channels are the outputs of one continuous-time system, reduced jointly;
        the reduced layer keeps ``Lambda`` ``(r,)`` shared, so it is smaller for every
        ``r < N``. Its bound is on the continuous-time channels, not on the sampled kernels
        (the report gives the measured kernel errors).
    horizon : int, optional
        Time-limited BT (``method="bt"``, per-channel): balance the Gramians of the first
        ``horizon`` impulse-response samples (``sysred.balanced_truncation(..., horizon=...)``);
        use ``horizon=L`` to match a kernel of length L. Needs no stability (DSS-softmax poles
        may leave the unit disc); there is no a-priori bound (reported as NaN), the measured
        kernel errors are in the report.
    L : int
        Sequence length: the length the ``"softmax"`` kernels are normalised over (their
        state-space form depends on it, and the reduced layer is exact for this length), and the
        number of taps the kernel errors are measured over.
    strict : bool
        Passed to sysred: refuse (True) or only warn (False) about degenerate orders (tied or
        rounding-level HSVs). With a budget, ``True`` allocates only orders sysred accepts.
    rank_tol : float, optional
        Passed to ``sysred.BTReductor`` (``"bt"``, ``"spa"``): low-rank Gramian factors,
        truncated where they change ``S^H R`` by at most ``rank_tol`` relative. Trained
        kernels are smooth and their Gramians numerically low rank, so e.g. ``1e-16`` is
        several times faster and changes nothing visible; the HSV uncertainty is added to the
        reported bound.
    normalise : {"gain", "total"}
        With a budget: how each layer's bound is made comparable (:mod:`s4dss.budget`).

    Returns
    -------
    nn.Module
        A new model of the same class. ``config`` (if the model has one) is updated so
        ``type(model)(**config)`` rebuilds it. ``reduced.reduction_report`` is a
        :class:`ReductionReport` (orders, bounds, kernel errors, parameters before and after).

    Warns
    -----
    ParameterIncreaseWarning
        The reduced model has more parameters than the original.

    Raises
    ------
    ValueError
        No DSS layer, or ``rank``/``tol``/``budget``/``method``/``poles``/``L`` invalid.
    s4dss.budget.BudgetError
        A budget no admissible choice of orders meets (the message names the minimum).
    sysred.UnstableSystemError
        ``"softmax"`` channels with poles on or outside the unit circle (named in the message).
    sysred.NonFiniteError
        NaN or inf in any parameter of a DSS layer (SSM parameters, skip term ``D``, output
        linear); the message names the layer, the parameter and the entries.
    sysred.SysredError
        Any refusal by sysred (e.g. a degenerate order), prefixed with the layer's name.
    """
    layers = dss_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no s4dss.DSS layer to reduce")
    _check_request(layers, rank, tol, budget, param_budget, method, poles, L, horizon)
    _check_finite(layers)
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
    with _LayerPool(len(layers)) as pool:
        planned = pool.submit_each(
            lambda nl: make_plan(nl[0], nl[1], method, L, poles, horizon, rank_tol), layers
        )
        reduced = copy.deepcopy(model)  # on this thread while the plans are computed
        plans = [job.result() for job in planned]
        scores = [None] * len(plans)
        if rank is not None:
            orders = [int(rank)] * len(plans)
        elif tol is not None:
            orders = [_named(plan.name, plan.order_for, tol) for plan in plans]
        else:
            orders, scores = _budget_orders(model, plans, budget, param_budget, strict, normalise)
        report = ReductionReport(method, int(L), params_before=_n_params(model), poles=poles)
        if budget is not None or param_budget is not None:
            report.budget, report.param_budget, report.normalise = budget, param_budget, normalise
        news = [new for _, new in dss_layers(reduced)]
        jobs = list(zip(plans, orders, scores, news, strict=True))
        done = pool.submit_each(lambda job: _reduce_layer(*job, strict, L), jobs)
        report.layers.extend(job.result() for job in done)
    config = getattr(reduced, "config", None)
    if isinstance(config, dict) and "d_state" in config:
        config["d_state"] = [r.order for r in report.layers]
        if poles == "per-channel":
            config["lambda_per_channel"] = True
    report.params_after = _n_params(reduced)
    shareable = poles == "per-channel" and any(not p.layer.kernel.per_channel for p in plans)
    _warn_if_larger(report, shareable)
    reduced.reduction_report = report
    return reduced
