"""The gallery on faceflow.identities.v1 (compacted; key = identity id): load, tail, publish, erase.

Every aggregator replica loads the whole topic at start and then tails it, so an enrolment, a name
or an erasure made on one replica is seen by all. The in-memory
:class:`~faceflow.core.identity.Gallery` is shared with the streams; every change to it happens
under the service's state lock.

Erasure: :meth:`GallerySync.forget` writes a tombstone (an empty value), removes the identity from
the gallery and from every track (through ``on_removed``), and remembers the id for
``forgotten_ttl_s`` so that a replica that had not yet seen the tombstone cannot bring the identity
back by publishing its exemplars. Compaction then removes the record from the topic (see
docs/privacy.md for how long an erased record can still be read).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import numpy as np
from kafka import KafkaProducer, TopicPartition

from faceflow.core.identity import Gallery, IdentityEntry, IdentityKind
from faceflow.errors import FatalError, Unavailable
from faceflow.kafka.clients import make_consumer
from faceflow.models.contract import IDENTITY_DIM
from faceflow.v1 import identity_pb2

logger = logging.getLogger(__name__)

KINDS = {
    IdentityKind.ENROLLED: identity_pb2.IDENTITY_KIND_ENROLLED,
    IdentityKind.NAMED: identity_pb2.IDENTITY_KIND_NAMED,
    IdentityKind.ANONYMOUS: identity_pb2.IDENTITY_KIND_ANONYMOUS,
}
_FROM_PROTO = {v: k for k, v in KINDS.items()}


def to_record(entry: IdentityEntry) -> identity_pb2.IdentityRecord:
    record = identity_pb2.IdentityRecord(
        identity_id=entry.identity_id,
        name=entry.name,
        kind=KINDS[entry.kind],
        embeddings=[identity_pb2.Embedding(values=row.tolist()) for row in entry.embeddings],
        source=entry.source,
        origin_stream=entry.origin_stream,
    )
    set_times(record, entry)
    return record


def set_times(message: Any, entry: IdentityEntry) -> None:
    """``created``, ``updated`` and ``last_seen`` of an identity message from ``entry``'s epoch seconds."""
    message.created.FromNanoseconds(round(entry.created_s * 1e9))
    message.updated.FromNanoseconds(round(entry.updated_s * 1e9))
    message.last_seen.FromNanoseconds(round(entry.last_seen_s * 1e9))


def from_record(record: identity_pb2.IdentityRecord) -> IdentityEntry:
    """Raises ValueError for a record that breaks the gallery's rules."""
    if record.kind not in _FROM_PROTO:
        raise ValueError(f"identity {record.identity_id!r}: unknown kind {record.kind}")
    embeddings = np.array([list(e.values) for e in record.embeddings], np.float32).reshape(-1, IDENTITY_DIM)
    return IdentityEntry(
        identity_id=record.identity_id,
        name=record.name,
        kind=_FROM_PROTO[record.kind],
        embeddings=embeddings,
        origin_stream=record.origin_stream,
        source=record.source,
        created_s=record.created.ToNanoseconds() / 1e9,
        updated_s=record.updated.ToNanoseconds() / 1e9,
        last_seen_s=record.last_seen.ToNanoseconds() / 1e9,
    )


class GallerySync:
    """Keeps a :class:`Gallery` equal to the identities topic, and writes to it.

    Args:
        lock: the service's state lock (held while the gallery or the streams change).
        on_removed: called (under the lock) with an identity id that was erased.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        gallery: Gallery,
        lock: threading.RLock,
        producer: KafkaProducer,
        *,
        on_removed: Callable[[str], None],
        forgotten_ttl_s: float = 6 * 3600.0,
    ) -> None:
        self.topic = topic
        self.gallery = gallery
        self.lock = lock
        self.producer = producer
        self.on_removed = on_removed
        self.forgotten_ttl_s = forgotten_ttl_s
        self._forgotten: OrderedDict[str, float] = OrderedDict()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumer = make_consumer(bootstrap, group_id=None, client_id="faceflow-aggregator-gallery")

    # -- reading ---------------------------------------------------------------------------------------
    def load(self, timeout_s: float = 60.0) -> int:
        """Read the whole topic into the gallery; then :meth:`start` tails it."""
        consumer = self._consumer
        deadline = time.monotonic() + timeout_s
        partitions = consumer.partitions_for_topic(self.topic)
        while not partitions:
            if time.monotonic() > deadline:
                raise FatalError(
                    f"the gallery topic {self.topic} does not exist (faceflow dev up creates it)"
                )
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(self.topic)
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise FatalError(f"could not read the gallery topic {self.topic} within {timeout_s:.0f} s")
            self._apply(consumer.poll(timeout_ms=500))
        logger.info("gallery: %d identities loaded from %s", len(self.gallery), self.topic)
        return len(self.gallery)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._tail, name="aggregator-gallery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with suppress(Exception):
            self._consumer.close()

    def _tail(self) -> None:
        while not self._stop.is_set():
            try:
                self._apply(self._consumer.poll(timeout_ms=300))
            except Exception:
                logger.exception("gallery: tailing %s failed; retrying", self.topic)
                self._stop.wait(1.0)

    def _apply(self, polled: dict[TopicPartition, list]) -> None:  # type: ignore[type-arg]
        for records in polled.values():
            for r in records:
                identity_id = (r.key or b"").decode("utf-8", "replace")
                if r.value is None:
                    self._removed(identity_id)
                    continue
                try:
                    entry = from_record(identity_pb2.IdentityRecord.FromString(r.value))
                except ValueError as exc:
                    logger.error("gallery: record %s@%d skipped: %s", identity_id, r.offset, exc)
                    continue
                with self.lock:
                    if self._is_forgotten(entry.identity_id):
                        continue
                    self.gallery.put(entry)

    def _removed(self, identity_id: str) -> None:
        with self.lock:
            self._remember_forgotten(identity_id)
            if self.gallery.remove(identity_id):
                logger.info("gallery: identity %s erased", identity_id)
            self.on_removed(identity_id)

    def _remember_forgotten(self, identity_id: str) -> None:
        now = time.monotonic()
        self._forgotten[identity_id] = now
        self._forgotten.move_to_end(identity_id)
        while self._forgotten and (
            len(self._forgotten) > 100_000
            or now - next(iter(self._forgotten.values())) > self.forgotten_ttl_s
        ):
            self._forgotten.popitem(last=False)

    def _is_forgotten(self, identity_id: str) -> bool:
        seen = self._forgotten.get(identity_id)
        return seen is not None and time.monotonic() - seen <= self.forgotten_ttl_s

    # -- writing ---------------------------------------------------------------------------------------
    def record_value(self, entry: IdentityEntry) -> bytes | None:
        """The topic value for ``entry``, or None when it was erased meanwhile (not to be published)."""
        with self.lock:
            if self._is_forgotten(entry.identity_id):
                return None
        return to_record(entry).SerializeToString()

    def publish(self, entry: IdentityEntry, *, timeout_s: float = 30.0) -> None:
        """Write ``entry`` (acknowledged) and put it in the local gallery.

        Raises:
            Unavailable: the broker did not acknowledge within ``timeout_s``.
        """
        value = self.record_value(entry)
        if value is None:
            raise Unavailable(f"identity {entry.identity_id} was erased; it can not be written again")
        try:
            self.producer.send(self.topic, key=entry.identity_id.encode(), value=value).get(timeout=timeout_s)
        except Exception as exc:
            raise Unavailable(f"the gallery topic did not take identity {entry.identity_id}: {exc}") from exc
        with self.lock:
            self.gallery.put(entry)

    def forget(self, identity_id: str, *, timeout_s: float = 30.0) -> None:
        """Write the tombstone (acknowledged), then erase locally."""
        try:
            self.producer.send(self.topic, key=identity_id.encode(), value=None).get(timeout=timeout_s)
        except Exception as exc:
            raise Unavailable(f"the gallery topic did not take the erasure of {identity_id}: {exc}") from exc
        self._removed(identity_id)
