"""The exec readiness probe of the grpc-tls component against a real gRPC server over TLS.

Certificates come from the openssl CLI (a CA and a server certificate for ``faceflow-ingest``,
laid out like a cert-manager Secret: tls.crt, tls.key, ca.crt); the server is grpcio with the
standard health servicer, with and without required client certificates (mTLS).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "k8s" / "components" / "grpc-tls" / "grpc_health_probe.py"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("grpc-tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=faceflow test CA",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=faceflow-ingest",
            "-keyout", "tls.key", "-out", "tls.csr", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=DNS:faceflow-ingest,DNS:faceflow-ingest.faceflow.svc\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "1", "-extfile", "san.ext", "-out", "tls.crt", cwd=d)  # fmt: skip
    return d


class Server:
    def __init__(self, tls_dir: Path | None, *, mtls: bool = False) -> None:
        self.health = health.HealthServicer()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        if tls_dir is None:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        else:
            credentials = grpc.ssl_server_credentials(
                [((tls_dir / "tls.key").read_bytes(), (tls_dir / "tls.crt").read_bytes())],
                root_certificates=(tls_dir / "ca.crt").read_bytes() if mtls else None,
                require_client_auth=mtls,
            )
            self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.server.start()

    def serving(self, yes: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if yes else health_pb2.HealthCheckResponse.NOT_SERVING
        self.health.set("", status)


@pytest.fixture(params=[False, True], ids=["tls", "mtls"])
def server(request: pytest.FixtureRequest, tls_dir: Path) -> Iterator[Server]:
    s = Server(tls_dir, mtls=request.param)
    yield s
    s.server.stop(0)


def probe(port: int, tls_dir: Path, server_name: str = "faceflow-ingest") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(PROBE),
            "--port",
            str(port),
            "--server-name",
            server_name,
            "--tls-dir",
            str(tls_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serving_and_not_serving(server: Server, tls_dir: Path) -> None:
    server.serving(True)
    ok = probe(server.port, tls_dir)
    assert (ok.returncode, ok.stderr) == (0, "")
    server.serving(False)
    draining = probe(server.port, tls_dir)
    assert (draining.returncode, draining.stderr) == (1, "grpc health probe: server is NOT_SERVING\n")


def test_a_name_not_in_the_certificate_fails(server: Server, tls_dir: Path) -> None:
    server.serving(True)
    result = probe(server.port, tls_dir, server_name="faceflow-aggregator")
    assert result.returncode == 1
    assert result.stderr.startswith("grpc health probe: UNAVAILABLE")


def test_a_plaintext_server_fails(tls_dir: Path) -> None:
    plain = Server(None)
    try:
        plain.serving(True)
        result = probe(plain.port, tls_dir)
    finally:
        plain.server.stop(0)
    assert result.returncode == 1
    assert result.stderr.startswith("grpc health probe: UNAVAILABLE")


def test_missing_certificates_fail(server: Server, tmp_path: Path) -> None:
    result = probe(server.port, tmp_path)
    assert result.returncode == 1
    assert "ca.crt" in result.stderr
