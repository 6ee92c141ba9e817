"""Kafka clients against a real broker with a SASL listener (the project's KRaft broker from its
Maven jars, started by :func:`faceflow.runtime.kafka_broker.start` with a ``SaslListener``):
SASL_PLAINTEXT and SASL_SSL, PLAIN and SCRAM-SHA-512, configured only through the FACEFLOW_KAFKA_*
variables. Then the aggregator as Kubernetes runs it (SASL_SSL + SCRAM-SHA-512 to Kafka, TLS and a
bearer token on gRPC), driven by ``faceflow identities``."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from kafka.errors import KafkaError
from support_aggregator import config as aggregator_config
from support_aggregator import make_topics, produce, walking
from support_analyzer import read_all
from support_runtime import free_port_settings
from support_security import Certificates, make_certificates

from faceflow import topics
from faceflow.aggregator.service import AggregatorService
from faceflow.kafka import admin
from faceflow.kafka.clients import KafkaSecurity, make_consumer, make_producer
from faceflow.runtime import kafka_broker, procs
from faceflow.v1 import face_event_pb2

pytestmark = pytest.mark.integration

USERS = {"admin": "admin-pw-0a1b2c", "alice": "alice-pw-3d4e5f", "faceflow-aggregator": "agg-pw-6a7b8c"}
MECHANISMS = ("PLAIN", "SCRAM-SHA-512")
#: A refused client fails fast: kafka-python retries its bootstrap for 30 s by default.
FAIL_FAST = {"bootstrap_timeout_ms": 4000, "max_block_ms": 4000}


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    protocol: str
    certs: Certificates
    folder: Path
    log: Path

    def failed_authentications(self) -> list[str]:
        """The broker's log lines about refused SASL logins so far."""
        return [line for line in self.log.read_text().splitlines() if "Failed authentication with" in line]

    def env(
        self, user: str = "alice", mechanism: str = "SCRAM-SHA-512", password: str | None = None
    ) -> dict[str, str]:
        """The FACEFLOW_KAFKA_* variables for ``user`` (the password goes through a file)."""
        path = self.folder / f"{user}.{uuid.uuid4().hex[:8]}.password"
        path.write_text((USERS[user] if password is None else password) + "\n")
        env = {
            "FACEFLOW_KAFKA_SECURITY_PROTOCOL": self.protocol,
            "FACEFLOW_KAFKA_SASL_MECHANISM": mechanism,
            "FACEFLOW_KAFKA_SASL_USERNAME": user,
            "FACEFLOW_KAFKA_SASL_PASSWORD_FILE": str(path),
        }
        if self.protocol == "SASL_SSL":
            env["FACEFLOW_KAFKA_SSL_CAFILE"] = str(self.certs.ca)
        return env

    def security(self, **kwargs: str) -> KafkaSecurity:
        return KafkaSecurity.from_env(self.env(**kwargs))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@contextmanager
def running_broker(protocol: str, home: Path, certs: Certificates) -> Iterator[Broker]:
    settings = dataclasses.replace(free_port_settings(home), external_kafka=None)
    tls = protocol == "SASL_SSL"
    listener = kafka_broker.SaslListener(
        users=USERS,
        mechanisms=MECHANISMS,
        keystore=certs.server_pem if tls else None,
        truststore=certs.ca if tls else None,
    )
    assert listener.protocol == protocol
    install = kafka_broker.ensure_jars(settings.cache)
    record = kafka_broker.start(settings, install, sasl=listener)
    broker = Broker(f"{settings.host}:{settings.kafka_port}", protocol, certs, home, Path(record.log))
    try:
        procs.wait_until(
            f"the {protocol} broker",
            lambda: admin.broker_answers_metadata(broker.bootstrap, security=broker.security()),
            timeout_s=kafka_broker.START_TIMEOUT_S,
            record=record,
        )
        yield broker
    finally:
        procs.stop(record)


@pytest.fixture(scope="module")
def sasl_plaintext_broker(tmp_path_factory: pytest.TempPathFactory, certs: Certificates) -> Iterator[Broker]:
    with running_broker("SASL_PLAINTEXT", tmp_path_factory.mktemp("kafka-sasl-plaintext"), certs) as broker:
        yield broker


@pytest.fixture(scope="module")
def sasl_ssl_broker(tmp_path_factory: pytest.TempPathFactory, certs: Certificates) -> Iterator[Broker]:
    with running_broker("SASL_SSL", tmp_path_factory.mktemp("kafka-sasl-ssl"), certs) as broker:
        yield broker


@pytest.fixture(params=["SASL_PLAINTEXT", "SASL_SSL"])
def broker(request: pytest.FixtureRequest) -> Broker:
    """Each of the two brokers in turn."""
    found: Broker = request.getfixturevalue(f"{request.param.lower()}_broker")
    return found


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_clients_configured_by_the_environment_round_trip_a_record(
    broker: Broker,
    unique_name: str,
    mechanism: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    set_env(monkeypatch, broker.env(mechanism=mechanism))
    spec = topics.TopicSpec(name=unique_name, partitions=1, configs={})
    assert admin.ensure_topics(broker.bootstrap, [spec]) == {unique_name: "created"}
    with closing(make_producer(broker.bootstrap, client_id="test-sasl")) as producer:
        producer.send(unique_name, key=b"k", value=b"over " + broker.protocol.encode()).get(timeout=30)
    with closing(
        make_consumer(broker.bootstrap, group_id=unique_name, client_id="test-sasl", topics=[unique_name])
    ) as consumer:
        got: list[bytes] = []
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                got.extend(r.value for r in batch)
    assert got == [b"over " + broker.protocol.encode()]
    assert f"{broker.protocol}, {mechanism} as alice" in caplog.text  # the client said how it connects
    assert all(password not in caplog.text for password in USERS.values())


@pytest.mark.parametrize(
    ("mechanism", "cause"),
    [
        ("SCRAM-SHA-512", "invalid credentials with SASL mechanism SCRAM-SHA-512"),
        ("PLAIN", "Authentication failed: Invalid username or password"),
    ],
)
def test_a_wrong_password_is_refused_by_the_broker(
    broker: Broker, mechanism: str, cause: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker's log names the cause; kafka-python logs it too, or only sees the broker close
    the connection (it may read the close before the error response), so its log is not checked."""
    caplog.set_level(logging.DEBUG)
    before = len(broker.failed_authentications())
    wrong = broker.security(mechanism=mechanism, password="wrong-pw")
    with pytest.raises(KafkaError):
        make_producer(broker.bootstrap, client_id="test-bad", security=wrong, **FAIL_FAST)
    refused = broker.failed_authentications()[before:]
    assert any(cause in line for line in refused)
    assert "wrong-pw" not in caplog.text


def test_a_client_without_sasl_is_refused(broker: Broker) -> None:
    with pytest.raises(KafkaError):
        make_producer(broker.bootstrap, client_id="test-plain", security=KafkaSecurity(), **FAIL_FAST)


def test_sasl_ssl_verifies_the_broker_certificate(
    sasl_ssl_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    broker = sasl_ssl_broker
    # kafka-python's own log says why; an in-process `faceflow` CLI run by an earlier test may have
    # quietened the "kafka" logger (cli.main does, below INFO), so ask for it here.
    caplog.set_level(logging.INFO, logger="kafka")
    distrusting = dataclasses.replace(broker.security(), ssl_cafile=broker.certs.other_ca)
    with pytest.raises(KafkaError):
        make_producer(broker.bootstrap, client_id="test-ca", security=distrusting, **FAIL_FAST)
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def faceflow_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceflow.cli", *args],
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_aggregator_as_kubernetes_runs_it(
    sasl_ssl_broker: Broker, unique_name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SCRAM-SHA-512 over SASL_SSL to Kafka, TLS and a bearer token on gRPC, every setting from the
    variables the manifests set; ``faceflow identities`` with FACEFLOW_TLS_CA_FILE and
    FACEFLOW_AUTH_TOKEN_FILE lists and names what the aggregator built from the analyses topic."""
    broker = sasl_ssl_broker
    token = tmp_path / "token"
    token.write_text("aggregator-token-4f5e6d\n")
    set_env(monkeypatch, broker.env(user="faceflow-aggregator"))
    set_env(
        monkeypatch,
        {
            "FACEFLOW_TLS_CERT_FILE": str(broker.certs.server_cert),
            "FACEFLOW_TLS_KEY_FILE": str(broker.certs.server_key),
            "FACEFLOW_AUTH_TOKEN_FILE": str(token),
        },
    )
    t = make_topics(broker.bootstrap, unique_name, partitions=1)
    service = AggregatorService(aggregator_config(broker.bootstrap, "127.0.0.1:1", t, unique_name))
    service.start()
    try:
        assert service.server is not None
        assert service.server.security.describe() == "TLS, bearer token"
        produce(broker.bootstrap, t.analyses, walking("cam-1", "bob", range(6)))
        faces = read_all(broker.bootstrap, t.faces, until=lambda r: len(r) >= 6, timeout_s=60)
        events = [face_event_pb2.FaceEvent.FromString(r.value) for r in faces]
        anon = [e.identity_id for e in events if e.identity_id.startswith("anon-")][-1]
        target = f"127.0.0.1:{service.server.port}"
        client = {"FACEFLOW_TLS_CA_FILE": str(broker.certs.ca), "FACEFLOW_AUTH_TOKEN_FILE": str(token)}

        listed = faceflow_cli("identities", "--aggregator", target, "list", "--all", env=client)
        assert listed.returncode == 0, listed.stderr
        assert anon in listed.stdout
        named = faceflow_cli("identities", "--aggregator", target, "name", anon, "Bob", env=client)
        assert (named.returncode, named.stdout.split()[:3]) == (0, ["named", anon, "Bob"]), named.stderr

        no_token = faceflow_cli(
            "identities", "--aggregator", target, "list", env={"FACEFLOW_TLS_CA_FILE": str(broker.certs.ca)}
        )
        assert no_token.returncode == 2
        assert no_token.stderr.strip().splitlines()[-1] == (
            "faceflow: error: ListIdentities: UNAUTHENTICATED: no authorization metadata: "
            "expected 'authorization: Bearer <token>'"
        )
        plaintext = faceflow_cli("identities", "--aggregator", target, "--timeout", "5", "list", env={})
        assert plaintext.returncode == 2 and "UNAVAILABLE" in plaintext.stderr
        missing_ca = faceflow_cli(
            "identities",
            "--aggregator",
            target,
            "list",
            env={"FACEFLOW_TLS_CA_FILE": str(tmp_path / "none.crt")},
        )
        assert missing_ca.returncode == 2
        assert missing_ca.stderr.strip().splitlines()[-1] == (
            f"faceflow: error: FACEFLOW_TLS_CA_FILE={tmp_path / 'none.crt'}: "
            "cannot read it: No such file or directory"
        )
    finally:
        service.stop(2)
