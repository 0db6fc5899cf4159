"""``python -m keel`` runs the ``keel`` command (see keel.cli)."""

import sys

from keel.cli import main

sys.exit(main())
