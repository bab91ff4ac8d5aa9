"""benchmarks/study/report: tables, Welch tests, verdicts and plots, on a made-up CSV."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.study import report, runner  # noqa: E402
from benchmarks.study.common import write_csv  # noqa: E402

SEEDS = (0, 1, 2, 3)


def _row(task, group, r, seed, acc, total_flops, total_seconds, **kw):
    base = dict(
        arm=f"{task}/{group}-r{r}/s{seed}", task=task, group=group, seed=seed, N=64, r=r,
        epochs=kw.pop("epochs", 5), status="ok", test_acc=acc, params=100 * r, ssm_params=10 * r,
        state_size=8 * r, step_flops=50 * r, train_flops=total_flops / 2, total_flops=total_flops,
        total_seconds=total_seconds, total_cpu_seconds=total_seconds / 2,
        stage=kw.pop("stage", ""), source_test_acc="",
    )  # fmt: skip
    base.update(kw)
    return base


def synthetic_rows() -> list[dict]:
    """Task "a": BT beats Skew-HiPPO at equal epochs, loses to it at equal compute.

    Correlation: across stages (snapshot at 2 vs at 10 epochs) source and final accuracy
    both rise with the stage, but within each stage they are anti-correlated.
    """
    rows = []
    jitter = [0.0, 0.01, -0.01, 0.005]
    for s in SEEDS:
        j = jitter[s]
        rows.append(_row("a", "pre", 64, s, 0.90 + j, 10e9, 100, epochs=10))
        for r in (8, 4):
            rows.append(
                _row("a", "bt", r, s, 0.80 - j, 11e9, 110, stage="pre@10", source_test_acc=0.90 + j)
            )
            rows.append(_row("a", "bt0", r, s, 0.50 + j, 10e9, 101, epochs=0))
            rows.append(_row("a", "hippo", r, s, 0.60 + j, 1e9, 10))
            rows.append(_row("a", "hippo-flops", r, s, 0.85 + j, 11e9, 60))
            rows.append(_row("a", "hippo-wall", r, s, 0.86 - j, 20e9, 110))
            rows.append(_row("a", "spa", r, s, 0.80 - 2 * j, 11e9, 110))
        # snapshots after 2 epochs: lower source accuracy, lower final accuracy
        rows.append(
            _row("a", "corr", 8, s, 0.70 - j, 3e9, 30, stage="pre@2", source_test_acc=0.70 + j)
        )
    return rows


def test_welch_matches_scipy_and_words():
    a, b = [0.8, 0.82, 0.81], [0.6, 0.61, 0.65]
    res = report.welch(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert res["t"] == pytest.approx(ref.statistic) and res["p"] == pytest.approx(ref.pvalue)
    assert res["verdict"] == "better" and res["diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert report.welch(b, a)["verdict"] == "worse"
    assert report.welch([0.5, 0.6], [0.55, 0.56])["verdict"] == "no significant difference"
    assert report.welch([0.5], [0.6, 0.7])["verdict"] == "too few seeds"
    assert report.welch([0.5, 0.5], [0.5, 0.5])["p"] == 1.0  # identical constants
    assert report.welch([0.6, 0.6], [0.5, 0.5])["verdict"] == "better"  # different constants


def test_claims_a_b_on_synthetic_rows():
    rows = [{k: str(v) for k, v in r.items()} for r in synthetic_rows()]
    comps = {(c["r"], c["b"]): c for c in report.claim_rows(rows)}
    assert comps[(8, "hippo")]["claim"] == "a" and comps[(8, "hippo")]["verdict"] == "better"
    assert comps[(8, "hippo-flops")]["verdict"] == "worse"
    assert comps[(4, "hippo-wall")]["verdict"] == "worse"
    assert comps[(8, "bt0")]["verdict"] == "better"  # retraining helps
    assert comps[(8, "hippo")]["flops_ratio"] == pytest.approx(11.0)
    assert comps[(8, "hippo-wall")]["seconds_ratio"] == pytest.approx(1.0)
    pays = report.bt_pays(report.claim_rows(rows))
    assert pays[("a", 8)].startswith("no: worse")


def test_claim_c_separates_stages():
    rows = [{k: str(v) for k, v in r.items()} for r in synthetic_rows()]
    c = report.claim_c(rows)
    # within a stage the made-up points are perfectly anti-correlated...
    assert c["within"]["r"] == pytest.approx(-1.0) and c["within"]["cells"] == 3
    assert c["verdict"].startswith("reversed")
    # ...while mixing stages (round 1's analysis) shows a strong positive correlation
    assert c["across"]["r"] > 0.5


def test_within_correlation_by_hand():
    pts = [(1, 2, "x"), (2, 4, "x"), (3, 7, "x"), (10, 1, "y"), (12, 2, "y"), (0, 0, "z")]
    res = report.within_correlation(pts)
    # cell z (one point) is dropped; centred: x (-1,-7/3),(0,-1/3),(1,8/3); y (-1,-0.5),(1,0.5)
    x = np.array([-1, 0, 1, -1, 1.0])
    y = np.array([-7 / 3, -1 / 3, 8 / 3, -0.5, 0.5])
    r = np.corrcoef(x, y)[0, 1]
    assert res["n"] == 5 and res["cells"] == 2 and res["r"] == pytest.approx(r)
    t = r * np.sqrt(2 / (1 - r * r))  # df = 5 points - 2 cell means - 1
    assert res["p"] == pytest.approx(2 * stats.t.sf(abs(t), 2))
    assert report.within_correlation([(1, 1, "a"), (2, 2, "a")]) is None


def test_claim_d_picks_the_cheapest_tied_arm():
    rows = [{k: str(v) for k, v in r.items()} for r in synthetic_rows()]
    d = {x["r"]: x for x in report.claim_d(rows)}[8]
    assert d["best"] == "hippo-wall"
    # hippo-flops is statistically tied with the best and cheaper in FLOPs and in seconds
    assert "hippo-flops" in d["tied"] and "bt" not in d["tied"]
    assert d["cheapest_flops"] == "hippo-flops" and d["cheapest_seconds"] == "hippo-flops"
    assert set(d["front"]) == {"hippo", "hippo-flops", "hippo-wall"}


def test_claim_d_needs_the_mean_within_the_margin_not_only_an_insignificant_test():
    # a cheap group 20 points lower but with a wide seed spread: Welch cannot separate it
    # from the best at these seed counts, yet it is no substitute for the best model
    rows = [{k: str(v) for k, v in r.items()} for r in synthetic_rows()]
    noisy = [0.40, 0.95, 0.60, 0.80]
    rows += [
        {k: str(v) for k, v in _row("a", "shared", 8, s, noisy[s], 0.5e9, 5).items()} for s in SEEDS
    ]
    d = {x["r"]: x for x in report.claim_d(rows)}[8]
    best = d["means"][d["best"]]
    assert (
        report.welch(
            [float(r["test_acc"]) for r in rows if r["group"] == "shared"],
            [float(r["test_acc"]) for r in rows if r["group"] == d["best"] and r["r"] == "8"],
        )["verdict"]
        == "no significant difference"
    )
    assert best - d["means"]["shared"] > report.TIE_MARGIN
    assert "shared" not in d["tied"] and d["cheapest_flops"] == "hippo-flops"


def test_pareto_front():
    pts = [(1, 0.5, "a"), (2, 0.7, "b"), (3, 0.6, "c"), (2, 0.7, "d"), (4, 0.9, "e")]
    assert set(report.pareto_front(pts)) == {"a", "b", "d", "e"}


def test_write_report_tables_and_plots(tmp_path):
    rows = synthetic_rows()
    rows.append(dict(rows[0], arm="a/pre/s9", status="failed", test_acc=""))  # ignored
    write_csv(tmp_path / "results.csv", rows, runner.FIELDS)
    write_csv(
        tmp_path / "arms.csv",
        [dict(arm="a/spa-r8/s0", group="spa", runnable="no: s4dss.reduce has no method 'spa'")],
        ["arm", "group", "runnable"],
    )
    path = report.write_report(tmp_path, title="synthetic")
    md = path.read_text()
    assert "# Compression study: synthetic" in md
    # a table row: mean ± sample std over the 4 seeds
    accs = [0.80 - j for j in (0.0, 0.01, -0.01, 0.005)]
    want = f"{100 * np.mean(accs):.2f} ± {100 * np.std(accs, ddof=1):.2f} (n=4)"
    assert f"| BT -> main training (paper) | 8 | 5 | {want} |" in md
    assert "**bt better**" in md and "**bt worse**" in md
    assert "Verdict (c): reversed within a stage" in md
    assert "| a | 8 | hippo-wall" in md
    assert "spa (1 arms): s4dss.reduce has no method 'spa'" in md
    # issue 11's methods against the arm each replaces
    assert "| a | 8 | spa vs bt: singular perturbation vs BT, -> main | -0.12 |" in md
    for png in ("pareto_a.png", "correlation.png"):
        assert (tmp_path / png).stat().st_size > 10_000
