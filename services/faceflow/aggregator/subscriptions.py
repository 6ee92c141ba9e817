"""``Aggregator.Subscribe``: face events to gRPC clients, filtered, by any replica.

A replica tails faceflow.faces.v1 (every partition) once and fans the events out to its live
subscribers (:class:`Hub`); a subscription that starts from a time, from offsets or from the
earliest event reads with a consumer of its own (:class:`Replay`). So any replica serves any
stream, whoever owns it.

Overflow policy (documented in docs/aggregator.md): each subscriber has a bounded queue
(``subscriber_queue`` events). A live subscriber that reads too slowly loses the **oldest** queued
events; before the next event it receives a ``Gap`` saying how many it lost. The others are not
affected: the tail never waits for a subscriber. A replay, whose events stay in Kafka, waits for
its reader instead of dropping.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass

from kafka import TopicPartition

from faceflow.errors import InvalidArgument, ResourceExhausted
from faceflow.kafka.clients import make_consumer
from faceflow.kafka.headers import HeaderList
from faceflow.streams import InvalidStreamId, validate_stream_id
from faceflow.v1 import aggregator_pb2, face_event_pb2

logger = logging.getLogger(__name__)

MAX_FILTER_VALUES = 1000
_VALID_TYPES = frozenset(
    v for v in face_event_pb2.FaceEventType.values() if v != face_event_pb2.FACE_EVENT_TYPE_UNSPECIFIED
)


@dataclass(frozen=True)
class Delivery:
    """One event for a subscriber, with where it is in the faces topic and its trace context."""

    event: face_event_pb2.FaceEvent
    partition: int
    offset: int
    headers: HeaderList


@dataclass(frozen=True)
class Filter:
    """A validated ``SubscribeRequest`` filter (empty sets mean "all")."""

    streams: frozenset[str]
    types: frozenset[int]
    identity_ids: frozenset[str]
    names: frozenset[str]
    min_quality: float
    include_parsing: bool

    @classmethod
    def from_request(cls, request: aggregator_pb2.SubscribeRequest) -> Filter:
        """Raises InvalidArgument naming the field and the bad value."""
        for name in ("stream_ids", "identity_ids", "identity_names", "types"):
            if len(getattr(request, name)) > MAX_FILTER_VALUES:
                raise InvalidArgument(
                    f"{name}: expected at most {MAX_FILTER_VALUES} values, got {len(getattr(request, name))}"
                )
        for stream_id in request.stream_ids:
            try:
                validate_stream_id(stream_id)
            except InvalidStreamId as exc:
                raise InvalidArgument(f"stream_ids: {exc}") from None
        bad = [t for t in request.types if t not in _VALID_TYPES]
        if bad:
            raise InvalidArgument(f"types: expected FaceEventType values {sorted(_VALID_TYPES)}, got {bad}")
        if not 0.0 <= request.min_quality <= 1.0:
            raise InvalidArgument(f"min_quality: expected a number in [0, 1], got {request.min_quality}")
        return cls(
            streams=frozenset(request.stream_ids),
            types=frozenset(int(t) for t in request.types),
            identity_ids=frozenset(request.identity_ids),
            names=frozenset(request.identity_names),
            min_quality=float(request.min_quality),
            include_parsing=request.include_parsing,
        )

    def matches(self, event: face_event_pb2.FaceEvent) -> bool:
        if self.streams and event.stream_id not in self.streams:
            return False
        if self.types and event.type not in self.types:
            return False
        if self.identity_ids and event.identity_id not in self.identity_ids:
            return False
        if self.names and event.identity_name not in self.names:
            return False
        return not (
            event.type == face_event_pb2.FACE_EVENT_TYPE_OBSERVATION and event.quality < self.min_quality
        )

    def shaped(self, event: face_event_pb2.FaceEvent) -> face_event_pb2.FaceEvent:
        """The event as this subscriber gets it (parsing masks only when asked for)."""
        if self.include_parsing or not (event.raw.HasField("parsing") or event.fused.HasField("parsing")):
            return event
        out = face_event_pb2.FaceEvent()
        out.CopyFrom(event)
        out.raw.ClearField("parsing")
        out.fused.ClearField("parsing")
        return out


class Subscriber:
    """A bounded queue of deliveries; a live one drops the oldest when full and counts them."""

    def __init__(self, filter_: Filter, capacity: int, *, blocking: bool = False) -> None:
        self.filter = filter_
        self.capacity = capacity
        self.blocking = blocking
        self._queue: deque[Delivery] = deque()
        self._cond = threading.Condition()
        self._dropped = 0
        self.closed = False

    def offer(self, delivery: Delivery) -> None:
        with self._cond:
            if self.blocking:
                while len(self._queue) >= self.capacity and not self.closed:
                    self._cond.wait(0.5)
            elif len(self._queue) >= self.capacity:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(delivery)
            self._cond.notify_all()

    def take(self, timeout_s: float) -> Delivery | int | None:
        """The next delivery, or the number dropped since the last call (a gap), or None."""
        with self._cond:
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                return dropped
            if not self._queue:
                self._cond.wait(timeout_s)
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                return dropped
            if not self._queue:
                return None
            delivery = self._queue.popleft()
            self._cond.notify_all()
            return delivery

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def _parse(record: object) -> Delivery | None:
    value = getattr(record, "value", None)
    if value is None:
        return None
    try:
        event = face_event_pb2.FaceEvent.FromString(value)
    except Exception:  # noqa: BLE001 - a foreign record on the topic is skipped, not fatal
        return None
    return Delivery(event, int(record.partition), int(record.offset), list(record.headers or []))  # type: ignore[attr-defined]


class Hub:
    """One tail of the faces topic, fanned out to live subscribers."""

    def __init__(self, bootstrap: str, topic: str, *, max_subscribers: int, capacity: int) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.max_subscribers = max_subscribers
        self.capacity = capacity
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._tail, name="aggregator-faces-tail", daemon=True)

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            logger.warning("faces tail: not positioned within %.0f s", timeout_s)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for s in self._subscribers:
                s.close()
        self._thread.join(5)

    def subscribe(self, filter_: Filter) -> Subscriber:
        with self._lock:
            if len(self._subscribers) >= self.max_subscribers:
                raise ResourceExhausted(
                    f"this replica serves at most {self.max_subscribers} subscribers; retry later"
                )
            sub = Subscriber(filter_, self.capacity)
            self._subscribers.append(sub)
            return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.close()
        with self._lock, suppress(ValueError):
            self._subscribers.remove(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def _tail(self) -> None:
        consumer = make_consumer(self.bootstrap, group_id=None, client_id="faceflow-aggregator-faces-tail")
        try:
            partitions = None
            while not partitions and not self._stop.is_set():
                partitions = consumer.partitions_for_topic(self.topic)
                if not partitions:
                    time.sleep(0.2)
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions or [])]
            consumer.assign(tps)
            consumer.seek_to_end(*tps)
            for tp in tps:
                consumer.position(tp)
            self._ready.set()
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        delivery = _parse(record)
                        if delivery is not None:
                            self._dispatch(delivery)
        except Exception:
            logger.exception("faces tail failed")
            raise
        finally:
            with suppress(Exception):
                consumer.close()

    def _dispatch(self, delivery: Delivery) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            if sub.filter.matches(delivery.event):
                sub.offer(delivery)


class Replay:
    """A subscription from a past position, with a consumer of its own (blocking, never dropping)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        filter_: Filter,
        start: aggregator_pb2.StartPosition,
        *,
        capacity: int,
    ) -> None:
        self.sub = Subscriber(filter_, capacity, blocking=True)
        self._consumer = make_consumer(bootstrap, group_id=None, client_id="faceflow-aggregator-replay")
        self._stop = threading.Event()
        partitions = self._consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        self._consumer.assign(tps)
        which = start.WhichOneof("position")
        if which == "earliest":
            self._consumer.seek_to_beginning(*tps)
        elif which == "time":
            wanted = {tp: start.time.ToMilliseconds() for tp in tps}
            found = self._consumer.offsets_for_times(wanted)
            for tp in tps:
                hit = found.get(tp)
                if hit is None:
                    self._consumer.seek_to_end(tp)
                else:
                    self._consumer.seek(tp, hit.offset)
        elif which == "offsets":
            unknown = sorted(set(start.offsets.offsets) - set(partitions))
            if unknown:
                self._consumer.close()
                raise InvalidArgument(
                    f"start.offsets: {topic} has partitions {sorted(partitions)}, got {unknown}"
                )
            for tp in tps:
                offset = start.offsets.offsets.get(tp.partition)
                if offset is None:
                    self._consumer.seek_to_end(tp)
                elif offset < 0:
                    self._consumer.close()
                    raise InvalidArgument(
                        f"start.offsets[{tp.partition}]: expected an offset >= 0, got {offset}"
                    )
                else:
                    self._consumer.seek(tp, offset)
        self._thread = threading.Thread(target=self._read, name="aggregator-replay", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while not self._stop.is_set() and not self.sub.closed:
                for records in self._consumer.poll(timeout_ms=200).values():
                    for record in records:
                        delivery = _parse(record)
                        if delivery is not None and self.sub.filter.matches(delivery.event):
                            self.sub.offer(delivery)
        except Exception:
            logger.exception("replay subscription failed")
        finally:
            with suppress(Exception):
                self._consumer.close()

    def close(self) -> None:
        self._stop.set()
        self.sub.close()


def stream_items(sub: Subscriber, is_active: object, *, poll_s: float = 0.5) -> Iterator[Delivery | int]:
    """Deliveries (or gap counts) until the caller is no longer active."""
    while is_active() and not sub.closed:  # type: ignore[operator]
        item = sub.take(poll_s)
        if item is not None:
            yield item
