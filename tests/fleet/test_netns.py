"""Hosts of their own: two network namespaces (A, B), each with its own CLOCK_MONOTONIC (a time
namespace, `unshare --time --monotonic`), joined to the collector's (the root namespace) and to each
other by veth pairs.  Needs root (CI runs as root); elsewhere missing_dependency says so."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import missing_dependency, ulma_command
from tests.fleet.helpers import Collector, calls, env, member, processes, trace_events, trace_pid, ulma_lines

NS = {"A": "ulmafleetA", "B": "ulmafleetB"}
ADDR = {"A": "10.231.1.2", "B": "10.231.2.2"}  # the collector: 10.231.1.1 (A's link), 10.231.2.1 (B's)
CLOCK_S = {"A": 3, "B": -2}  # each host's CLOCK_MONOTONIC against the collector's, seconds
PORT = 47011
LOCK = "/tmp/ulma-tests-fleet-netns.lock"


def sh(*cmd: str) -> None:
    subprocess.run(list(cmd), check=True, capture_output=True, timeout=30)


def _cleanup() -> None:
    for ns in NS.values():
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
    for link in ("ufl-a0", "ufl-b0"):
        subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=30)


@pytest.fixture
def hosts() -> Iterator[None]:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("unshare") is None:
        missing_dependency("network and time namespaces need root, iproute2 and util-linux's unshare")
    # the namespaces, links and addresses are the machine's, not this test session's: another
    # session running these tests at the same time waits its turn instead of tearing them down
    lock = os.open(LOCK, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield from _hosts()
    finally:
        os.close(lock)


def _hosts() -> Iterator[None]:
    _cleanup()
    try:
        for h, link, collector_ip in (("A", "ufl-a", "10.231.1.1"), ("B", "ufl-b", "10.231.2.1")):
            sh("ip", "netns", "add", NS[h])
            sh("ip", "link", "add", f"{link}0", "type", "veth", "peer", "name", f"{link}1")
            sh("ip", "link", "set", f"{link}1", "netns", NS[h])
            sh("ip", "addr", "add", f"{collector_ip}/24", "dev", f"{link}0")
            sh("ip", "link", "set", f"{link}0", "up")
            sh("ip", "-n", NS[h], "addr", "add", f"{ADDR[h]}/24", "dev", f"{link}1")
            sh("ip", "-n", NS[h], "link", "set", f"{link}1", "up")
            sh("ip", "-n", NS[h], "link", "set", "lo", "up")
        # A <-> B directly, for the program's own traffic
        sh("ip", "link", "add", "ufl-ab", "netns", NS["A"], "type", "veth", "peer", "name", "ufl-ba",
           "netns", NS["B"])
        sh("ip", "-n", NS["A"], "addr", "add", "10.231.3.1/24", "dev", "ufl-ab")
        sh("ip", "-n", NS["B"], "addr", "add", "10.231.3.2/24", "dev", "ufl-ba")
        sh("ip", "-n", NS["A"], "link", "set", "ufl-ab", "up")
        sh("ip", "-n", NS["B"], "link", "set", "ufl-ba", "up")
        # B reaches the collector's address on A's link through its own (delivered locally: no forwarding)
        sh("ip", "-n", NS["B"], "route", "add", "10.231.1.1/32", "via", "10.231.2.1")
    except subprocess.CalledProcessError as exc:
        _cleanup()
        missing_dependency(f"cannot make network namespaces here: {exc.stderr.decode().strip()}")
    try:
        probe = subprocess.run(["unshare", "--time", "--fork", "--monotonic", "1", "true"],
                               capture_output=True, timeout=30)
        if probe.returncode != 0:
            missing_dependency(f"no time namespaces here: {probe.stderr.decode().strip()}")
        yield
    finally:
        _cleanup()


def on(h: str) -> list[str]:
    """A command's prefix: in host h's network namespace, with its own clock."""
    return ["ip", "netns", "exec", NS[h], "unshare", "--time", "--fork", "--monotonic", str(CLOCK_S[h])]


SERVER = """\
import socket, sys, time

def handle(data):
    time.sleep(0.002)  # work before and after: far above the clocks' error bounds
    return data.upper()

s = socket.create_server(("10.231.3.2", 47012))
conn, _ = s.accept()
while True:
    data = conn.recv(64)
    if not data:
        break
    time.sleep(0.002)
    reply = handle(data)
    time.sleep(0.002)
    conn.sendall(reply)
"""

CLIENT = """\
import socket, sys, time

def ask(i):
    return f"ping {i:04d}".encode()

def got(data):
    return data

for _ in range(100):
    try:
        c = socket.create_connection(("10.231.3.2", 47012))
        break
    except OSError:
        time.sleep(0.05)
rounds = int(sys.argv[1])
pause = float(sys.argv[2])
for i in range(rounds):
    c.sendall(ask(i))
    got(c.recv(64))
    time.sleep(pause)
c.close()
"""


def start(h: str, tmp: Path, collector: str, script: str, *args: str) -> subprocess.Popen[str]:
    path = tmp / f"{h}.py"
    path.write_text(script)
    cmd = [*on(h), *ulma_command(["run", "--no-live", "--to", collector, "--to-send", "events",
                                  "--json", str(tmp / f"{h}.json"), "-o", str(tmp / f"{h}.ulma"),
                                  str(path), *args])]
    return subprocess.Popen(cmd, env=env(), cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def slices(chrome: list[dict[str, object]], pid: int, name: str) -> list[tuple[float, float]]:
    out = [(float(str(e["ts"])), float(str(e["ts"])) + float(str(e["dur"])))
           for e in chrome if e.get("ph") == "X" and e.get("pid") == pid and e.get("name") == name]
    return sorted(out)


def test_two_hosts_counts_offsets_and_causal_order(hosts: None, tmp_path: Path) -> None:
    rounds = 30
    collector = Collector(tmp_path, f"10.231.1.1:{PORT}")
    try:
        server = start("B", tmp_path, f"10.231.1.1:{PORT}", SERVER)
        client = start("A", tmp_path, f"10.231.1.1:{PORT}", CLIENT, str(rounds), "0.01")
        said = {h: p.communicate(timeout=120) for h, p in (("A", client), ("B", server))}
        _, _, doc = collector.stop()
    finally:
        collector.kill()
    for h, p in (("A", client), ("B", server)):
        assert p.returncode == 0, said[h][1]
    rows = {p["pid"]: p for p in processes(doc)}
    pid = {h: trace_pid(tmp_path / f"{h}.ulma") for h in "AB"}
    for h in "AB":
        local = json.loads((tmp_path / f"{h}.json").read_text())
        row = rows[pid[h]]
        assert calls(row["functions"]) == calls(local["functions"]), h
        assert trace_events(member(collector.trace, pid[h])) == trace_events(tmp_path / f"{h}.ulma")
        clock = row["clock"]
        assert abs(clock["offset_ns"] - CLOCK_S[h] * 1_000_000_000) <= clock["error_ns"], (h, clock)
        assert clock["error_ns"] < 1_000_000, (h, clock)  # well under the 2 ms gaps checked below
    # the merged trace on one time line: each request asked on A, handled on B, answered on A
    out = tmp_path / "merged.json"
    export = ["export", "--format", "chrome", str(collector.trace), "-o", str(out)]
    result = subprocess.run(ulma_command(export), env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    chrome = json.loads(out.read_text())
    names = {e["pid"]: e["args"]["name"] for e in chrome if e.get("name") == "process_name"
             and str(e["args"]["name"]).endswith(")") and ":" in str(e["args"]["name"])}
    assert {names[pid["A"]].split(":")[0], names[pid["B"]].split(":")[0]} == {doc["hosts"][0]["host"]}
    asked, handled, answered = (slices(chrome, pid["A"], "ask"), slices(chrome, pid["B"], "handle"),
                                slices(chrome, pid["A"], "got"))
    assert len(asked) == len(handled) == len(answered) == rounds
    for i in range(rounds):
        assert asked[i][1] < handled[i][0] < handled[i][1] < answered[i][0], i


def test_a_link_break_loses_nothing_locally_and_the_stream_resumes(hosts: None, tmp_path: Path) -> None:
    collector = Collector(tmp_path, f"10.231.1.1:{PORT}")
    try:
        server = start("B", tmp_path, f"10.231.1.1:{PORT}", SERVER)
        client = start("A", tmp_path, f"10.231.1.1:{PORT}", CLIENT, "1200", "0.01")  # ~14 s
        time.sleep(3)
        sh("ip", "-n", NS["A"], "link", "set", "ufl-a1", "down")
        time.sleep(6)  # longer than the stream's silence limit: it reconnects
        sh("ip", "-n", NS["A"], "link", "set", "ufl-a1", "up")
        said = {h: p.communicate(timeout=120) for h, p in (("A", client), ("B", server))}
        _, _, doc = collector.stop()
    finally:
        collector.kill()
    assert client.returncode == 0, said["A"][1]
    pid = trace_pid(tmp_path / "A.ulma")
    row = {p["pid"]: p for p in processes(doc)}[pid]
    local = json.loads((tmp_path / "A.json").read_text())
    assert calls(row["functions"]) == calls(local["functions"])
    # the local trace lost nothing
    assert calls(local["functions"])[("ask", str(tmp_path / "A.py"), 3)] == 1200
    assert trace_events(tmp_path / "A.ulma") == local["events"]
    assert row["connections"] >= 2 and row["finished"], row
    assert trace_events(member(collector.trace, pid)) == trace_events(tmp_path / "A.ulma")
    stream_lines = [line for line in ulma_lines(said["A"][1]) if "stream" in line]
    assert len(stream_lines) == 1 and stream_lines[0].startswith("ulma: streamed"), said["A"][1]
