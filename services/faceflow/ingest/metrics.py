"""Ingest metrics (OpenTelemetry SDK, exported for Prometheus) and the periodic drop log.

Each :class:`IngestMetrics` has its own :class:`~faceflow.service.metrics.ServiceMetrics` (meter
provider and Prometheus registry, so two services in one process never mix their numbers) and
serves ``/metrics`` on a port. ``stream_id`` label values come from clients (pushed streams), so
they pass a :class:`~faceflow.service.metrics.LabelBudget`: beyond the first 256 distinct streams
new ones are labelled ``_other``. The in-process drop tallies are bounded the same way.

========================================== ========= ==========================================
Prometheus name                            type      labels
========================================== ========= ==========================================
faceflow_ingest_frames_in_total            counter   stream_id (decoded or pushed, before sampling)
faceflow_ingest_frames_produced_total      counter   stream_id (acknowledged by the broker)
faceflow_ingest_frames_dropped_total       counter   stream_id, reason (:class:`DropCause`)
faceflow_ingest_frames_refused_total       counter   stream_id, reason (:class:`RefusalCause`)
faceflow_ingest_reconnects_total           counter   stream_id
faceflow_ingest_shot_cuts_total            counter   stream_id (hard cuts found in the frames sent)
faceflow_ingest_produce_latency_seconds    histogram stream_id (send to broker acknowledgement)
faceflow_ingest_queue_depth                gauge     stream_id
faceflow_ingest_decode_fps                 gauge     stream_id
========================================== ========= ==========================================

Nothing is dropped silently (DESIGN.md): every drop goes through :meth:`IngestMetrics.drop`,
which counts it and logs a per-stream summary at most once per ``drop_log_interval_s`` (the first
drop of a stream at once), so a stalled broker gives one line per stream per interval, not one
line per frame.

"Dropped" is what ingest itself lost (backpressure, a broker that did not acknowledge, a decoded
frame that cannot be encoded small enough); "refused" is what a client pushed and ingest did not
take because of the frame or the call (:meth:`IngestMetrics.refuse`). For a pushed stream every
message counted in is counted once more when it settles, so once nothing is in flight::

    in = produced + dropped + refused

(pushed end-of-stream markers count in ``in`` and ``produced`` like frames). For a pulled source,
``in`` counts decoded frames before sampling, so the frames the sampler skips are the difference.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from opentelemetry.metrics import CallbackOptions, Observation

from faceflow.service.metrics import BoundedCounter, ServiceMetrics

logger = logging.getLogger(__name__)

#: Streams whose drop-log state is kept (pushed stream ids come from clients: bound them).
MAX_DROP_LOG_STREAMS = 4096


class DropCause(StrEnum):
    """Why a frame did not reach the frames topic; the ``reason`` label of the drop counter."""

    QUEUE_OLDEST = "queue_oldest"  # evicted by the drop-oldest policy
    QUEUE_TIMEOUT = "queue_timeout"  # the block policy waited block_timeout_s for room
    QUEUE_CLOSED = "queue_closed"  # decoded while the source was stopping
    TOO_LARGE = "too_large"  # no JPEG under the topic's limit even after downscaling
    BROKER_STALLED = "broker_stalled"  # no room in the in-flight window within produce_block_s
    BROKER_TIMEOUT = "broker_timeout"  # the producer could not send within produce_block_s
    DELIVERY_FAILED = "delivery_failed"  # the broker did not acknowledge within the delivery timeout


class RefusalCause(StrEnum):
    """Why a pushed frame counted in was not taken; the ``reason`` label of the refused counter."""

    NOT_AN_IMAGE = "not_an_image"  # not a JPEG or PNG picture (rejected; the call goes on)
    TOO_LARGE = "too_large"  # too many pixels, or no JPEG under the limit (rejected; the call goes on)
    OVER_PAYLOAD_LIMIT = "over_payload_limit"  # bytes over the topic's payload limit (the call ends)
    STREAM_BUSY = "stream_busy"  # the stream id belongs to a running pulled source (the call ends)
    INTERNAL = "internal_error"  # an unexpected error while taking it (the call ends)


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
        self.base = ServiceMetrics("faceflow-ingest", histograms=["faceflow.ingest.produce.latency"])
        self.registry = self.base.registry
        meter = self.base.meter
        label = self.base.stream_label
        self._label = label
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
        self._refused = meter.create_counter(
            "faceflow.ingest.frames.refused",
            description="Pushed frames counted in that were not taken, by reason",
        )
        self._reconnects = meter.create_counter(
            "faceflow.ingest.reconnects", description="Reconnect attempts of live sources"
        )
        self._shot_cuts = meter.create_counter(
            "faceflow.ingest.shot_cuts", description="Hard cuts found in the frames sent (new shots)"
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
        self._totals = BoundedCounter(MAX_DROP_LOG_STREAMS * len(DropCause))
        self._stream_totals = BoundedCounter(MAX_DROP_LOG_STREAMS)
        self._refusals = BoundedCounter(MAX_DROP_LOG_STREAMS * len(RefusalCause))

    def set_gauge_source(self, gauges: GaugeSource) -> None:
        self._gauges = gauges

    # -- recording ----------------------------------------------------------------------------
    def frame_in(self, stream_id: str, count: int = 1) -> None:
        self._frames_in.add(count, {"stream_id": self._label(stream_id)})

    def produced(self, stream_id: str, latency_s: float) -> None:
        attributes = {"stream_id": self._label(stream_id)}
        self._produced.add(1, attributes)
        self._latency.record(max(0.0, latency_s), attributes)

    def reconnect(self, stream_id: str) -> None:
        self._reconnects.add(1, {"stream_id": self._label(stream_id)})

    def shot_cut(self, stream_id: str) -> None:
        """A frame of ``stream_id`` starts a new shot (not counted: a stream's first frame)."""
        self._shot_cuts.add(1, {"stream_id": self._label(stream_id)})

    def drop(self, stream_id: str, cause: DropCause, count: int = 1) -> None:
        """Count ``count`` dropped frames and log a summary when the interval has passed."""
        self._dropped.add(count, {"stream_id": self._label(stream_id), "reason": cause.value})
        now = self._clock()
        summary: tuple[Counter[str], int, float | None] | None = None
        with self._lock:
            self._totals.add((stream_id, cause.value), count)
            self._stream_totals.add(stream_id, count)
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

    def refuse(self, stream_id: str, cause: RefusalCause, count: int = 1) -> None:
        """Count ``count`` pushed frames of ``stream_id`` that were counted in and not taken."""
        self._refused.add(count, {"stream_id": self._label(stream_id), "reason": cause.value})
        self._refusals.add((stream_id, cause), count)

    def refused_total(self, stream_id: str, cause: RefusalCause) -> int:
        """Frames of ``stream_id`` refused for ``cause`` so far (recent streams only)."""
        return self._refusals.get((stream_id, cause))

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
        if cause is not None:
            return self._totals.get((stream_id, cause.value))
        return self._stream_totals.get(stream_id)

    def _stream_total(self, stream_id: str) -> int:
        return self._stream_totals.get(stream_id)

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
        return [Observation(r.queue_depth, {"stream_id": self._label(r.stream_id)}) for r in self._readings()]

    def _observe_fps(self, options: CallbackOptions) -> Iterable[Observation]:
        readings = self._readings()
        return [
            Observation(round(r.decode_fps, 3), {"stream_id": self._label(r.stream_id)}) for r in readings
        ]

    # -- exposition ---------------------------------------------------------------------------
    def render(self) -> str:
        """The Prometheus text exposition, as ``/metrics`` serves it."""
        return self.base.render()

    def serve(self, host: str, port: int) -> int:
        """Serve ``/metrics`` on ``host:port`` (0 picks a free port); return the port."""
        return self.base.serve(host, port)

    def shutdown(self) -> None:
        """Stop the HTTP server and the meter provider; idempotent."""
        self.base.shutdown()
