"""The package `scoped.py` traces with --only: about a tenth of the program's calls."""
