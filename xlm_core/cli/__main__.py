"""``python -m xlm_core.cli ...`` runs the ``xlm`` command (DDP launchers rerun it this way)."""

import sys

from xlm_core.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
