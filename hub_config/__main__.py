"""Entry point of `python -m hub_config`."""

import sys

from .cli import main

sys.exit(main())
