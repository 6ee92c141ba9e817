"""The ingest service: a registry of pulled sources, the push path, one producer, metrics.

:class:`IngestService` is what ``faceflow ingest`` runs and what the gRPC servicer calls. It owns:

* one :class:`~faceflow.ingest.producer.FrameSink` (the Kafka producer) shared by every stream;
* a :class:`~faceflow.ingest.runner.SourceRunner` per pulled source, kept after it ends, fails or
  is stopped so that ``ListSources`` can say what happened (the oldest finished ones are
  forgotten beyond ``max_finished_sources``);
* a :class:`~faceflow.ingest.reconnect.SeqCounter` per stream id, which outlives the runner: a
  stream started again in the same process continues its ``seq``; a new process starts at the
  wall clock in microseconds (``seq_start=clock``), above anything an earlier process reached;
* the push path (:mod:`faceflow.ingest.push`);
* the source policy (:mod:`faceflow.ingest.policy`) that sources requested by clients
  (:meth:`IngestService.request_source`) must pass; configured sources do not;
* with ``sources_topic`` set, :class:`~faceflow.ingest.assignments.SourceAssignments`: starting and
  stopping a source then records it in the sources topic, and this replica runs the sources of the
  partitions its consumer group gives it (:meth:`IngestService.join_sources_group`), up to
  ``max_sources``; see that module.

Errors that the gRPC layer maps to status codes: :class:`SourceExists` (``ALREADY_EXISTS``),
:class:`UnknownSource` and :class:`~faceflow.ingest.errors.SourceNotFound` (``NOT_FOUND``),
:class:`~faceflow.ingest.errors.SourceNotAllowed` (``PERMISSION_DENIED``),
:class:`~faceflow.ingest.errors.InvalidStreamId` / :class:`IngestConfigError`
(``INVALID_ARGUMENT``), :class:`ServiceStopping` (``UNAVAILABLE``), and those of
:mod:`faceflow.ingest.push`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from faceflow.errors import AlreadyExists, NotFound, RequestError, Unavailable
from faceflow.ingest.assignments import SourceAssignments
from faceflow.ingest.config import IngestConfig, SeqStart, SourceConfig
from faceflow.ingest.encode import EncodeSettings
from faceflow.ingest.errors import FrameTooLarge, IngestError, SourceNotFound, client_text
from faceflow.ingest.frames import EncodedFrame
from faceflow.ingest.metrics import DropCause, GaugeReading, IngestMetrics, RefusalCause
from faceflow.ingest.producer import Delivery, FrameSink, KafkaFrameSink, SinkRefused
from faceflow.ingest.push import (
    BrokerUnavailable,
    NotAnImage,
    PushStreams,
    PushTally,
    PushTooLarge,
    StreamBusy,
    add_frames_taken,
    prepare_image,
    pushed_frame,
)
from faceflow.ingest.reconnect import SeqCounter
from faceflow.ingest.runner import Opener, SourceRunner, SourceSnapshot, SourceState
from faceflow.kafka.headers import TraceParent
from faceflow.streams import validate_stream_id
from faceflow.v1 import ingest_pb2

logger = logging.getLogger(__name__)

PUSH_SOURCE_URI = "grpc:push"


class SourceExists(IngestError, AlreadyExists):  # noqa: N818
    """A running source already has this stream id (``ALREADY_EXISTS``)."""


class UnknownSource(IngestError, NotFound):  # noqa: N818
    """No source has this stream id (``NOT_FOUND``)."""


class ServiceStopping(IngestError, Unavailable):  # noqa: N818
    """The service is shutting down (``UNAVAILABLE``)."""


class IngestService:
    """Sources -> frames topic, with the push path; see the module docstring.

    Args:
        config: the validated settings.
        sink: where frames go; default a :class:`KafkaFrameSink` made at :meth:`start`.
        metrics: default a new :class:`IngestMetrics`.
        opener: how sources are opened (tests inject fakes); default PyAV / image folders.
    """

    def __init__(
        self,
        config: IngestConfig,
        *,
        sink: FrameSink | None = None,
        metrics: IngestMetrics | None = None,
        opener: Opener | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or IngestMetrics(drop_log_interval_s=config.drop_log_interval_s)
        self.metrics.set_gauge_source(self._gauge_readings)
        self._sink = sink
        self._opener = opener
        self._lock = threading.Lock()
        self._runners: OrderedDict[str, SourceRunner] = OrderedDict()
        self._seqs: dict[str, SeqCounter] = {}
        self._policy = config.source_policy()
        self._push_streams = PushStreams(config.max_push_streams)
        self._push_settings = EncodeSettings(
            max_side=config.max_side, quality=config.jpeg_quality, min_quality=min(50, config.jpeg_quality)
        )
        self._stopping = False
        self._started = False
        self.metrics_port: int | None = None
        #: The shared sources (None without ``sources_topic``: sources live in this process only).
        self.assignments: SourceAssignments | None = None

    @property
    def sink(self) -> FrameSink:
        if self._sink is None:
            raise IngestError("the service is not started: no producer yet")
        return self._sink

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, *, serve_metrics: bool = True) -> None:
        """Connect the producer, serve metrics, start the configured sources.

        Raises:
            IngestError: the broker or the topic is not there within ``config.broker_timeout_s``; a
                configured source is invalid (a missing file, a duplicate stream id).
        """
        logger.info("ingest config: %s", ", ".join(f"{k}={v}" for k, v in self.config.describe().items()))
        logger.info("sources started over gRPC must pass: %s", self._policy.describe())
        if self._sink is None:
            kafka = KafkaFrameSink(
                self.config.kafka_bootstrap,
                self.config.topic,
                self.metrics,
                client_id=self.config.client_id,
                produce_block_s=self.config.produce_block_s,
                max_in_flight_bytes=self.config.max_in_flight_bytes,
                delivery_timeout_s=self.config.delivery_timeout_s,
                connect_timeout_s=self.config.broker_timeout_s,
                linger_ms=self.config.linger_ms,
            )
            try:
                partitions = kafka.check_topic(self.config.broker_timeout_s)
            except IngestError:
                kafka.close(0)
                raise
            logger.info(
                "producing to %s (%d partitions) at %s",
                self.config.topic,
                partitions,
                self.config.kafka_bootstrap,
            )
            self._sink = kafka
        if serve_metrics:
            self.metrics_port = self.metrics.serve(self.config.metrics_host, self.config.metrics_port)
        self._started = True
        try:
            if self.config.sources_topic:
                self.assignments = SourceAssignments(self.config, launch=self._launch)
                self.assignments.start()
                self._record_configured()
            else:
                for spec in self.config.sources:
                    self.start_source(spec)
        except IngestError:
            self.stop(0)
            raise

    def join_sources_group(self, advertised: str) -> None:
        """With a sources topic: join the replicas' group, advertising ``advertised`` (this
        replica's gRPC address, once bound), and run the sources the group gives this replica.
        Nothing to do without one."""
        if self.assignments is not None:
            self.assignments.join(advertised)

    def _record_configured(self) -> None:
        """Write the operator's sources to the topic, unless the same spec is there already
        (finished or not): restarting with the same config neither restarts nor replays them."""
        assert self.assignments is not None
        for spec in self.config.sources:
            _check_local_path(spec)
            entry = self.assignments.table.get(spec.stream_id)
            if entry is not None and entry.record.spec == spec:
                continue
            self.assignments.put(self.assignments.record(spec))
            logger.info(
                "stream %s: configured source %s recorded in %s",
                spec.stream_id,
                spec.safe_uri,
                self.config.sources_topic,
            )

    def stop(self, grace_s: float | None = None) -> None:
        """Stop every source, send what is queued within ``grace_s``, close the producer."""
        grace = self.config.grace_s if grace_s is None else grace_s
        deadline = time.monotonic() + grace
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        if self.assignments is not None:
            self.assignments.close()  # leave the group first: the others take the partitions now
        with self._lock:
            runners = list(self._runners.values())
        logger.info("stopping ingest: %d sources, grace %.1f s", len(runners), grace)
        for runner in runners:
            runner.stop()
        for runner in runners:
            if not runner.join(max(0.0, deadline - time.monotonic())):
                logger.warning(
                    "stream %s: not finished within the grace period, abandoning it", runner.stream_id
                )
                runner.abandon()
        for runner in runners:
            runner.join(2.0)
        if self._sink is not None:
            self._sink.close(max(0.0, deadline - time.monotonic()))
        self.metrics.flush_drop_log()
        self.metrics.shutdown()
        logger.info("ingest stopped")

    def wait_sources(self, timeout_s: float | None = None) -> bool:
        """Wait until no pulled source is active; True if that happened within ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            with self._lock:
                runners = list(self._runners.values())
            pending = [r for r in runners if not r.done]
            if not pending:
                return True
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            pending[0].join(0.2 if remaining is None else min(0.2, remaining))

    # -- pulled sources -----------------------------------------------------------------------
    def start_source(self, spec: SourceConfig) -> SourceSnapshot:
        """Start pulling ``spec`` (with a sources topic: record it there, for its owner to run).

        Raises:
            ServiceStopping: the service is stopping (or not started).
            SourceExists: a source with this stream id is still running (or recorded, not finished).
            SourceNotFound: a local path that does not exist.
            SourcesTopicError: the sources topic cannot be written.
        """
        _check_local_path(spec)
        if self.assignments is not None:
            return self._record_source(spec)
        return self._launch(spec).snapshot()

    def _record_source(self, spec: SourceConfig) -> SourceSnapshot:
        assignments = self.assignments
        assert assignments is not None
        if self._stopping or not self._started:
            raise ServiceStopping("ingest is not running: no new sources")
        entry = assignments.table.get(spec.stream_id)
        if entry is not None and not entry.record.finished:
            owner = assignments.owner_of(entry.partition) or "no replica yet"
            raise SourceExists(
                f"stream id {spec.stream_id!r} is taken by a recorded source ({entry.record.spec.safe_uri}, "
                f"run by {owner}); stop it first or choose another stream id"
            )
        written = assignments.put(assignments.record(spec))
        owner = assignments.owner_of(written.partition)
        logger.info(
            "stream %s: %s recorded in %s, owner %s",
            spec.stream_id,
            spec.safe_uri,
            assignments.topic,
            owner or "none yet",
        )
        return _recorded_snapshot(
            spec,
            SourceState.STARTING if owner else SourceState.WAITING,
            owner,
            ""
            if owner
            else f"no ingest replica owns partition {written.partition} of {assignments.topic} now",
        )

    def _launch(self, spec: SourceConfig) -> SourceRunner:
        """Start a runner for ``spec`` here (every check but the path's done).

        Raises:
            ServiceStopping, SourceExists: as :meth:`start_source`.
        """
        with self._lock:
            if self._stopping or not self._started:
                raise ServiceStopping("ingest is not running: no new sources")
            current = self._runners.get(spec.stream_id)
            if current is not None and not current.done:
                raise SourceExists(
                    f"stream id {spec.stream_id!r} is taken by a running source ({current.spec.safe_uri}, "
                    f"{current.state}); stop it first or choose another stream id"
                )
            seq = self._seqs.get(spec.stream_id)
            if seq is None:
                seq = SeqCounter.starting_now() if self.config.seq_start is SeqStart.CLOCK else SeqCounter()
                self._seqs[spec.stream_id] = seq
            runner = SourceRunner(
                spec, config=self.config, sink=self.sink, metrics=self.metrics, seq=seq, opener=self._opener
            )
            self._runners.pop(spec.stream_id, None)
            self._runners[spec.stream_id] = runner
            self._evict_finished()
        runner.start()
        return runner

    def request_source(self, spec: SourceConfig) -> SourceSnapshot:
        """Start ``spec`` for a client (``StartSource``) if the source policy allows it.

        The policy is checked on the URI's text first; a path is then resolved (symbolic links) and
        checked again, and the source opens the resolved path. Only a path inside an allowed folder
        can be ``NOT_FOUND``.

        Raises:
            IngestConfigError: the URI cannot be parsed.
            SourceNotAllowed: the policy does not allow it.
            SourceNotFound: an allowed path that does not exist.
            ServiceStopping, SourceExists, SourcesTopicError: as :meth:`start_source`.
        """
        target = self._policy.check(spec.uri)
        if "://" not in target and not os.path.exists(target):  # False for any OSError too
            raise SourceNotFound(client_text(spec.uri, 200), "no such file or folder")
        return self.start_source(replace(spec, uri=target))

    def _evict_finished(self) -> None:
        finished = [sid for sid, r in self._runners.items() if r.done]
        for stream_id in finished[: max(0, len(finished) - self.config.max_finished_sources)]:
            del self._runners[stream_id]
            self._seqs.pop(stream_id, None)

    def stop_source(self, stream_id: str, *, wait_s: float = 5.0) -> SourceSnapshot:
        """Stop the source of ``stream_id`` and wait up to ``wait_s`` for it to finish.

        Raises:
            InvalidStreamId: the id breaks the naming rule.
            UnknownSource: no source has this id.
        """
        validate_stream_id(stream_id)
        with self._lock:
            runner = self._runners.get(stream_id)
        assignments = self.assignments
        entry = assignments.table.get(stream_id) if assignments is not None else None
        if assignments is not None and entry is not None:
            assignments.delete(stream_id)  # its owner, this replica or another, stops it
            if runner is None or runner.done:
                owner = assignments.owner_of(entry.partition)
                return _recorded_snapshot(entry.record.spec, SourceState.STOPPED, owner, "")
        if runner is None:
            raise UnknownSource(f"no source with stream id {stream_id!r}")
        runner.stop()
        runner.join(wait_s)
        return self._mine(runner.snapshot())

    def list_sources(self) -> list[SourceSnapshot]:
        """The sources this process runs or ran (and, with a sources topic, those waiting here)."""
        with self._lock:
            runners = list(self._runners.values())
        out = [self._mine(r.snapshot()) for r in runners]
        if self.assignments is not None:
            out += self.assignments.waiting()
        return out

    def _mine(self, snapshot: SourceSnapshot) -> SourceSnapshot:
        if self.assignments is None:
            return snapshot
        return replace(snapshot, owner=self.assignments.advertised)

    def source(self, stream_id: str) -> SourceSnapshot:
        with self._lock:
            runner = self._runners.get(stream_id)
        if runner is None:
            raise UnknownSource(f"no source with stream id {stream_id!r}")
        return runner.snapshot()

    def _gauge_readings(self) -> list[GaugeReading]:
        return [GaugeReading(s.spec.stream_id, s.queue_depth, s.decode_fps) for s in self.list_sources()]

    # -- push ---------------------------------------------------------------------------------
    def push(
        self,
        requests: Iterable[ingest_pb2.PushFramesRequest],
        *,
        trace: TraceParent | None = None,
        settle_timeout_s: float | None = None,
        tally: PushTally | None = None,
    ) -> ingest_pb2.PushFramesResponse:
        """Handle one ``PushFrames`` call (see :mod:`faceflow.ingest.push` for the rules).

        ``tally``, if given, is the call's tally (the gRPC adapter reads ``taken`` from it when the
        call fails).

        Raises:
            InvalidStreamId, StreamBusy, PushTooLarge, BrokerUnavailable, ServiceStopping: the call
                is refused; frames of it already sent stay sent, and the message ends with how many
                frames of the call were taken (:func:`~faceflow.ingest.push.frames_taken_note`).
        """
        tally = PushTally() if tally is None else tally
        try:
            for index, request in enumerate(requests):
                if self._stopping:
                    raise ServiceStopping(f"ingest is shutting down; frame {index} and later were not taken")
                self._push_one(index, request, tally, trace)
                tally.took(index)
        except RequestError as exc:
            add_frames_taken(exc, tally.taken)
            raise
        timeout = self.config.delivery_timeout_s + 5.0 if settle_timeout_s is None else settle_timeout_s
        pending = tally.wait(timeout)
        if pending:
            logger.warning("push call: %d frames still unacknowledged after %.1f s", pending, timeout)
        reply = tally.reply()
        logger.info("push call: %d frames accepted, %d rejected", reply.accepted, reply.rejected)
        return reply

    def _push_one(
        self, index: int, request: ingest_pb2.PushFramesRequest, tally: PushTally, trace: TraceParent | None
    ) -> None:
        stream_id = validate_stream_id(request.stream_id)
        messages = int(_has_image(request)) + int(request.end_of_stream)
        unsettled = _Unsettled(self.metrics, stream_id, messages)
        try:
            self._take(index, request, unsettled, tally=tally, trace=trace)
        except Exception:
            unsettled.refuse_rest(RefusalCause.INTERNAL)  # nothing left when the cause was counted
            raise

    def _take(
        self,
        index: int,
        request: ingest_pb2.PushFramesRequest,
        unsettled: _Unsettled,
        *,
        tally: PushTally,
        trace: TraceParent | None,
    ) -> None:
        stream_id = unsettled.stream_id
        with self._lock:
            runner = self._runners.get(stream_id)
        if runner is not None and not runner.done:
            unsettled.refuse_rest(RefusalCause.STREAM_BUSY)
            raise StreamBusy(
                f"frame {index}: stream id {stream_id!r} belongs to a running source "
                f"({runner.spec.safe_uri}); push under another stream id"
            )
        limit = self._push_settings.max_bytes
        if len(request.image) > limit:
            unsettled.refuse_rest(RefusalCause.OVER_PAYLOAD_LIMIT)
            raise PushTooLarge(
                f"frame {index} of stream {stream_id}: {len(request.image)} bytes, expected at most {limit} "
                f"(the frames topic's payload limit)"
            )
        now_ns = time.time_ns()
        stream = self._push_streams.get(stream_id, now_ns)
        if _has_image(request):
            try:
                prepared = prepare_image(request.image, self._push_settings)
            except (NotAnImage, FrameTooLarge) as exc:
                cause = RefusalCause.NOT_AN_IMAGE if isinstance(exc, NotAnImage) else RefusalCause.TOO_LARGE
                unsettled.refuse(cause)
                detail = client_text(str(exc))
                logger.info("stream %s: pushed frame %d rejected (%s): %s", stream_id, index, cause, detail)
                tally.reject(index, stream_id, cause, detail)
            else:
                frame = pushed_frame(request, prepared, stream, now_ns, metrics=self.metrics)
                self._push_send(index, frame, unsettled, tally, trace, counted=True)
        if request.end_of_stream:
            last_pts = request.pts.ToNanoseconds() / 1e9 if request.HasField("pts") else 0.0
            seq, shot_start = stream.end_seq()
            marker = EncodedFrame.end_marker(stream_id, seq, last_pts, now_ns, shot_start_seq=shot_start)
            self._push_send(index, marker, unsettled, tally, trace, counted=False)
            logger.info("stream %s seq %d: end of pushed stream", stream_id, marker.seq)

    def _push_send(
        self,
        index: int,
        frame: EncodedFrame,
        unsettled: _Unsettled,
        tally: PushTally,
        trace: TraceParent | None,
        *,
        counted: bool,
    ) -> None:
        def delivered(delivery: Delivery) -> None:
            if counted:
                tally.settle(index, frame.stream_id, delivery.error)
            else:
                if delivery.error:
                    logger.warning(
                        "stream %s seq %d: end-of-stream marker failed: %s",
                        frame.stream_id,
                        frame.seq,
                        delivery.error,
                    )
                tally.settle_uncounted()

        tally.sent()
        try:
            self.sink.send(
                frame,
                source_uri=PUSH_SOURCE_URI,
                trace=trace,
                on_delivery=delivered,
            )
        except SinkRefused as exc:
            unsettled.handed()  # the sink counted the drop
            tally.settle_uncounted()
            if exc.cause is DropCause.BROKER_TIMEOUT:
                unsettled.drop_rest(DropCause.BROKER_TIMEOUT)  # the marker after it is not sent either
                raise BrokerUnavailable(
                    f"frame {index} of stream {frame.stream_id}: the broker at {self.config.kafka_bootstrap} "
                    f"cannot take frames now ({exc}); retry later"
                ) from exc
            if counted:
                tally.reject(index, frame.stream_id, exc.cause, str(exc))
        else:
            unsettled.handed()  # the sink counts it as produced or dropped when it settles


def _has_image(request: ingest_pb2.PushFramesRequest) -> bool:
    """Whether a pushed request carries a frame (a request without image bytes and with
    ``end_of_stream`` carries only the marker)."""
    return bool(request.image) or not request.end_of_stream


class _Unsettled:
    """The messages of one pushed request (its frame, its end-of-stream marker) counted in that
    no other counter accounts for yet; counts them in on construction."""

    def __init__(self, metrics: IngestMetrics, stream_id: str, count: int) -> None:
        self._metrics = metrics
        self.stream_id = stream_id
        self.left = count
        metrics.frame_in(stream_id, count)

    def handed(self) -> None:
        """One message went to the sink, which counts it from here on."""
        self.left -= 1

    def refuse(self, cause: RefusalCause) -> None:
        """One message is refused for ``cause``."""
        self._metrics.refuse(self.stream_id, cause)
        self.left -= 1

    def drop_rest(self, cause: DropCause) -> None:
        """Every message not accounted for yet is dropped for ``cause`` (not sent, like the one before)."""
        if self.left > 0:
            self._metrics.drop(self.stream_id, cause, self.left)
            self.left = 0

    def refuse_rest(self, cause: RefusalCause) -> None:
        """Every message not accounted for yet is refused for ``cause``."""
        if self.left > 0:
            self._metrics.refuse(self.stream_id, cause, self.left)
            self.left = 0


def _recorded_snapshot(spec: SourceConfig, state: SourceState, owner: str, error: str) -> SourceSnapshot:
    """The status of a source known from the sources topic only (no counters here)."""
    return SourceSnapshot(
        spec=spec,
        state=state,
        frames_decoded=0,
        frames_produced=0,
        frames_dropped=0,
        next_seq=0,
        reconnects=0,
        last_error=error,
        queue_depth=0,
        decode_fps=0.0,
        live=spec.live,
        owner=owner,
    )


def _check_local_path(spec: SourceConfig) -> None:
    uri = spec.uri
    if "://" in uri:
        if urlsplit(uri).scheme.lower() != "file":
            return
        uri = urlsplit(uri).path
    if not Path(uri).exists():
        raise SourceNotFound(uri, "no such file or folder")
