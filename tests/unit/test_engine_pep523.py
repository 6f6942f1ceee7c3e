"""The PEP 523 engine shares the interpreter with the program's own hooks: it never replaces the program's
profile function and never removes a frame evaluator the program installed after ulma's; it counts each
takeover (the session's hooks_displaced), and the report says so."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from ulma import _core
from ulma.agent import resolve_engine
from ulma.format import records


def leaf() -> int:
    return 1


def work() -> int:
    return sum(leaf() for _ in range(10))


def test_the_programs_own_profile_function_is_kept_when_native_calls_start(engine: str) -> None:
    fd = os.memfd_create("ulma-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    session = _core.Session(fd, 1 << 20, 8)
    seen: list[str] = []

    def own(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is leaf.__code__:
            seen.append("leaf")

    sys.setprofile(own)
    try:
        _core.agent_start(fd, resolve_engine(engine), native_calls=True)
        try:
            work()
            kept = sys.getprofile()
        finally:
            _core.agent_stop()
            sys.setprofile(None)
        assert kept is own, f"the program's profile function became {kept!r}"
        assert seen == ["leaf"] * 10, seen
        displaced = session.counters()["hooks_displaced"]
        # where ulma traces calls into C with a profile function (PEP 523), it says it did not here
        assert displaced == (1 if resolve_engine(engine) == "pep523" else 0)
    finally:
        session.close()
        os.close(fd)


EVALUATOR_C = r"""
#include <Python.h>

static _PyFrameEvalFunction prev;
static long frames;

static PyObject *own_eval(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    frames++;
    return prev(ts, f, throwflag);
}

static PyObject *install(PyObject *self, PyObject *unused)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    prev = _PyInterpreterState_GetEvalFrameFunc(interp);
    _PyInterpreterState_SetEvalFrameFunc(interp, own_eval);
    Py_RETURN_NONE;
}

/* one that runs every frame itself: it passes nothing on to the evaluator before it */
static PyObject *own_eval_alone(PyThreadState *ts, struct _PyInterpreterFrame *f, int throwflag)
{
    frames++;
    return _PyEval_EvalFrameDefault(ts, f, throwflag);
}

static PyObject *install_alone(PyObject *self, PyObject *unused)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    prev = _PyInterpreterState_GetEvalFrameFunc(interp);
    _PyInterpreterState_SetEvalFrameFunc(interp, own_eval_alone);
    Py_RETURN_NONE;
}

static PyObject *installed(PyObject *self, PyObject *unused)
{
    _PyFrameEvalFunction now = _PyInterpreterState_GetEvalFrameFunc(PyInterpreterState_Get());
    return PyBool_FromLong(now == own_eval || now == own_eval_alone);
}

static PyObject *uninstall(PyObject *self, PyObject *unused)
{
    _PyInterpreterState_SetEvalFrameFunc(PyInterpreterState_Get(), prev);
    Py_RETURN_NONE;
}

static PyObject *count(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(frames);
}

static PyMethodDef methods[] = {
    {"install", install, METH_NOARGS, NULL},
    {"install_alone", install_alone, METH_NOARGS, NULL},
    {"installed", installed, METH_NOARGS, NULL},
    {"uninstall", uninstall, METH_NOARGS, NULL},
    {"count", count, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};
static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "own_evaluator", NULL, -1, methods};
PyMODINIT_FUNC PyInit_own_evaluator(void) { return PyModule_Create(&def); }
"""


@pytest.fixture
def own_evaluator(tmp_path: Path) -> Any:
    """The program's own frame evaluator (EVALUATOR_C), built and imported; skips where the
    PEP 523 engine is not."""
    if resolve_engine("pep523") != "pep523":
        pytest.skip("no PEP 523 engine here")
    build_evaluator(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        import own_evaluator  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    return own_evaluator


def build_evaluator(where: Path) -> Path:
    """A frame evaluator of the program's own (chaining to the one before it), as an extension module."""
    src = where / "own_evaluator.c"
    src.write_text(textwrap.dedent(EVALUATOR_C))
    out = where / f"own_evaluator{sysconfig.get_config_var('EXT_SUFFIX')}"
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    subprocess.run([*cc, "-shared", "-fPIC", "-O1", f"-I{sysconfig.get_paths()['include']}",
                    "-o", str(out), str(src)], check=True, capture_output=True, text=True)
    return out


def test_an_evaluator_installed_after_ulmas_stays_when_ulma_stops(own_evaluator: Any) -> None:
    fd = os.memfd_create("ulma-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    session = _core.Session(fd, 1 << 20, 8)
    try:
        _core.agent_start(fd, "pep523")
        try:
            own_evaluator.install()  # chains to ulma's
            work()
            _core.agent_pause(True)  # a calibration pause must not take it out either
            _core.agent_pause(False)
        finally:
            _core.agent_stop()
        try:
            still = own_evaluator.installed()
            before = own_evaluator.count()
            work()
            grew = own_evaluator.count() - before
        finally:
            own_evaluator.uninstall()
        assert still, "ulma's stop removed the program's frame evaluator"
        assert grew == 23, grew  # work, 10 leaf calls, its generator expression: 12 runs (start, 11 resumes)
        session.drain()
        symbols = session.symbols()
        names = {sid: name for sid, _kind, _flags, name, _file, _line in symbols}
        calls = {names[fid]: c for fid, c, _r, _s, _t in session.snapshot()[0]}
        assert calls["leaf"] == 10  # ulma's, under the program's, still saw every call
        # and nothing was displaced: the program's passes every frame on to ulma's (no false alarm)
        assert session.counters()["hooks_displaced"] == 0
        # (it ran a probe to find out, which is ulma's own: hidden)
        probes = [(flags, fid) for fid, _kind, flags, _name, file, _line in symbols
                  if file == "<ulma: evaluator probe>"]
        assert probes and all(flags & records.SYMF_HIDDEN for flags, _fid in probes), probes
        # the program took its own out, which put back ulma's (idle now); ulma starts again on top of it
        _core.agent_start(fd, "pep523")
        try:
            work()
        finally:
            _core.agent_stop()
        session.drain()
        names.update((sid, name) for sid, _kind, _flags, name, _file, _line in session.symbols())
        leaf_calls = sum(c for fid, c, _r, _s, _t in session.snapshot()[0] if names[fid] == "leaf")
        assert leaf_calls == 20  # 10 more: each session names the function anew
    finally:
        session.close()
        os.close(fd)


def test_an_evaluator_that_passes_nothing_on_is_said_to_have_displaced_ulmas(own_evaluator: Any) -> None:
    """The program's evaluator runs every frame itself: ulma sees none of the calls after it came,
    and says so (hooks_displaced) rather than showing a profile that silently stops."""
    fd = os.memfd_create("ulma-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    session = _core.Session(fd, 1 << 20, 8)
    try:
        _core.agent_start(fd, "pep523")
        try:
            work()
            own_evaluator.install_alone()
            work()
        finally:
            _core.agent_stop()
            own_evaluator.uninstall()
        session.drain()
        names = {sid: name for sid, _kind, _flags, name, _file, _line in session.symbols()}
        calls = {names[fid]: c for fid, c, _r, _s, _t in session.snapshot()[0]}
        assert calls["leaf"] == 10  # the first round only
        assert session.counters()["hooks_displaced"] == 1
    finally:
        session.close()
        os.close(fd)


def test_a_session_after_one_that_left_its_evaluator_behind_the_programs_counts_every_call(
        own_evaluator: Any) -> None:
    """attach, the program installs its own evaluator (chaining), detach (both stay), attach again:
    the new session must not chain round through the program's to the old one's (a crash: C stack
    overflow), and counts every call."""
    fd = os.memfd_create("ulma-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    session = _core.Session(fd, 1 << 20, 8)
    try:
        _core.agent_start(fd, "pep523")
        try:
            own_evaluator.install()
        finally:
            _core.agent_stop()
        try:
            _core.agent_start(fd, "pep523")
            try:
                before = own_evaluator.count()
                work()
                grew = own_evaluator.count() - before
            finally:
                _core.agent_stop()
        finally:
            own_evaluator.uninstall()
        assert grew == 23, grew  # the program's: work, 10 leaf calls, its generator expression 12 times
        session.drain()
        symbols = session.symbols()
        names = {sid: name for sid, _kind, _flags, name, _file, _line in symbols}
        calls = {names[fid]: c for fid, c, _r, _s, _t in session.snapshot()[0]}
        assert calls["leaf"] == 10 and calls["work"] == 1, calls
        assert session.counters()["hooks_displaced"] == 0
    finally:
        session.close()
        os.close(fd)


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring is 3.12+")
def test_a_sys_monitoring_session_after_one_that_left_its_evaluator_counts_each_call_once(
        own_evaluator: Any) -> None:
    """An evaluator of ulma's left behind the program's would record a sys.monitoring session's
    calls a second time: with the program's still in front, the session runs on it (PEP 523,
    said as its engine); once the program took its own out, ulma's goes and the session is
    sys.monitoring's."""
    engines = {"monitoring": 1, "pep523": 2}
    for program_took_its_own_out in (False, True):
        fd = os.memfd_create("ulma-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        session = _core.Session(fd, 1 << 20, 8)
        try:
            _core.agent_start(fd, "pep523")
            try:
                own_evaluator.install()
            finally:
                _core.agent_stop()
            if program_took_its_own_out:
                own_evaluator.uninstall()
            try:
                _core.agent_start(fd, "monitoring")
                try:
                    work()
                finally:
                    _core.agent_stop()
            finally:
                if not program_took_its_own_out:
                    own_evaluator.uninstall()
            session.drain()
            names = {sid: name for sid, _kind, _flags, name, _file, _line in session.symbols()}
            calls = {names[fid]: c for fid, c, _r, _s, _t in session.snapshot()[0]}
            assert calls["leaf"] == 10, (program_took_its_own_out, calls)
            engine = "monitoring" if program_took_its_own_out else "pep523"
            assert session.counters()["engine"] == engines[engine], program_took_its_own_out
        finally:
            session.close()
            os.close(fd)


def test_an_evaluator_installed_before_ulmas_sees_every_frame_and_ulma_every_call(own_evaluator: Any) -> None:
    """ulma's hot path is chosen at start: with the program's evaluator already
    there, it is the one that chains to it."""
    fd = os.memfd_create("ulma-test", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    session = _core.Session(fd, 1 << 20, 8)
    own_evaluator.install()
    try:
        _core.agent_start(fd, "pep523")
        try:
            work()  # interned: the second run is the hot path's
            before = own_evaluator.count()
            work()
            grew = own_evaluator.count() - before
        finally:
            _core.agent_stop()
        assert own_evaluator.installed(), "ulma's stop removed the program's frame evaluator"
    finally:
        own_evaluator.uninstall()
    try:
        assert grew == 23, grew  # work, 10 leaf calls, its generator expression: 12 runs
        session.drain()
        names = {sid: name for sid, _kind, _flags, name, _file, _line in session.symbols()}
        calls = {names[fid]: c for fid, c, _r, _s, _t in session.snapshot()[0]}
        assert calls["leaf"] == 20 and calls["work"] == 2, calls
    finally:
        session.close()
        os.close(fd)
