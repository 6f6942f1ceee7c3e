"""`ulma run --push-pprof URL`: gzipped pprof profiles POSTed while the program runs, received by a
local HTTP server (stdlib) and read back with a protobuf reader of the test's own -- the program's
known call counts must come back, added up over the pushes."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import run_process, ulma_command

PROGRAM = Path(__file__).with_name("fleet_program.py")


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as int, length-delimited as bytes."""
    i = 0

    def varint() -> int:
        nonlocal i
        shift = value = 0
        while True:
            b = data[i]
            i += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 2:
            n = varint()
            yield number, data[i:i + n]
            i += n
        else:
            raise AssertionError(f"wire type {wire}")


def _varints(data: bytes) -> list[int]:
    out, value, shift = [], 0, 0
    for b in data:
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            out.append(value - (1 << 64) if value >= 1 << 63 else value)  # int64
            value = shift = 0
    return out


def ints(message: bytes) -> dict[int, int]:
    return {n: v for n, v in fields(message) if isinstance(v, int)}


def blobs(message: bytes) -> dict[int, bytes]:
    return {n: v for n, v in fields(message) if isinstance(v, bytes)}


def read_profile(body: bytes) -> dict[str, Any]:
    """{function name: [wall, calls]} and the profile's sample types, from a gzipped profile.proto."""
    strings: list[str] = []
    samples: list[tuple[list[int], list[int]]] = []
    types: list[dict[int, int]] = []
    locations: dict[int, int] = {}  # location id -> function id
    functions: dict[int, int] = {}  # function id -> name index
    for number, value in fields(gzip.decompress(body)):
        if not isinstance(value, bytes):
            continue  # time, duration, period, default sample type
        if number == 6:
            strings.append(value.decode())
        elif number == 1:
            types.append(ints(value))
        elif number == 2:
            sample = blobs(value)
            samples.append((_varints(sample[1]), _varints(sample[2])))
        elif number == 4:
            locations[ints(value)[1]] = ints(blobs(value)[4])[1]
        elif number == 5:
            f = ints(value)
            functions[f[1]] = f[2]
    out: dict[str, list[int]] = {}
    for locs, values in samples:
        assert len(locs) == 1 and len(values) == 2  # one function a sample; wall and calls
        got = out.setdefault(strings[functions[locations[locs[0]]]], [0, 0])
        got[0] += values[0]
        got[1] += values[1]
    return {"functions": out, "types": [(strings[t[1]], strings[t[2]]) for t in types]}


class Receiver(http.server.BaseHTTPRequestHandler):
    got: list[tuple[str, dict[str, list[str]], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        parts = urlsplit(self.path)
        self.got.append((parts.path, parse_qs(parts.query), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, dict[str, list[str]], bytes]]]]:
    got: list[tuple[str, dict[str, list[str]], bytes]] = []
    handler = type("Handler", (Receiver,), {"got": got})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", got
    finally:
        server.shutdown()
        server.server_close()


def test_profiles_are_pushed_while_it_runs_and_add_up_to_its_counts(
        receiver: tuple[str, list[tuple[str, dict[str, list[str]], bytes]]], tmp_path: Path) -> None:
    url, got = receiver
    report = tmp_path / "r.json"
    result = run_process(ulma_command(["run", "--push-pprof", f"{url}/ingest?name=fleet",
                                       "--push-interval", "0.5", "--no-report", "--json", str(report),
                                       str(PROGRAM)]), timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"ulma: pushed {len(got)} pprof profiles to {url}/ingest?name=fleet" in result.stderr
    assert len(got) >= 3  # about two seconds at two a second, and the last
    totals: dict[str, list[int]] = {}
    for path, query, body in got:
        assert path == "/ingest" and query["name"] == ["fleet"]
        assert int(query["until"][0]) >= int(query["from"][0])
        assert body[:2] == b"\x1f\x8b"  # gzipped
        profile = read_profile(body)
        assert profile["types"] == [("wall", "nanoseconds"), ("calls", "count")]
        for name, (wall, calls) in profile["functions"].items():
            t = totals.setdefault(name, [0, 0])
            t[0] += wall
            t[1] += calls
    expected = {f["name"]: f for f in json.loads(report.read_text())["functions"]}
    assert totals["work"][1] == expected["work"]["calls"] == 1000
    assert totals["other"][1] == 400
    assert totals["work"][0] == expected["work"]["self_ns"]
    # pushed while it ran: more than one profile had calls of work in it
    assert sum(1 for *_, body in got if read_profile(body)["functions"].get("work", [0, 0])[1]) >= 2


def test_an_unreachable_receiver_is_one_line_and_the_run_goes_on(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_process(ulma_command(["run", "--push-pprof", f"http://127.0.0.1:{port}/x", "--no-report",
                                       str(PROGRAM)]), timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ulma: push failed: cannot reach http://127.0.0.1:{port}/x")


@pytest.mark.parametrize(("args", "said"), [
    (["--push-pprof", "ftp://h/x"], "is not an http:// or https:// URL"),
    (["--push-pprof", "http://h:99999/x"], "is not a URL"),
    (["--push-pprof", "http://h/x", "--push-interval", "0"], "--push-interval must be between 0.1 and 3600"),
])
def test_bad_push_options_are_one_line(args: list[str], said: str, tmp_path: Path) -> None:
    result = run_process(ulma_command(["run", *args, str(PROGRAM)]), timeout=60)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1 and said in lines[0], result.stderr
    assert result.stdout == ""  # the program did not run
