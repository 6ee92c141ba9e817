"""What the analyzer does with a batch of frame records (the :class:`~faceflow.service.consume.Processor`).

For each record, in order:

* not a ``Frame`` (bytes that do not parse, a tombstone), a stream id that breaks the rule, a key
  that differs from the stream id, or a frame with no image: **poison**, to the DLQ with the reason;
* a ``(stream_id, seq)`` already analyzed and delivered: a **repeat** (a replay after a restart or a
  rebalance): dropped, its offset counts as done;
* an end-of-stream marker: forwarded in order as a ``FrameAnalysis`` with ``end_of_stream``;
* every ``FrameAnalysis`` carries its frame's ``shot_start_seq`` (ingest's shot-cut detector); the
  adaptive backend analyzes every face of the first frame of a new shot;
* otherwise the frame joins the batch's Triton call. A frame Triton cannot decode (FRAME_STATUS 1
  or 2) goes to the DLQ with the status as its reason. If Triton refuses the whole call (a model
  failed on some input), the batch is split into single frames so only the culprit goes to the
  DLQ. If Triton is unavailable, the whole batch is retried later by the loop (nothing is
  committed meanwhile).

Each frame's trace continues: a span ``analyze frame`` under the ingest span from the record's
``traceparent``, with a child span for the Triton call; the output carries the new span's
context. The record's ``traceparent`` header is parsed once per frame.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from google.protobuf.message import DecodeError
from kafka import TopicPartition
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from faceflow.analyzer.backends import Backend, BatchAnalysis, FrameInput
from faceflow.analyzer.messages import FrameFaces, frame_analysis
from faceflow.errors import Unavailable
from faceflow.kafka.headers import TraceParent, message_headers
from faceflow.models.contract import FrameStatus
from faceflow.service.consume import InRecord, OutRecord, Result
from faceflow.service.offsets import SeqDedup
from faceflow.service.tracing import start_span, traceparent_of_headers, traceparent_of_span
from faceflow.service.triton import ServedModel, TritonRefused
from faceflow.streams import InvalidStreamId, validate_stream_id
from faceflow.v1 import frame_pb2

logger = logging.getLogger(__name__)

ANALYSIS_TYPE = "faceflow.v1.FrameAnalysis"
_NO_PIXELS = {FrameStatus.UNDECODABLE, FrameStatus.TOO_LARGE}


class AnalyzerProcessor:
    """Frames -> FrameAnalysis records; see the module docstring.

    Args:
        backend: how Triton is called (every face, or face-aware).
        analyses_topic: where results go.
        models: the served models' provenance (refreshed by the service).
        include_parsing: put each analyzed face's parsing mask in the output.
        on_frames: metrics hook, called with (frames analyzed, faces detected, faces analyzed, DLQ count).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        analyses_topic: str,
        models: Callable[[], Sequence[ServedModel]],
        include_parsing: bool = True,
        on_frames: Callable[[int, int, int, int], None] | None = None,
        dedup_streams: int = 10_000,
    ) -> None:
        self.backend = backend
        self.analyses_topic = analyses_topic
        self.models = models
        self.include_parsing = include_parsing
        self.on_frames = on_frames
        self.dedup = SeqDedup(dedup_streams)

    # -- Processor -----------------------------------------------------------------------------
    def process(self, records: Sequence[InRecord]) -> list[Result]:
        started_ns = time.time_ns()
        results: list[Result | None] = [None] * len(records)
        todo: list[tuple[int, frame_pb2.Frame]] = []
        for i, record in enumerate(records):
            frame, reason = self._parse(record)
            if frame is None:
                results[i] = Result(record, dlq_reason=reason)
            elif self.dedup.is_repeat(frame.stream_id, frame.seq):
                logger.info("stream %s seq %d: a repeat, dropped", frame.stream_id, frame.seq)
                results[i] = Result(record)
            elif frame.end_of_stream:
                results[i] = self._output(record, frame, None, started_ns)
            else:
                todo.append((i, frame))
        if todo:
            for (i, _), result in zip(todo, self._analyze(records, todo, started_ns), strict=True):
                results[i] = result
        done = [r for r in results if r is not None]
        if len(done) != len(records):
            raise RuntimeError("a record got no result")
        if self.on_frames is not None:
            dlq = sum(1 for r in done if r.dlq_reason is not None)
            self.on_frames(len(todo), 0, 0, dlq)
        return done

    def delivered(self, results: Sequence[Result]) -> None:
        for result in results:
            if result.token is not None:
                stream_id, seq = result.token
                self.dedup.applied(stream_id, seq)

    def revoked(self, partitions: set[TopicPartition]) -> None:
        # Soft state only: scheduling state of streams that moved costs extra analyses if they return.
        return None

    def commit_limit(self, partition: TopicPartition) -> int | None:
        return None

    # -- steps -------------------------------------------------------------------------------------
    def _parse(self, record: InRecord) -> tuple[frame_pb2.Frame | None, str]:
        if record.value is None:
            return None, "an empty record (tombstone): expected a faceflow.v1.Frame"
        frame = frame_pb2.Frame()
        try:
            frame.ParseFromString(record.value)
        except DecodeError as exc:
            return None, f"not a faceflow.v1.Frame ({len(record.value)} bytes): {exc}"
        try:
            validate_stream_id(frame.stream_id)
        except InvalidStreamId as exc:
            return None, str(exc)
        key = (record.key or b"").decode("utf-8", "replace")
        if key != frame.stream_id:
            return None, f"record key {key[:80]!r} differs from the frame's stream_id {frame.stream_id!r}"
        if not frame.image and not frame.end_of_stream:
            return None, f"stream {frame.stream_id} seq {frame.seq}: no image and not an end-of-stream marker"
        return frame, ""

    def _analyze(
        self, records: Sequence[InRecord], todo: list[tuple[int, frame_pb2.Frame]], started_ns: int
    ) -> list[Result]:
        inputs = [
            FrameInput(f.stream_id, f.seq, f.pts.ToNanoseconds() / 1e9, f.image, f.shot_start_seq)
            for _, f in todo
        ]
        parents = [traceparent_of_headers(records[i].headers) for i, _ in todo]  # once per frame
        spans = [
            start_span(
                "analyze frame",
                parents[k],
                kind=SpanKind.CONSUMER,
                start_ns=started_ns,
                attributes={"faceflow.stream_id": f.stream_id, "faceflow.seq": f.seq},
                component="faceflow.analyzer",
            )
            for k, (_, f) in enumerate(todo)
        ]
        try:
            batch = self._run(inputs, spans)
        except TritonRefused as exc:
            for span in spans:
                span.end()
            if len(todo) == 1:
                i, frame = todo[0]
                return [Result(records[i], dlq_reason=str(exc))]
            logger.warning(
                "Triton refused a batch of %d frames (%s): retrying them one by one", len(todo), exc
            )
            return [r for item in todo for r in self._analyze(records, [item], started_ns)]
        except Unavailable:
            for span in spans:
                span.end()
            raise
        out: list[Result] = []
        for k, (i, frame) in enumerate(todo):
            share = batch.frames[k]
            span = spans[k]
            span.set_attribute("faceflow.faces", len(share.faces))
            span.set_attribute("faceflow.faces_analyzed", int((share.analysis_rows >= 0).sum()))
            if share.status in _NO_PIXELS:
                span.set_status(Status(StatusCode.ERROR, share.status.name))
                span.end()
                out.append(
                    Result(
                        records[i],
                        dlq_reason=f"FRAME_STATUS {int(share.status)} ({share.status.name.lower()})",
                    )
                )
                continue
            out.append(
                self._output(
                    records[i], frame, (batch, share, len(todo)), started_ns, span=span, incoming=parents[k]
                )
            )
            span.end()
        if self.on_frames is not None:
            self.on_frames(0, len(batch.detected), batch.faces_analyzed, 0)
        return out

    def _run(self, inputs: list[FrameInput], spans: Sequence[Span]) -> BatchAnalysis:
        """The Triton call, with a client span under each frame's span (one call serves them all)."""
        attributes = {"faceflow.batch_size": len(inputs), "faceflow.schedule": self.backend.schedule}
        calls = [
            start_span(
                f"triton {self.backend.schedule}",
                traceparent_of_span(span),
                kind=SpanKind.CLIENT,
                attributes=attributes,
                component="faceflow.analyzer",
            )
            for span in spans
        ]
        try:
            return self.backend.run(inputs)
        except Exception as exc:
            for call in calls:
                call.set_status(Status(StatusCode.ERROR, str(exc)[:200]))
            raise
        finally:
            end = time.time_ns()
            for call in calls:
                call.end(end)

    def _output(
        self,
        record: InRecord,
        frame: frame_pb2.Frame,
        analyzed: tuple[BatchAnalysis, FrameFaces, int] | None,
        started_ns: int,
        *,
        span: Span | None = None,
        incoming: TraceParent | None = None,
    ) -> Result:
        """The output record of one frame. Its ``traceparent`` is ``span``'s context; without a
        recording span, the caller's (``incoming``, already parsed from the record when ``span``
        is given; parsed here only for a frame that had no span)."""
        if analyzed is None:
            message = frame_analysis(
                frame,
                detected=None,
                analyses=None,
                share=None,
                models=(),
                schedule=self.backend.schedule,
                batch_size=0,
                detect_s=0.0,
                analyze_s=0.0,
                started_ns=started_ns,
                include_parsing=self.include_parsing,
            )
        else:
            batch, share, size = analyzed
            message = frame_analysis(
                frame,
                detected=batch.detected,
                analyses=batch.analyses,
                share=share,
                models=self.models(),
                schedule=self.backend.schedule,
                batch_size=size,
                detect_s=batch.detect_s,
                analyze_s=batch.analyze_s,
                started_ns=started_ns,
                include_parsing=self.include_parsing,
            )
        trace = traceparent_of_span(span) if span is not None else None
        if trace is None:  # no tracer here: pass the caller's span on, so its children link to it
            trace = incoming if span is not None else traceparent_of_headers(record.headers)
        output = OutRecord(
            topic=self.analyses_topic,
            key=frame.stream_id.encode(),
            value=message.SerializeToString(),
            headers=message_headers(ANALYSIS_TYPE, trace),
        )
        return Result(record, outputs=(output,), token=(frame.stream_id, frame.seq))
