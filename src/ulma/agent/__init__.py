"""The agent: the part of ulma that lives inside the profiled program.

It is started by ``ulma run`` through :mod:`ulma.agent.bootstrap`; the hooks
themselves are C (``ulma._core``).
"""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import dataclass, field

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


DEFAULT_CPU_INTERVAL_US = 100


@dataclass(frozen=True, slots=True)
class AgentOptions:
    """What the agent measures, as `ulma run` and `ulma attach` ask for it."""

    engine: str
    native_calls: bool = False  # C functions get their own rows
    cpu_interval_us: int = DEFAULT_CPU_INTERVAL_US  # 0: no CPU readings
    exclude: tuple[str, ...] = field(default_factory=tuple)  # fnmatch patterns: unmeasured

    def encode(self) -> str:
        """One token (no spaces) for an environment variable or the attach request."""
        data = {"engine": self.engine, "native_calls": self.native_calls,
                "cpu_interval_us": self.cpu_interval_us, "exclude": list(self.exclude)}
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode()

    @classmethod
    def decode(cls, token: str) -> AgentOptions:
        """Raises ValueError on anything but what encode() makes."""
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"bad agent options: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("bad agent options")
        engine, native, interval = data.get("engine"), data.get("native_calls"), data.get("cpu_interval_us")
        exclude = data.get("exclude")
        if (not isinstance(engine, str) or not isinstance(native, bool) or not isinstance(interval, int)
                or isinstance(interval, bool) or not 0 <= interval <= 10**7 or not isinstance(exclude, list)
                or not all(isinstance(p, str) for p in exclude)):
            raise ValueError("bad agent options")
        return cls(engine, native, interval, tuple(exclude))


def install() -> str:
    """Carries an idle agent in this program (hooks off, no cost) that
    ``ulma attach <pid>`` can connect to; returns its socket path."""
    from ulma.agent import listener

    return listener.install()
