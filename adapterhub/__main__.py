"""``python -m adapterhub``: the same command line as the ``adapterhub`` console script."""

import sys

from .cli import main

sys.exit(main())
