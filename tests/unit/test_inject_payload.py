"""The text ulma makes a plain python run (ulma.inject.payload): values are only ever literals, and it
does nothing once the attacher has given up."""

from __future__ import annotations

import ast
import subprocess
import sys
import time

from ulma.inject import payload

HOSTILE = ["/a b/'\"\"\"'''$suffix${report}\\", "x\n__import__('os').system('false')\n#", "\\x00\udcff"]


def inner_call(source: str) -> ast.Call:
    """The _attach(...) call at the end of the body the outer text exec()s."""
    outer = ast.parse(source)
    assert len(outer.body) == 1 and isinstance(outer.body[0], ast.Try)
    call = outer.body[0].body[0]
    assert isinstance(call, ast.Expr) and isinstance(call.value, ast.Call)
    body = call.value.args[0]
    assert isinstance(body, ast.Constant) and isinstance(body.value, str)
    last = ast.parse(body.value).body[-1]
    assert isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
    return last.value


def test_every_value_put_in_the_payload_stays_a_literal() -> None:
    for text in HOSTILE:
        source = payload.source(12345, "\0" + text, text, text)
        call = inner_call(source)
        assert [ast.literal_eval(a) for a in call.args] == [12345, "\0" + text, text, text]
    call = inner_call(payload.source(1, "\0r", None, ""))
    assert [ast.literal_eval(a) for a in call.args] == [1, "\0r", None, ""]


def run_payload(deadline_ns: int) -> subprocess.CompletedProcess[str]:
    """The payload run as PyRun_SimpleString would, in a fresh `python -S`, with nobody listening
    on its report address; prints which modules it brought in."""
    source = payload.source(deadline_ns, "\0ulma-inject-test-nobody-listens", None, "")
    program = (f"import sys\nbefore = set(sys.modules)\nexec({source!r}, {{'__name__': '__main__'}})\n"
               "print(sorted(set(sys.modules) - before))\n")
    return subprocess.run([sys.executable, "-S", "-c", program], capture_output=True, text=True, timeout=60)


def test_after_its_deadline_the_payload_does_nothing() -> None:
    done = run_payload(time.monotonic_ns() - 1)
    assert done.returncode == 0 and done.stderr == "" and done.stdout == "[]\n"


def test_with_the_attacher_gone_the_payload_loads_nothing_and_says_nothing() -> None:
    done = run_payload(time.monotonic_ns() + 60 * 10**9)
    assert done.returncode == 0 and done.stderr == ""
    loaded = ast.literal_eval(done.stdout)
    assert "socket" in loaded and not [m for m in loaded if m.startswith("ulma")]
