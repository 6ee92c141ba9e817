"""The Kafka adapter of ingest: encoded frames -> ``Frame`` protobufs on the frames topic.

:class:`KafkaFrameSink` sends each :class:`~faceflow.ingest.frames.EncodedFrame` keyed by its
stream id with faceflow's headers (content type, schema version, a W3C ``traceparent``) through a
producer built by :func:`faceflow.kafka.clients.make_producer` (``acks=all``, idempotent, lz4).

A send never blocks for long, so decoding never hangs on a stalled broker:

* kafka-python has no bound on the memory of unacknowledged records, so the sink keeps an
  in-flight window of ``max_in_flight_bytes``; a frame that finds no room within
  ``produce_block_s`` is dropped (:attr:`DropCause.BROKER_STALLED`);
* the producer itself blocks at most ``produce_block_s`` (``max_block_ms``) for metadata; a
  ``KafkaTimeoutError`` is a counted drop (:attr:`DropCause.BROKER_TIMEOUT`), not a crash;
* a frame the broker does not acknowledge within the delivery timeout is a counted drop
  (:attr:`DropCause.DELIVERY_FAILED`).

Each of these also raises :class:`SinkRefused` to the caller (the push API turns it into a
per-frame rejection or ``UNAVAILABLE``). :class:`InMemoryFrameSink` is the fake for unit tests.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from kafka.errors import KafkaError, KafkaTimeoutError
from opentelemetry.trace import SpanKind

from faceflow.ingest.errors import IngestError
from faceflow.ingest.frames import EncodedFrame
from faceflow.ingest.metrics import DropCause, IngestMetrics
from faceflow.kafka.clients import make_producer
from faceflow.kafka.headers import HeaderList, TraceParent, message_headers
from faceflow.service.tracing import start_span, traceparent_of_span
from faceflow.v1 import frame_pb2

logger = logging.getLogger(__name__)

FRAME_TYPE = "faceflow.v1.Frame"


@dataclass(frozen=True)
class Delivery:
    """The outcome of one send: ``error`` is None when the broker acknowledged the frame."""

    stream_id: str
    seq: int
    latency_s: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


DeliveryCallback = Callable[[Delivery], None]


class SinkRefused(IngestError):  # noqa: N818 - a refusal, reported as data
    """A frame was not sent (already counted as a drop).

    Attributes:
        cause: why (:attr:`DropCause.BROKER_STALLED` or :attr:`DropCause.BROKER_TIMEOUT`).
    """

    def __init__(self, cause: DropCause, message: str) -> None:
        super().__init__(message)
        self.cause = cause


class FrameSink(Protocol):
    """Where encoded frames go: the frames topic, or a list in tests."""

    def send(
        self,
        frame: EncodedFrame,
        *,
        source_uri: str,
        trace: TraceParent | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        """Send ``frame``; ``on_delivery`` is called once with the outcome (maybe in another thread).

        Raises:
            SinkRefused: the frame could not be handed to the broker in time (counted as a drop).
        """
        ...

    def flush(self, timeout_s: float) -> bool:
        """Wait until every frame sent so far is acknowledged or failed; False on timeout."""
        ...

    def close(self, timeout_s: float) -> None:
        """Flush for at most ``timeout_s`` and release the connection."""
        ...


def to_proto(frame: EncodedFrame, source_uri: str) -> frame_pb2.Frame:
    """The ``Frame`` message of an encoded frame (pts and capture time to the nanosecond)."""
    message = frame_pb2.Frame(
        stream_id=frame.stream_id,
        seq=frame.seq,
        image=frame.jpeg,
        content_type=frame.content_type if frame.jpeg else "",
        width=frame.width,
        height=frame.height,
        source_uri=source_uri,
        end_of_stream=frame.end_of_stream,
        shot_start_seq=frame.shot_start_seq,
    )
    message.pts.FromNanoseconds(round(frame.pts_s * 1e9))
    message.capture_time.FromNanoseconds(frame.capture_time_ns)
    return message


class _InFlightWindow:
    """A byte budget for frames sent but not yet acknowledged."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.frames = 0
        self._cond = threading.Condition()

    def acquire(self, size: int, timeout_s: float) -> bool:
        size = min(size, self.limit)  # a frame larger than the budget waits for an empty window
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.used + size > self.limit:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            self.used += size
            self.frames += 1
            return True

    def release(self, size: int) -> None:
        with self._cond:
            self.used -= min(size, self.limit)
            self.frames -= 1
            self._cond.notify_all()

    def wait_empty(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.frames:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True


class KafkaFrameSink:
    """Frames to a Kafka topic through one idempotent producer shared by every stream.

    Args:
        bootstrap: the broker list, ``host:port[,host:port]``.
        topic: the frames topic.
        metrics: where produced frames, latencies and drops are counted.
        client_id: the producer's client id.
        produce_block_s: the most a send may block (window wait, metadata).
        max_in_flight_bytes: the budget of frames sent but not acknowledged.
        delivery_timeout_s: how long the producer retries a frame before failing it.
        connect_timeout_s: how long the first connection to the broker may take.
        linger_ms: how long the producer waits to fill a batch: fewer, larger requests cost the
            broker and this process far less CPU per frame than one request per frame.
        producer_overrides: extra kafka-python producer settings (tests, the benchmark).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        metrics: IngestMetrics,
        *,
        client_id: str = "faceflow-ingest",
        produce_block_s: float = 2.0,
        max_in_flight_bytes: int = 64 * 1024 * 1024,
        delivery_timeout_s: float = 120.0,
        connect_timeout_s: float = 30.0,
        linger_ms: int = 20,
        **producer_overrides: Any,
    ) -> None:
        self.topic = topic
        self.bootstrap = bootstrap
        self._metrics = metrics
        self._block_s = produce_block_s
        self._window = _InFlightWindow(max_in_flight_bytes)
        # kafka-python refuses delivery_timeout_ms < linger_ms + request_timeout_ms (a KafkaError that
        # would read as "cannot reach the broker"), so a short delivery timeout shortens the request's.
        request_timeout_ms = max(1, min(30_000, int(delivery_timeout_s * 1000) - linger_ms - 1))
        settings: dict[str, Any] = {
            "max_block_ms": int(produce_block_s * 1000),
            "delivery_timeout_ms": int(delivery_timeout_s * 1000),
            "request_timeout_ms": request_timeout_ms,
            "linger_ms": linger_ms,
            # kafka-python's 16 KiB default makes every frame its own produce request (one round
            # trip each: ~500 frames/s at best); 1 MiB batches several frames per request (~8x).
            "batch_size": 1024 * 1024,
            "bootstrap_timeout_ms": int(connect_timeout_s * 1000),
        }
        settings.update(producer_overrides)
        try:
            self._producer = make_producer(bootstrap, client_id=client_id, **settings)
        except KafkaError as exc:
            raise IngestError(
                f"cannot reach the Kafka broker at {bootstrap} within {connect_timeout_s:.0f} s ({exc}): "
                f"is it up (faceflow dev up) and is FACEFLOW_KAFKA_BOOTSTRAP right?"
            ) from exc
        self._closed = False
        self._rng = random.Random(secrets.randbits(128))  # noqa: S311 - ids need randomness, not secrecy
        self._rng_lock = threading.Lock()

    def check_topic(self, timeout_s: float) -> int:
        """Wait until the broker answers and the topic exists; return its partition count.

        Raises:
            IngestError: the broker did not answer or has no such topic within ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            with suppress(KafkaTimeoutError):
                partitions = self._producer.partitions_for(self.topic)
                if partitions:
                    return len(partitions)
            if time.monotonic() >= deadline:
                raise IngestError(
                    f"the Kafka broker at {self.bootstrap} did not report topic {self.topic!r} within "
                    f"{timeout_s:.0f} s: is the broker up (faceflow dev up) and the topic created?"
                )
            time.sleep(0.2)

    def send(
        self,
        frame: EncodedFrame,
        *,
        source_uri: str,
        trace: TraceParent | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        value = to_proto(frame, source_uri).SerializeToString()
        size = len(value)
        if not self._window.acquire(size, self._block_s):
            self._refuse(
                frame,
                DropCause.BROKER_STALLED,
                f"{self._window.frames} frames ({self._window.used} bytes) still wait for the broker's "
                f"acknowledgement after {self._block_s:.1f} s",
            )
        span = start_span(
            "ingest frame",
            trace,
            kind=SpanKind.PRODUCER,
            attributes={"faceflow.stream_id": frame.stream_id, "faceflow.seq": frame.seq},
            component="faceflow.ingest",
        )
        context = traceparent_of_span(span)
        if context is None or (trace is not None and context.span_id == trace.span_id):
            context = (
                trace.child() if trace is not None else self._new_trace()
            )  # no tracer provider configured
        headers: HeaderList = message_headers(FRAME_TYPE, context)
        started = time.monotonic()
        try:
            future = self._producer.send(
                self.topic, key=frame.stream_id.encode(), value=value, headers=headers
            )
        except KafkaTimeoutError as exc:
            self._window.release(size)
            span.end()
            self._refuse(frame, DropCause.BROKER_TIMEOUT, f"the producer could not send: {exc}")
        except KafkaError as exc:
            self._window.release(size)
            span.end()
            self._refuse(frame, DropCause.DELIVERY_FAILED, f"the producer refused the frame: {exc}")
        done = [False]  # report once, whichever callback comes first (both run in the I/O thread)

        def succeeded(_metadata: object) -> None:
            if done[0]:
                return
            done[0] = True
            self._window.release(size)
            span.end()
            latency = time.monotonic() - started
            self._metrics.produced(frame.stream_id, latency)
            if on_delivery is not None:
                on_delivery(Delivery(frame.stream_id, frame.seq, latency))

        def failed(error: BaseException) -> None:
            if done[0]:
                return
            done[0] = True
            self._window.release(size)
            span.end()
            self._metrics.drop(frame.stream_id, DropCause.DELIVERY_FAILED)
            logger.warning(
                "stream %s seq %d: the broker did not acknowledge the frame: %s",
                frame.stream_id,
                frame.seq,
                error,
            )
            if on_delivery is not None:
                on_delivery(Delivery(frame.stream_id, frame.seq, time.monotonic() - started, str(error)))

        future.add_callback(succeeded)
        future.add_errback(failed)

    def _new_trace(self) -> TraceParent:
        """A new trace for a frame that comes without one.

        W3C trace ids must be random, not secret: a PRNG seeded from the OS is enough, and
        ``os.urandom`` twice per frame cost more than the rest of the send on our test machine.
        """
        with self._rng_lock:
            trace_id, span_id = self._rng.getrandbits(128), self._rng.getrandbits(64)
        return TraceParent(trace_id=f"{trace_id or 1:032x}", span_id=f"{span_id or 1:016x}")

    def _refuse(self, frame: EncodedFrame, cause: DropCause, detail: str) -> NoReturn:
        self._metrics.drop(frame.stream_id, cause)
        logger.debug("stream %s seq %d: dropped (%s): %s", frame.stream_id, frame.seq, cause, detail)
        raise SinkRefused(cause, f"stream {frame.stream_id} seq {frame.seq}: {detail}")

    def flush(self, timeout_s: float) -> bool:
        with suppress(KafkaTimeoutError):
            self._producer.flush(timeout=max(timeout_s, 0.001))
        return self._window.wait_empty(0.0 if timeout_s <= 0 else 0.5)

    @property
    def in_flight(self) -> tuple[int, int]:
        """Frames and bytes sent but not acknowledged yet."""
        return self._window.frames, self._window.used

    def close(self, timeout_s: float) -> None:
        if self._closed:
            return
        self._closed = True
        flushed = self.flush(timeout_s)
        if not flushed:
            logger.warning(
                "closing the producer with %d frames not acknowledged after %.1f s",
                self._window.frames,
                timeout_s,
            )
        self._producer.close(timeout=0 if not flushed else max(timeout_s, 0.001))


class InMemoryFrameSink:
    """A :class:`FrameSink` that keeps what it is sent, for unit tests (STYLE.md #11).

    Args:
        metrics: counts produced frames like the real sink, if given.
        refuse: called with each frame; return a :class:`DropCause` to refuse it.
    """

    def __init__(
        self,
        metrics: IngestMetrics | None = None,
        refuse: Callable[[EncodedFrame], DropCause | None] | None = None,
    ) -> None:
        self.frames: list[tuple[EncodedFrame, str]] = []
        self._metrics = metrics
        self._refuse = refuse
        self._lock = threading.Lock()
        self.closed = False

    def send(
        self,
        frame: EncodedFrame,
        *,
        source_uri: str,
        trace: TraceParent | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        cause = self._refuse(frame) if self._refuse is not None else None
        if cause is not None:
            if self._metrics is not None:
                self._metrics.drop(frame.stream_id, cause)
            raise SinkRefused(cause, f"stream {frame.stream_id} seq {frame.seq}: refused by the test")
        with self._lock:
            self.frames.append((frame, source_uri))
        if self._metrics is not None:
            self._metrics.produced(frame.stream_id, 0.0)
        if on_delivery is not None:
            on_delivery(Delivery(frame.stream_id, frame.seq, 0.0))

    def of(self, stream_id: str) -> list[EncodedFrame]:
        """The frames of one stream, in the order they were sent."""
        with self._lock:
            return [f for f, _ in self.frames if f.stream_id == stream_id]

    def flush(self, timeout_s: float) -> bool:
        return True

    def close(self, timeout_s: float) -> None:
        self.closed = True
