"""``python -m jaxnets``: the ``jaxnets`` command (see :mod:`jaxnets.cli`)."""

import sys

from jaxnets.cli import main

sys.exit(main())
