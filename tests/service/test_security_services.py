"""A real faceflow service (ingest, with its in-memory frame sink: no broker needed) started with
only the FACEFLOW_TLS_* / FACEFLOW_AUTH_TOKEN_FILE variables set, called over TLS and mTLS by
faceflow's own client channel configured from the client variables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support_ingest import astronaut_jpeg
from support_security import Certificates, make_certificates

from faceflow.ingest.config import IngestConfig
from faceflow.ingest.grpc_server import IngestServer
from faceflow.ingest.producer import InMemoryFrameSink
from faceflow.ingest.service import IngestService
from faceflow.service.security import channel_for, client_security_from_env
from faceflow.v1 import ingest_pb2, ingest_pb2_grpc

TIMEOUT = 10
TOKEN = "ingest-token-8c7b6a5d"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def token(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def ingest(
    certs: Certificates, token: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[IngestService, IngestServer]]:
    monkeypatch.setenv("FACEFLOW_TLS_CERT_FILE", str(certs.server_cert))
    monkeypatch.setenv("FACEFLOW_TLS_KEY_FILE", str(certs.server_key))
    monkeypatch.setenv("FACEFLOW_TLS_CLIENT_CA_FILE", str(certs.ca))
    monkeypatch.setenv("FACEFLOW_AUTH_TOKEN_FILE", str(token))
    service = IngestService(IngestConfig(target_fps=0.0, seq_start="zero"), sink=InMemoryFrameSink())
    service.start(serve_metrics=False)
    server = IngestServer(service, "127.0.0.1", 0, workers=4)
    server.start()
    yield service, server
    server.stop(0).wait(5)
    service.stop(2)


def client_env(certs: Certificates, token: Path | None, *, client_cert: bool = True) -> dict[str, str]:
    env = {"FACEFLOW_TLS_CA_FILE": str(certs.ca)}
    if client_cert:
        env |= {
            "FACEFLOW_TLS_CLIENT_CERT_FILE": str(certs.client_cert),
            "FACEFLOW_TLS_CLIENT_KEY_FILE": str(certs.client_key),
        }
    if token is not None:
        env["FACEFLOW_AUTH_TOKEN_FILE"] = str(token)
    return env


def pushed(channel: grpc.Channel) -> int:
    frames = iter([ingest_pb2.PushFramesRequest(stream_id="door", image=astronaut_jpeg())] * 2)
    reply = ingest_pb2_grpc.IngestStub(channel).PushFrames(frames, timeout=TIMEOUT)
    return int(reply.accepted)


def test_ingest_started_from_the_environment_serves_an_authorized_client_over_mtls(
    ingest: tuple[IngestService, IngestServer], certs: Certificates, token: Path
) -> None:
    service, server = ingest
    assert server.server.security.describe() == "TLS (client certificates required), bearer token"
    security = client_security_from_env(client_env(certs, token))
    with channel_for(f"localhost:{server.port}", security) as channel:
        listed = ingest_pb2_grpc.IngestStub(channel).ListSources(
            ingest_pb2.ListSourcesRequest(), timeout=TIMEOUT
        )
        assert list(listed.sources) == []
        assert pushed(channel) == 2
    sink = service.sink
    assert isinstance(sink, InMemoryFrameSink) and len(sink.frames) == 2


def test_ingest_refuses_a_client_without_the_token_or_without_a_certificate(
    ingest: tuple[IngestService, IngestServer], certs: Certificates
) -> None:
    service, server = ingest
    target = f"127.0.0.1:{server.port}"
    with channel_for(target, client_security_from_env(client_env(certs, None))) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            pushed(channel)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
        assert health.status == health_pb2.HealthCheckResponse.SERVING  # the probe needs no token
    counted = [
        line
        for line in service.metrics.base.render().splitlines()
        if line.startswith("faceflow_grpc_refused_total{") and 'method="PushFrames"' in line
    ]
    assert len(counted) == 1 and 'code="UNAUTHENTICATED"' in counted[0] and counted[0].endswith(" 1.0")
    no_cert = client_security_from_env(client_env(certs, None, client_cert=False))
    with channel_for(target, no_cert) as channel, pytest.raises(grpc.RpcError) as refused:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
    assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
