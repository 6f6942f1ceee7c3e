"""Benchmark workloads; each file is also a standalone script (python bench/workloads/fib.py)."""
