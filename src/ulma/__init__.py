"""ulma: a live, low-overhead tracing profiler for Python.

This package stays light to import: the profiled program imports it too.
"""

__version__ = "0.1.0"
