"""``python -m benchmarks.study --preset quick|cpu --out DIR [--resume]``."""

import sys

from benchmarks.study.runner import main

sys.exit(main())
