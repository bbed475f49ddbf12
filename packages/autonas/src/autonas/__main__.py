"""``python -m autonas``: the same as the ``autonas`` command."""

import sys

from autonas.cli import main

sys.exit(main())
