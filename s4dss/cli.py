"""Command-line entry point: ``python -m s4dss {demo,train,evaluate,reduce,export} ...``.

``python -m s4dss`` without a verb prints the help and exits with status 2 (a usage error, as
for any other missing argument).

Examples::

    python -m s4dss train --config configs/listops-cpu.yaml train.epochs=2
    python -m s4dss train --run-dir runs/listops-cpu --resume
    torchrun --nproc_per_node 2 -m s4dss train --config configs/digits-smoke.yaml
    python -m s4dss evaluate runs/listops-cpu/best.pt --split test
    python -m s4dss reduce runs/listops-cpu/best.pt --rank 8 --out runs/listops-cpu/r8.pt
    python -m s4dss train --config configs/listops-cpu.yaml run.init_from=runs/listops-cpu/r8.pt
    python -m s4dss train --config configs/digits-smoke.yaml train.reduce.at_epochs=[1] \
        train.reduce.rank=4 train.hsv_reg.weight=1.0 train.hsv_reg.order=4
    python -m s4dss export runs/listops-cpu/r8.pt --format onnx --out runs/listops-cpu/r8.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _add_train(verbs) -> None:
    p = verbs.add_parser("train", help="train a model on an LRA task (config file + overrides)")
    p.add_argument("--config", type=Path, help="YAML run config (see configs/)")
    p.add_argument("--run-dir", type=Path, help="run directory (overrides run.dir)")
    p.add_argument("--resume", action="store_true", help="continue from <run-dir>/last.pt")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="config overrides (YAML values; section.key.subkey=value for one entry of a mapping)",
    )


def _add_evaluate(verbs) -> None:
    p = verbs.add_parser("evaluate", help="evaluate a (trained or reduced) checkpoint")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--split", choices=("train", "val", "test"), default="test")
    p.add_argument("--batch-size", default=128)  # numeric options: s4dss.config.OPTIONS
    p.add_argument("--out", type=Path, help="also write the result as JSON here")
    p.add_argument("overrides", nargs="*", metavar="task.key=value", help="task overrides")


def _add_reduce(verbs) -> None:
    p = verbs.add_parser("reduce", help="balanced truncation of every DSS layer of a checkpoint")
    p.add_argument("checkpoint", type=Path)
    # numeric options are parsed and checked by their rules in s4dss.config.OPTIONS
    p.add_argument("--rank", help="reduced state dimension r of every layer")
    p.add_argument("--tol", help="instead of --rank: per-layer error bound")
    p.add_argument("--budget", help="instead of --rank: total states over all layers")
    p.add_argument("--param-budget", help="instead of --rank: the reduced model's total parameters")
    p.add_argument(
        "--method", choices=("bt", "spa", "modal"), default="bt",
        help="balanced truncation, singular perturbation (keeps the steady-state gain), modal",
    )  # fmt: skip
    p.add_argument(
        "--poles", choices=("per-channel", "shared"), default="per-channel",
        help="shared: keep a shared-pole layer's poles shared (fewer parameters for r < N)",
    )  # fmt: skip
    p.add_argument(
        "--normalise", choices=("gain", "total"), default="gain",
        help="with a budget: per-layer bound relative to the layer's gain, or to its total",
    )  # fmt: skip
    p.add_argument("--rank-tol", help="low-rank Gramian factors (sysred rank_tol, e.g. 1e-16)")
    p.add_argument("--L", help="kernel length (default: the task's sequence length)")
    p.add_argument("--out", type=Path, required=True, help="reduced checkpoint to write")
    p.add_argument("--report", type=Path, help="JSON report (default: <out>.json)")
    p.add_argument(
        "--evaluate", action="store_true", help="also measure val/test accuracy before/after"
    )


def _add_export(verbs) -> None:
    p = verbs.add_parser(
        "export", help="write a checkpoint's step (recurrent) mode as an ONNX model"
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--format", choices=("onnx",), default="onnx")
    p.add_argument("--out", type=Path, required=True, help="model file to write")
    p.add_argument("--L", type=int, help="sequence length (mode softmax only; default: the task's)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m s4dss")
    verbs = parser.add_subparsers(dest="verb")
    demo = verbs.add_parser("demo", help="build a small S4/DSS model, reduce it, print a report")
    demo.add_argument("--seed", type=int, default=0)
    _add_train(verbs)
    _add_evaluate(verbs)
    _add_reduce(verbs)
    _add_export(verbs)
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 2
    if args.verb == "demo":
        from s4dss.demo import run

        return run(seed=args.seed)
    from s4dss.checkpoint import CheckpointError
    from s4dss.config import ConfigError
    from s4dss.data import DataError
    from sysred import SysredError  # refusals of the reduction (unstable, degenerate order)

    try:
        _check_options(args)
        if args.verb == "train":
            return cmd_train(args)
        if args.verb == "evaluate":
            return cmd_evaluate(args)
        if args.verb == "export":
            return cmd_export(args)
        return cmd_reduce(args)
    except (ConfigError, CheckpointError, DataError, SysredError) as e:
        # user errors: one clear line, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2


def _check_options(args) -> None:
    """Numeric options, parsed and checked by their rules in ``s4dss.config.OPTIONS``."""
    from s4dss.config import OPTIONS, check_option

    for option in OPTIONS:
        attr = option.lstrip("-").replace("-", "_")
        if hasattr(args, attr):
            setattr(args, attr, check_option(option, getattr(args, attr)))


def _output_file(path: Path | None, option: str) -> Path | None:
    """Create the folder of an output file up front (before any long work), or say why not."""
    from s4dss.config import ConfigError

    if path is None:
        return None
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name, e.g. {path / 'x.pt'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{option} {path}: cannot create {path.parent} ({e.strerror})") from None
    return path


# ---------------------------------------------------------------------------- train


def _init_distributed() -> tuple[int, int]:
    """Join the process group when launched by torchrun (gloo: CPU)."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _load_task(task_cfg: dict, rank: int, world: int):
    """Rank 0 builds (and maybe generates) the data first; the others then read it."""
    import torch.distributed as dist

    from s4dss.data import get_task

    cfg = dict(task_cfg)
    name = cfg.pop("name")
    task = get_task(name, **cfg) if rank == 0 else None
    if world > 1:
        dist.barrier()
    return task if task is not None else get_task(name, **cfg)


def cmd_train(args) -> int:
    """``train``: resolve the config, build task and model, run :func:`s4dss.train.train`."""
    import torch.distributed as dist

    from s4dss.checkpoint import load_checkpoint, load_model_state
    from s4dss.config import ConfigError, diff, load_config, save_config
    from s4dss.train import (
        RESUME_SAFE,
        TrainConfig,
        build_model,
        model_from_config,
        seed_everything,
        train,
    )

    overrides = list(args.overrides)
    if args.run_dir is not None:
        overrides.append(f"run.dir={args.run_dir}")
    config_path = args.config
    if args.resume and config_path is None:
        run_dir = args.run_dir
        if run_dir is None:
            raise ConfigError("--resume needs --run-dir (or --config naming run.dir)")
        config_path = Path(run_dir) / "config.yaml"
    cfg = load_config(config_path, overrides)
    if not cfg["run"].get("dir"):
        raise ConfigError("set run.dir in the config or pass --run-dir")
    run_dir = Path(cfg["run"]["dir"])
    if not args.resume and (run_dir / "last.pt").exists():
        raise ConfigError(
            f"{run_dir} already holds a run (last.pt); pass --resume to continue it or choose "
            "another --run-dir"
        )
    try:
        TrainConfig(**cfg["train"])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"train section: {e}") from None
    if args.resume:
        # compare before anything is written: a refused resume must leave the run dir intact
        last = load_checkpoint(run_dir / "last.pt", kind="train")
        changed = diff(last["config"], cfg, ignore=RESUME_SAFE)
        if changed:
            raise ConfigError(
                f"cannot resume {run_dir}: the config differs from its checkpoint's in "
                + "; ".join(changed)
            )
    rank, world = _init_distributed()
    try:
        seed_everything(int(cfg["train"]["seed"]))
        try:
            task = _load_task(cfg["task"], rank, world)
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"task section: {e}") from None
        init_from = cfg["run"].get("init_from")
        if args.resume:
            # the checkpoint knows its architecture; its weights are loaded by train()
            model = model_from_config(last["model_config"])
        elif init_from:
            # start from another run's weights (e.g. a reduced model): its architecture wins
            ck = load_checkpoint(init_from)
            model = model_from_config(ck["model_config"])
            load_model_state(model, ck["model_state"], source=str(init_from))
        else:
            try:
                model = build_model(cfg["model"], task)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"model section: {e}") from None
        if rank == 0:
            save_config(cfg, run_dir / "config.yaml")
        summary = train(
            model,
            task,
            cfg["train"],
            run_dir,
            resume=args.resume,
            run_config=cfg,
        )
        if world > 1:
            # leave together: a rank tearing down gloo while a peer still writes its summary
            # can abort ("terminate called without an active exception")
            dist.barrier()
        if rank == 0:
            print(json.dumps(summary))
        return 0 if summary["status"] == "finished" else 130
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


# ------------------------------------------------------------------------- evaluate


def _model_from_checkpoint(path: Path):
    from s4dss.checkpoint import load_checkpoint, load_model_state
    from s4dss.train import model_from_config

    ck = load_checkpoint(path)
    model = model_from_config(ck["model_config"])
    load_model_state(model, ck["model_state"], source=str(path))
    return ck, model


def _task_from_config(cfg: dict, overrides: list[str]):
    from s4dss.config import merge, parse_overrides
    from s4dss.data import get_task

    cfg = merge(cfg, parse_overrides(overrides), where="command line")
    task_cfg = dict(cfg["task"])
    return get_task(task_cfg.pop("name"), **task_cfg)


def cmd_evaluate(args) -> int:
    """``evaluate``: loss and accuracy of a checkpoint on one split of its task."""
    from s4dss.train import evaluate

    _output_file(args.out, "--out")
    ck, model = _model_from_checkpoint(args.checkpoint)
    task = _task_from_config(ck["config"], args.overrides)
    data = {"train": task.train, "val": task.val, "test": task.test}[args.split]
    result = {
        "checkpoint": str(args.checkpoint),
        "split": args.split,
        **evaluate(model, data, task.collate, args.batch_size),
    }
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


# --------------------------------------------------------------------------- reduce


def _jsonable(x):
    import numpy as np

    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def cmd_reduce(args) -> int:
    """``reduce``: checkpoint -> ``s4dss.reduce`` -> reduced checkpoint + JSON report."""
    import dataclasses
    import warnings

    import s4dss
    from s4dss.checkpoint import save_checkpoint
    from s4dss.config import ConfigError
    from s4dss.train import evaluate

    orders = {"rank": args.rank, "tol": args.tol, "budget": args.budget,
              "param_budget": args.param_budget}  # fmt: skip
    if sum(v is not None for v in orders.values()) != 1:
        raise ConfigError("give exactly one of --rank, --tol, --budget and --param-budget")
    _output_file(args.out, "--out")
    report_path = _output_file(
        args.report or args.out.with_name(args.out.name + ".json"), "--report"
    )
    ck, model = _model_from_checkpoint(args.checkpoint)
    L = args.L if args.L is not None else int((ck.get("task") or {}).get("seq_len") or 1024)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", s4dss.ParameterIncreaseWarning)
            reduced = s4dss.reduce(
                model, **orders, method=args.method, L=L, rank_tol=args.rank_tol,
                poles=args.poles, normalise=args.normalise,
            )  # fmt: skip
    except ValueError as e:  # bad rank/tol/budget, and sysred's refusals (SysredError is one)
        raise ConfigError(f"cannot reduce {args.checkpoint}: {e}") from None
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    rep = reduced.reduction_report
    if hasattr(reduced, "encoder") and hasattr(reduced.encoder, "config"):
        # reduce() updates the top-level config only; a wrapped encoder records its new orders
        reduced.encoder.config["d_state"] = [layer.order for layer in rep.layers]
        if args.poles == "per-channel":
            reduced.encoder.config["lambda_per_channel"] = True
    reduction = {
        "source": str(args.checkpoint),
        **orders,
        "method": args.method,
        "poles": args.poles,
        "normalise": args.normalise,
        "L": L,
    }
    save_checkpoint(
        args.out,
        {
            "model_config": reduced.config,
            "model_state": reduced.state_dict(),
            "config": ck["config"],
            "task": ck.get("task"),
            "reduction": reduction,
        },
        kind="reduced",
    )
    report = {
        **reduction,
        "out": str(args.out),
        "params_before": rep.params_before,
        "params_after": rep.params_after,
        "layers": [
            {f.name: _jsonable(getattr(layer, f.name)) for f in dataclasses.fields(layer)}
            for layer in rep.layers
        ],
    }
    if args.evaluate:
        task = _task_from_config(ck["config"], [])
        for split in ("val", "test"):
            data = getattr(task, split)
            report[f"{split}_before"] = evaluate(model, data, task.collate)
            report[f"{split}_after"] = evaluate(reduced, data, task.collate)
    report_path.write_text(json.dumps(report, indent=1) + "\n")
    print(str(rep))
    if args.evaluate:
        print(f"{'accuracy':<10}{'before':>10}{'after':>10}")
        for split in ("val", "test"):
            before, after = report[f"{split}_before"]["acc"], report[f"{split}_after"]["acc"]
            print(f"{split:<10}{before:>10.4f}{after:>10.4f}")
    print(f"wrote {args.out} and {report_path}")
    return 0


# --------------------------------------------------------------------------- export


def cmd_export(args) -> int:
    """``export``: checkpoint -> the model's step mode as ONNX (:mod:`s4dss.export`)."""
    from s4dss.config import ConfigError
    from s4dss.model import S4Model

    ck, model = _model_from_checkpoint(args.checkpoint)
    if not isinstance(model, S4Model):
        raise ConfigError(
            f"export supports S4Model checkpoints (one sequence in, logits out); "
            f"{args.checkpoint} holds a {type(model).__name__}"
        )
    try:
        from s4dss.export import export_onnx
    except ImportError as e:  # pragma: no cover - onnx is in the export extra
        raise ConfigError(f"export needs onnx (pip install 'sysred-s4dss[export]'): {e}") from None
    L = args.L
    if model.config.get("mode") == "softmax" and L is None:
        L = int((ck.get("task") or {}).get("seq_len") or 0) or None
        if L is None:
            raise ConfigError("mode 'softmax' needs --L (its kernel is normalised over L)")
    path = export_onnx(model, args.out, L)
    from s4dss.export import StepModel

    layout = StepModel(model, L).layout()
    print(
        f"wrote {path}: step(x {layout['input']}, state (B, {layout['size']})) -> "
        f"(logits (B, {model.config['d_output']}), new_state (B, {layout['size']})); "
        "start from state = zeros; layout in the metadata entry 's4dss_state'"
    )
    return 0
