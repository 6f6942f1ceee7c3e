"""`--tls-cert/--tls-key/--tls-ca`: the stream goes over TLS with a certificate required on both
sides.  The certificates are made here with the openssl command: a CA, a collector's and a host's
certificate signed by it, and a stranger's signed by a CA of its own.  Ground truth: each run's
own report."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import missing_dependency
from tests.fleet.helpers import Collector, calls, processes, run, ulma_lines

PROGRAM = "def leaf(n):\n    return n + 1\n\nfor i in range(3000):\n    leaf(i)\n"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


# the extensions Python 3.13's strict verification (VERIFY_X509_STRICT) asks of a CA and of a leaf
CA_EXTENSIONS = ("basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign",
                 "subjectKeyIdentifier=hash")
LEAF_EXTENSIONS = ("basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
                   "extendedKeyUsage=serverAuth,clientAuth", "subjectAltName=IP:127.0.0.1",
                   "authorityKeyIdentifier=keyid", "subjectKeyIdentifier=hash")


def _ca(folder: Path, name: str) -> None:
    extensions = [arg for ext in CA_EXTENSIONS for arg in ("-addext", ext)]
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", *extensions, cwd=folder)


def _signed(folder: Path, name: str, ca: str) -> None:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", cwd=folder)
    (folder / f"{name}.ext").write_text("".join(f"{ext}\n" for ext in LEAF_EXTENSIONS))
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=folder)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        missing_dependency("needs the openssl command (Debian package openssl) to make certificates")
    folder = tmp_path_factory.mktemp("certs")
    _ca(folder, "ca")
    _signed(folder, "collector", "ca")
    _signed(folder, "host", "ca")
    _ca(folder, "otherca")
    _signed(folder, "stranger", "otherca")
    return folder


def tls(certs: Path, name: str, ca: str = "ca") -> list[str]:
    return ["--tls-cert", str(certs / f"{name}.pem"), "--tls-key", str(certs / f"{name}.key"),
            "--tls-ca", str(certs / f"{ca}.pem")]


def test_a_tls_stream_carries_the_runs_figures(tmp_path: Path, certs: Path) -> None:
    program = tmp_path / "prog.py"
    program.write_text(PROGRAM)
    collector = Collector(tmp_path, events=False, extra=tls(certs, "collector"))
    try:
        local = tmp_path / "local.json"
        result = run(["--to", collector.address, *tls(certs, "host"), "--json", str(local), str(program)],
                     cwd=tmp_path)
        _, err, doc = collector.stop()
    finally:
        collector.kill()
    assert result.returncode == 0, result.stderr
    assert not [line for line in ulma_lines(result.stderr) if "failed" in line], result.stderr
    (row,) = processes(doc)
    assert calls(row["functions"]) == calls(json.loads(local.read_text())["functions"])
    assert "refused" not in err


@pytest.mark.parametrize("client", ["stranger", "plain"])
def test_a_host_without_a_certificate_of_the_ca_is_refused_and_its_run_goes_on(
        client: str, tmp_path: Path, certs: Path) -> None:
    program = tmp_path / "prog.py"
    program.write_text(PROGRAM)
    collector = Collector(tmp_path, events=False, extra=tls(certs, "collector"))
    try:
        local = tmp_path / "local.json"
        mine = tls(certs, "stranger", "ca") if client == "stranger" else []
        result = run(["--to", collector.address, *mine, "--json", str(local), str(program)], cwd=tmp_path)
        _, _err, doc = collector.stop()
    finally:
        collector.kill()
    assert result.returncode == 0, result.stderr
    assert local.exists() and "Traceback" not in result.stderr
    said = [line for line in ulma_lines(result.stderr) if "stream" in line]
    assert len(said) == 1 and "failed" in said[0], result.stderr
    assert doc["hosts"] == [], doc  # nothing of it reached the collector
