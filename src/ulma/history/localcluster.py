"""A ClickHouse cluster of local server processes on loopback, for the tests and bench/history.py:
``shards`` servers (Debian's ``clickhouse-server``), each with its own config and data directory
under ``root``, every one's ``remote_servers`` naming them all as the cluster ``CLUSTER``, one
shard each.  Stopped by ``stop()`` (or the context manager); nothing is left running."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

CLUSTER = "ulma_fleet"
SERVER = "clickhouse-server"


def server_binary() -> str | None:
    """The clickhouse-server program, or None where it is not installed (it is in /usr/sbin)."""
    return shutil.which(SERVER) or shutil.which(SERVER, path="/usr/sbin:/usr/bin:/sbin")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{dir}/server.log</log><errorlog>{dir}/error.log</errorlog>
        <console>0</console></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp}</tcp_port>
    <http_port>{http}</http_port>
    <interserver_http_port>{inter}</interserver_http_port>
    <max_connections>64</max_connections>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <path>{dir}/data/</path>
    <tmp_path>{dir}/tmp/</tmp_path>
    <user_files_path>{dir}/user_files/</user_files_path>
    <format_schema_path>{dir}/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <remote_servers><{cluster}>{shards}</{cluster}></remote_servers>
</yandex>
"""
_SHARD = "<shard><replica><host>127.0.0.1</host><port>{tcp}</port></replica></shard>"
_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
        <profile>default</profile><quota>default</quota></default></users>
    <quotas><default></default></quotas>
</yandex>
"""


class LocalCluster:
    """Started by start(); ``ports``: each shard's native-protocol port, the first is the one to
    name in a DSN (``dsn(db)``)."""

    def __init__(self, root: str | os.PathLike[str], shards: int = 2) -> None:
        self.root = Path(root)
        self.shards = shards
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def dsn(self, db: str = "ulma") -> str:
        return f"clickhouse://127.0.0.1:{self.ports[0]}/{db}?cluster={CLUSTER}"

    def start(self, timeout: float = 60.0) -> LocalCluster:
        binary = server_binary()
        if binary is None:
            raise FileNotFoundError(f"{SERVER} is not installed")
        ports = _free_ports(3 * self.shards)
        self.ports = ports[:self.shards]
        shards = "".join(_SHARD.format(tcp=p) for p in self.ports)
        try:
            for i, tcp in enumerate(self.ports):
                d = self.root / f"shard{i + 1}"
                for sub in ("data", "tmp", "user_files", "format_schemas"):
                    (d / sub).mkdir(parents=True, exist_ok=True)
                (d / "config.xml").write_text(_CONFIG.format(
                    dir=d, tcp=tcp, http=ports[self.shards + i], inter=ports[2 * self.shards + i],
                    cluster=CLUSTER, shards=shards))
                (d / "users.xml").write_text(_USERS)
                out = open(d / "stdout.log", "wb")  # noqa: SIM115 (the server's, closed with it)
                self.procs.append(subprocess.Popen([binary, f"--config-file={d / 'config.xml'}"], cwd=d,
                                                   stdout=out, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL, start_new_session=True))
                out.close()
            deadline = time.monotonic() + timeout
            for i, port in enumerate(self.ports):
                while not _answers(port):
                    if self.procs[i].poll() is not None or time.monotonic() > deadline:
                        log = self.root / f"shard{i + 1}" / "error.log"
                        said = log.read_text()[-2000:] if log.exists() else ""
                        raise RuntimeError(f"clickhouse-server on port {port} did not come up: {said}")
                    time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _answers(port: int) -> bool:
    """The server takes native-protocol connections (its HTTP port comes up at the same time)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
