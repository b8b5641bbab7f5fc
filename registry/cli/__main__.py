"""``python -m registry.cli``: the ``assay`` command without its console script."""

import sys

from registry.cli import main

sys.exit(main())
