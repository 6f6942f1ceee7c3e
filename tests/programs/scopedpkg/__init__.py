"""The package `scoped.py` picks out with --only: a tenth of its calls."""
