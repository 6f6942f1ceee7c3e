"""``python -m ulma`` is ``ulma``."""

import sys

from ulma.cli.main import main

sys.exit(main())
