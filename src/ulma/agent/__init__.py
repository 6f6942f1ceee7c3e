"""The agent: the part of ulma that lives inside the profiled program.

It is started by ``ulma run`` through :mod:`ulma.agent.bootstrap`; the hooks
themselves are C (``ulma._core``).
"""

from __future__ import annotations

import sys

from ulma import _core

ENGINES: tuple[str, ...] = tuple(_core.ENGINES)


def default_engine() -> str:
    """The engine that measures cheaper on this Python while keeping its
    recursion behaviour: sys.monitoring from 3.12, the PEP 523 evaluator
    (with its stack guard) on 3.11."""
    return "monitoring" if sys.version_info >= (3, 12) else "pep523"


def resolve_engine(name: str) -> str:
    if name == "auto":
        return default_engine()
    if name not in ENGINES:
        have = ", ".join(ENGINES)
        raise ValueError(f"engine {name!r} is not available on Python "
                         f"{sys.version_info.major}.{sys.version_info.minor} (have: {have})")
    return name


def install() -> str:
    """Carries an idle agent in this program (hooks off, no cost) that
    ``ulma attach <pid>`` can connect to; returns its socket path."""
    from ulma.agent import listener

    return listener.install()
