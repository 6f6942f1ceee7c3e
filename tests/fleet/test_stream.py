"""`ulma run --to` and `ulma collect` on this machine: what the collector shows is what each run's
own report says, clock offsets injected on the streaming side (ULMA_FLEET_TEST_CLOCK_OFFSET_NS) are
recovered within the bound the collector reports, the token is required and never on a command
line, and bad input is one line.  (tests/fleet/test_netns.py: hosts of their own.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest
import zstandard

from tests.conftest import run_process, ulma_command
from tests.fleet.helpers import (
    TOKEN,
    Collector,
    calls,
    env,
    member,
    processes,
    run,
    trace_events,
    trace_pid,
    ulma_lines,
)
from ulma.fleet import wire

PROGRAM = """\
import sys, time

def leaf(n):
    return sum(range(n))

def middle(k):
    for _ in range(k):
        leaf(200)

def main(rounds):
    for _ in range(rounds):
        middle(50)
        time.sleep(0.01)

main(int(sys.argv[1]))
"""


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "prog.py"
    path.write_text(PROGRAM)
    return path


def test_collector_counts_equal_each_runs_report_and_offsets_are_recovered(tmp_path: Path,
                                                                           program: Path) -> None:
    collector = Collector(tmp_path)
    try:
        offsets = {0: 3_000_000_000, 1: -2_000_000_000}  # the two "hosts'" clocks, against ours
        procs = []
        for i, offset in offsets.items():
            cmd = ulma_command(["run", "--no-live", "--to", collector.address, "--to-send", "events",
                                "--json", str(tmp_path / f"local{i}.json"),
                                "-o", str(tmp_path / f"local{i}.ulma"),
                                str(program), "60"])
            procs.append(subprocess.Popen(cmd, env=env(ULMA_FLEET_TEST_CLOCK_OFFSET_NS=str(offset)),
                                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True))
        time.sleep(0.3)
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
        results = [p.communicate(timeout=120) for p in procs]
        out, err, doc = collector.stop()
    finally:
        collector.kill()
    assert TOKEN not in ps, "the token is on a command line"
    for p, (_, run_err) in zip(procs, results, strict=True):
        assert p.returncode == 0, run_err
        assert any("streamed" in line for line in ulma_lines(run_err)), run_err
    rows = {p["pid"]: p for p in processes(doc)}
    assert len(rows) == 2, doc
    import json

    merged_expected: dict[tuple[str, str, int], int] = {}
    for i, offset in offsets.items():
        local = json.loads((tmp_path / f"local{i}.json").read_text())
        row = rows[trace_pid(tmp_path / f"local{i}.ulma")]
        assert row["finished"], row
        assert calls(row["functions"]) == calls(local["functions"])
        assert row["events"] == local["events"]
        # the records themselves: the collector's trace of this process holds every one of the local trace's
        assert row["events_received"] == trace_events(tmp_path / f"local{i}.ulma")
        assert trace_events(member(collector.trace, row["pid"])) == trace_events(tmp_path / f"local{i}.ulma")
        clock = row["clock"]
        assert clock["error_ns"] is not None and clock["samples"] >= 1
        assert abs(clock["offset_ns"] - offset) <= clock["error_ns"], clock
        for key, n in calls(local["functions"]).items():
            merged_expected[key] = merged_expected.get(key, 0) + n
    assert calls(doc["functions"]) == merged_expected
    assert "leaf" in out and str(next(iter(rows))) in out  # the table: its processes and functions
    assert "refused" not in err


def test_a_wrong_token_is_refused_in_one_line_and_the_run_goes_on(tmp_path: Path, program: Path) -> None:
    collector = Collector(tmp_path, events=False)
    try:
        result = run(["--to", collector.address, "--json", str(tmp_path / "local.json"), str(program), "3"],
                     token="not-the-collectors-token", cwd=tmp_path)
        _, err, doc = collector.stop()
    finally:
        collector.kill()
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "local.json").exists()
    said = [line for line in ulma_lines(result.stderr) if "stream" in line]
    assert said == [f"ulma: the stream to {collector.address} failed: the collector refused us: "
                    "wrong token"], result.stderr
    assert "Traceback" not in result.stderr
    assert [line for line in err.splitlines() if "refused" in line] == \
        ["ulma collect: refused a connection from 127.0.0.1: wrong token"], err
    assert doc["hosts"] == [] and doc["refused_connections"] == 1


@pytest.mark.parametrize("command", [["run", "--to", "127.0.0.1:9"], ["collect", "--listen", "127.0.0.1:0"]])
def test_a_missing_token_is_one_line_before_anything_runs(tmp_path: Path, program: Path,
                                                          command: list[str]) -> None:
    args = [*command, str(program), "1"] if command[0] == "run" else command
    result = subprocess.run(ulma_command(args), env=env(None), cwd=tmp_path, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "ulma: error: a token is needed: set ULMA_TOKEN (the same on both sides) or give --token-file"]


def test_a_token_file_is_read_and_a_short_token_refused(tmp_path: Path, program: Path) -> None:
    short = tmp_path / "short"
    short.write_text("abc\n")
    result = run(["--to", "127.0.0.1:9", "--token-file", str(short), str(program), "1"], token=None,
                 cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"ulma: error: the token file {short} holds a token of 3 bytes: use at least 8"]
    good = tmp_path / "token"
    good.write_text(TOKEN + "\n")
    collector = Collector(tmp_path, events=False)
    try:
        result = run(["--to", collector.address, "--token-file", str(good), str(program), "2"], token=None,
                     cwd=tmp_path)
        _, _, doc = collector.stop()
    finally:
        collector.kill()
    assert result.returncode == 0 and len(processes(doc)) == 1, result.stderr


BAD = [
    (["run", "--to", "nonsense"], "ulma: error: --to must be HOST:PORT, not 'nonsense'"),
    (["run", "--to", "host:99999"],
     "ulma: error: --to: the port must be a number from 1 to 65535, not '99999'"),
    (["run", "--to", "::1:80"],
     "ulma: error: --to: write an IPv6 address in brackets, as [::1]:PORT, not '::1:80'"),
    (["run", "--to-send", "events"],
     "ulma: error: --to-send, --token-file and --tls-* go with --to HOST:PORT"),
    (["collect", "--listen", "x"], "ulma: error: --listen must be HOST:PORT, not 'x'"),
    (["collect", "--listen", "127.0.0.1:0", "--duration", "0"],
     "ulma: error: --duration must be more than 0 and at most"),
    (["attach", "1", "--to", "a:b"], "ulma: error: --to: the port must be a number from 1 to 65535, not 'b'"),
]


@pytest.mark.parametrize(("args", "expected"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line(tmp_path: Path, program: Path, args: list[str], expected: str) -> None:
    if args[0] == "run":
        args = [*args, str(program), "1"]
    result = run_process(ulma_command(args), cwd=tmp_path, env={"ULMA_TOKEN": TOKEN}, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), result.stderr


def test_an_unreachable_collector_is_one_line_and_the_report_still_comes(tmp_path: Path,
                                                                         program: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run(["--to", f"127.0.0.1:{port}", "--json", str(tmp_path / "local.json"), str(program), "3"],
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "events" in result.stderr and "leaf" in result.stderr  # the report
    assert (tmp_path / "local.json").exists()
    said = [line for line in ulma_lines(result.stderr) if "stream" in line]
    assert said == [f"ulma: the stream to 127.0.0.1:{port} failed: Connection refused; nothing was sent "
                    "(the local report has everything)"], result.stderr


def test_a_full_send_queue_drops_events_from_the_stream_only_and_says_so(tmp_path: Path,
                                                                         program: Path) -> None:
    collector = Collector(tmp_path)
    try:
        result = run(["--to", collector.address, "--to-send", "events", "-o", str(tmp_path / "local.ulma"),
                      "--json", str(tmp_path / "local.json"), str(program), "40"],
                     cwd=tmp_path, ULMA_FLEET_TEST_QUEUE_BYTES="64")
        _, _, doc = collector.stop()
    finally:
        collector.kill()
    assert result.returncode == 0, result.stderr
    import json

    local = json.loads((tmp_path / "local.json").read_text())
    (row,) = processes(doc)
    total = trace_events(tmp_path / "local.ulma")
    dropped = row["stream_dropped_events"]
    assert dropped > 0 and row["events_received"] + dropped == total, row
    assert calls(row["functions"]) == calls(local["functions"])  # the figures are whole
    said = [line for line in ulma_lines(result.stderr) if "stream" in line]
    assert len(said) == 2 and said[1].startswith("ulma: streamed "), result.stderr
    assert said[:1] == [f"ulma: the stream to {collector.address} fell behind: {dropped} of {total} "
                        "events were not streamed (the figures were; the local report and -o have "
                        "everything)"], result.stderr


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set so far (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


async def send_bomb(address: str, gib: int) -> None:
    """A peer that holds the token says hello, then sends `gib` GiB of frames (of a kind the
    collector ignores) that zstd packs into some hundred KiB."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        await wire.client_handshake(reader, writer, TOKEN.encode())
        pack = zstandard.ZstdCompressor(level=3).compressobj()
        hello = {"stream": "bomb", "pid": 1, "host": "bomb", "command": "bomb", "mode": "aggregates"}
        writer.write(pack.compress(wire.frame(wire.HELLO, json.dumps(hello).encode())))
        junk = wire.frame(b"z", b"x" * 1019) * 1024  # 1 MiB
        for _ in range(gib * 1024):
            writer.write(pack.compress(junk))
        writer.write(pack.flush())
        await writer.drain()
        await asyncio.wait_for(reader.read(), 30)  # until the collector hangs up
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


def test_a_decompression_bomb_from_a_peer_with_the_token_is_dropped_in_one_line_without_the_memory(
        tmp_path: Path, program: Path) -> None:
    """1 GiB of frames in ~100 KiB of zstd: the collector stops inflating past 1024 times what a read
    brought, says so in one line and goes on (a run streams to it after); its memory stays bounded
    (inflating each read whole took GiBs)."""
    collector = Collector(tmp_path, events=False)
    try:
        asyncio.run(send_bomb(collector.address, 1))
        peak = peak_rss_mib(collector.proc.pid)
        result = run(["--to", collector.address, "--json", str(tmp_path / "local.json"), str(program), "3"],
                     cwd=tmp_path)
        _, err, doc = collector.stop()
    finally:
        collector.kill()
    assert peak < 400, peak
    said = [line for line in err.splitlines() if "dropped a connection" in line]
    assert said == ["ulma collect: dropped a connection from 127.0.0.1: WireError: a read decompressed to "
                    "more than 1024 times its size (a decompression bomb)"], err
    assert "Traceback" not in err
    assert result.returncode == 0, result.stderr
    assert len(doc["hosts"]) >= 1
