"""The declarative table of arms: what every run of the study is.

An :class:`Arm` is one training run (or one evaluation): where its model comes from (Skew-HiPPO
from scratch at a state size, or a parent arm's checkpoint, optionally reduced by a
:class:`Reduction`), how long it trains, and with which extra training options. The runner
executes arms in table order once their parent is done; the report groups them by ``group``.

Arms built today (:func:`build_arms`), per task and seed ``s`` (``N`` the full state size, ``r``
each reduced size):

===================  ==========================================================================
group                what it is
===================  ==========================================================================
``pre``              pre-training at N from Skew-HiPPO, ``pre_epochs`` (snapshots kept)
``cont``             ``pre`` trained ``main_epochs`` more at N (what not compressing gives)
``bt0`` / ``bt``     ``s4dss.reduce(pre, rank=r)`` (balanced truncation): evaluated as is /
                     then main-trained ``main_epochs`` (the paper)
``modal0``/``modal`` the same with ``method="modal"`` (baseline)
``hippo``            Skew-HiPPO at r from scratch, ``main_epochs`` (claim a: equal main epochs)
``hippo-flops``      the same, with as many epochs as make its analytic training FLOPs equal
                     to ``pre`` + ``bt`` (claim b)
``hippo-wall``       the same, for equal wall time (``wall_ratio``: measured N/r seconds)
``corr``             BT of a pre-training snapshot at ``corr_rank``, main-trained (claim c);
                     ``corr_seeds`` add seeds that run only ``pre`` and ``bt`` at ``corr_rank``
===================  ==========================================================================

Arms of issue 11 (:func:`issue11_arms`, in the table when a preset sets ``issue11: True``),
per task, seed and r (each arm names the API it needs in ``Arm.requires``; :func:`missing`
says why an older s4dss cannot run it, and the runner skips it):

===================  ==========================================================================
group                what it is
===================  ==========================================================================
``intrain``          Skew-HiPPO at N, ``pre + main`` epochs in one run, reduced N -> r by BT
                     during training after ``intrain_epoch`` (``train.reduce``)
``regpre``           pre-training at N with the HSV regulariser (``train.hsv_reg``, tail beyond
                     order r) at SSM learning rate ``reg_ssm_lr``
``regbt0``/``regbt`` BT of ``regpre`` to r: as is / main-trained
``lrpre``, ...       (``reg_control``) the same as ``regpre`` etc. without the regulariser
``budget0``/...      ``s4dss.reduce(pre, budget=n_layers * r)``: global state budget, the same
                     total states as uniform r
``shared0``/...      ``s4dss.reduce(pre, rank=r, poles="shared")``: shared poles kept shared
``hippo-shared``     Skew-HiPPO at r with shared poles (the parameter count of ``shared``)
``spa0``/``spa``     ``s4dss.reduce(pre, rank=r, method="spa")``: balanced singular perturbation
===================  ==========================================================================
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import math
from dataclasses import dataclass, field
from typing import Any

from s4dss import flops

# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Reduction:
    """How a parent model is reduced: the keyword arguments of :func:`s4dss.reduce`.

    ``rank`` (one r for every layer) or ``budget`` (total states over all layers, allocated per
    layer by :mod:`s4dss.budget`); ``method`` ``"bt"``, ``"spa"`` (balanced singular
    perturbation) or ``"modal"``; ``poles`` ``"per-channel"`` (every reduced channel its own
    poles, the paper's) or ``"shared"`` (a shared-pole layer reduced jointly, poles kept shared).
    """

    method: str = "bt"
    rank: int | None = None
    budget: int | None = None
    poles: str = "per-channel"

    def kwargs(self) -> dict:
        """Arguments for ``s4dss.reduce`` (only those that differ from its defaults)."""
        kw: dict[str, Any] = {"method": self.method}
        if self.rank is not None:
            kw["rank"] = self.rank
        if self.budget is not None:
            kw["budget"] = self.budget
        if self.poles != "per-channel":
            kw["poles"] = self.poles
        return kw

    @property
    def label(self) -> str:
        size = f"r{self.rank}" if self.rank is not None else f"K{self.budget}"
        return f"{self.method}-{size}" + ("-shared" if self.poles == "shared" else "")


@dataclass(frozen=True)
class Arm:
    """One run of the study.

    Attributes
    ----------
    id : str
        Unique key, ``<task>/<name>/s<seed>``; the run's folder is ``runs/<id>``.
    task : str
        Key of the preset's tasks.
    group : str
        The kind of arm (module docstring); the unit of the report's tables.
    seed : int
        Seeds the model's initialisation (from scratch), the reduction and the training.
    epochs : int
        Training epochs of this run; 0 means evaluate the initial model only.
    r : int or None
        State size per layer of the model this arm trains (None: the full N).
    parent : str, optional
        Arm whose checkpoint initialises this one (None: Skew-HiPPO from scratch).
    parent_epoch : int, optional
        Use the parent's snapshot after this many epochs instead of its best checkpoint.
    reduction : Reduction, optional
        Applied to the parent's model before training.
    per_channel : bool
        From scratch at r: per-channel poles ``(H, r)`` like a reduced layer (default).
    start_full : bool
        From scratch at the full N although ``r`` is set: ``r`` is where an in-training
        reduction takes the model (``intrain``), or the order a regulariser targets
        (``regpre``).
    model : tuple of (key, value)
        Changes to the task's model spec for a run from scratch (e.g. ``ssm_lr``); a reduced
        model inherits its parent's.
    train : tuple of (key, value)
        Extra :class:`s4dss.train.TrainConfig` keys (``hsv_reg``, ``reduce``: issue 11's
        training options).
    snapshots : tuple of int
        Epochs after which this run keeps a snapshot for its children.
    budget : str
        Why this arm trains this long (``"pre"``, ``"main"``, ``"flops"``, ``"wall"``).
    stage : str
        Training stage of the reduced source model (claim c): ``"pre@<epochs>"``.
    requires : tuple of str
        API this arm needs beyond today's (checked by :func:`missing`).
    """

    id: str
    task: str
    group: str
    seed: int
    epochs: int
    r: int | None = None
    parent: str | None = None
    parent_epoch: int | None = None
    reduction: Reduction | None = None
    per_channel: bool = True
    start_full: bool = False
    model: tuple[tuple[str, Any], ...] = ()
    train: tuple[tuple[str, Any], ...] = ()
    snapshots: tuple[int, ...] = ()
    budget: str = ""
    stage: str = ""
    requires: tuple[str, ...] = field(default=())


# ----------------------------------------------------------------------------- budgets


def epoch_flops(spec: dict, sizes: dict, r: int | None) -> float:
    """Analytic FLOPs of one epoch of the task's model at N (``r=None``) or at r."""
    model = dict(
        spec["model"],
        d_output=sizes["n_classes"],
        d_input=sizes.get("d_input"),
        vocab_size=sizes.get("vocab_size"),
    )
    if r is not None:
        model.update(d_state=int(r), lambda_per_channel=True)
    return flops.epoch_flops(
        model,
        sizes["seq_len"],
        sizes["n_train"],
        spec["train"]["batch_size"],
        sizes["n_val"],
        spec["train"].get("eval_batch_size", 128),
    )


def scratch_epochs(budget: str, proto: dict, spec: dict, sizes: dict, r: int) -> int:
    """Epochs of Skew-HiPPO at r for a budget: ``main``, ``flops`` or ``wall`` (see module)."""
    E_pre, E_main = int(proto["pre_epochs"]), int(proto["main_epochs"])
    if budget == "main":
        return E_main
    if budget == "pre+main":
        return E_pre + E_main
    if budget == "flops":  # pre-training at N converted into epochs at r, rounded up
        ratio = epoch_flops(spec, sizes, None) / epoch_flops(spec, sizes, r)
        return E_main + math.ceil(E_pre * ratio)
    if budget == "wall":
        ratio = float(proto["wall_ratio"][r])
        return E_main + math.ceil(E_pre * ratio)
    raise ValueError(f"unknown budget {budget!r}; use main, pre+main, flops or wall")


# ----------------------------------------------------------------------------- the table


def _aid(task: str, name: str, seed: int) -> str:
    return f"{task}/{name}/s{seed}"


def core_arms(task: str, proto: dict, spec: dict, sizes: dict) -> list[Arm]:
    """The arms that today's API supports, for one task (module docstring)."""
    E_pre, E_main = int(proto["pre_epochs"]), int(proto["main_epochs"])
    ranks = [int(r) for r in proto["ranks"]]
    rc = int(proto["corr_rank"])
    corr_epochs = tuple(sorted(int(e) for e in proto.get("corr_epochs", ()) if 0 < e < E_pre))
    budgets = list(proto.get("scratch_budgets", ["main", "flops"]))
    stage = f"pre@{E_pre}"
    arms: list[Arm] = []
    seeds = [int(s) for s in proto["seeds"]]
    for s in seeds + [int(s) for s in proto.get("corr_seeds", ())]:
        pre = _aid(task, "pre", s)
        arms.append(Arm(pre, task, "pre", s, E_pre, snapshots=corr_epochs, budget="pre"))
        arms.append(
            Arm(_aid(task, f"bt-r{rc}", s), task, "bt", s, E_main, rc, pre,
                reduction=Reduction("bt", rc), budget="main", stage=stage)
        )  # fmt: skip
    for s in seeds:  # the paper's comparison first, then the compute-matched baselines
        pre = _aid(task, "pre", s)
        for r in ranks:
            red = Reduction("bt", r)
            arms.append(
                Arm(_aid(task, f"bt0-r{r}", s), task, "bt0", s, 0, r, pre, reduction=red,
                    stage=stage)
            )  # fmt: skip
            if r != rc:
                arms.append(
                    Arm(_aid(task, f"bt-r{r}", s), task, "bt", s, E_main, r, pre, reduction=red,
                        budget="main", stage=stage)
                )  # fmt: skip
            arms.append(
                Arm(_aid(task, f"hippo-r{r}", s), task, "hippo", s, E_main, r, budget="main")
            )
    for s in seeds:
        pre = _aid(task, "pre", s)
        if proto.get("cont", True):
            arms.append(
                Arm(_aid(task, "cont", s), task, "cont", s, E_main, None, pre, budget="main")
            )
        for r in ranks:
            red = Reduction("modal", r)
            arms.append(
                Arm(_aid(task, f"modal0-r{r}", s), task, "modal0", s, 0, r, pre, reduction=red,
                    stage=stage)
            )  # fmt: skip
            arms.append(
                Arm(_aid(task, f"modal-r{r}", s), task, "modal", s, E_main, r, pre,
                    reduction=red, budget="main", stage=stage)
            )  # fmt: skip
            for b in budgets:
                if b == "main":
                    continue
                E = scratch_epochs(b, proto, spec, sizes, r)
                arms.append(
                    Arm(_aid(task, f"hippo-{b}-r{r}", s), task, f"hippo-{b}", s, E, r, budget=b)
                )
        for e in corr_epochs:
            arms.append(
                Arm(_aid(task, f"corr-e{e}-r{rc}", s), task, "corr", s, E_main, rc, pre, e,
                    Reduction("bt", rc), budget="main", stage=f"pre@{e}")
            )  # fmt: skip
    return arms


def intrain_epoch(proto: dict) -> int:
    """Epoch after which the ``intrain`` arms reduce N -> r (default: half the pre-training)."""
    E_pre = int(proto["pre_epochs"])
    e = int(proto.get("intrain_epoch", max(1, E_pre // 2)))
    if not 1 <= e <= E_pre:
        raise ValueError(f"intrain_epoch {e} must be in [1, pre_epochs = {E_pre}]")
    return e


def issue11_arms(task: str, proto: dict, spec: dict) -> list[Arm]:
    """Arms for the methods of issue 11, one declarative entry each (module docstring).

    ``intrain``: Skew-HiPPO at N trained ``pre + main`` epochs in one run (one cosine
    schedule) with ``train.reduce = {at_epochs: [intrain_epoch], rank: r}``
    (:mod:`s4dss.intrain`): the same total epochs as ``pre`` + ``bt``. ``regpre``: pre-training
    at N with ``train.hsv_reg = {**hsv_reg, order: r}`` (:mod:`s4dss.regularizers`) and the
    SSM learning rate ``reg_ssm_lr``; ``regbt0`` / ``regbt``: BT of it to r without / with
    main training. With ``reg_control`` (needed when ``reg_ssm_lr`` is not the model's own),
    ``lrpre`` / ``lrbt0`` / ``lrbt`` do the same without the regulariser, so that the
    regulariser's effect is measured at one learning rate. ``budget0`` / ``budget``:
    ``s4dss.reduce(pre, budget=n_layers * r)``, the same total state count as uniform r.
    ``shared0`` / ``shared``: ``poles="shared"`` (``pre`` has shared poles), with the
    same-parameters baseline ``hippo-shared`` (Skew-HiPPO at r with shared poles).
    ``spa0`` / ``spa``: ``method="spa"`` (balanced singular perturbation).
    """
    E_pre, E_main = int(proto["pre_epochs"]), int(proto["main_epochs"])
    n_layers = int(spec["model"]["n_layers"])
    reg = dict(proto.get("hsv_reg", {"weight": 1.0, "kind": "tail", "channels": 8}))
    reg_lr = proto.get("reg_ssm_lr")
    reg_model = (("ssm_lr", float(reg_lr)),) if reg_lr is not None else ()
    e_red = intrain_epoch(proto)
    stage = f"pre@{E_pre}"
    arms: list[Arm] = []
    for s in (int(x) for x in proto["seeds"]):
        pre = _aid(task, "pre", s)
        if proto.get("reg_control", False):
            lpre = _aid(task, "lrpre", s)
            arms.append(Arm(lpre, task, "lrpre", s, E_pre, model=reg_model, budget="pre"))
        for r in (int(x) for x in proto.get("issue11_ranks", proto["ranks"])):
            # 3. in-training reduction: one run at N that ends at r, same epochs as pre + main
            arms.append(
                Arm(_aid(task, f"intrain-r{r}", s), task, "intrain", s, E_pre + E_main, r,
                    start_full=True, train=(("reduce", {"at_epochs": [e_red], "rank": r}),),
                    budget="pre+main", requires=("train:reduce",))
            )  # fmt: skip
            # 4. the regulariser during pre-training, then BT with and without retraining
            rpre = _aid(task, f"regpre-r{r}", s)
            arms.append(
                Arm(rpre, task, "regpre", s, E_pre, r, start_full=True, model=reg_model,
                    train=(("hsv_reg", {**reg, "order": r}),), budget="pre",
                    requires=("train:hsv_reg",))
            )  # fmt: skip
            sources = [("reg", rpre, ("train:hsv_reg",))]
            if proto.get("reg_control", False):
                sources.append(("lr", _aid(task, "lrpre", s), ()))
            for prefix, src, req in sources:
                for g, ep in ((f"{prefix}bt0", 0), (f"{prefix}bt", E_main)):
                    arms.append(
                        Arm(_aid(task, f"{g}-r{r}", s), task, g, s, ep, r, src,
                            reduction=Reduction("bt", r), budget="main" if ep else "",
                            stage=f"{prefix}{stage}", requires=req)
                    )  # fmt: skip
            # 5. global budget at the same total state count as uniform r
            # 6. shared poles (and its shared-pole baseline), singular perturbation
            for g, red, req in (
                ("budget", Reduction("bt", budget=n_layers * r), "reduce:budget"),
                ("shared", Reduction("bt", r, poles="shared"), "reduce:poles"),
                ("spa", Reduction("spa", r), "reduce:method=spa"),
            ):
                for suffix, ep in (("0", 0), ("", E_main)):
                    arms.append(
                        Arm(_aid(task, f"{g}{suffix}-r{r}", s), task, f"{g}{suffix}", s, ep, r,
                            pre, reduction=red, budget="main" if ep else "", stage=stage,
                            requires=(req,))
                    )  # fmt: skip
            arms.append(
                Arm(_aid(task, f"hippo-shared-r{r}", s), task, "hippo-shared", s, E_main, r,
                    per_channel=False, budget="main")
            )  # fmt: skip
    return arms


def build_arms(preset: dict, sizes: dict[str, dict]) -> list[Arm]:
    """The whole table for a preset; ``sizes[task]`` holds ``seq_len``, ``n_train``, ``n_val``,
    ``n_classes``, ``d_input``, ``vocab_size`` (from the loaded task; the FLOP-matched budgets
    depend on them).

    Raises
    ------
    ValueError
        Duplicate arm ids, or a parent that is not earlier in the table.
    """
    arms: list[Arm] = []
    for task, spec in preset["tasks"].items():
        proto = {**preset.get("protocol", {}), **spec.get("protocol", {})}
        arms += core_arms(task, proto, spec, sizes[task])
        if preset.get("issue11"):
            arms += issue11_arms(task, proto, spec)
    seen: set[str] = set()
    for a in arms:
        if a.id in seen:
            raise ValueError(f"duplicate arm id {a.id!r}")
        if a.parent is not None and a.parent not in seen:
            raise ValueError(f"arm {a.id!r}: parent {a.parent!r} must come earlier in the table")
        seen.add(a.id)
    return arms


# ----------------------------------------------------------------------------- availability


def missing(arm: Arm) -> str | None:
    """Why ``arm`` cannot run with the installed s4dss (None when it can).

    Requirements: ``reduce:<kwarg>`` (``s4dss.reduce`` takes that keyword argument),
    ``reduce:method=<m>`` (``s4dss.reduce.METHODS`` has it), ``train:<key>`` (a
    ``TrainConfig`` field).
    """
    from s4dss.train import TrainConfig

    reduce_module = importlib.import_module("s4dss.reduce")  # s4dss.reduce is also a function

    params = inspect.signature(reduce_module.reduce).parameters
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    for req in arm.requires:
        kind, _, what = req.partition(":")
        if kind == "reduce" and what.startswith("method="):
            method = what.split("=", 1)[1]
            if method not in getattr(reduce_module, "METHODS", ()):
                return f"s4dss.reduce has no method {method!r} (issue 11)"
        elif kind == "reduce":
            if what not in params:
                return f"s4dss.reduce takes no {what}= (issue 11)"
        elif kind == "train":
            if what not in train_keys:
                return f"TrainConfig has no {what!r} option (issue 11)"
        else:
            raise ValueError(f"arm {arm.id}: unknown requirement {req!r}")
    for key, _ in arm.train:
        if key not in train_keys:
            return f"TrainConfig has no {key!r} option"
    return None
