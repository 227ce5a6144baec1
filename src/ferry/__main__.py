"""``python -m ferry`` runs the CLI."""

import sys

from ferry.cli.main import main

sys.exit(main())
