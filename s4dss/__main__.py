"""``python -m s4dss VERB ...``: see ``s4dss.cli``."""

import os
import sys

from s4dss.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # Under torchrun, a gloo rank sometimes aborts during interpreter shutdown ("terminate
    # called without an active exception": a C++ thread of the process group destroyed while
    # joinable), even after a barrier and destroy_process_group; torchrun then reports the
    # whole run as failed. Everything is written and closed by now (checkpoints atomically),
    # so leave without running the C++ destructors.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)
