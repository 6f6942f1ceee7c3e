"""ulma's public C/C++ header (``ulma/ulma.h``, ``ulma/ulma.hpp``): where it is.

``python -m ulma.include`` prints the directory to put on the include path
(``-I``); ``--cflags`` the flag itself, ``--pkgconfig-dir`` the directory of
``ulma.pc`` and ``--cmake-dir`` that of ``ulmaConfig.cmake``.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def get_include() -> str:
    """The directory that holds ``ulma/ulma.h``."""
    return str(_HERE)


def pkgconfig_dir() -> str:
    return str(_HERE / "pkgconfig")


def cmake_dir() -> str:
    return str(_HERE / "cmake")
