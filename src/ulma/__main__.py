"""``python -m ulma`` is ``ulma``."""

from ulma.cli.main import entry

entry()
