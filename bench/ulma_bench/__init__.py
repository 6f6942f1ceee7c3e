"""ulma's benchmark harness; `python bench/run.py` is its entry point."""
