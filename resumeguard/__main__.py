"""``python -m resumeguard``."""

import sys

from resumeguard.cli.main import main

sys.exit(main())
