"""Command-line entry point: ``python -m s4dss {demo,train,reduce,evaluate} ...``."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m s4dss")
    verbs = parser.add_subparsers(dest="verb", required=True)
    demo = verbs.add_parser("demo", help="build a small S4/DSS model, reduce it, print a report")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.verb == "demo":
        from s4dss.demo import run

        return run(seed=args.seed)
    parser.error(f"unknown verb {args.verb!r}")
    return 2
