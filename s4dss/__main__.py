"""``python -m s4dss VERB ...``: see ``s4dss.cli``."""

from s4dss.cli import main

raise SystemExit(main())
