"""A test whose outside reader (go, npm) is missing skips, naming the package, except where
ULMA_REQUIRE_DEPS=1 (CI), where it fails: CI installs them, so a skip there hides a test not run."""

from __future__ import annotations

import pytest

from tests.conftest import REQUIRE_DEPS, missing_dependency

WHY = "`go` is not installed (Debian package golang-go): cannot run go tool pprof"


def test_a_missing_dependency_skips_with_the_package_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_DEPS, raising=False)
    with pytest.raises(pytest.skip.Exception, match="golang-go"):
        missing_dependency(WHY)


def test_a_missing_dependency_fails_when_dependencies_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_DEPS, "1")
    with pytest.raises(pytest.fail.Exception, match="golang-go"):
        missing_dependency(WHY)
