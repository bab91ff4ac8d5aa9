"""``results.csv`` -> ``results.md`` (tables, Welch tests, verdicts) and Pareto plots (PNG).

::

    python -m benchmarks.study.report DIR      # or: python -m benchmarks.study ... --report-only

Tables: per task, every group of arms at every state size, mean +- sample std over seeds (n
seeds) of the test accuracy (at the best validation epoch), with parameters, state size,
analytic FLOPs per recurrent token, the arm's own training FLOPs and its total (ancestry
included) FLOPs and wall seconds.

Claims, each tested per task and r with Welch's t-test (``scipy.stats.ttest_ind``,
``equal_var=False``, two-sided, alpha = 0.05) next to the seed spread:

(a) the paper's claim at equal main epochs: ``bt`` (pre-train at N -> BT -> main training)
    against ``hippo`` (Skew-HiPPO at r for the same main epochs);
(b) at equal total training compute: ``bt`` against ``hippo-flops`` (as many epochs as its
    analytic FLOPs equal to pre-training + main training) and ``hippo-wall`` (equal wall
    time); BT pays at r when it beats both;
(c) the correlation claim (the better the original model, the better the compressed and
    retrained one) *within one training stage*: the accuracy of the reduced model's source
    against the final accuracy, correlated after removing the mean of every (task, r, stage)
    cell, so that pre-training progress (which moves both) cannot make the correlation; the
    across-stage correlation (round 1's) is shown beside it;
(d) the best small model per unit of compute: at each r, the most accurate group, and the
    cheapest group (total FLOPs, and CPU seconds) tied with it: not significantly lower
    (Welch) *and* within ``TIE_MARGIN`` (1 point) of its mean, since with 2-3 seeds a
    20-point gap can fail to be significant; plus the Pareto front (total FLOPs vs accuracy).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from benchmarks.study import common

ALPHA = 0.05
# claim (d): a group is tied with the best only if also within this many accuracy units
# (1 point): Welch's test alone has little power at 2-3 seeds per group
TIE_MARGIN = 0.01
LABELS = {
    "pre": "pre-trained at N",
    "cont": "N: pre-training + main epochs",
    "bt0": "BT, no retraining",
    "bt": "BT -> main training (paper)",
    "modal0": "modal truncation, no retraining",
    "modal": "modal -> main training",
    "hippo": "Skew-HiPPO at r, main epochs",
    "hippo-flops": "Skew-HiPPO at r, equal FLOPs",
    "hippo-wall": "Skew-HiPPO at r, equal measured time",
    "hippo-pre+main": "Skew-HiPPO at r, pre+main epochs",
    "corr": "BT of a pre-training snapshot -> main",
    "intrain": "in-training reduction",
    "regpre": "pre-trained with HSV regulariser",
    "regbt0": "regulariser -> BT, no retraining",
    "regbt": "regulariser -> BT -> main training",
    "budget0": "global budget BT, no retraining",
    "budget": "global budget BT -> main training",
    "shared0": "shared-pole BT, no retraining",
    "shared": "shared-pole BT -> main training",
    "hippo-shared": "Skew-HiPPO at r, shared poles",
    "spa0": "SPA, no retraining",
    "spa": "SPA -> main training",
    "lrpre": "pre-trained at N, regulariser's SSM lr",
    "lrbt0": "BT of lrpre, no retraining",
    "lrbt": "BT of lrpre -> main training",
}
# groups whose model is the full one (not candidates for "the best small model")
FULL = ("pre", "cont", "regpre", "lrpre")
ORDER = list(LABELS)
# tab10 without its grey (the rank markers are grey), then a few more
# 20 distinguishable colours (matplotlib's tab20, dark shades first): a full study has ~19 groups
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#000000", "#dbdb8d", "#9edae5",
]  # fmt: skip


# ----------------------------------------------------------------------------- statistics


def _f(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def stats(values) -> tuple[float, float, int]:
    """Mean, sample std (0 for one value) and count of the finite values."""
    v = np.asarray([x for x in map(_f, values) if np.isfinite(x)], dtype=float)
    if not len(v):
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def pm(values, scale: float = 100.0, digits: int = 2) -> str:
    m, s, n = stats(values)
    if n == 0:
        return "-"
    return f"{scale * m:.{digits}f} ± {scale * s:.{digits}f} (n={n})"


def welch(a, b) -> dict:
    """Welch's two-sided t-test of ``mean(a) - mean(b)``, with the verdict words.

    Returns ``diff`` (of means), ``spread`` (larger sample std), ``t``, ``p``, ``n_a``,
    ``n_b`` and ``verdict``: ``"better"`` / ``"worse"`` (p < ALPHA), ``"no significant
    difference"``, or ``"too few seeds"`` (fewer than 2 on a side). Identical constant samples
    give p = 1; different constant samples p = 0.
    """
    from scipy import stats as st

    a = np.asarray([x for x in map(_f, a) if np.isfinite(x)])
    b = np.asarray([x for x in map(_f, b) if np.isfinite(x)])
    out = dict(n_a=len(a), n_b=len(b), diff=float("nan"), spread=float("nan"))
    out.update(t=float("nan"), p=float("nan"))
    if len(a) < 2 or len(b) < 2:
        out["verdict"] = "too few seeds"
        if len(a) and len(b):
            out["diff"] = float(a.mean() - b.mean())
        return out
    diff = float(a.mean() - b.mean())
    spread = float(max(a.std(ddof=1), b.std(ddof=1)))
    if a.var(ddof=1) + b.var(ddof=1) == 0:
        t, p = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    else:
        with warnings.catch_warnings():  # nearly equal samples: scipy warns, p is still fine
            warnings.simplefilter("ignore", RuntimeWarning)
            res = st.ttest_ind(a, b, equal_var=False)
        t, p = float(res.statistic), float(res.pvalue)
    verdict = "no significant difference"
    if p < ALPHA:
        verdict = "better" if diff > 0 else "worse"
    out.update(diff=diff, spread=spread, t=t, p=p, verdict=verdict)
    return out


def within_correlation(points: list[tuple[float, float, tuple]]) -> dict | None:
    """Pearson correlation of ``(x, y)`` after removing each cell's means (cell = the tuple).

    Cells with a single point carry no within-cell information and are dropped. The p-value
    uses ``n - cells - 1`` degrees of freedom (one mean removed per cell). Spearman's rho is
    computed on the same centred values. Returns None with fewer than 3 usable points.
    """
    from scipy import stats as st

    cells: dict[tuple, list[tuple[float, float]]] = {}
    for x, y, cell in points:
        if np.isfinite(x) and np.isfinite(y):
            cells.setdefault(cell, []).append((x, y))
    xs, ys, k = [], [], 0
    for pts in cells.values():
        if len(pts) < 2:
            continue
        k += 1
        a = np.asarray(pts)
        xs += list(a[:, 0] - a[:, 0].mean())
        ys += list(a[:, 1] - a[:, 1].mean())
    n = len(xs)
    df = n - k - 1
    if n < 3 or df < 1:
        return None
    x, y = np.asarray(xs), np.asarray(ys)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return dict(n=n, cells=k, r=float("nan"), p=float("nan"), rho=float("nan"))
    r = float(np.corrcoef(x, y)[0, 1])
    t = r * math.sqrt(df / max(1e-300, 1 - r * r))
    p = float(2 * st.t.sf(abs(t), df))
    rho = float(st.spearmanr(x, y)[0])
    return dict(n=n, cells=k, r=r, p=p, rho=rho)


def pareto_front(points: list[tuple[float, float, str]]) -> list[str]:
    """Labels of the points no other point dominates (lower or equal cost, higher accuracy)."""
    front = []
    for c, a, label in points:
        dominated = any(
            (c2 <= c and a2 > a) or (c2 < c and a2 >= a) for c2, a2, _ in points if _ != label
        )
        if not dominated:
            front.append(label)
    return front


# ----------------------------------------------------------------------------- grouping


def read_rows(path: Path) -> list[dict]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if r.get("status") == "ok"]


def _key(g: str) -> int:
    return ORDER.index(g) if g in ORDER else len(ORDER)


def groups(rows: list[dict]) -> dict[tuple[str, str, int], list[dict]]:
    """``{(task, group, r): rows}`` (r of full-size groups is N)."""
    out: dict = {}
    for r in rows:
        if r["group"] == "corr":
            continue
        out.setdefault((r["task"], r["group"], int(r["r"])), []).append(r)
    return out


def acc(rows: list[dict]) -> list[float]:
    return [_f(r["test_acc"]) for r in rows]


# ----------------------------------------------------------------------------- claims


CLAIM_PAIRS = [
    ("a", "bt", "hippo", "equal main epochs (the paper)"),
    ("b", "bt", "hippo-flops", "equal total FLOPs"),
    ("b", "bt", "hippo-wall", "equal total measured time"),
    ("", "bt", "modal", "modal truncation init, same epochs"),
    ("", "bt", "bt0", "retraining after BT"),
]
# issue 11's methods, each against the arm it replaces (same r, same main epochs)
METHOD_PAIRS = [
    ("intrain", "bt", "in-training reduction vs pre-train -> BT -> main (same total epochs)"),
    ("intrain", "hippo-flops", "in-training reduction vs Skew-HiPPO at r, equal FLOPs to bt"),
    ("regbt0", "bt0", "regulariser during pre-training, BT without retraining"),
    ("regbt", "bt", "regulariser during pre-training, BT -> main"),
    ("regbt0", "lrbt0", "regulariser vs none at the same SSM lr, no retraining"),
    ("regbt", "lrbt", "regulariser vs none at the same SSM lr, -> main"),
    ("lrbt", "bt", "the regulariser's SSM lr without it vs the default"),
    ("budget0", "bt0", "global budget vs uniform r (same total states), no retraining"),
    ("budget", "bt", "global budget vs uniform r, -> main"),
    ("shared0", "bt0", "shared-pole vs per-channel BT, no retraining"),
    ("shared", "bt", "shared-pole vs per-channel BT, -> main"),
    ("shared", "hippo-shared", "shared-pole BT vs Skew-HiPPO at r, shared poles (same params)"),
    ("spa0", "bt0", "singular perturbation vs BT, no retraining"),
    ("spa", "bt", "singular perturbation vs BT, -> main"),
    ("modal0", "bt0", "modal truncation vs BT, no retraining"),
]


def compare(rows: list[dict], pairs) -> list[dict]:
    """Welch's test of group ``a`` against group ``b`` per (task, r) where both exist.

    ``pairs``: ``(claim, a, b, what)`` tuples (``claim`` may be ""), or ``(a, b, what)``.
    The compute ratios are ``a``'s mean total over ``b``'s (FLOPs, CPU and wall seconds).
    """
    g = groups(rows)
    out = []
    cells = sorted({(t, r) for t, _, r in g})
    for pair in pairs:
        claim, a, b, what = pair if len(pair) == 4 else ("", *pair)
        for task, r in cells:
            if (task, a, r) not in g or (task, b, r) not in g:
                continue
            A, B = g[(task, a, r)], g[(task, b, r)]
            res = welch(acc(A), acc(B))
            ratios = {}
            for col, key in (("total_flops", "flops_ratio"), ("total_seconds", "seconds_ratio"),
                             ("total_cpu_seconds", "cpu_ratio")):  # fmt: skip
                ca = stats([_f(x.get(col)) for x in A])[0]
                cb = stats([_f(x.get(col)) for x in B])[0]
                ratios[key] = ca / cb if cb else float("nan")
            out.append(dict(task=task, r=r, claim=claim, a=a, b=b, what=what, **res, **ratios))
    return sorted(out, key=lambda c: (c["task"], -c["r"]))


def claim_rows(rows: list[dict]) -> list[dict]:
    """Claims (a) and (b), and the baselines, as one list of comparisons per task and r."""
    return compare(rows, CLAIM_PAIRS)


def bt_pays(comparisons: list[dict]) -> dict[tuple[str, int], str]:
    """Per (task, r): does BT beat Skew-HiPPO from scratch at equal total compute (claim b)?"""
    out = {}
    for task, r in sorted({(c["task"], c["r"]) for c in comparisons}):
        cs = [c for c in comparisons if (c["task"], c["r"]) == (task, r) and c["claim"] == "b"]
        if not cs:
            continue
        v = {c["b"]: c["verdict"] for c in cs}
        if any(x == "too few seeds" for x in v.values()):
            out[(task, r)] = "undecided (too few seeds)"
        elif all(x == "better" for x in v.values()):
            out[(task, r)] = "yes: better than Skew-HiPPO at equal FLOPs and at equal wall time"
        elif all(x == "worse" for x in v.values()):
            out[(task, r)] = "no: worse than Skew-HiPPO at equal compute"
        elif any(x == "better" for x in v.values()):
            better = [k for k, x in v.items() if x == "better"]
            out[(task, r)] = f"partly: better only against {', '.join(better)}"
        else:
            out[(task, r)] = "no: not significantly better than Skew-HiPPO at equal compute"
    return out


def correlation_points(rows: list[dict]) -> list[dict]:
    """Arms whose source model's accuracy is known and which were retrained after BT."""
    return [
        r
        for r in rows
        if r["group"] in ("bt", "corr", "regbt", "lrbt")
        and np.isfinite(_f(r.get("source_test_acc")))
        and np.isfinite(_f(r["test_acc"]))
    ]


def claim_c(rows: list[dict]) -> dict:
    pts = [
        (_f(p["source_test_acc"]), _f(p["test_acc"]), (p["task"], p["r"], p["stage"]))
        for p in correlation_points(rows)
    ]
    within = within_correlation(pts)
    across = within_correlation([(x, y, cell[:2]) for x, y, cell in pts])
    if within is None:
        verdict = "not enough points within a stage"
    elif not np.isfinite(within["r"]):
        verdict = "undefined (no variation within the stages)"
    elif within["p"] < ALPHA and within["r"] > 0:
        verdict = "holds within a stage (positive, significant)"
    elif within["p"] < ALPHA:
        verdict = "reversed within a stage (negative, significant)"
    else:
        verdict = "not supported within a stage (no significant correlation)"
    return dict(within=within, across=across, verdict=verdict, n=len(pts))


def claim_d(rows: list[dict]) -> list[dict]:
    """Per task and r: the best group, the cheapest tied one (not significantly lower and
    within ``TIE_MARGIN`` of the best mean), the Pareto front."""
    g = groups(rows)
    out = []
    for task, r in sorted({(t, r) for t, grp, r in g if grp not in FULL}):
        cand = {grp: xs for (t, grp, rr), xs in g.items() if t == task and rr == r}
        cand = {k: v for k, v in cand.items() if k not in FULL}
        if not cand:
            continue
        means = {k: stats(acc(v))[0] for k, v in cand.items()}
        best = max(means, key=lambda k: means[k])
        tied = [
            k for k in cand if k == best or (means[best] - means[k] <= TIE_MARGIN and welch(
                acc(cand[k]), acc(cand[best]))["verdict"] == "no significant difference")
        ]  # fmt: skip
        cost = {k: stats([_f(x["total_flops"]) for x in v])[0] for k, v in cand.items()}
        secs = {k: stats([_f(x.get("total_cpu_seconds")) for x in v])[0] for k, v in cand.items()}
        out.append(
            dict(
                task=task, r=r, best=best, best_acc=means[best],
                cheapest_flops=min(tied, key=lambda k: cost[k]),
                cheapest_seconds=min(tied, key=lambda k: secs[k] if np.isfinite(secs[k])
                                     else math.inf),
                tied=sorted(tied, key=_key), means=means, cost=cost, secs=secs,
                front=pareto_front([(cost[k], means[k], k) for k in cand]),
            )
        )  # fmt: skip
    return out


# ----------------------------------------------------------------------------- markdown


def _g(x: float) -> str:
    return f"{x / 1e9:.3g}" if np.isfinite(x) else "-"


def _mean(xs: list[dict], col: str) -> float:
    return stats([_f(x.get(col)) for x in xs])[0]


def task_table(task: str, rows: list[dict]) -> list[str]:
    """One line per (group, r): accuracy over seeds, size, inference cost, training compute."""
    g = groups([r for r in rows if r["task"] == task])
    md = [
        "| group | r | epochs | test acc % | params | states (orders) | FLOPs/token "
        "| own GFLOP | total GFLOP | total CPU s | total wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted(g, key=lambda k: (-k[2], _key(k[1])))
    for _, grp, r in keys:
        xs = g[(task, grp, r)]
        ep = "/".join(sorted({x["epochs"] for x in xs}, key=int))
        orders = sorted({x.get("orders", "") for x in xs})
        st = f"{xs[0]['state_size']}"
        if any("/" in o for o in orders) and len(set(orders)) >= 1:
            st += " (" + ", ".join(orders) + ")"
        md.append(
            f"| {LABELS.get(grp, grp)} | {r} | {ep} | {pm(acc(xs))} | {xs[0]['params']} | "
            f"{st} | {int(_f(xs[0]['step_flops']))} | {_g(_mean(xs, 'train_flops'))} | "
            f"{_g(_mean(xs, 'total_flops'))} | {_mean(xs, 'total_cpu_seconds'):.0f} | "
            f"{_mean(xs, 'total_seconds'):.0f} |"
        )
    return md


def _comparison_table(comps: list[dict], show_claim: bool) -> list[str]:
    head = "| task | r | " + ("claim | " if show_claim else "") + "comparison | diff (pp) "
    head += "| spread (pp) | t | p | verdict | FLOPs ratio | CPU ratio |"
    md = [head, "|" + "---|" * (head.count("|") - 1)]
    for c in comps:
        what = (
            f"{LABELS.get(c['b'], c['b'])}" if show_claim
            else f"{c['a']} vs {c['b']}: {c['what']}"
        )  # fmt: skip
        verdict = c["verdict"]
        if verdict in ("better", "worse"):
            verdict = f"**{c['a']} {verdict}**"
        md.append(
            f"| {c['task']} | {c['r']} | "
            + (f"{c['claim'] or '-'} | " if show_claim else "")
            + f"{what} | {100 * c['diff']:+.2f} | {100 * c['spread']:.2f} | {c['t']:.2f} | "
            f"{c['p']:.3g} | {verdict} | {c['flops_ratio']:.2f} | {c['cpu_ratio']:.2f} |"
        )
    return md


# the columns of the main table (groups present in the results are shown, in this order)
MAIN_GROUPS = ["bt0", "bt", "hippo", "hippo-flops", "hippo-wall", "intrain", "regbt0", "regbt",
               "budget", "shared", "hippo-shared", "spa", "modal"]  # fmt: skip


def main_table(rows: list[dict], tasks: list[str]) -> list[str]:
    """Test accuracy (mean ± std, %) per task and r for the main groups, the full model beside."""
    g = groups(rows)
    cols = [c for c in MAIN_GROUPS if any(k[1] == c for k in g)]
    md = [
        "| task | r | full model (pre) | " + " | ".join(cols) + " |",
        "|" + "---|" * (3 + len(cols)),
    ]

    def cell(xs):
        m, s, n = stats(acc(xs))
        return f"{100 * m:.1f} ± {100 * s:.1f}" if n else "-"

    for task in tasks:
        pre = [x for (t, grp, _), xs in g.items() if t == task and grp == "pre" for x in xs]
        for r in sorted({k[2] for k in g if k[0] == task and k[1] in cols}, reverse=True):
            md.append(
                f"| {task} | {r} | {cell(pre)} | "
                + " | ".join(cell(g.get((task, c, r), [])) for c in cols)
                + " |"
            )
    return md


def markdown(rows: list[dict], skipped: list[dict], title: str, preset: dict | None) -> str:
    order = list((preset or {}).get("tasks", {}))
    tasks = sorted({r["task"] for r in rows}, key=lambda t: (order + [t]).index(t))
    md = [f"# Compression study: {title}", ""]
    if preset:
        proto = preset.get("protocol", {})
        md += [
            f"Protocol: seeds {proto.get('seeds')}, ranks {proto.get('ranks')}, pre-training "
            f"{proto.get('pre_epochs') or 'per task (below)'} epochs, main training "
            f"{proto.get('main_epochs') or 'per task (below)'} epochs (cosine schedule each), "
            f"Skew-HiPPO budgets {proto.get('scratch_budgets')}. "
            "Test accuracy at the best validation epoch, in %, mean ± sample std over seeds "
            "(n seeds). FLOPs are analytic (`s4dss.flops`: training steps + validation); "
            "*total* adds the arm's ancestry (a reduced model is charged its pre-training); "
            "CPU seconds are the worker's process time (one torch thread: what an idle core "
            "would take), wall seconds are on the shared 2-core machine.",
            "",
        ]
        extra = {k: proto[k] for k in ("hsv_reg", "reg_ssm_lr", "reg_control", "intrain_epoch")
                 if k in proto}  # fmt: skip
        if extra:
            md += [f"Issue-11 settings: `{json.dumps(extra)}`.", ""]
    md += ["## Main table: test accuracy (%), mean ± std over seeds", ""]
    md += main_table(rows, tasks) + [""]
    md += [", ".join(f"`{c}`: {LABELS[c]}" for c in MAIN_GROUPS) + ".", ""]
    for task in tasks:
        spec = (preset or {}).get("tasks", {}).get(task, {})
        md += [f"## {task}", ""]
        if spec:
            md += [
                f"Task `{json.dumps(spec.get('task'))}`; model `{json.dumps(spec.get('model'))}`"
                f"; optimiser `{json.dumps(spec.get('train'))}`"
                + (
                    f"; protocol changes `{json.dumps(spec['protocol'])}`"
                    if "protocol" in spec
                    else ""
                )
                + ".",
                "",
            ]
        if spec.get("reference"):
            md += [f"Published test accuracies (official split): {spec['reference']}.", ""]
        md += task_table(task, rows) + [""]
        md += [f"![Pareto fronts, {task}](pareto_{task}.png)", ""]
    comps = claim_rows(rows)
    md += [
        "## Claims (a) and (b): BT initialisation against Skew-HiPPO at r",
        "",
        "Welch's t-test (two-sided, alpha 0.05) of BT -> main training against each baseline; "
        "diff and spread (the larger seed std) in points; compute ratios = BT's total over the "
        "baseline's (analytic FLOPs; CPU seconds, an idle core's time).",
        "",
    ]
    md += _comparison_table(comps, show_claim=True)
    md += ["", "**Does BT pay at equal total compute (claim b)?**", ""]
    for (task, r), v in bt_pays(comps).items():
        md.append(f"- {task}, r = {r}: {v}")
    methods = compare(rows, METHOD_PAIRS)
    if methods:
        md += [
            "",
            "## Issue 11's methods against the arm each replaces",
            "",
            "Same r; Welch's t-test of the first group against the second; compute ratios of "
            "the first's total over the second's.",
            "",
        ]
        md += _comparison_table(methods, show_claim=False)
    c = claim_c(rows)
    md += ["", "## Claim (c): correlation within one training stage", ""]
    w, a = c["within"], c["across"]
    if w is not None:
        md.append(
            f"Within (task, r, stage) cells: n = {w['n']} points in {w['cells']} cells, "
            f"Pearson r = {w['r']:+.3f} (p = {w['p']:.3g}), Spearman rho = {w['rho']:+.3f}."
        )
    if a is not None:
        md.append(
            f"Across stages (round 1's analysis: cells (task, r) only, snapshots of different "
            f"pre-training lengths mixed): n = {a['n']}, Pearson r = {a['r']:+.3f} "
            f"(p = {a['p']:.3g})."
        )
    md += ["", f"**Verdict (c): {c['verdict']}.**", "", "![correlation](correlation.png)", ""]
    md += [
        "## Claim (d): the best small model per unit of compute",
        "",
        "Per r: the most accurate group, and the cheapest group tied with it: not "
        "significantly lower (Welch, alpha 0.05) and within "
        f"{100 * TIE_MARGIN:g} point of its mean; Pareto front in (total FLOPs, accuracy).",
        "",
        "| task | r | most accurate | cheapest tied (FLOPs) | cheapest tied (CPU s) "
        "| Pareto front |",
        "|---|---|---|---|---|---|",
    ]
    for d in claim_d(rows):
        cf_, cs_ = d["cheapest_flops"], d["cheapest_seconds"]
        md.append(
            f"| {d['task']} | {d['r']} | {d['best']} ({100 * d['best_acc']:.2f} %) | "
            f"{cf_} ({100 * d['means'][cf_]:.2f} %, {_g(d['cost'][cf_])} GFLOP) | "
            f"{cs_} ({100 * d['means'][cs_]:.2f} %, {d['secs'][cs_]:.0f} s) | "
            f"{', '.join(sorted(d['front'], key=_key))} |"
        )
    if skipped:
        md += ["", "## Arms not run", ""]
        reasons: dict[str, list[str]] = {}
        for s in skipped:
            reasons.setdefault(s["runnable"].removeprefix("no: "), []).append(s["group"])
        for why, grps in sorted(reasons.items()):
            md.append(f"- {', '.join(sorted(set(grps), key=_key))} ({len(grps)} arms): {why}")
    return "\n".join(md) + "\n"


# ----------------------------------------------------------------------------- plots


def plot_pareto(out: Path, task: str, rows: list[dict]) -> Path:
    """Accuracy vs total training FLOPs, vs total wall seconds, and vs parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    g = groups([r for r in rows if r["task"] == task])
    axes_spec = [
        ("total_flops", "total training FLOPs (analytic)"),
        ("total_cpu_seconds", "total training CPU seconds (idle-core time)"),
        ("params", "parameters"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    ranks = sorted({k[2] for k in g})
    markers = dict(zip(ranks, "os^Dv<>p*h", strict=False))
    colors = {
        grp: PALETTE[i % len(PALETTE)] for i, grp in enumerate(sorted({k[1] for k in g}, key=_key))
    }
    for ax, (col, xlabel) in zip(axes, axes_spec, strict=True):
        pts = []
        for (_, grp, r), xs in sorted(g.items(), key=lambda kv: _key(kv[0][1])):
            m, s, _n = stats(acc(xs))
            x = stats([_f(v[col]) for v in xs])[0]
            if not (np.isfinite(x) and x > 0):
                continue
            ax.errorbar(
                x, 100 * m, yerr=100 * s, marker=markers[r], color=colors[grp], capsize=2, ls=""
            )
            pts.append((x, m, f"{grp}|{r}"))
        front = set(pareto_front(pts))
        fp = sorted((x, m) for x, m, lab in pts if lab in front)
        if fp:
            ax.step(
                [p[0] for p in fp], [100 * p[1] for p in fp], where="post", color="k", lw=0.8,
                alpha=0.6,
            )  # fmt: skip
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set(xlabel=xlabel, ylabel="test accuracy (%)")
    handles = [
        plt.Line2D([], [], color=c, marker="o", ls="", label=LABELS.get(k, k))
        for k, c in colors.items()
    ] + [plt.Line2D([], [], color="grey", marker=m, ls="", label=f"r = {r}")
         for r, m in markers.items()]  # fmt: skip
    fig.suptitle(f"{task}: accuracy vs training compute and size (mean ± std; line: Pareto front)")
    fig.tight_layout(rect=(0, 0, 0.83, 1))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.835, 0.5), fontsize=7)
    path = out / f"pareto_{task}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_correlation(out: Path, rows: list[dict]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = correlation_points(rows)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    cells = sorted({(p["task"], p["r"], p["stage"]) for p in pts})
    for i, cell in enumerate(cells):
        xs = [p for p in pts if (p["task"], p["r"], p["stage"]) == cell]
        ax.scatter(
            [100 * _f(p["source_test_acc"]) for p in xs],
            [100 * _f(p["test_acc"]) for p in xs],
            color=f"C{i % 10}",
            label=f"{cell[0]} r={cell[1]} {cell[2]}",
            s=18,
        )
    ax.set(
        xlabel="source model test acc (%)",
        ylabel="after BT + main training (%)",
        title="claim (c): one colour per (task, r, stage)",
    )
    if cells:
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = out / "correlation.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(out: Path, title: str = "") -> Path:
    """Read ``out/results.csv`` (+ ``arms.csv``, ``preset.json``); write the report and plots."""
    out = Path(out)
    rows = read_rows(out / "results.csv")
    skipped = []
    if (out / "arms.csv").is_file():
        with open(out / "arms.csv", newline="") as f:
            skipped = [r for r in csv.DictReader(f) if r.get("runnable", "yes") != "yes"]
    preset = None
    if (out / "preset.json").is_file():
        preset = json.loads((out / "preset.json").read_text())
    for task in sorted({r["task"] for r in rows}):
        plot_pareto(out, task, rows)
    plot_correlation(out, rows)
    path = out / "results.md"
    common.atomic_write(path, markdown(rows, skipped, title or out.name, preset))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Rebuild a study's report from its results.csv")
    p.add_argument("out", type=Path)
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    print(write_report(args.out, args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
