r"""Global budgets: how many states each DSS layer keeps when the total is fixed.

**Score.** Balanced truncation (and SPA) of a layer to order ``r`` changes channel ``h`` by at
most :math:`b_h(r) = 2 \sum_{i > r} \sigma_{h,i}` in H-infinity norm (distinct HSVs). Layers are
made comparable by measuring this *relative to the layer's own gain*,

.. math::

    \rho_\ell(r) = \frac{\| b(r) \|_2}{\| g \|_2}, \qquad
    g_h = \| G_h + D_h \|_\infty \ \text{(kernel and skip: the channel's whole linear map)},

norms over the ``H`` channels (an RMS over channels, weighted by gain: the output linear mixes
the channels, so an error matters in proportion to the size of what the channel passes on).
Relative, because every block of an S4 model is followed by a LayerNorm: the absolute scale of
a layer's map is normalised away and only its relative perturbation propagates. ``g_h`` is
:func:`sysred.peak_gain` (a grid-and-resonance lower bound on the norm, so :math:`\rho` errs on
the cautious side).

**Rule.** Choose the orders minimising :math:`\sum_\ell \rho_\ell(r_\ell)` subject to
:math:`\sum_\ell r_\ell = K` (state budget) or to the model's total parameter count ``<= P``
(parameter budget). To first order, relative perturbations of composed layers add up, so this
minimises a bound on the model's relative change. Each :math:`\rho_\ell` is convex and
non-increasing in ``r`` (a norm of tail sums of descending HSVs), so the optimum is what the
greedy rule "give the next state to the layer whose normalised bound drops most" produces;
:func:`allocate` solves it exactly by dynamic programming over the totals instead, which also
handles orders that ``sysred`` refuses (tied or rounding-level HSVs: gaps in a layer's options)
and per-layer parameter costs.

**Alternative** (``normalise="total"``): :math:`\rho_\ell(r) = \|b(r)\|_2 / \|b(0)\|_2`, the
fraction of the layer's total tail bound still dropped, which normalises each layer by its own
total as LAST does with its per-state H-infinity scores (Gwak et al., NeurIPS 2024, "Layer-
adaptive state pruning for deep state space models"). It ignores how large that total is next
to the layer's gain, so a layer whose HSVs are all small next to its skip term is still
counted as much as one where they carry the whole map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NORMALISATIONS = ("gain", "total")


class BudgetError(ValueError):
    """A state or parameter budget that no admissible choice of orders meets."""


@dataclass
class LayerOptions:
    """What one layer can be reduced to, and what each choice costs.

    Attributes
    ----------
    name : str
    orders : ndarray of int, ascending
        The admissible orders (``sysred`` accepts them).
    score : ndarray
        Normalised bound :math:`\\rho(r)` at each order.
    params : ndarray of int
        The layer's parameter count at each order.
    """

    name: str
    orders: np.ndarray
    score: np.ndarray
    params: np.ndarray


def layer_score(bounds: np.ndarray, gains: np.ndarray, normalise: str = "gain") -> np.ndarray:
    """:math:`\\rho(r)` for every order ``r = 0..n`` from per-channel bounds, ``(n + 1,)``.

    Parameters
    ----------
    bounds : ``(H, n + 1)``
        Per-channel H-infinity error bound at every order (``sysred.BTReductor.error_bounds``).
    gains : ``(H,)``
        Per-channel gain ``||G_h + D_h||`` (``normalise="gain"``).
    normalise : {"gain", "total"}
        See the module docstring.
    """
    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise must be one of {NORMALISATIONS}, got {normalise!r}")
    b = np.linalg.norm(np.asarray(bounds, dtype=float), axis=0)  # (n+1)
    scale = np.linalg.norm(gains) if normalise == "gain" else b[0]
    return b / scale if scale > 0 else np.zeros_like(b)


def allocate(
    layers: list[LayerOptions], states: int | None = None, params: int | None = None, fixed=0
) -> list[int]:
    """Orders minimising the sum of the layers' scores under a state or parameter budget.

    Parameters
    ----------
    layers : list of LayerOptions
    states : int, optional
        The orders must sum to exactly this.
    params : int, optional
        Instead of ``states``: ``fixed + sum of the layers' params <= params``.
    fixed : int
        Parameters outside the reduced layers (encoder, norms, decoder).

    Returns
    -------
    list of int, one order per layer.

    Raises
    ------
    BudgetError
        The budget is outside what the admissible orders can meet (the message names the
        minimum, and for states the maximum and the nearest reachable totals).

    Notes
    -----
    Dynamic programming over the reachable totals, layer by layer: for a state budget, one
    entry per total ``<= states`` (O(layers * states * n)); for a parameter budget, the Pareto
    front of (parameters, score). Ties in score go to the fewer parameters, then to the
    earlier layers' smaller orders.
    """
    if (states is None) == (params is None):
        raise ValueError("give exactly one of states (a state budget) or params")
    exact = states is not None
    limit = int(states if exact else params) - (0 if exact else int(fixed))
    cost_of = (lambda opt: opt.orders) if exact else (lambda opt: opt.params)
    _check_feasible(layers, exact, limit, int(fixed), cost_of)
    front = {0: (0.0, ())}  # total cost -> (sum of scores, orders so far)
    for opt in layers:
        new: dict[int, tuple[float, tuple]] = {}
        for cost, (score, chosen) in front.items():
            for r, c, s in zip(opt.orders, cost_of(opt), opt.score, strict=True):
                total = cost + int(c)
                if total > limit:
                    continue
                cand = (score + float(s), chosen + (int(r),))
                if total not in new or cand[0] < new[total][0]:
                    new[total] = cand
        front = new if exact else _pareto(new)
    if exact:
        if limit not in front:
            lower = max((c for c in front if c < limit), default=None)
            raise BudgetError(
                f"no combination of admissible orders sums to {limit} states (orders that split "
                f"tied or keep rounding-level HSVs are refused); the nearest reachable total "
                f"below is {lower}: {_describe(layers)}"
            )
        return list(front[limit][1])
    best = min(front.items(), key=lambda kv: (kv[1][0], kv[0]))
    return list(best[1][1])


def _pareto(front: dict) -> dict:
    """Drop every entry that costs more than another without a lower score."""
    kept, best = {}, np.inf
    for cost in sorted(front):
        if front[cost][0] < best:
            kept[cost] = front[cost]
            best = front[cost][0]
    return kept


def _check_feasible(layers, exact, limit, fixed, cost_of) -> None:
    if not layers:
        raise BudgetError("no layer to allocate states to")
    for opt in layers:
        if len(opt.orders) == 0:
            raise BudgetError(f"layer {opt.name!r} has no admissible order")
    low = sum(int(np.min(cost_of(opt))) for opt in layers)
    if exact:
        high = sum(int(np.max(opt.orders)) for opt in layers)
        if not low <= limit <= high:
            raise BudgetError(
                f"state budget {limit} is outside what the layers can take: minimum {low} "
                f"(the smallest admissible order of each layer), maximum {high}; "
                f"{_describe(layers)}"
            )
    elif limit < low:
        raise BudgetError(
            f"parameter budget {limit + fixed} is below the minimum {low + fixed} (every layer "
            f"at its smallest admissible order: {[int(opt.orders[0]) for opt in layers]}; "
            f"{fixed} parameters outside the reduced layers)"
        )


def _describe(layers) -> str:
    return ", ".join(
        f"{opt.name}: orders {int(opt.orders[0])}..{int(opt.orders[-1])}"
        + ("" if len(opt.orders) == opt.orders[-1] - opt.orders[0] + 1 else " (with gaps)")
        for opt in layers
    )
