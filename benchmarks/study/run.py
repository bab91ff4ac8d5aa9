"""``python benchmarks/study/run.py --preset quick|cpu --out DIR [--resume]`` (same as ``-m``)."""

import sys
from pathlib import Path

# the repository root, so that ``benchmarks.study`` and the worktree's s4dss import from a path
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.study.runner import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
