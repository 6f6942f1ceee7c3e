"""Who may read the live view: only requests that carry the run's token, sent to 127.0.0.1 by
that very address (another Host is a page that rebound its own name); the server listens on the
loopback address only."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.web.conftest import WebRun


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebRun]:
    run = WebRun("hot.py", tmp_path_factory.mktemp("security"), "--no-report")
    try:
        yield run
    finally:
        run.finish()
        run.kill()


def parts(run: WebRun) -> tuple[str, int, str]:
    url = urlsplit(run.url)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port, parse_qs(url.query)["token"][0]


def get(run: WebRun, path: str, host: str | None = None) -> tuple[int, bytes]:
    hostname, port, _token = parts(run)
    conn = http.client.HTTPConnection(hostname, port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_the_address_is_loopback_with_a_long_random_token(served: WebRun) -> None:
    host, _port, token = parts(served)
    assert host == "127.0.0.1"
    assert len(token) >= 32  # secrets.token_urlsafe(24)


def test_the_page_needs_the_token(served: WebRun) -> None:
    _host, _port, token = parts(served)
    assert get(served, f"/?token={token}")[0] == 200
    assert b"ulma" in get(served, f"/?token={token}")[1]
    for path in ("/", "/?token=", f"/?token={token[:-1]}", f"/?token={token}x", "/ws",
                 f"/nothing?token={token[::-1]}"):
        status, body = get(served, path)
        assert status == 403, path
        assert b"ulma(" not in body  # no page, no script


def test_another_host_name_gets_403_even_with_the_token(served: WebRun) -> None:
    _host, port, token = parts(served)
    assert get(served, f"/?token={token}", host=f"evil.example:{port}")[0] == 403
    assert get(served, f"/?token={token}", host=f"localhost:{port}")[0] == 200


def test_the_websocket_needs_the_token(served: WebRun) -> None:
    host, port, token = parts(served)
    for query in ("", "?token=", f"?token={token[:-1]}"):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://{host}:{port}/ws{query}", open_timeout=10)
        assert refused.value.response.status_code == 403, query
    with connect(f"ws://{host}:{port}/ws?token={token}", open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=20))["type"] == "snapshot"


def test_it_listens_on_the_loopback_address_only(served: WebRun) -> None:
    _host, port, _token = parts(served)
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # LISTEN
                listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, and on no other address (nor IPv6)
