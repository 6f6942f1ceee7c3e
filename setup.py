"""Builds ulma's C core.  Everything else is in pyproject.toml.

ULMA_STRICT=1 turns compiler warnings into errors (CI does this).
ULMA_SANITIZE=address,undefined (any list of -fsanitize= names) builds the core with those
sanitizers, frame pointers and debug lines, and makes every finding fatal (.ci/sanitize)."""

import os
import re
from pathlib import Path

from setuptools import Extension, setup

CORE = Path("src/ulma/_core")
# hidden: the agent's globals are read on the hot path without a GOT load (only PyInit_ is exported)
flags = ["-std=c11", "-O2", "-Wall", "-Wextra", "-fno-strict-aliasing", "-fvisibility=hidden"]
link_flags: list[str] = []
if os.environ.get("ULMA_STRICT") == "1":
    flags.append("-Werror")
sanitize = os.environ.get("ULMA_SANITIZE", "")
if sanitize:
    if not re.fullmatch(r"[a-z-]+(,[a-z-]+)*", sanitize):
        raise SystemExit(f"ULMA_SANITIZE={sanitize!r}: expected names such as address,undefined")
    # -fno-sanitize-recover=all: the first finding aborts the process (a non-zero exit the tests see)
    san = [f"-fsanitize={sanitize}", "-fno-sanitize-recover=all"]
    # -fno-wrapv: Python's CFLAGS make signed overflow wrap (-fno-strict-overflow), which would hide
    # it from -fsanitize=signed-integer-overflow; the core must not rely on it
    flags += [*san, "-fno-wrapv", "-fno-omit-frame-pointer", "-g"]
    link_flags += san

setup(
    # sanitized objects apart from plain ones: a tree already built plainly (CI's earlier installs
    # leave build/ behind) would otherwise be linked again without the sanitizers
    options={"build": {"build_base": "build/sanitize"}} if sanitize else {},
    ext_modules=[
        Extension(
            "ulma._core",
            sources=sorted(str(p) for p in CORE.glob("*.c")),
            depends=[*sorted(str(p) for p in CORE.glob("*.h")), "src/ulma/include/ulma/ulma.h"],
            extra_compile_args=flags,
            extra_link_args=link_flags,
        )
    ]
)
