"""Reduction-only diagnostics for a finished (or partial) paper study: no training.

For each pre-trained model ``pre-s`` of a study folder and each r, compare the reductions that
could initialise the small model: infinite-horizon discrete BT (what the study uses),
time-limited BT over the sequence length (``horizon=L``) and modal truncation. Reports test
accuracy right after reduction and the relative kernel error over L taps, plus the HSV decay
(sigma_{r+1} / sigma_1, median over channels and layers). Writes ``investigate.md``::

    python benchmarks/paper_investigate.py --preset cpu --out benchmarks/results/paper-cpu
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import paper  # noqa: E402


def _variant(study: paper.TaskStudy, model, r: int, method: str, horizon):
    try:
        red = paper.reduce_model(model, rank=r, method=method, L=study.L, horizon=horizon,
                                 strict=False)  # fmt: skip
    except Exception as err:  # report, do not stop the diagnostics
        msg = str(err)
        if "|a| < 1" in msg:  # the reduced system has poles on/outside the unit circle
            return None, "refused: reduced poles with abs(a) >= 1 (DSS-exp needs Re lambda < 0)"
        return None, f"{type(err).__name__}: {msg[:80]}"
    rep = red.reduction_report
    err = np.mean([np.mean(lr.kernel_error / lr.kernel_norm) for lr in rep.layers])
    return red, f"{err:.3f}"


def investigate(preset: str, out: Path, tasks: list[str] | None = None) -> str:
    spec = paper.resolve_preset(preset, None)
    lines = ["# Reduction diagnostics (no retraining)", ""]
    for name, ts in spec["tasks"].items():
        if tasks and name not in tasks:
            continue
        study = paper.TaskStudy(name, ts, spec["seeds"], Path(out), resume=True, progress=False)
        seeds = [s for s in spec["seeds"] if (study.dir / f"pre-s{s}" / "summary.json").is_file()]
        if not seeds:
            continue
        lines += [
            f"## {name} (L = {study.L}, seeds {seeds})",
            "",
            "| r | variant | test acc % (mean over seeds) | mean rel. kernel error over L |",
            "|---|---|---|---|",
        ]
        pre_acc = [study.eval_test(study.pretrained(s))["test"]["acc"] for s in seeds]
        lines.append(f"| {study.N} | pre-trained | {100 * np.mean(pre_acc):.2f} | 0 |")
        for r in ts["ranks"]:
            hsv_ratio = []
            for s in seeds:
                for h in study.hsvs(s):
                    hsv_ratio.append(np.median(h[:, r] / h[:, 0]))
            for label, method, hz in (
                ("BT, infinite horizon (study)", "bt", None),
                ("BT, horizon = L", "bt", study.L),
                ("modal truncation", "modal", None),
            ):
                accs, errs = [], []
                for s in seeds:
                    red, err = _variant(study, study.pretrained(s), r, method, hz)
                    errs.append(err)
                    if red is not None:
                        accs.append(study.eval_test(red)["test"]["acc"])
                acc = f"{100 * np.mean(accs):.2f}" if accs else "-"
                errs = sorted(set(errs)) if all(e.startswith("refused") for e in errs) else errs
                lines.append(f"| {r} | {label} | {acc} | {', '.join(errs)} |")
            lines.append(
                f"| {r} | (median sigma_{r + 1}/sigma_1 over channels) | "
                f"{np.median(hsv_ratio):.2e} | |"
            )
        lines.append("")
    text = "\n".join(lines) + "\n"
    paper.atomic_write(Path(out) / "investigate.md", text)
    return text


def lr_after_init(preset: str, out: Path, factor: float, seeds: list[int],
                  tasks: list[str] | None = None, init: str = "bt") -> str:  # fmt: skip
    """``init`` ("bt": BT init + main training, or "hippo-long": the equal-compute Skew-HiPPO
    baseline) trained with the non-SSM lr scaled by ``factor``.

    Writes ``investigate_lr<factor>_<init>_<tasks>.md``.
    """
    spec = paper.resolve_preset(preset, None)
    lines = [f"# {init}: training at {factor} x the preset (non-SSM) lr", ""]
    lines += [f"| task | r | lr | {init}, test acc % | n | study's {init} (preset lr) |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for name, ts in spec["tasks"].items():
        if tasks and name not in tasks:
            continue
        ts = paper.copy.deepcopy(ts)
        lr = ts["train"]["lr"] * factor
        ts["train"]["lr"] = lr
        study = paper.TaskStudy(name, ts, seeds, Path(out), resume=True, progress=False)
        ref = {r["run_id"]: float(r["test_acc"]) for r in study.rows if r["init"] == init}
        for r in ts["ranks"]:
            accs, base = [], []
            for s in seeds:
                run_id = f"inv-lr{lr:g}-{init}-r{r}-s{s}"
                if init == "bt":
                    model, _ = study.reduced(study.pretrained(s), r, "bt")
                    epochs = study.main_epochs
                else:
                    model = study.base_model(r, s, per_channel=True)
                    epochs = study.main_epochs + study.pre_epochs
                summary, _ = study.fit(run_id, model, epochs, s)
                accs.append(summary["test"]["acc"])
                base.append(ref.get(f"{init}-r{r}-s{s}", float("nan")))
                print(name, r, s, accs[-1], base[-1], flush=True)
            lines.append(
                f"| {name} | {r} | {lr:g} | {paper._pm(accs)} | {len(accs)} | {paper._pm(base)} |"
            )
    text = "\n".join(lines) + "\n"
    suffix = "_".join(tasks) if tasks else "all"
    paper.atomic_write(Path(out) / f"investigate_lr{factor:g}_{init}_{suffix}.md", text)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=sorted(paper.PRESETS), required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tasks")
    p.add_argument("--lr-factor", type=float, help="BT init + main training at this lr factor")
    p.add_argument("--seeds", default="0,1,2,3,4")
    p.add_argument("--init", choices=("bt", "hippo-long"), default="bt")
    args = p.parse_args(argv)
    paper.torch.set_num_threads(1)
    if args.lr_factor:
        seeds = [int(x) for x in args.seeds.split(",")]
        tasks = args.tasks.split(",") if args.tasks else None
        print(lr_after_init(args.preset, args.out, args.lr_factor, seeds, tasks, args.init))
        return 0
    print(investigate(args.preset, args.out, args.tasks.split(",") if args.tasks else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
