"""``python -m bsjax.cbs.sweep target-loss RUN_DIR --step N`` (see ``commands.py``)."""

import sys

from bsjax.cbs.sweep.commands import main

sys.exit(main())
