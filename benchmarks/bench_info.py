"""Shared by the benchmark scripts: which sysred a run measured, and a printing table log."""

from __future__ import annotations

import subprocess
from pathlib import Path

import sysred

HERE = Path(__file__).resolve().parent


def sysred_version():
    """Where sysred was imported from and which commit it is (if it lives in this checkout,
    or in a ``git archive`` export holding a ``COMMIT`` file next to the package)."""
    pkg = Path(sysred.__file__).resolve().parent
    stamp = pkg.parent / "COMMIT"
    if stamp.is_file():
        return f"sysred: {pkg} (exported commit {stamp.read_text().strip()})"
    if pkg.parent != HERE.parent:
        return f"sysred: {pkg} (outside this checkout)"
    try:
        git = ["git", "-C", str(HERE.parent)]
        rev = subprocess.run(
            git + ["log", "-1", "--format=%h %s", "--", "sysred"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            git + ["status", "--porcelain", "--", "sysred"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return f"sysred: {pkg}"
    return f"sysred: {pkg}, last commit {rev!r}{' + uncommitted changes' if dirty else ''}"


class Tee:
    """Print and keep the lines, to save the tables."""

    def __init__(self):
        self.lines = []

    def __call__(self, *parts):
        line = " ".join(str(p) for p in parts)
        print(line, flush=True)
        self.lines.append(line)
