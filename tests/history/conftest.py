"""Fixtures for the fleet history: the embedded chDB, and a real two-shard ClickHouse cluster
(two Debian clickhouse-server processes on loopback, started once for the tests that need it and
stopped at the end of the session)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import missing_dependency
from ulma.history.localcluster import LocalCluster, server_binary

NEEDS_CHDB = "needs chDB: pip install 'ulma[history]'"
NEEDS_SERVER = "needs Debian's clickhouse-server"
NEEDS_DRIVER = "needs clickhouse-driver: pip install 'ulma[history]'"


def need_chdb() -> None:
    if importlib.util.find_spec("chdb") is None:
        missing_dependency(NEEDS_CHDB)


def need_server() -> None:
    if server_binary() is None:
        missing_dependency(NEEDS_SERVER)
    if importlib.util.find_spec("clickhouse_driver") is None:
        missing_dependency(NEEDS_DRIVER)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    need_server()
    with LocalCluster(tmp_path_factory.mktemp("clickhouse")) as running:
        yield running


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    need_chdb()
    return tmp_path_factory.mktemp("chdb") / "history"
