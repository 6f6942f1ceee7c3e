"""Runs the user's program inside the profiled interpreter, with the agent on.

``ulma run`` starts ``python -c <this module's main>`` with the session's memfd
inherited.  The program must see what plain ``python`` would give it:
``sys.argv``, ``sys.path[0]``, a fresh ``__main__`` with ``__file__``, its
traceback and exit code.  Tracebacks leave out ulma's own frames.

It must not import what the program would import itself: a module loaded
here would be loaded already when the program imports it, so its import-time
code would never run under the profiler, and the program's start-up would be
ulma's.  So this module, ulma.agent and ulma.agent.calibrate import only
modules plain python has loaded before the program's first line (os, sys,
io, time) and atexit (built in); options come as one plain token
(AgentOptions.encode); annotations are strings, their names imported for
type checkers only.
"""

import atexit
import io
import os
import sys

from ulma import _core
from ulma.agent import AgentOptions, calibrate, default_engine, threadnames

TYPE_CHECKING = False
if TYPE_CHECKING:
    import types
    from collections.abc import Callable
    from typing import NoReturn

ENV_FD = "ULMA_SESSION_FD"
ENV_OPTIONS = "ULMA_AGENT_OPTIONS"
ENV_EMPTY = "ULMA_EMPTY_HOOKS"
# the monitor's socket for child processes (ulma.monitor.children), '@' for the leading NUL
ENV_CHILDREN = "ULMA_CHILDREN"
CHILD_PROTOCOL = "ULMA1"
CHILD_SECONDS = 5.0  # a monitor that has not answered a child by then: the child runs unprofiled
MAX_ARGV = 300  # bytes of a child's command line sent to the monitor
BOOT_CODE = "from ulma.agent.bootstrap import main; main()"

# what _start_agent starts: (session fd, AgentOptions token, empty-hooks flag, children's socket)
_handoff: "tuple[int, str, str, str] | None" = None

# ulma's bootstrap code: left out of tracebacks and reports
_AGENT_DIR = os.path.dirname(os.path.abspath(__file__))
# put on PYTHONPATH for the program's children: its sitecustomize connects an exec'd Python
HOOK_DIR = os.path.join(_AGENT_DIR, "children")

# While a run's agent follows children: the frame its stacks stop at and the
# recursion adjustment (a forked child, still inside that frame, starts its own
# agent with them), and the probe cost measured here (a forked child is the
# same interpreter: it does not measure again).
_follow: "tuple[types.FrameType | None, int] | None" = None
_probe_ns = 0.0

# (AgentOptions token, hooks-off ns, hooks-on ns) of a calibration made while
# a prestarted interpreter waited for its options (see calibrate_ahead)
_ahead: "tuple[str, int, int] | None" = None


def _fail(message: str, code: int = 2) -> "NoReturn":
    sys.stderr.write(f"ulma: error: {message}\n")
    sys.stderr.flush()
    os._exit(code)


def _strip_ulma_frames(tb: "types.TracebackType | None") -> "types.TracebackType | None":
    """Drops the leading traceback entries that belong to ulma's bootstrap."""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not (filename.startswith(_AGENT_DIR + os.sep) or filename == "<string>"):
            break
        tb = tb.tb_next
    return tb


def _install_excepthook() -> None:
    original = sys.excepthook

    def hook(kind: "type[BaseException]", value: BaseException,
             tb: "types.TracebackType | None") -> None:
        tb = _strip_ulma_frames(tb)
        # the printer reads the exception's own traceback, not the argument
        original(kind, value.with_traceback(tb), tb)

    sys.excepthook = hook


def _start_agent(boundary: "types.FrameType", recursion_adjust: int = 0) -> None:
    """Hooks the interpreter.  ``boundary`` is the frame that runs the program
    and stays alive below it: stacks the agent restates stop there, so ulma's
    own frames are never reported; the agent also gives the frames below it
    back to the recursion budget, so RecursionError comes at the same depth
    as under plain python.  The variables are removed so the program's
    children do not see them."""
    global _follow
    assert _handoff is not None
    fd, token, empty_flag, children = _handoff
    empty = {"1": 1, "2": 2}.get(empty_flag, 0)  # benchmarks: see start_agent
    if children:  # before the hooks go on: this is ulma's work, not the program's
        _follow = (boundary, recursion_adjust)
        _children_environment(children)
    try:
        options = AgentOptions.decode(token)
        start_agent(fd, options, empty=empty, boundary=boundary, recursion_adjust=recursion_adjust,
                    alone=True)
    except (OSError, RuntimeError, ValueError) as exc:
        _fail(f"cannot start the agent: {exc}")
    finally:
        os.close(fd)


def _children_environment(address: str) -> None:
    """What an exec'd child needs to find the monitor: its socket, and the
    directory whose sitecustomize connects it, first on PYTHONPATH."""
    os.environ[ENV_CHILDREN] = address
    path = os.environ.get("PYTHONPATH")
    if not path or path.split(os.pathsep)[0] != HOOK_DIR:
        os.environ["PYTHONPATH"] = HOOK_DIR + (os.pathsep + path if path else "")


def _connect_monitor(how: str) -> "tuple[int, AgentOptions, float] | None":
    """A child's session from the monitor (see ulma.monitor.children): the
    memfd, the options and the program's probe cost if this Python is the
    program's version (else 0.0: measured here), or None (no monitor, another user's socket, a
    refusal, no answer within CHILD_SECONDS): the child runs unprofiled.
    Only _socket is imported (not socket): the child's own imports stay its own."""
    address = os.environ.get(ENV_CHILDREN, "")
    if not address.startswith("@"):
        return None
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    fds: list[int] = []
    try:
        sock.settimeout(CHILD_SECONDS)
        sock.connect("\0" + address[1:])
        creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
        if int.from_bytes(creds[4:8], sys.byteorder) != os.getuid():
            return None
        # its command for the report: sys.argv, unless it ran `-c` (the monitor then reads /proc)
        argv = b"" if sys.argv[:1] == ["-c"] else " ".join(sys.argv).encode("utf-8", "replace")[:MAX_ARGV]
        sock.sendall(f"CHILD {CHILD_PROTOCOL} {how} {argv.hex() or '-'}\n".encode())
        data = b""
        while b"\n" not in data and len(data) < 4096:
            msg, anc, _flags, _addr = sock.recvmsg(4096, _socket.CMSG_SPACE(16), _socket.MSG_CMSG_CLOEXEC)
            for level, kind, payload in anc:
                if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                    fds += [int.from_bytes(payload[i:i + 4], sys.byteorder)
                            for i in range(0, len(payload) - 3, 4)]
            if not msg:
                break
            data += msg
        words = data.decode("ascii", "replace").split()
        if len(words) != 4 or words[0] != "OK" or len(fds) != 1:
            return None
        options = AgentOptions.decode(words[1])
        probe = float(words[2]) if words[3] == str(sys.hexversion) else 0.0
        if not 0.0 <= probe < 1e6:  # (nan, inf, nonsense: measured here instead)
            probe = 0.0
        from ulma.agent import resolve_engine

        try:
            options = options.with_engine(resolve_engine(options.engine))
        except ValueError:  # another Python than the program's: its own engine
            options = options.with_engine(resolve_engine("auto"))
        fd = fds.pop()
        return fd, options, probe
    except (OSError, ValueError):
        return None
    finally:
        for fd in fds:
            os.close(fd)
        sock.close()


def _on_this_stack(frame: "types.FrameType") -> bool:
    f: types.FrameType | None = sys._getframe()
    while f is not None:
        if f is frame:
            return True
        f = f.f_back
    return False


def _after_fork_in_child() -> None:
    """In a forked child, right after fork(): the parent's hooks come off
    (the C at-fork handler already detached the rings), and if the run
    follows children, the child gets a session of its own from the monitor
    and its agent starts on it, before the child runs any code of its own."""
    _core.agent_stop(flush=False)
    if _follow is None:
        return
    got = _connect_monitor("fork")
    if got is None:
        return
    fd, options, _probe = got  # (its own parent's figure is at hand: _probe_ns)
    boundary, adjust = _follow
    if boundary is not None and not _on_this_stack(boundary):  # forked from another thread
        boundary, adjust = None, 0
    try:
        start_agent(fd, options, boundary=boundary, recursion_adjust=adjust, probe_ns=_probe_ns)
    except (OSError, RuntimeError, ValueError):
        pass  # unprofiled (the monitor lists it: its agent did not start)
    finally:
        os.close(fd)


def follow_exec() -> None:
    """An exec'd Python child of a followed program (called by the
    sitecustomize in HOOK_DIR, before the child's first line): its own
    session from the monitor, its agent on, its own children followed."""
    global _follow
    got = _connect_monitor("exec")
    if got is None:
        return
    fd, options, probe = got
    try:
        start_agent(fd, options, alone=True, probe_ns=probe)
    except (OSError, RuntimeError, ValueError):
        return
    finally:
        os.close(fd)
    _follow = (None, 0)
    _after_start()


def start_agent(fd: int, options: AgentOptions, *, empty: int = 0,
                boundary: "types.FrameType | None" = None, recursion_adjust: int = 0,
                alone: bool = False, probe_ns: float = 0.0) -> None:
    """Starts the agent on the session in `fd` and measures what one probe
    costs (see ulma.agent.calibrate), for the monitor to take out of the
    functions' times.  Used by `ulma run` and by an attach; `alone`: this is
    the only thread (before a run), so the hooks may be paused to calibrate.
    `empty` (benchmarks): 1 hooks that do nothing, 2 hooks that read the
    clock and make one 16-byte store (the recording floor).  `probe_ns`:
    the probe cost known already (a forked child: its parent's), not measured."""
    global _probe_ns
    _unhook_forked_children()
    off = 0 if empty or alone or probe_ns else calibrate.hooks_off()
    _core.agent_id_limit(options.id_limit or 1 << 24)
    names = threadnames.running()
    _core.agent_start(fd, options.engine, empty, _AGENT_DIR + os.sep, boundary, recursion_adjust,
                      native_calls=options.native_calls, cpu_interval_us=options.cpu_interval_us,
                      exclude=list(options.exclude), only=list(options.only),
                      objects=None if options.objects is None else list(options.objects))
    threadnames.install(names)
    if not empty:
        if not probe_ns:
            per_call = calibrate.callbacks_per_call(options.native_calls, options.engine)
            # a probe costs something: a loop timed no slower with the hooks on was noise (a few
            # calibrations in a hundred on 3.11, under load), measured again, a few times at most
            # (alone only: an attach cannot pause the running program's hooks to time them off)
            for attempt in range(calibrate.TRIES if alone else 1):
                if attempt == 0 and alone and _ahead is not None and _ahead[0] == options.encode():
                    off, on = _ahead[1], _ahead[2]  # measured in this process, with these very options
                elif alone:
                    off, on = calibrate.interleaved()
                else:
                    on = calibrate.hooks_on()
                probe_ns = calibrate.probe_ns(off, on, per_call)
                if probe_ns > 0:
                    break
        _core.agent_set_probe_cost(probe_ns)
        _probe_ns = probe_ns


_at_fork_registered = False


def _unhook_forked_children() -> None:
    """A forked child is detached from the rings inside fork() itself (the
    agent's C at-fork handler), before any Python code runs there; this takes
    its hooks off too, so it runs at full speed, unprofiled."""
    global _at_fork_registered
    if not _at_fork_registered:
        # the agent's doorbell thread is not there while the program forks (Python 3.12+
        # would warn that the process is multi-threaded: see agent.c)
        os.register_at_fork(before=_core.agent_fork_prepare, after_in_parent=_core.agent_fork_parent,
                            after_in_child=_after_fork_in_child)
        _at_fork_registered = True


def _after_start() -> None:
    # Registered first, so it runs last: after the program's own atexit
    # handlers and after non-daemon threads were joined.
    atexit.register(_core.agent_stop)


def _start_idle(boundary: "types.FrameType", recursion_adjust: int = 0) -> None:
    """An idle agent instead of a connected one: hooks stay off until a
    monitor attaches.  If it cannot listen, it says so in one line and the
    program runs all the same, unprofiled."""
    from ulma.agent import listener

    listener.install()


def _run_script(path: str, start: "Callable[..., None] | None" = None) -> None:
    try:
        with io.open_code(path) as f:
            source = f.read()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")
    # as plain python: absolute, but not normalised ("a/../b.py" stays)
    abspath = path if os.path.isabs(path) else os.path.join(os.getcwd(), path)
    main = type(sys)("__main__")
    main.__file__ = abspath
    main.__builtins__ = __builtins__  # type: ignore[attr-defined]
    main.__cached__ = None  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    try:
        # compile() would first build the ast module's types (~2 ms plain python never spends);
        # a source with a NUL byte is the builtin's to refuse, in its words
        if b"\0" in source:
            code = compile(source, abspath, "exec", dont_inherit=True)
        else:
            code = _core.compile_program(source, abspath)
    except SyntaxError:
        raise  # printed by the excepthook, exit code 1, as plain python does
    # 3.11 counts evaluator entries and Python frames in one recursion budget;
    # our exec() of the script is one entry more than plain python makes.
    (start or _start_agent)(sys._getframe(), recursion_adjust=1 if sys.version_info < (3, 12) else 0)
    if start is None:
        _after_start()
    exec(code, main.__dict__)


def _run_module(name: str, start: "Callable[..., None] | None" = None) -> None:
    import runpy

    # Resolve the module as `python -m` would (this imports its parent
    # packages), so a bad name is one line from us, not a profile of nothing.
    try:
        runpy._get_module_details(name)  # type: ignore[attr-defined]
    except ImportError as exc:
        _fail(str(exc), 1)
    # (plain `python -m` enters runpy from C, as our exec() does: no adjustment)
    (start or _start_agent)(sys._getframe())
    if start is None:
        _after_start()
    runpy._run_module_as_main(name, alter_argv=True)  # type: ignore[attr-defined]


def main() -> None:
    """Entry point: ``sys.argv`` is ``['-c', 'script'|'module', target, *args]``."""
    global _handoff
    if ENV_FD not in os.environ or len(sys.argv) < 3:
        _fail("ulma.agent.bootstrap is started by `ulma run`, not by hand")
    _handoff = (int(os.environ.pop(ENV_FD)), os.environ.pop(ENV_OPTIONS, ""), os.environ.pop(ENV_EMPTY, "0"),
                os.environ.pop(ENV_CHILDREN, ""))
    _run(sys.argv[1], sys.argv[2], sys.argv[3:])


def calibrate_ahead() -> None:
    """The probe's calibration, made while a prestarted interpreter waits for
    its options, rather than after them, on the way to the program's first
    line: the agent is started with the options `ulma run` gives by default on
    a private session of its own, the same rounds are timed as
    start_agent's, and the agent is stopped again.  start_agent uses the
    figures only if the options that come are those very ones (the same
    process, interpreter, engine and hooks); otherwise it calibrates as ever.
    Anything that goes wrong here only means that it does."""
    global _ahead
    options = AgentOptions(default_engine())
    fd = os.memfd_create("ulma-calibration", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        session = _core.Session(fd, 1 << 20, 1, 1 << 16)
        try:
            _core.agent_id_limit(1 << 24)
            _core.agent_start(fd, options.engine, 0, _AGENT_DIR + os.sep,
                              cpu_interval_us=options.cpu_interval_us)
            try:
                off, on = calibrate.interleaved()
            finally:
                _core.agent_stop(flush=False)
        finally:
            session.close()
        _ahead = (options.encode(), off, on)
    except (OSError, RuntimeError, ValueError):
        _ahead = None
    finally:
        os.close(fd)


def main_early() -> None:
    """Entry point of a prestarted interpreter: ``sys.argv`` is ``['-c', pipe
    fd, session fd, ahead]``.  Calibrates ahead if `ahead` is "1" (ulma's
    command line names no option that changes the calibration), then waits
    for what to run: the AgentOptions token, the empty-hooks flag, the
    children's socket (empty: not followed), 'script'|'module', the target
    and its arguments, NUL separated, then the end of the pipe.  An empty
    pipe: ulma ran nothing here, and this interpreter ends quietly."""
    global _handoff
    if (len(sys.argv) != 4 or not (sys.argv[1].isdigit() and sys.argv[2].isdigit())
            or sys.argv[3] not in ("0", "1")):
        _fail("ulma.agent.bootstrap is started by `ulma run`, not by hand")
    pipe, fd = int(sys.argv[1]), int(sys.argv[2])
    chunks = []
    try:
        if sys.argv[3] == "1":
            calibrate_ahead()
        while chunk := os.read(pipe, 1 << 16):
            chunks.append(chunk)
    except KeyboardInterrupt:  # Ctrl-C before ulma handed over: ulma says so
        os._exit(130)
    finally:
        os.close(pipe)
    fields = b"".join(chunks).decode("utf-8", "surrogateescape").split("\0")
    if len(fields) < 5:
        os._exit(0)
    token, empty, children, mode, target, *args = fields
    _handoff = (fd, token, empty, children)
    _run(mode, target, args)


def _run(mode: str, target: str, args: "list[str]") -> None:
    _install_excepthook()
    if mode == "script":
        sys.argv = [target, *args]
        sys.path[0] = os.path.dirname(os.path.realpath(target))
        _run_script(target)
    else:
        sys.argv = [target, *args]  # runpy puts the module's file in argv[0]
        sys.path[0] = os.getcwd()
        _run_module(target)


def main_idle() -> None:
    """``python -m ulma.agent (script.py | -m module) [args]``: the program
    runs unprofiled, with an idle agent waiting for `ulma attach <pid>`."""
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        sys.stderr.write("usage: python -m ulma.agent (script.py | -m module) [args ...]\n")
        sys.exit(0 if args else 2)
    _install_excepthook()
    if args[0] == "-m":
        if len(args) < 2:
            _fail("-m needs a module name")
        sys.argv = [args[1], *args[2:]]
        sys.path[0] = os.getcwd()
        _run_module(args[1], start=_start_idle)
    else:
        if not os.path.isfile(args[0]):
            _fail(f"no such file: {args[0]}")
        sys.argv = list(args)
        sys.path[0] = os.path.dirname(os.path.realpath(args[0]))
        _run_script(args[0], start=_start_idle)
