"""Ingest metrics (OpenTelemetry SDK, exported for Prometheus) and the periodic drop log.

Each :class:`IngestMetrics` has its own ``MeterProvider`` and Prometheus registry (so two services
in one process, as in tests, never mix their numbers) and serves ``/metrics`` on a port:

========================================== ========= ==========================================
Prometheus name                            type      labels
========================================== ========= ==========================================
faceflow_ingest_frames_in_total            counter   stream_id (decoded or pushed, before sampling)
faceflow_ingest_frames_produced_total      counter   stream_id (acknowledged by the broker)
faceflow_ingest_frames_dropped_total       counter   stream_id, reason (:class:`DropCause`)
faceflow_ingest_reconnects_total           counter   stream_id
faceflow_ingest_produce_latency_seconds    histogram stream_id (send to broker acknowledgement)
faceflow_ingest_queue_depth                gauge     stream_id
faceflow_ingest_decode_fps                 gauge     stream_id
========================================== ========= ==========================================

Nothing is dropped silently (DESIGN.md): every drop goes through :meth:`IngestMetrics.drop`,
which counts it and logs a per-stream summary at most once per ``drop_log_interval_s`` (the first
drop of a stream at once), so a stalled broker gives one line per stream per interval, not one
line per frame.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest, start_http_server

logger = logging.getLogger(__name__)

#: Produce latency buckets, seconds: from a fast local ack to a broker that has stalled.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Streams whose drop-log state is kept (pushed stream ids come from clients: bound them).
MAX_DROP_LOG_STREAMS = 4096


class DropCause(StrEnum):
    """Why a frame did not reach the frames topic; the ``reason`` label of the drop counter."""

    QUEUE_OLDEST = "queue_oldest"  # evicted by the drop-oldest policy
    QUEUE_TIMEOUT = "queue_timeout"  # the block policy waited block_timeout_s for room
    QUEUE_CLOSED = "queue_closed"  # decoded while the source was stopping
    TOO_LARGE = "too_large"  # no JPEG under the topic's limit even after downscaling
    NOT_AN_IMAGE = "not_an_image"  # pushed bytes that are not a JPEG or PNG picture
    BROKER_STALLED = "broker_stalled"  # no room in the in-flight window within produce_block_s
    BROKER_TIMEOUT = "broker_timeout"  # the producer could not send within produce_block_s
    DELIVERY_FAILED = "delivery_failed"  # the broker did not acknowledge within the delivery timeout


@dataclass(frozen=True)
class GaugeReading:
    """One stream's instantaneous values, read by the gauge callbacks."""

    stream_id: str
    queue_depth: int
    decode_fps: float


GaugeSource = Callable[[], Iterable[GaugeReading]]


class IngestMetrics:
    """The ingest instruments, a Prometheus registry and the periodic drop log.

    Args:
        gauges: called at each scrape for the per-stream queue depth and decode rate.
        drop_log_interval_s: the least time between two drop summaries of one stream.
        clock: monotonic seconds (tests may pass their own).
    """

    def __init__(
        self,
        gauges: GaugeSource | None = None,
        *,
        drop_log_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._reader = PrometheusMetricReader(scope_info_enabled=False, registry=self.registry)
        latency_view = View(
            instrument_name="faceflow.ingest.produce.latency",
            aggregation=ExplicitBucketHistogramAggregation(boundaries=LATENCY_BUCKETS),
        )
        self._provider = MeterProvider(
            metric_readers=[self._reader],
            resource=Resource.create({"service.name": "faceflow-ingest"}),
            views=[latency_view],
        )
        meter = self._provider.get_meter("faceflow.ingest")
        self._gauges = gauges
        self._frames_in = meter.create_counter(
            "faceflow.ingest.frames.in", description="Frames decoded or pushed, before sampling"
        )
        self._produced = meter.create_counter(
            "faceflow.ingest.frames.produced", description="Frames acknowledged by the broker"
        )
        self._dropped = meter.create_counter(
            "faceflow.ingest.frames.dropped", description="Frames that did not reach the topic, by reason"
        )
        self._reconnects = meter.create_counter(
            "faceflow.ingest.reconnects", description="Reconnect attempts of live sources"
        )
        self._latency = meter.create_histogram(
            "faceflow.ingest.produce.latency", unit="s", description="Send to broker acknowledgement"
        )
        meter.create_observable_gauge(
            "faceflow.ingest.queue.depth",
            callbacks=[self._observe_depth],
            description="Frames waiting between decoding and the producer",
        )
        meter.create_observable_gauge(
            "faceflow.ingest.decode.fps",
            callbacks=[self._observe_fps],
            description="Frames decoded per second, over the last seconds",
        )
        self._interval_s = drop_log_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, Counter[str]] = OrderedDict()
        self._last_log: dict[str, float] = {}
        self._totals: Counter[tuple[str, str]] = Counter()
        self._server: object | None = None
        self._server_thread: threading.Thread | None = None

    def set_gauge_source(self, gauges: GaugeSource) -> None:
        self._gauges = gauges

    # -- recording ----------------------------------------------------------------------------
    def frame_in(self, stream_id: str, count: int = 1) -> None:
        self._frames_in.add(count, {"stream_id": stream_id})

    def produced(self, stream_id: str, latency_s: float) -> None:
        attributes = {"stream_id": stream_id}
        self._produced.add(1, attributes)
        self._latency.record(max(0.0, latency_s), attributes)

    def reconnect(self, stream_id: str) -> None:
        self._reconnects.add(1, {"stream_id": stream_id})

    def drop(self, stream_id: str, cause: DropCause, count: int = 1) -> None:
        """Count ``count`` dropped frames and log a summary when the interval has passed."""
        self._dropped.add(count, {"stream_id": stream_id, "reason": cause.value})
        now = self._clock()
        summary: tuple[Counter[str], int, float | None] | None = None
        with self._lock:
            self._totals[stream_id, cause.value] += count
            pending = self._pending.setdefault(stream_id, Counter())
            self._pending.move_to_end(stream_id)
            pending[cause.value] += count
            last = self._last_log.get(stream_id)
            if last is None or now - last >= self._interval_s:
                summary = (
                    pending.copy(),
                    self._stream_total(stream_id),
                    None if last is None else now - last,
                )
                pending.clear()
                self._last_log[stream_id] = now
            while len(self._pending) > MAX_DROP_LOG_STREAMS:
                old, counts = self._pending.popitem(last=False)
                self._last_log.pop(old, None)
                if counts:
                    self._log(old, counts, self._stream_total(old), None)
        if summary is not None:
            self._log(stream_id, *summary)

    def flush_drop_log(self) -> None:
        """Log what was dropped since each stream's last summary (at shutdown)."""
        with self._lock:
            pending = [(s, c.copy(), self._stream_total(s)) for s, c in self._pending.items() if c]
            for counts in self._pending.values():
                counts.clear()
        for stream_id, counts, total in pending:
            self._log(stream_id, counts, total, None)

    def dropped_total(self, stream_id: str, cause: DropCause | None = None) -> int:
        """Frames of ``stream_id`` dropped so far (for ``cause`` only, if given)."""
        with self._lock:
            if cause is not None:
                return self._totals[stream_id, cause.value]
            return self._stream_total(stream_id)

    def _stream_total(self, stream_id: str) -> int:
        return sum(n for (s, _), n in self._totals.items() if s == stream_id)

    @staticmethod
    def _log(stream_id: str, counts: Counter[str], total: int, span_s: float | None) -> None:
        window = "" if span_s is None else f" in the last {span_s:.0f} s"
        reasons = ", ".join(f"{reason}={n}" for reason, n in sorted(counts.items()))
        logger.warning(
            "stream %s: dropped %d frames%s (%s); %d dropped in total",
            stream_id,
            sum(counts.values()),
            window,
            reasons,
            total,
        )

    # -- gauges -------------------------------------------------------------------------------
    def _readings(self) -> list[GaugeReading]:
        if self._gauges is None:
            return []
        try:
            return list(self._gauges())
        except Exception:
            logger.exception("reading the ingest gauges failed")
            return []

    def _observe_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(r.queue_depth, {"stream_id": r.stream_id}) for r in self._readings()]

    def _observe_fps(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(round(r.decode_fps, 3), {"stream_id": r.stream_id}) for r in self._readings()]

    # -- exposition ---------------------------------------------------------------------------
    def render(self) -> str:
        """The Prometheus text exposition, as ``/metrics`` serves it."""
        return generate_latest(self.registry).decode()

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (0 picks a free port); return the port."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._server, self._server_thread = server, thread
        bound = int(server.server_address[1])
        logger.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def shutdown(self) -> None:
        """Stop the HTTP server and the meter provider; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
            server.server_close()  # type: ignore[attr-defined]
        if self._server_thread is not None:
            self._server_thread.join(5)
            self._server_thread = None
        self._provider.shutdown()
