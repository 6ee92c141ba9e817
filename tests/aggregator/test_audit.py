"""The gallery's audit topic: a real aggregator (real broker, real gRPC over a socket, scoped tokens
or mTLS from the environment) writes one record per enrolment, name and erasure, with the caller's
subject and never a descriptor; a refused call writes none; ``faceflow identities audit`` prints
them."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from kafka import TopicPartition
from support_aggregator import AggTopics, config, make_topics
from support_security import make_certificates

from faceflow import topics
from faceflow.aggregator.audit import AuditAction, AuditLog, AuditReadError, Caller, audit_record, read_audit
from faceflow.aggregator.cli import parse_since
from faceflow.aggregator.config import AggregatorConfig, AggregatorConfigError
from faceflow.aggregator.service import AggregatorService
from faceflow.cli import main
from faceflow.errors import ConfigError
from faceflow.kafka import admin
from faceflow.kafka.clients import make_consumer, make_producer
from faceflow.service.security import ClientSecurity, channel_for
from faceflow.service.triton_fake import FakeTritonClient
from faceflow.v1 import aggregator_pb2, aggregator_pb2_grpc, identity_pb2

TIMEOUT = 30
ALICE = "alice-admin-token-0123456789abcdef"
WATCHER = "watcher-read-token-fedcba9876543210"
TOKENS = f"admin alice {ALICE}\nread watch-dashboard {WATCHER}\n"
#: Two photos the fake Triton sees one face in each (and answers with embeddings).
PHOTOS = [b"FACE" + bytes(range(200)), b"FACE" + bytes(range(100, 250))]
#: The only fields an audit record may hold: no descriptors, no photos.
AUDIT_FIELDS = {
    "time",
    "action",
    "identity_id",
    "name",
    "subject",
    "auth",
    "client_certificate",
    "peer",
    "replica",
    "photos",
    "requested",
}


@dataclass(frozen=True)
class Raw:
    key: str
    value: bytes

    @property
    def record(self) -> identity_pb2.IdentityAudit:
        return identity_pb2.IdentityAudit.FromString(self.value)


def audit_topic(bootstrap: str, name: str) -> str:
    topic = f"{name}.audit"
    admin.ensure_topics(bootstrap, [topics.IDENTITIES_AUDIT.renamed(topic)])
    return topic


def raw_records(bootstrap: str, topic: str) -> list[Raw]:
    """Every record of the topic, as written (a plain consumer, from the beginning to the end)."""
    consumer = make_consumer(bootstrap, group_id=None, client_id="test-audit")
    try:
        deadline = time.monotonic() + TIMEOUT
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:  # a new consumer may not have metadata yet
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"no metadata for {topic}"
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Raw] = []
        deadline = time.monotonic() + TIMEOUT
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                out.extend(Raw((r.key or b"").decode(), r.value or b"") for r in batch)
        return out
    finally:
        consumer.close()


def gallery_descriptors(bootstrap: str, topic: str) -> list[bytes]:
    """Every descriptor the gallery topic holds, as float32 bytes (to look for in audit records)."""
    found = []
    for raw in raw_records(bootstrap, topic):
        if raw.value:
            for e in identity_pb2.IdentityRecord.FromString(raw.value).embeddings:
                found.append(np.asarray(e.values, np.float32).tobytes())
    return found


@contextmanager
def aggregator(cfg: AggregatorConfig) -> Iterator[AggregatorService]:
    service = AggregatorService(cfg, triton=FakeTritonClient())
    service.start()
    try:
        yield service
    finally:
        service.stop(5)


@pytest.fixture
def mesh(kafka_bootstrap: str, unique_name: str) -> tuple[AggTopics, str]:
    return make_topics(kafka_bootstrap, unique_name, partitions=1), audit_topic(kafka_bootstrap, unique_name)


@pytest.fixture
def with_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tokens").write_text(TOKENS)
    monkeypatch.setenv("FACEFLOW_AUTH_TOKENS_FILE", str(tmp_path / "tokens"))


def stub_for(
    service: AggregatorService, security: ClientSecurity
) -> tuple[grpc.Channel, aggregator_pb2_grpc.AggregatorStub]:
    assert service.server is not None
    channel = channel_for(f"127.0.0.1:{service.server.port}", security)
    return channel, aggregator_pb2_grpc.AggregatorStub(channel)


# -- against a running aggregator -----------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.usefixtures("with_tokens")
def test_enrol_name_forget_as_alice_are_audited_and_a_refused_forget_is_not(
    kafka_bootstrap: str,
    triton_url: str,
    unique_name: str,
    mesh: tuple[AggTopics, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    t, audit = mesh
    cfg = config(kafka_bootstrap, triton_url, t, unique_name, audit_topic=audit, instance_id="agg-0")
    with aggregator(cfg) as service:
        channel, alice = stub_for(service, ClientSecurity(token=ALICE))
        reader_channel, watcher = stub_for(service, ClientSecurity(token=WATCHER))
        with channel, reader_channel:
            enrolled = alice.EnrollIdentity(
                aggregator_pb2.EnrollIdentityRequest(name="Eileen", images=PHOTOS), timeout=TIMEOUT
            ).identity
            identity = enrolled.identity_id
            alice.NameIdentity(
                aggregator_pb2.NameIdentityRequest(identity_id=identity, name="Eileen Collins"),
                timeout=TIMEOUT,
            )
            with pytest.raises(grpc.RpcError) as refused:
                watcher.ForgetIdentity(
                    aggregator_pb2.ForgetIdentityRequest(identity=identity), timeout=TIMEOUT
                )
            assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
            assert "needs scope admin" in (refused.value.details() or "")
            # A read token may look: the gallery still has the identity the refused call named.
            got = watcher.GetIdentity(
                aggregator_pb2.GetIdentityRequest(identity_id=identity), timeout=TIMEOUT
            )
            assert got.identity.name == "Eileen Collins"
            forgotten = alice.ForgetIdentity(
                aggregator_pb2.ForgetIdentityRequest(identity=identity), timeout=TIMEOUT
            )
            assert list(forgotten.forgotten_ids) == [identity]
        descriptors = gallery_descriptors(kafka_bootstrap, t.identities)
        assert len(descriptors) >= len(PHOTOS)  # the gallery took the photos' descriptors

    written = raw_records(kafka_bootstrap, audit)
    assert [raw.key for raw in written] == [identity] * 3
    records = [raw.record for raw in written]
    assert [(r.action, r.identity_id, r.name, r.subject) for r in records] == [
        (identity_pb2.IDENTITY_AUDIT_ACTION_ENROLL, identity, "Eileen", "alice"),
        (identity_pb2.IDENTITY_AUDIT_ACTION_NAME, identity, "Eileen Collins", "alice"),
        (identity_pb2.IDENTITY_AUDIT_ACTION_FORGET, identity, "", "alice"),
    ]
    for r in records:
        assert r.auth == identity_pb2.IDENTITY_AUDIT_AUTH_TOKEN and r.client_certificate == ""
        assert r.peer.startswith("ipv4:127.0.0.1:") and r.replica.startswith("agg-0 ")
        assert {field.name for field, _ in r.ListFields()} <= AUDIT_FIELDS
    assert records[0].photos == len(PHOTOS) and records[2].requested == identity
    times = [r.time.ToNanoseconds() for r in records]
    assert times == sorted(times) and times[0] > 0
    for raw in written:  # neither a descriptor nor a photo, nor a token, in any record's bytes
        assert not any(d in raw.value for d in descriptors)
        assert not any(p[:40] in raw.value for p in PHOTOS)
        assert ALICE.encode() not in raw.value and WATCHER.encode() not in raw.value

    # The CLI prints them, filters them and writes JSON lines.
    base = ["identities", "audit", "--kafka-bootstrap", kafka_bootstrap, "--topic", audit]
    assert main(base) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TIME", "ACTION", "IDENTITY", "NAME", "SUBJECT"]
    rows = [line.split() for line in lines[1:]]
    assert [row[1:] for row in rows] == [
        ["enroll", identity, "Eileen", "alice"],
        ["name", identity, "Eileen", "Collins", "alice"],
        ["forget", identity, "-", "alice"],
    ]
    assert main([*base, "--identity", identity, "--since", "1d", "--json"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(p["action"], p["subject"], p["identity_id"]) for p in printed] == [
        ("IDENTITY_AUDIT_ACTION_ENROLL", "alice", identity),
        ("IDENTITY_AUDIT_ACTION_NAME", "alice", identity),
        ("IDENTITY_AUDIT_ACTION_FORGET", "alice", identity),
    ]
    assert all(set(p) <= AUDIT_FIELDS for p in printed)
    assert main([*base, "--identity", "someone-else"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == f"no audit records in {audit} that match\n"
    assert main([*base, "--since", "2999-01-01T00:00:00Z"]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.integration
def test_under_mtls_without_a_token_the_subject_is_the_client_certificate(
    kafka_bootstrap: str,
    triton_url: str,
    unique_name: str,
    mesh: tuple[AggTopics, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    certs = make_certificates(tmp_path / "certs")
    monkeypatch.setenv("FACEFLOW_TLS_CERT_FILE", str(certs.server_cert))
    monkeypatch.setenv("FACEFLOW_TLS_KEY_FILE", str(certs.server_key))
    monkeypatch.setenv("FACEFLOW_TLS_CLIENT_CA_FILE", str(certs.ca))
    t, audit = mesh
    with aggregator(config(kafka_bootstrap, triton_url, t, unique_name, audit_topic=audit)) as service:
        client = ClientSecurity(
            root_certificates=certs.ca.read_bytes(),
            certificate_chain=certs.client_cert.read_bytes(),
            private_key=certs.client_key.read_bytes(),
            server_name="faceflow-aggregator",
        )
        channel, stub = stub_for(service, client)
        with channel:
            enrolled = stub.EnrollIdentity(
                aggregator_pb2.EnrollIdentityRequest(name="Grace", images=PHOTOS[:1]), timeout=TIMEOUT
            ).identity
    [raw] = raw_records(kafka_bootstrap, audit)
    record = raw.record
    assert (record.action, record.identity_id, record.name) == (
        identity_pb2.IDENTITY_AUDIT_ACTION_ENROLL,
        enrolled.identity_id,
        "Grace",
    )
    assert record.auth == identity_pb2.IDENTITY_AUDIT_AUTH_CLIENT_CERTIFICATE
    assert "faceflow-client" in record.subject and record.client_certificate == record.subject


@pytest.mark.integration
def test_a_topic_that_refuses_the_record_leaves_the_change_and_logs_the_record(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    producer = make_producer(kafka_bootstrap, client_id="test-audit", max_block_ms=1000)
    try:
        log = AuditLog(producer, "test.audit.nowhere", replica="agg-1", timeout_s=2)
        caller = Caller(
            subject="alice", auth=identity_pb2.IDENTITY_AUDIT_AUTH_TOKEN, client_certificate="", peer=""
        )
        record = audit_record(AuditAction.FORGET, "enr-1", caller=caller, replica="agg-1")
        with caplog.at_level("ERROR", logger="faceflow.aggregator.audit"):
            assert log.write(record) is False
    finally:
        producer.close(1)
    assert (log.written, log.failures) == (0, 1)
    assert "forget enr-1" in caplog.text and "subject='alice'" in caplog.text


# -- the CLI's errors and parsing --------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_broker_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    bootstrap = f"127.0.0.1:{_closed_port()}"
    assert main(["identities", "audit", "--kafka-bootstrap", bootstrap]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert (
        err == f"faceflow: error: no Kafka broker answers at {bootstrap}: is it running? (faceflow dev up)\n"
    )


@pytest.mark.integration
def test_no_topic_is_a_one_line_error(
    kafka_bootstrap: str, unique_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = f"{unique_name}.missing-audit"
    assert main(["identities", "audit", "--kafka-bootstrap", kafka_bootstrap, "--topic", topic]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err == (
        f"faceflow: error: the audit topic {topic} does not exist on {kafka_bootstrap} "
        "(faceflow dev up or faceflow topics create makes it)\n"
    )
    with pytest.raises(AuditReadError, match=r"does not exist"):
        list(read_audit(kafka_bootstrap, topic))


NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("value", "expected", "error"),
    [
        ("90m", round((NOW - 5400) * 1e9), None),
        ("12h", round((NOW - 43200) * 1e9), None),
        ("7d", round((NOW - 7 * 86400) * 1e9), None),
        ("2027-01-15", 1_799_971_200 * 10**9, None),  # midnight UTC
        ("2027-01-15T08:00:00Z", (1_799_971_200 + 8 * 3600) * 10**9, None),
        ("2027-01-15T08:00:00+01:00", (1_799_971_200 + 7 * 3600) * 10**9, None),
        ("yesterday", None, "--since: expected an ISO 8601 time"),
        ("-3d", None, "--since: expected an ISO 8601 time"),
    ],
)
def test_since_takes_a_time_or_an_age(value: str, expected: int | None, error: str | None) -> None:
    if error is not None:
        with pytest.raises(ConfigError, match=error):
            parse_since(value, now_s=NOW)
        return
    assert parse_since(value, now_s=NOW) == expected


def test_an_erasure_record_does_not_repeat_the_name_and_the_audit_topic_is_not_the_gallery() -> None:
    caller = Caller(
        subject="alice", auth=identity_pb2.IDENTITY_AUDIT_AUTH_TOKEN, client_certificate="", peer=""
    )
    with pytest.raises(ValueError, match="expected none for FORGET"):
        audit_record(AuditAction.FORGET, "enr-1", caller=caller, replica="r", name="Eileen")
    with pytest.raises(ValueError, match="identity_id: expected"):
        audit_record(AuditAction.NAME, "", caller=caller, replica="r", name="Eileen")
    with pytest.raises(
        AggregatorConfigError, match="audit_topic: expected a topic other than identities_topic"
    ):
        AggregatorConfig(audit_topic="faceflow.identities.v1")
    assert AggregatorConfig.from_env({"FACEFLOW_AGGREGATOR_AUDIT_TOPIC": "x.audit"}).audit_topic == "x.audit"
    assert AggregatorConfig().audit_topic == topics.IDENTITIES_AUDIT.name
    assert topics.IDENTITIES_AUDIT.configs["cleanup.policy"] == "delete"
    assert int(topics.IDENTITIES_AUDIT.configs["retention.ms"]) == 365 * topics.DAY_MS
    assert topics.IDENTITIES_AUDIT in topics.ALL_TOPICS


@pytest.mark.integration
@pytest.mark.usefixtures("with_tokens")
def test_a_forget_by_name_keeps_no_name_in_the_audit(
    kafka_bootstrap: str, triton_url: str, unique_name: str, mesh: tuple[AggTopics, str]
) -> None:
    t, audit = mesh
    cfg = config(kafka_bootstrap, triton_url, t, unique_name, audit_topic=audit)
    with aggregator(cfg) as service:
        channel, alice = stub_for(service, ClientSecurity(token=ALICE))
        with channel:
            alice.EnrollIdentity(
                aggregator_pb2.EnrollIdentityRequest(name="Zoltan Kovacs", images=PHOTOS), timeout=TIMEOUT
            )
            alice.ForgetIdentity(
                aggregator_pb2.ForgetIdentityRequest(identity="Zoltan Kovacs"), timeout=TIMEOUT
            )
    enrol, forget = raw_records(kafka_bootstrap, audit)
    assert forget.record.action == identity_pb2.IDENTITY_AUDIT_ACTION_FORGET
    assert forget.record.requested == "(by name)" and forget.record.name == ""
    assert b"Zoltan" not in forget.value  # the erasure's record keeps no trace of the name
    assert enrol.record.name == "Zoltan Kovacs"
