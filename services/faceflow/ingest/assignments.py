"""Pulled sources as shared, durable assignments: any ingest replica may die, its cameras go on.

Without a sources topic, a source started over gRPC (or given by ``FACEFLOW_INGEST_SOURCES``)
lives in one process's memory, and stops with it. With ``sources_topic`` set
(``faceflow.sources.v1``, :data:`faceflow.topics.SOURCES`):

* **The desired state is a compacted topic.** Key = stream id, value = a ``SourceAssignment``
  (the resolved ``SourceSpec`` with its URI as given, since the owner must open it; a final state
  once the source finished); a tombstone when it is stopped. ``StartSource`` on *any* replica
  checks the request as before (source policy, the file exists, the stream id is free), writes
  the record, waits until its own reader has seen it, and returns; ``StopSource`` writes the
  tombstone. Sources of the operator's config are written at start-up, unless the same spec is
  already there (finished or not), so restarting a Deployment does not replay finished files.
* **Replicas split the topic's partitions in a consumer group** (``sources_group``,
  cooperative-sticky, static membership with ``instance_id``). The group consumer fetches
  nothing (its partitions stay paused): it is there for the broker to say who owns which
  partition, and to move a dead replica's partitions to the others once its session times out
  (``session_timeout_ms``). Each replica reads the whole topic with a consumer of its own
  (:class:`SourceTable`, no group), so any replica can answer for any source.
* **Owning a partition means running its sources.** On assignment the owner first reads the
  topic to the end offsets it has then (so a source stopped or finished just before is not
  started), then starts every wanted source of the partition; on revocation (or loss) it stops
  them at once, without waiting, so that the next owner does not run them twice for longer
  than one read. A record that changes later is applied as it arrives.
* **A cap per replica** (``max_sources``): sources beyond it are not dropped but *waiting*
  (``ListSources`` says so and why) and start here when a running one ends or is stopped. The
  cap is per replica, not global: a partition whose sources exceed its owner's cap waits even if
  another replica has room (partitions, not sources, are what the group balances).
* **Finished is durable.** When a source's owner sees it end (``ENDED``) or fail (``FAILED``), it
  writes the record again with that final state, so no replica starts it again after a
  rebalance; only a new ``StartSource`` of the stream id does. A replica killed before it wrote
  that record leaves its file to be read again by the next owner (at least once).
* **Who runs what.** Every member advertises its gRPC address in its subscription
  (:class:`~faceflow.kafka.membership.AdvertisingAssignor`); ``ListSources`` reads the group
  (:class:`~faceflow.kafka.membership.GroupWatch`), asks each other owner for its own sources
  (``local_only``) and reports every recorded source with its ``owner``.

A moved source continues with the ``seq`` of the new replica's clock (``seq_start=clock``), above
anything the old replica produced, so consumers' ``(stream_id, seq)`` de-duplication stays right;
a finite file resumed elsewhere starts again from its beginning. Live versus finite is decided
when the source opens, by its container (:mod:`faceflow.ingest.sources`), unless the spec says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from kafka import AsyncConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError

from faceflow.errors import Unavailable
from faceflow.ingest.config import IngestConfig, SourceConfig
from faceflow.ingest.errors import IngestConfigError, IngestError
from faceflow.ingest.runner import SourceRunner, SourceSnapshot, SourceState
from faceflow.kafka.clients import group_consumer, make_consumer, make_producer
from faceflow.kafka.membership import AdvertisingAssignor, GroupWatch, MembershipUnavailable, key_partition
from faceflow.v1 import ingest_pb2

logger = logging.getLogger(__name__)

#: Final states a finished source is recorded with (STOPPED is a tombstone, not a record).
_FINAL_TO_PROTO = {
    SourceState.ENDED: ingest_pb2.SOURCE_STATE_ENDED,
    SourceState.FAILED: ingest_pb2.SOURCE_STATE_FAILED,
}
_FINAL_FROM_PROTO = {v: k for k, v in _FINAL_TO_PROTO.items()}
#: The largest record: a spec and an error message (the topic allows 1 MiB).
MAX_RECORD_BYTES = 64 * 1024


class SourcesTopicError(IngestError, Unavailable):
    """The sources topic cannot be read or written (missing, unreachable, not authorized):
    ``UNAVAILABLE`` for a call, a start-up failure for the service."""


@dataclass(frozen=True, kw_only=True)
class SourceRecord:
    """One record of the sources topic: a wanted source, or one that finished."""

    spec: SourceConfig
    final_state: SourceState | None = None
    last_error: str = ""
    written_by: str = ""
    written_at_ns: int = 0

    def __post_init__(self) -> None:
        if self.final_state is not None and self.final_state not in _FINAL_TO_PROTO:
            raise IngestConfigError(
                f"final_state: expected one of {sorted(_FINAL_TO_PROTO)} or None, got {self.final_state!r}"
            )

    @property
    def finished(self) -> bool:
        return self.final_state is not None

    def encode(self) -> bytes:
        message = ingest_pb2.SourceAssignment(
            spec=self.spec.to_proto(redact=False),
            final_state=ingest_pb2.SOURCE_STATE_UNSPECIFIED
            if self.final_state is None
            else _FINAL_TO_PROTO[self.final_state],
            last_error=self.last_error[:4000],
            written_by=self.written_by,
        )
        if self.written_at_ns:
            message.written_at.FromNanoseconds(self.written_at_ns)
        return message.SerializeToString()

    @classmethod
    def decode(cls, data: bytes) -> SourceRecord:
        """A record from its bytes.

        Raises:
            IngestConfigError: not a ``SourceAssignment``, or its spec is invalid.
        """
        if len(data) > MAX_RECORD_BYTES:
            raise IngestConfigError(f"expected a record of at most {MAX_RECORD_BYTES} bytes, got {len(data)}")
        try:
            message = ingest_pb2.SourceAssignment.FromString(data)
        except DecodeError as exc:
            raise IngestConfigError(f"expected a SourceAssignment, got undecodable bytes ({exc})") from None
        final = None
        if message.final_state != ingest_pb2.SOURCE_STATE_UNSPECIFIED:
            final = _FINAL_FROM_PROTO.get(message.final_state)
            if final is None:
                raise IngestConfigError(
                    f"final_state: expected ENDED, FAILED or unset, got {message.final_state}"
                )
        return cls(
            spec=SourceConfig.from_record(message.spec),
            final_state=final,
            last_error=message.last_error,
            written_by=message.written_by,
            written_at_ns=message.written_at.ToNanoseconds() if message.HasField("written_at") else 0,
        )


@dataclass(frozen=True)
class Entry:
    """The latest record of a stream id and where it is in the topic."""

    record: SourceRecord
    partition: int
    offset: int

    @property
    def stream_id(self) -> str:
        return self.record.spec.stream_id


class SourceTable:
    """Every source in the sources topic (the latest record per key; tombstones remove), read from
    the beginning and followed by a consumer of its own (no group), on a thread of its own.

    Args:
        on_change: called (on the reader's thread) with the partitions whose records changed.
    """

    def __init__(
        self, bootstrap: str, topic: str, *, client_id: str, on_change: Callable[[set[int]], None]
    ) -> None:
        self.topic = topic
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._on_change = on_change
        self._consumer: Any = None
        self._tps: list[TopicPartition] = []
        self._lock = threading.Condition()
        self._entries: dict[str, Entry] = {}
        self._positions: dict[int, int] = {}
        self._sync_requests: list[threading.Event] = []
        self._sync_targets: list[tuple[dict[int, int], threading.Event]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-sources-table", daemon=True)

    @property
    def partitions(self) -> int:
        return len(self._tps)

    def start(self, timeout_s: float) -> None:
        """Find the topic, start following it, and return once it is read to its current end.

        Raises:
            SourcesTopicError: the topic is not there, or not read to its end, within ``timeout_s``.
        """
        self._consumer = make_consumer(self._bootstrap, group_id=None, client_id=self._client_id)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                found = self._consumer.partitions_for_topic(self.topic)
            except KafkaError:
                found = None
            if found:
                break
            if time.monotonic() > deadline:
                self._consumer.close()
                raise SourcesTopicError(
                    f"sources topic {self.topic!r} not found at {self._bootstrap} within {timeout_s:.0f} s: "
                    "create it (faceflow topics create, or faceflow dev up), or unset "
                    "FACEFLOW_INGEST_SOURCES_TOPIC"
                )
            time.sleep(0.2)
        self._tps = [TopicPartition(self.topic, p) for p in sorted(found)]
        self._consumer.assign(self._tps)
        self._consumer.seek_to_beginning(*self._tps)
        self._thread.start()
        if not self.sync(max(1.0, deadline - time.monotonic())):
            raise SourcesTopicError(
                f"sources topic {self.topic!r}: not read to its end within {timeout_s:.0f} s"
            )
        logger.info(
            "sources topic %s: %d records in %d partitions", self.topic, len(self._entries), self.partitions
        )

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        if self._consumer is not None:
            with suppress(Exception):
                self._consumer.close()

    def partition_of(self, stream_id: str) -> int:
        """The partition the producer puts this key in (murmur2, as every Kafka client)."""
        return key_partition(stream_id.encode(), self.partitions)

    def get(self, stream_id: str) -> Entry | None:
        with self._lock:
            return self._entries.get(stream_id)

    def entries(self) -> list[Entry]:
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: (e.partition, e.offset))

    def seen(self, partition: int, offset: int, timeout_s: float) -> bool:
        """Wait until the record at ``offset`` of ``partition`` is applied; True if within ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._positions.get(partition, 0) <= offset:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return False
                self._lock.wait(min(remaining, 0.5))
        return True

    def sync(self, timeout_s: float) -> bool:
        """Wait until every record written before this call is applied; True if within ``timeout_s``."""
        done = threading.Event()
        with self._lock:
            self._sync_requests.append(done)
        return done.wait(timeout_s)

    def _run(self) -> None:
        consumer = self._consumer
        while not self._stop.is_set():
            try:
                with self._lock:
                    requests, self._sync_requests = self._sync_requests, []
                if requests:
                    ends = {tp.partition: int(o) for tp, o in consumer.end_offsets(self._tps).items()}
                    self._sync_targets += [(ends, event) for event in requests]
                polled = consumer.poll(timeout_ms=100 if self._sync_targets else 300)
                changed: set[int] = set()
                with self._lock:
                    for tp, batch in polled.items():
                        for record in batch:
                            self._apply(tp.partition, record)
                            changed.add(tp.partition)
                    for tp in self._tps:
                        self._positions[tp.partition] = int(consumer.position(tp))
                    self._lock.notify_all()
                    self._sync_targets = [
                        (ends, ev) for ends, ev in self._sync_targets if not self._reached(ends, ev)
                    ]
                if changed:
                    self._on_change(changed)
            except Exception:
                if self._stop.is_set():
                    return
                logger.exception("sources topic %s: reading failed; retrying", self.topic)
                time.sleep(1.0)

    def _reached(self, ends: dict[int, int], event: threading.Event) -> bool:
        if all(self._positions.get(p, 0) >= end for p, end in ends.items()):
            event.set()
            return True
        return False

    def _apply(self, partition: int, record: Any) -> None:
        key = (record.key or b"").decode("utf-8", "replace")
        if record.value is None:
            self._entries.pop(key, None)
            return
        try:
            decoded = SourceRecord.decode(record.value)
        except IngestConfigError as exc:
            logger.error(
                "sources topic %s/%d@%d (%s): skipped: %s", self.topic, partition, record.offset, key, exc
            )
            return
        if decoded.spec.stream_id != key:
            logger.error(
                "sources topic %s/%d@%d: skipped: key %r but stream id %r",
                self.topic,
                partition,
                record.offset,
                key,
                decoded.spec.stream_id,
            )
            return
        self._entries[key] = Entry(decoded, partition, int(record.offset))


Launch = Callable[[SourceConfig], SourceRunner]


class SourceAssignments:
    """This replica's share of the sources topic (module docstring): the table, the writer, the
    group membership, and a thread that makes the running sources match the owned records.

    Args:
        config: ``sources_topic``, ``sources_group``, ``instance_id``, ``session_timeout_ms``,
            ``max_sources`` and the broker are read from it.
        launch: starts a runner for a spec (the service's registry, seq counters, sink).
    """

    def __init__(self, config: IngestConfig, *, launch: Launch) -> None:
        self.config = config
        self.topic = config.sources_topic
        self.group = config.sources_group
        self.advertised = ""
        self._launch = launch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._owned: set[int] = set()
        self._pending: set[int] = set()
        #: stream id -> (runner, partition, offset of the record it runs)
        self._running: dict[str, tuple[SourceRunner, int, int]] = {}
        self._done_offsets: dict[str, int] = {}
        self._waiting: dict[str, tuple[Entry, str]] = {}
        self.table = SourceTable(
            config.kafka_bootstrap,
            self.topic,
            client_id=f"{config.client_id}-sources",
            on_change=lambda _: self._wake.set(),
        )
        self._producer: Any = None
        self._consumer: Any = None
        self._threads: list[threading.Thread] = []
        self.watch = GroupWatch.of_broker(config.kafka_bootstrap, self.group, self.topic, max_age_s=2.0)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Read the topic to its end and connect the writer (joining the group is :meth:`join`).

        Raises:
            SourcesTopicError: the topic is missing or unreadable.
        """
        self.table.start(self.config.broker_timeout_s)
        self._producer = make_producer(
            self.config.kafka_bootstrap,
            client_id=f"{self.config.client_id}-sources",
            max_request_size=MAX_RECORD_BYTES * 2,
            linger_ms=0,
            compression=None,
        )

    def join(self, advertised: str) -> None:
        """Join the group, advertising ``advertised`` (this replica's gRPC address), and start
        running the sources of the partitions the group gives this replica."""
        self.advertised = advertised
        c = self.config
        self._consumer = group_consumer(
            c.kafka_bootstrap,
            group_id=self.group,
            client_id=f"{c.client_id}-sources-member",
            instance_id=c.instance_id,
            session_timeout_ms=c.session_timeout_ms,
            assignor=AdvertisingAssignor(lambda: self.advertised),
        )
        self._consumer.subscribe([self.topic], listener=_Listener(self))
        for target, name in ((self._member_loop, "member"), (self._reconcile_loop, "reconcile")):
            thread = threading.Thread(target=target, name=f"ingest-sources-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        logger.info(
            "sources: joined group %s as %s (session timeout %d ms, at most %d sources here)",
            self.group,
            advertised,
            c.session_timeout_ms,
            c.max_sources,
        )

    def close(self) -> None:
        """Leave the group (the others take the partitions at once) and stop reading; the running
        sources are the service's to stop."""
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(10)
        if self._consumer is not None:
            with suppress(Exception):
                self._consumer.close(autocommit=False, timeout_ms=5000)
        self.table.close()
        if self._producer is not None:
            with suppress(Exception):
                self._producer.close(timeout=5)
        self.watch.close()

    # -- writes ---------------------------------------------------------------------------------
    def put(self, record: SourceRecord, *, timeout_s: float = 10.0) -> Entry:
        """Write ``record`` and wait until this replica's table has it.

        Raises:
            SourcesTopicError: the broker did not take it within ``timeout_s``.
        """
        sid = record.spec.stream_id
        meta = self._send(sid, record.encode(), timeout_s)
        if not self.table.seen(meta.partition, meta.offset, timeout_s):
            logger.warning("stream %s: written to %s but not read back yet", sid, self.topic)
        return Entry(record, meta.partition, meta.offset)

    def delete(self, stream_id: str, *, timeout_s: float = 10.0) -> None:
        """Write the tombstone of ``stream_id`` and wait until this replica's table has applied it."""
        meta = self._send(stream_id, None, timeout_s)
        self.table.seen(meta.partition, meta.offset, timeout_s)

    def _send(self, stream_id: str, value: bytes | None, timeout_s: float) -> Any:
        try:
            future = self._producer.send(self.topic, key=stream_id.encode(), value=value)
            return future.get(timeout=timeout_s)
        except KafkaError as exc:
            raise SourcesTopicError(
                f"stream {stream_id}: cannot write to the sources topic {self.topic!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def record(self, spec: SourceConfig, **fields: Any) -> SourceRecord:
        return SourceRecord(spec=spec, written_by=self.advertised, written_at_ns=time.time_ns(), **fields)

    # -- views ----------------------------------------------------------------------------------
    def owned(self) -> set[int]:
        with self._lock:
            return set(self._owned)

    def owner_of(self, partition: int) -> str:
        """The advertised address of the partition's owner ("" if none, or the group is unknown)."""
        if partition in self.owned():
            return self.advertised
        try:
            member = self.watch.get().owner_of(partition)
        except MembershipUnavailable as exc:
            logger.debug("sources: no membership: %s", exc)
            return ""
        return member.address if member is not None else ""

    def owners(self) -> dict[int, str]:
        """The owner of every partition (see :meth:`owner_of`), asking the broker once."""
        try:
            membership = self.watch.get()
        except MembershipUnavailable:
            membership = None
        out = {}
        owned = self.owned()
        for p in range(self.table.partitions):
            member = membership.owner_of(p) if membership is not None else None
            out[p] = self.advertised if p in owned else (member.address if member is not None else "")
        return out

    def waiting(self) -> list[SourceSnapshot]:
        """The owned sources that wait for room (over the cap) or for the partition to be read."""
        with self._lock:
            items = list(self._waiting.values())
        return [
            SourceSnapshot(
                spec=entry.record.spec,
                state=SourceState.WAITING,
                frames_decoded=0,
                frames_produced=0,
                frames_dropped=0,
                next_seq=0,
                reconnects=0,
                last_error=reason,
                queue_depth=0,
                decode_fps=0.0,
                live=entry.record.spec.live,
                owner=self.advertised,
            )
            for entry, reason in items
        ]

    # -- the group ------------------------------------------------------------------------------
    def _member_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._consumer.poll(timeout_ms=200)
            except Exception:
                if self._stop.is_set():
                    return
                logger.exception("sources: the group consumer failed; polling again")
                time.sleep(1.0)

    def assigned(self, partitions: Iterable[int]) -> None:
        new = set(partitions)
        with self._lock:
            new -= self._owned
            self._pending |= new
        if new:
            logger.info("sources: assigned partitions %s of %s", sorted(new), self.topic)
            self._wake.set()

    def revoked(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        with self._lock:
            self._owned -= gone
            self._pending -= gone
            stopping = [(sid, r) for sid, (r, p, _) in self._running.items() if p in gone]
            for sid, _ in stopping:
                del self._running[sid]
            self._waiting = {sid: w for sid, w in self._waiting.items() if w[0].partition not in gone}
        for sid, runner in stopping:
            logger.info("stream %s: partition moved away; stopping here", sid)
            runner.stop()
        if gone:
            logger.info("sources: revoked partitions %s of %s", sorted(gone), self.topic)
            self._wake.set()

    # -- reconciling ----------------------------------------------------------------------------
    def _reconcile_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                with self._lock:
                    pending = set(self._pending)
                if pending:
                    if not self.table.sync(self.config.broker_timeout_s):
                        logger.warning(
                            "sources: topic not read to its end; partitions %s wait", sorted(pending)
                        )
                        continue
                    with self._lock:
                        taken = pending & self._pending
                        self._pending -= taken
                        self._owned |= taken
                self.reconcile()
            except Exception:
                logger.exception("sources: reconciling failed; trying again")
                time.sleep(1.0)

    def reconcile(self) -> None:
        """Stop what is no longer wanted here, record what finished, start what is wanted (up to
        the cap); what does not fit waits."""
        with self._lock:
            owned = set(self._owned)
            pending = set(self._pending)
        entries = self.table.entries()
        wanted = {e.stream_id: e for e in entries if e.partition in owned and not e.record.finished}
        current = {e.stream_id: e for e in entries}
        with self._lock:
            running = dict(self._running)
        for sid, (runner, _, offset) in running.items():
            entry = wanted.get(sid)
            if runner.done:
                self._finished(sid, runner, offset, current.get(sid))
                continue
            if entry is None or (entry.offset != offset and entry.record.spec != runner.spec):
                logger.info("stream %s: no longer wanted here (stopped, finished or changed); stopping", sid)
                runner.stop()
                with self._lock:
                    self._running.pop(sid, None)
        self._done_offsets = {s: o for s, o in self._done_offsets.items() if s in current}
        with self._lock:
            active = sum(1 for r, _, _ in self._running.values() if not r.done)
            running_ids = set(self._running)
        waiting: dict[str, tuple[Entry, str]] = {}
        cap = self.config.max_sources
        for entry in wanted.values():
            sid = entry.stream_id
            if sid in running_ids or self._done_offsets.get(sid) == entry.offset:
                continue
            if active >= cap:
                waiting[sid] = (entry, f"this replica runs its maximum of {cap} sources (max_sources)")
                continue
            try:
                runner = self._launch(entry.record.spec)
            except IngestError as exc:
                waiting[sid] = (entry, f"cannot start here yet: {exc}")
                continue
            with self._lock:
                self._running[sid] = (runner, entry.partition, entry.offset)
            active += 1
        for entry in entries:
            if entry.partition in pending and not entry.record.finished:
                waiting.setdefault(
                    entry.stream_id, (entry, "this replica is reading the partition it was given")
                )
        with self._lock:
            self._waiting = waiting

    def _finished(self, sid: str, runner: SourceRunner, offset: int, entry: Entry | None) -> None:
        """A runner of ours ended by itself: record ENDED / FAILED so nobody starts it again."""
        with self._lock:
            self._running.pop(sid, None)
        self._done_offsets[sid] = offset
        snap = runner.snapshot()
        if snap.state not in _FINAL_TO_PROTO or entry is None or entry.offset != offset:
            return
        record = self.record(entry.record.spec, final_state=snap.state, last_error=snap.last_error)
        try:
            self.put(record)
        except SourcesTopicError as exc:
            logger.error("stream %s: %s as %s, but not recorded: %s", sid, snap.state, self.advertised, exc)
            return
        logger.info("stream %s: recorded as %s in %s", sid, snap.state, self.topic)
        self._wake.set()  # its slot is free: a waiting source may start


class _Listener(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Tells :class:`SourceAssignments` which partitions it gained or lost (IO thread: no waiting)."""

    def __init__(self, assignments: SourceAssignments) -> None:
        self.assignments = assignments

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self.assignments.revoked(tp.partition for tp in revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned:
            self.assignments._consumer.pause(*assigned)  # membership only: nothing is fetched
            self.assignments.assigned(tp.partition for tp in assigned)

    async def on_partitions_lost(self, lost: Any) -> None:
        self.assignments.revoked(tp.partition for tp in lost)
