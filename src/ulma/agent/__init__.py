"""The agent: the part of ulma that lives inside the profiled program.

It is started by ``ulma run`` through :mod:`ulma.agent.bootstrap`; the hooks
themselves are C (``ulma._core``).  This package is imported by the profiled
program before its first line, so it imports nothing that plain python has
not loaded already (its own imports must stay the program's to make).
"""

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


DEFAULT_CPU_INTERVAL_US = 100


class AgentOptions:
    """What the agent measures, as `ulma run` and `ulma attach` ask for it.
    `id_limit` (0: the default, 2**24) bounds the function ids; tests use a
    small one to reach the overflow row."""

    __slots__ = ("cpu_interval_us", "engine", "exclude", "id_limit", "native_calls", "objects", "only")

    def __init__(self, engine: str, native_calls: bool = False,
                 cpu_interval_us: int = DEFAULT_CPU_INTERVAL_US,
                 exclude: tuple[str, ...] = (), id_limit: int = 0,
                 only: tuple[str, ...] = (), objects: tuple[str, ...] | None = None) -> None:
        self.engine = engine
        self.native_calls = native_calls  # C functions get their own rows
        self.cpu_interval_us = cpu_interval_us  # 0: no CPU readings
        self.exclude = tuple(exclude)  # fnmatch patterns: not traced (C functions: unmeasured)
        self.id_limit = id_limit
        self.only = tuple(only)  # fnmatch patterns: only these Python functions are traced
        # --objects: None off; else the types kept (fnmatch patterns; empty: every type)
        self.objects = None if objects is None else tuple(objects)

    def _fields(self) -> tuple[object, ...]:
        return (self.engine, self.native_calls, self.cpu_interval_us, self.exclude, self.id_limit,
                self.only, self.objects)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AgentOptions) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return "AgentOptions({!r}, {!r}, {!r}, {!r}, {!r}, {!r}, {!r})".format(*self._fields())

    def with_engine(self, engine: str) -> "AgentOptions":
        return AgentOptions(engine, self.native_calls, self.cpu_interval_us, self.exclude, self.id_limit,
                            self.only, self.objects)

    def encode(self) -> str:
        """One token (no spaces) for an environment variable or the attach
        request: ``1,engine,native,interval,id_limit[,pattern...]``, each
        pattern as the hex of its UTF-8 bytes, an --only pattern after a
        ``+``, an --objects-types pattern after a ``@`` (``@`` alone: --objects
        with every type); decoded with builtins only."""
        fields = ["1", self.engine, "1" if self.native_calls else "0", str(self.cpu_interval_us),
                  str(self.id_limit)]
        fields += [p.encode("utf-8", "surrogateescape").hex() for p in self.exclude]
        fields += ["+" + p.encode("utf-8", "surrogateescape").hex() for p in self.only]
        if self.objects is not None:
            fields += ["@" + p.encode("utf-8", "surrogateescape").hex() for p in self.objects] or ["@"]
        return ",".join(fields)

    @classmethod
    def decode(cls, token: str) -> "AgentOptions":
        """Raises ValueError on anything but what encode() makes."""
        fields = token.split(",")
        if (len(fields) < 5 or fields[0] != "1" or not fields[1].isidentifier()
                or fields[2] not in ("0", "1") or not fields[3].isdigit() or not fields[4].isdigit()
                or not fields[3].isascii() or not fields[4].isascii()):
            raise ValueError("bad agent options")
        interval, id_limit = int(fields[3]), int(fields[4])
        if (interval > _core.LIMITS["MAX_CPU_INTERVAL_US"] or id_limit > _core.LIMITS["ID_LIMIT"]
                or 0 < id_limit < _core.LIMITS["MIN_ID_LIMIT"]):
            raise ValueError("bad agent options")
        try:
            exclude = tuple(bytes.fromhex(p).decode("utf-8", "surrogateescape")
                            for p in fields[5:] if not p.startswith(("+", "@")))
            only = tuple(bytes.fromhex(p[1:]).decode("utf-8", "surrogateescape")
                         for p in fields[5:] if p.startswith("+"))
            kept = [p[1:] for p in fields[5:] if p.startswith("@")]
            objects = tuple(bytes.fromhex(p).decode("utf-8", "surrogateescape") for p in kept if p)
        except ValueError:
            raise ValueError("bad agent options") from None
        return cls(fields[1], fields[2] == "1", interval, exclude, id_limit, only,
                   objects if kept else None)


def install() -> str | None:
    """Carries an idle agent in this program (hooks off, no cost) that
    ``ulma attach <pid>`` can connect to; returns its socket's address (an
    abstract socket, as ``ss -x`` shows it), or None, said in one line on
    stderr, if it cannot listen: the program goes on regardless."""
    from ulma.agent import listener

    return listener.install()
