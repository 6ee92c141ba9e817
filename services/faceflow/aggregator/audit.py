"""The gallery's audit trail on faceflow.identities.audit.v1: who enrolled, named or forgot whom.

The aggregator's gallery-changing gRPC methods write one :class:`~faceflow.v1.identity_pb2.IdentityAudit`
per changed identity (key = identity id) once the gallery topic acknowledged the change
(:class:`AuditLog`). The topic is append-only and kept 365 days (:data:`faceflow.topics.IDENTITIES_AUDIT`):
forgetting an identity erases its descriptors from the gallery, never the record that someone erased it.
A record names the action, the identity, its name, the caller (:func:`caller_of`: the bearer token's
subject, else the client certificate's), the caller's address and the replica. It never holds
descriptors or photos: :func:`audit_record` takes no argument that could carry them.

:func:`read_audit` reads the topic from the beginning with a plain consumer (no group, nothing
committed) for ``faceflow identities audit``.

If the audit topic does not take a record, the change has already happened and is not undone: the
call still succeeds, the record is logged at ERROR (with everything the topic would have held) and
counted in :attr:`AuditLog.failures`, so that the log keeps the trail the topic lost.
"""

from __future__ import annotations

import enum
import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from kafka import KafkaProducer, TopicPartition

from faceflow.errors import FaceflowError
from faceflow.service.security import caller_subject
from faceflow.v1 import identity_pb2

logger = logging.getLogger(__name__)


class AuditAction(enum.Enum):
    """What a gallery change did (the proto's ``IdentityAuditAction``)."""

    ENROLL = identity_pb2.IDENTITY_AUDIT_ACTION_ENROLL
    ADD_PHOTOS = identity_pb2.IDENTITY_AUDIT_ACTION_ADD_PHOTOS
    NAME = identity_pb2.IDENTITY_AUDIT_ACTION_NAME
    FORGET = identity_pb2.IDENTITY_AUDIT_ACTION_FORGET

    @property
    def label(self) -> str:
        """``enroll``, ``add-photos``, ``name``, ``forget``: what the CLI prints."""
        return self.name.lower().replace("_", "-")


#: The auth context keys gRPC fills for a verified client certificate (mTLS), best first.
_CERTIFICATE_KEYS = ("x509_subject", "x509_common_name")


@dataclass(frozen=True, kw_only=True)
class Caller:
    """Who made a call, as far as the server can tell, and from where.

    ``auth`` is how ``subject`` is known (``IdentityAuditAuth``); ``client_certificate`` is the
    verified client certificate's subject under mTLS (also when a token named the caller).
    """

    subject: str
    auth: int
    client_certificate: str
    peer: str


def _text(values: Any) -> str:
    return ", ".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values or ())


def caller_of(context: Any) -> Caller:
    """The caller of the call whose servicer ``context`` this is: the subject of the bearer token
    it was admitted with (:func:`~faceflow.service.security.caller_subject`), else the verified
    client certificate's subject (mTLS), else nobody (a server that checks neither)."""
    subject = caller_subject(context)
    certificate = ""
    auth = context.auth_context() or {}
    for key in _CERTIFICATE_KEYS:
        if auth.get(key):
            certificate = _text(auth[key])
            break
    peer = str(context.peer() or "")
    if subject is not None:
        kind = identity_pb2.IDENTITY_AUDIT_AUTH_TOKEN
    elif certificate:
        kind, subject = identity_pb2.IDENTITY_AUDIT_AUTH_CLIENT_CERTIFICATE, certificate
    else:
        kind, subject = identity_pb2.IDENTITY_AUDIT_AUTH_NONE, ""
    return Caller(subject=subject, auth=kind, client_certificate=certificate, peer=peer)


def audit_record(
    action: AuditAction,
    identity_id: str,
    *,
    caller: Caller,
    replica: str,
    name: str = "",
    photos: int = 0,
    requested: str = "",
    time_ns: int | None = None,
) -> identity_pb2.IdentityAudit:
    """One audit record. ``name`` is the identity's name after the change (left out for FORGET);
    ``photos`` how many photos an enrolment used; ``requested`` what a FORGET asked for: the id,
    or ``(by name)`` (never the name itself).

    Raises:
        ValueError: no identity id, or a name given with FORGET.
    """
    if not identity_id:
        raise ValueError("identity_id: expected the changed identity's id, got ''")
    if action is AuditAction.FORGET and name:
        raise ValueError("name: expected none for FORGET (an erasure does not repeat the name), got one")
    record = identity_pb2.IdentityAudit(
        action=action.value,
        identity_id=identity_id,
        name=name,
        subject=caller.subject,
        auth=caller.auth,  # type: ignore[arg-type]
        client_certificate=caller.client_certificate,
        peer=caller.peer,
        replica=replica,
        photos=photos,
        requested=requested,
    )
    record.time.FromNanoseconds(time.time_ns() if time_ns is None else time_ns)
    return record


def describe(record: identity_pb2.IdentityAudit) -> str:
    """One line for a log: everything the record holds."""
    return (
        f"{AuditAction(record.action).label} {record.identity_id} name={record.name!r} "
        f"subject={record.subject!r} peer={record.peer} replica={record.replica}"
    )


def default_replica(instance_id: str = "", address: str = "") -> str:
    """The replica's name in audit records: its static instance id, else its host name (the pod's
    name in Kubernetes), with its advertised gRPC address when known."""
    name = instance_id or socket.gethostname()
    return f"{name} {address}" if address else name


class AuditLog:
    """Writes audit records to ``topic`` with the aggregator's producer, each acknowledged.

    Args:
        producer: a producer with faceflow's delivery contract (the gallery's).
        topic: the audit topic.
        replica: the replica's name, called per record (the advertised address is known late).
        timeout_s: how long to wait for the broker's acknowledgement of one record.
    """

    def __init__(
        self, producer: KafkaProducer, topic: str, *, replica: Any = default_replica, timeout_s: float = 30.0
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.replica = replica
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self.written = 0
        self.failures = 0

    def write(self, record: identity_pb2.IdentityAudit) -> bool:
        """Send ``record`` keyed by its identity id and wait for the acknowledgement. False (logged
        at ERROR with the record, counted) when the topic does not take it: the change it records
        has already happened, so the caller is not told it failed."""
        try:
            self.producer.send(
                self.topic, key=record.identity_id.encode(), value=record.SerializeToString()
            ).get(timeout=self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure: the change stands, the log keeps the record
            with self._lock:
                self.failures += 1
            logger.error("audit: %s did not take the record (%s): %s", self.topic, exc, describe(record))
            return False
        with self._lock:
            self.written += 1
        logger.info("audit: %s", describe(record))
        return True

    def record(self, action: AuditAction, identity_id: str, context: Any, **fields: Any) -> bool:
        """:func:`audit_record` for the caller of ``context`` on this replica, then :meth:`write`."""
        replica = self.replica() if callable(self.replica) else str(self.replica)
        return self.write(
            audit_record(action, identity_id, caller=caller_of(context), replica=replica, **fields)
        )


# -- reading (faceflow identities audit) ----------------------------------------------------------------


class AuditReadError(FaceflowError):
    """The audit topic cannot be read (no broker, no topic)."""


def read_audit(
    bootstrap: str, topic: str, *, since_ns: int | None = None, timeout_s: float = 30.0
) -> Iterator[tuple[int, identity_pb2.IdentityAudit]]:
    """Every record of ``topic`` (``since_ns``: from that time on), oldest first within a partition,
    up to the end the topic had when reading began, as ``(offset, record)``. A plain consumer: no
    group, nothing committed. Records that do not parse are skipped with a warning.

    Raises:
        AuditReadError: no broker answers at ``bootstrap``, the topic does not exist, or the end
            was not reached within ``timeout_s``.
    """
    from faceflow.kafka import admin  # noqa: PLC0415 - admin pulls in the admin client
    from faceflow.kafka.clients import make_consumer  # noqa: PLC0415

    if not admin.broker_answers_metadata(bootstrap):
        raise AuditReadError(f"no Kafka broker answers at {bootstrap}: is it running? (faceflow dev up)")
    consumer = make_consumer(bootstrap, group_id=None, client_id="faceflow-identities-audit")
    with closing(consumer):
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise AuditReadError(
                f"the audit topic {topic} does not exist on {bootstrap} "
                "(faceflow dev up or faceflow topics create makes it)"
            )
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        starts: dict[TopicPartition, int] = consumer.beginning_offsets(tps)
        if since_ns is not None:
            found = consumer.offsets_for_times({tp: since_ns // 1_000_000 for tp in tps})
            starts = {tp: ends[tp] if found.get(tp) is None else found[tp].offset for tp in tps}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AuditReadError(f"could not read {topic} to its end within {timeout_s:.0f} s")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                for r in batch:
                    if r.offset >= ends[tp]:
                        continue
                    try:
                        record = identity_pb2.IdentityAudit.FromString(r.value or b"")
                    except DecodeError as exc:
                        logger.warning("audit: %s@%d skipped: %s", topic, r.offset, exc)
                        continue
                    if since_ns is None or record.time.ToNanoseconds() >= since_ns:
                        yield r.offset, record


def as_json(record: identity_pb2.IdentityAudit) -> dict[str, Any]:
    """The record as proto3 JSON (field names as in the proto, enums by name, every field printed)."""
    out: dict[str, Any] = json_format.MessageToDict(
        record, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return out
