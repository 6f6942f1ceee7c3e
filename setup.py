"""Builds ulma's C core.  Everything else is in pyproject.toml.

ULMA_STRICT=1 turns compiler warnings into errors (CI does this)."""

import os
from pathlib import Path

from setuptools import Extension, setup

CORE = Path("src/ulma/_core")
# hidden: the agent's globals are read on the hot path without a GOT load (only PyInit_ is exported)
flags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-fno-strict-aliasing", "-fvisibility=hidden"]
if os.environ.get("ULMA_STRICT") == "1":
    flags.append("-Werror")

setup(
    ext_modules=[
        Extension(
            "ulma._core",
            sources=sorted(str(p) for p in CORE.glob("*.c")),
            depends=sorted(str(p) for p in CORE.glob("*.h")),
            extra_compile_args=flags,
        )
    ]
)
