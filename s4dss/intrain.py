r"""In-training reduction: balanced truncation of the DSS layers during a run, then more training.

CompreSSM (Chahine et al., ICLR 2026) reduces LRU layers by balanced truncation while they
train, so the large model is never trained to the end. Here the same idea for DSS layers, as a
callback (:class:`InTrainingReduction`, the ``train.reduce`` config section) of
:class:`s4dss.train.Trainer`:

**When** - at the end of the epochs in ``at_epochs`` (1-based, after that epoch's validation), or
at the end of every ``every``-th epoch.

**To what order** (per layer, never below ``min_rank``, never above the current order):

* ``rank``: a fixed order (with ``at_epochs``, one per event is allowed: ``[32, 16]``);
* ``fraction``: ``floor(fraction * current order)`` - a fixed fraction per interval;
* ``energy``: CompreSSM's Hankel energy tolerance: the smallest ``r`` whose leading HSVs hold a
  fraction ``tau`` of the energy :math:`\sum_i \sigma_i` in *every* channel of the layer,
  :math:`\sum_{i \le r} \sigma_i \ge \tau \sum_i \sigma_i` (energy as the sum of the HSVs, as
  CompreSSM's code does; :math:`1 - \tau` is then the relative BT bound
  :math:`2\sum_{i>r}\sigma_i / 2\sum_i\sigma_i`);
* ``tol``: the smallest ``r`` whose BT bound is ``<= tol`` on every channel
  (``sysred.BTReductor.order_for``, as ``s4dss.reduce(tol=...)``).

**Only if** (optional gate ``max_tail``): every layer's relative Hankel tail
:math:`\max_h \sum_{i>r}\sigma_{h,i} / \sum_i \sigma_{h,i}` at its new order is ``<= max_tail``;
otherwise the event waits (``at_epochs``: retried at the next epoch ends; ``every``: at the next
check). This is "reduce when the Hankel tail energy of every layer falls below a tolerance".

**How** - each layer to reduce goes through :func:`s4dss.reduce` (``method``, ``L`` and any extra
``options`` are passed through, e.g. ``rank_tol``), and the reduced layers are swapped into the
same model object (:meth:`s4dss.train.Trainer.replace_modules`):

* optimizer: a new AdamW over the same parameter groups, each at its current learning rate;
  the AdamW moments (``exp_avg``, ``exp_avg_sq``, ``step``) of every parameter whose values the
  reduction did not change are kept (encoder, norms, decoder, the other layers, a reduced
  layer's ``output_linear`` and ``log_dt``); the reduced layers' poles and residues (``Lambda``,
  ``W``: a new basis and a new size) and skip terms (``D``: changed by the feed-through
  correction) start with fresh moments;
* schedule: the scheduler is rebuilt with the old one's state: the cosine (or plateau)
  schedule continues at the same step, no restart and no new warm-up;
* ``model_config``: the reduced architecture (``d_state`` per layer, ``lambda_per_channel``):
  ``last.pt`` rebuilds it and ``--resume`` continues bit-identically across a reduction. Layers
  that keep their order but have shared poles are made per-channel (the same kernel, ``Lambda``
  broadcast to ``(H, N)``, with fresh moments), because ``S4Model``'s ``lambda_per_channel`` is
  one flag;
* a refusal by ``s4dss.reduce`` (e.g. tied HSVs at the cut with strict BT) does not stop the
  run: it is recorded as a skipped event and retried at the next check;
* ``best.pt``: after a reduction it tracks the reduced model (the best-so-far is reset to the
  reduced model's validation accuracy), so ``test_at_best_val`` is a small model's.

Each reduction writes a ``reduce`` record to ``metrics.jsonl``: epoch, step, orders before and
after, per layer the largest a-priori bound, measured kernel errors (absolute and relative to
the kernel norm) and HSV tail, parameters before and after, validation loss/accuracy before
and after, which parameters kept their optimizer state, and the time taken.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch import nn

import sysred
from s4dss.adapters import to_system
from s4dss.callbacks import Callback
from s4dss.dss import DSS

AMOUNTS = ("rank", "fraction", "energy", "tol")


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class ReduceConfig:
    """The ``train.reduce`` section (module docstring for the semantics).

    Attributes
    ----------
    at_epochs : list of int, optional
        Reduce at the end of these epochs (1-based, increasing).
    every : int, optional
        Instead of ``at_epochs``: check at the end of every ``every``-th epoch.
    rank : int or list of int, optional
        Target order (a list: one per ``at_epochs`` entry).
    fraction : float in (0, 1), optional
        New order ``floor(fraction * current)``.
    energy : float in (0, 1), optional
        Keep the smallest order holding this fraction of every channel's HSV sum.
    tol : float > 0, optional
        Smallest order whose BT bound is ``<= tol`` on every channel.
    max_tail : float in (0, 1], optional
        Gate: reduce only when every layer's relative HSV tail at its new order is at most this.
    min_rank : int
        Never reduce below this order.
    method : str
        ``s4dss.reduce`` method (``"bt"``; ``"modal"`` for the baseline).
    L : int, optional
        Kernel length for the reduction and its error report (default: the task's length).
    options : dict
        Further keyword arguments for ``s4dss.reduce`` (e.g. ``{"rank_tol": 1e-16}``).
    """

    at_epochs: list[int] | None = None
    every: int | None = None
    rank: int | list[int] | None = None
    fraction: float | None = None
    energy: float | None = None
    tol: float | None = None
    max_tail: float | None = None
    min_rank: int = 1
    method: str = "bt"
    L: int | None = None
    options: dict = field(default_factory=dict)

    @property
    def amount(self) -> str:
        """Which of ``rank``, ``fraction``, ``energy``, ``tol`` is set."""
        return next(k for k in AMOUNTS if getattr(self, k) is not None)

    def __post_init__(self):
        if (self.at_epochs is None) == (self.every is None):
            raise ValueError("give exactly one of at_epochs (a list of epochs) or every")
        if self.at_epochs is not None:
            e = self.at_epochs
            if not isinstance(e, list) or not e or not all(_is_int(x) and x >= 1 for x in e):
                raise ValueError(f"at_epochs must be a non-empty list of epochs >= 1, got {e!r}")
            if any(b <= a for a, b in zip(e, e[1:], strict=False)):
                raise ValueError(f"at_epochs must be increasing, got {e!r}")
        if self.every is not None and not (_is_int(self.every) and self.every >= 1):
            raise ValueError(f"every must be an integer >= 1, got {self.every!r}")
        given = [k for k in AMOUNTS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {AMOUNTS} (the new order), got {given or None}")
        if not (_is_int(self.min_rank) and self.min_rank >= 1):
            raise ValueError(f"min_rank must be an integer >= 1, got {self.min_rank!r}")
        r = self.rank
        if isinstance(r, list):
            if self.at_epochs is None or len(r) != len(self.at_epochs):
                raise ValueError("a list of ranks needs at_epochs with one entry per rank")
            if not all(_is_int(x) and x >= self.min_rank for x in r):
                raise ValueError(f"rank entries must be integers >= min_rank, got {r!r}")
        elif r is not None and not (_is_int(r) and r >= self.min_rank):
            raise ValueError(f"rank must be an integer >= min_rank ({self.min_rank}), got {r!r}")
        for key in ("fraction", "energy"):
            v = getattr(self, key)
            if v is not None and not (_is_number(v) and 0 < v < 1):
                raise ValueError(f"{key} must be a number in (0, 1), got {v!r}")
        if self.tol is not None and not (_is_number(self.tol) and self.tol > 0):
            raise ValueError(f"tol must be a positive number, got {self.tol!r}")
        if self.max_tail is not None and not (_is_number(self.max_tail) and 0 < self.max_tail <= 1):
            raise ValueError(f"max_tail must be a number in (0, 1], got {self.max_tail!r}")
        from s4dss.reduce import METHODS

        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.L is not None and not (_is_int(self.L) and self.L >= 1):
            raise ValueError(f"L must be an integer >= 1, got {self.L!r}")
        if not isinstance(self.options, dict):
            raise ValueError(f"options must map s4dss.reduce arguments, got {self.options!r}")
        clash = sorted(set(self.options) & {"rank", "tol", "method", "L"})
        if clash:
            raise ValueError(f"options must not repeat {clash}: set them as keys of train.reduce")

    @classmethod
    def from_dict(cls, d: dict, epochs: int | None = None) -> ReduceConfig:
        """Validate a config section (unknown keys, types, ranges) with clear messages."""
        if not isinstance(d, dict):
            raise ValueError(f"train.reduce must be a mapping, got {d!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown keys {unknown} in train.reduce; known: {known}")
        try:
            cfg = cls(**d)
        except ValueError as e:
            raise ValueError(f"train.reduce: {e}") from None
        if epochs is not None and cfg.at_epochs and cfg.at_epochs[-1] > epochs:
            raise ValueError(
                f"train.reduce.at_epochs {cfg.at_epochs} reaches beyond train.epochs = {epochs}"
            )
        return cfg


# --------------------------------------------------------------------------- orders from HSVs


def energy_order(hsv: np.ndarray, tau: float) -> int:
    """Smallest ``r`` with ``sum(hsv[h, :r]) >= tau * sum(hsv[h])`` for every row ``h``.

    Examples
    --------
    >>> energy_order(np.array([[4.0, 2.0, 1.0, 1.0]]), 0.75)
    2
    """
    hsv = np.asarray(hsv, dtype=float)
    total = hsv.sum(-1, keepdims=True)  # (H 1)
    held = np.cumsum(hsv, -1) >= tau * total * (1 - 1e-12)  # (H n) rounding-tolerant
    return int(np.max(np.argmax(held, -1) + 1))


def relative_tail(hsv: np.ndarray, order: int) -> float:
    """Largest relative HSV tail ``sum(hsv[h, order:]) / sum(hsv[h])`` over the rows."""
    hsv = np.asarray(hsv, dtype=float)
    total = np.maximum(hsv.sum(-1), np.finfo(float).tiny)
    return float(np.max(hsv[..., order:].sum(-1) / total))


# --------------------------------------------------------------------------- architecture


def _s4models(model: nn.Module):
    from s4dss.model import S4Model

    return [(name, m) for name, m in model.named_modules() if isinstance(m, S4Model)]


def _record_orders(model: nn.Module) -> None:
    """Write every S4Model's current layer orders into its ``config`` (in place)."""
    for _, m in _s4models(model):
        m.config["d_state"] = [layer.N for layer in m.layers]
        m.config["lambda_per_channel"] = True


def per_channel(layer: DSS) -> DSS:
    """``layer`` itself if its poles are per channel, else a copy with ``Lambda`` ``(H, N)``.

    The copy computes the same kernel (the shared poles broadcast to every channel).
    """
    if layer.kernel.per_channel:
        return layer
    import copy

    new = copy.deepcopy(layer)
    k = new.kernel
    for name in ("Lambda_log_neg_re", "Lambda_re", "Lambda_im"):
        if hasattr(k, name):
            p = getattr(k, name).detach()  # (N)
            setattr(k, name, nn.Parameter(p.expand(k.H, k.N).clone()))  # (H N)
    new._step_params = None
    return new


def adopt_architecture(model: nn.Module, model_config: dict) -> bool:
    """Give ``model`` the DSS layer sizes ``model_config`` describes (weights to be loaded).

    Used on resume when the checkpoint was written after an in-training reduction. Returns
    whether anything changed.

    Raises
    ------
    ValueError
        ``model_config`` differs in more than the layer orders, or names other layers.
    """
    current = getattr(model, "config", None)
    if not isinstance(current, dict) or current == model_config:
        return False
    other = sorted(
        k for k in set(current) | set(model_config)
        if k not in ("d_state", "lambda_per_channel") and current.get(k) != model_config.get(k)
    )  # fmt: skip
    if other:
        raise ValueError(f"the checkpoint's model differs in {other}, not only in layer orders")
    from s4dss.train import model_from_config

    target = model_from_config(model_config)
    mine, theirs = dict(_dss(model)), dict(_dss(target))
    if mine.keys() != theirs.keys():
        raise ValueError(f"the checkpoint's DSS layers {sorted(theirs)} are not {sorted(mine)}")
    for name, layer in theirs.items():
        model.set_submodule(name, layer)
    _record_orders(model)
    return True


def _is_basis(param_name: str) -> bool:
    return param_name.startswith(("kernel.Lambda_", "kernel.W"))


def _dss(model: nn.Module) -> list[tuple[str, DSS]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, DSS)]


# --------------------------------------------------------------------------- the callback


class InTrainingReduction(Callback):
    """Reduces the DSS layers at configured epoch ends (module docstring; ``train.reduce``).

    Parameters
    ----------
    cfg : ReduceConfig or dict
    L : int
        Kernel length (default for ``cfg.L``): the task's sequence length.
    """

    def __init__(self, cfg: ReduceConfig | dict, L: int | None = None):
        self.cfg = ReduceConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg
        self.L = int(self.cfg.L or L or 1024)
        self.done = 0  # at_epochs events carried out
        self.history: list[dict] = []

    @classmethod
    def from_config(cls, section: dict, task) -> InTrainingReduction:
        return cls(ReduceConfig.from_dict(section), getattr(task, "seq_len", None))

    # -- checkpoint state

    def state_dict(self) -> dict:
        return {"done": self.done, "history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.done, self.history = int(state["done"]), list(state["history"])

    def on_load_checkpoint(self, loop, checkpoint: dict) -> None:
        config = checkpoint.get("model_config")
        if isinstance(config, dict) and adopt_architecture(loop.model, config):
            loop.model_config = config

    def on_train_start(self, loop) -> None:
        layers = _dss(loop.model)
        if not layers:
            raise ValueError("train.reduce: the model has no s4dss.DSS layer to reduce")
        inside = {f"{n}.{k}" if n else k for n, m in _s4models(loop.model) for k, _ in _dss(m)}
        loose = [name for name, _ in layers if name not in inside]
        if loose:
            raise ValueError(
                f"train.reduce needs the DSS layers inside an s4dss.S4Model (whose config records "
                f"the reduced orders for checkpoints); {loose} are not"
            )

    def on_train_end(self, loop, summary: dict) -> None:
        summary["reductions"] = [
            {k: r[k] for k in ("epoch", "step", "orders_before", "orders_after")}
            | {"val_acc_before": r["val_before"]["acc"], "val_acc_after": r["val_after"]["acc"]}
            for r in self.history
        ]
        summary["orders"] = [layer.N for _, layer in _dss(loop.model)]

    # -- the event

    def _due(self, epoch: int) -> int | None:
        """Index of the event to try at the end of ``epoch`` (1-based), or None."""
        c = self.cfg
        if c.at_epochs is not None:
            if self.done < len(c.at_epochs) and epoch >= c.at_epochs[self.done]:
                return self.done
            return None
        return epoch // c.every - 1 if epoch % c.every == 0 else None

    def _targets(self, event: int, layers, reductors) -> list[int]:
        c = self.cfg
        out = []
        for (_, layer), red in zip(layers, reductors, strict=True):
            n = layer.N
            if c.amount == "rank":
                r = c.rank[event] if isinstance(c.rank, list) else c.rank
            elif c.amount == "fraction":
                r = math.floor(c.fraction * n)
            elif c.amount == "energy":
                r = energy_order(red.hsv, c.energy)
            else:
                r = int(red.order_for(c.tol))
            out.append(min(n, max(c.min_rank, int(r))))
        return out

    def on_epoch_end(self, loop, val: dict) -> None:
        epoch = loop.epoch_number
        event = self._due(epoch)
        if event is None:
            return
        t0 = time.perf_counter()
        where = {"event": "reduce", "epoch": epoch, "step": loop.global_step}
        layers = _dss(loop.model)
        before = [layer.N for _, layer in layers]
        try:  # nothing changes the model before the swap, so a refusal leaves it as it was
            with torch.no_grad():
                reductors = [sysred.BTReductor(to_system(layer, self.L)) for _, layer in layers]
            after = self._targets(event, layers, reductors)
            tails = [relative_tail(red.hsv, r) for red, r in zip(reductors, after, strict=True)]
            if after == before:
                return self._skip(loop, where, before, tails, "no layer above its target order")
            gate = self.cfg.max_tail
            if gate is not None and max(tails) > gate:
                return self._skip(loop, where, before, tails, f"HSV tail above max_tail = {gate}")
            swaps, fresh, reports = self._reduced_layers(layers, before, after, tails)
        except (sysred.SysredError, ValueError) as err:  # e.g. tied HSVs at the cut (strict BT)
            # training goes on at the old orders; the event stays due (retried at the next check)
            return self._skip(loop, where, before, None, f"s4dss.reduce refused: {err}")
        record = self._apply(loop, swaps, fresh, reports, before, after, val)
        record["reduce_seconds"] = time.perf_counter() - t0
        loop.log({**where, **record})
        self.history.append({**where, **{k: v for k, v in record.items() if "seconds" not in k}})
        if self.cfg.at_epochs is not None:
            self.done += 1

    def _skip(self, loop, where, orders, tails, why) -> None:
        loop.log({**where, "skipped": why, "orders": orders, "tail_max": tails})

    def _reduced_layers(self, layers, before, after, tails):
        """The new layers (by name), the parameters needing fresh moments, per-layer reports."""
        import s4dss

        c = self.cfg
        swaps, fresh, reports = {}, [], []
        for (name, layer), n, r, tail in zip(layers, before, after, tails, strict=True):
            if r == n:
                new = per_channel(layer)
                if new is not layer:
                    swaps[name] = new
                continue
            small = s4dss.reduce(layer, rank=r, method=c.method, L=self.L, **c.options)
            rep = small.reduction_report.layers[0]
            del small.reduction_report
            swaps[name] = small
            # poles and residues in the new basis; log_dt is unchanged, D by the value rule
            fresh += [f"{name}.{p}" for p, _ in small.named_parameters() if _is_basis(p)]
            rel = rep.kernel_error / np.maximum(rep.kernel_norm, np.finfo(float).tiny)
            reports.append(
                {
                    "name": name,
                    "n": n,
                    "order": r,
                    "bound_max": None if rep.bound is None else float(np.max(rep.bound)),
                    "kernel_error_max": float(rep.kernel_error.max()),
                    "rel_kernel_error_max": float(rel.max()),
                    "rel_kernel_error_mean": float(rel.mean()),
                    "tail_max": tail,
                    "cond_max": float(np.max(rep.cond)),
                }
            )
        return swaps, fresh, reports

    def _apply(self, loop, swaps, fresh, reports, before, after, val) -> dict:
        """Swap the layers in, rebuild the optimizer, record, and re-validate."""
        params_before = sum(p.numel() for p in loop.model.parameters())
        optim = loop.replace_modules(swaps, fresh=fresh)
        _record_orders(loop.model)
        config = getattr(loop.model, "config", None)
        if isinstance(config, dict):
            loop.model_config = config
        t_eval = time.perf_counter()
        val_after = loop.evaluate("val")
        loop.set_best(val_after["acc"])  # best.pt now tracks the reduced architecture
        return {
            "method": self.cfg.method,
            "orders_before": before,
            "orders_after": after,
            "layers": reports,
            "params_before": params_before,
            "params_after": sum(p.numel() for p in loop.model.parameters()),
            "val_before": {"loss": val["loss"], "acc": val["acc"]},
            "val_after": {"loss": val_after["loss"], "acc": val_after["acc"]},
            "optimizer": {"kept": len(optim["kept"]), "fresh": optim["fresh"]},
            "eval_seconds": time.perf_counter() - t_eval,
        }
