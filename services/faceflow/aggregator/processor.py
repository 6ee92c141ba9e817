"""What the aggregator does with a batch of analysis records (the consume loop's Processor).

For each record: parse the ``FrameAnalysis`` (a record that is not one goes to the DLQ with the
reason), find its stream's state (restoring the partition's checkpoints the first time the
partition is seen after an assignment), apply it (a repeat ``(stream_id, seq)`` is dropped), and
produce its ``FaceEvent`` records to the faces topic and the gallery entries it created or changed
to the identities topic.

Checkpoints: every ``checkpoint_frames`` frames or ``checkpoint_interval_s`` of a partition (and at
a stream's end), every stream of that partition changed since its last checkpoint is written to the
state topic with the offset after the current record. Offsets are committed no further than the
last *delivered* checkpoint of the partition (:meth:`commit_limit`), so a new owner that restores
the checkpoints and resumes from the committed offset replays, and drops as repeats, exactly what
the state already holds: track and identity ids stay the same across a restart or a rebalance.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError
from kafka import TopicPartition
from opentelemetry.trace import SpanKind

from faceflow.aggregator.config import AggregatorConfig
from faceflow.aggregator.events import AnalysisError, face_events, frame_in
from faceflow.aggregator.gallery import GallerySync
from faceflow.aggregator.state import Checkpoint, encode_checkpoint
from faceflow.core.identity import Gallery
from faceflow.core.stream import StreamAnalytics, StreamConfig
from faceflow.kafka.headers import message_headers
from faceflow.service.consume import InRecord, OutRecord, Result
from faceflow.service.tracing import child_span, traceparent_of_headers, traceparent_of_span
from faceflow.streams import InvalidStreamId, validate_stream_id
from faceflow.v1 import analysis_pb2

logger = logging.getLogger(__name__)

EVENT_TYPE = "faceflow.v1.FaceEvent"


@dataclass
class _Owned:
    """A stream this replica owns: its analytics and where it came from."""

    analytics: StreamAnalytics
    partition: int
    dirty: bool = False


@dataclass
class _PartitionState:
    frames_since: int = 0
    since_s: float = field(default_factory=time.monotonic)
    committed_limit: int = 0
    next_offset: int = 0


class AggregatorProcessor:
    """Analyses -> tracks -> events; see the module docstring.

    Args:
        config: the service's settings.
        gallery: the identities (shared with the gRPC API and the gallery tail).
        lock: the state lock (held while streams or the gallery change or are read).
        restore: reads the checkpoints of one state partition.
        sync: writes gallery changes to the identities topic (None: kept local, not published).
    """

    def __init__(
        self,
        config: AggregatorConfig,
        *,
        gallery: Gallery,
        lock: threading.RLock,
        restore: Callable[[int], dict[str, Checkpoint]],
        sync: GallerySync | None = None,
    ) -> None:
        self.config = config
        self.gallery = gallery
        self.lock = lock
        self.restore = restore
        self.sync = sync
        self.stream_config = StreamConfig(
            match_threshold=config.match_threshold,
            name_margin=config.name_margin,
            anon_threshold=config.anon_threshold,
            cross_stream=config.cross_stream,
        )
        self.streams: OrderedDict[str, _Owned] = OrderedDict()
        self.partitions: dict[int, _PartitionState] = {}
        self.evicted: set[str] = set()
        self.duplicates = 0
        self.events = 0

    # -- Processor -------------------------------------------------------------------------------
    def process(self, records: Sequence[InRecord]) -> list[Result]:
        results = []
        with self.lock:
            for record in records:
                results.append(self._one(record))
        return results

    def delivered(self, results: Sequence[Result]) -> None:
        for result in results:
            token = result.token
            if isinstance(token, tuple) and token and token[0] == "checkpoint":
                _, partition, offset = token
                state = self.partitions.get(partition)
                if state is not None:
                    state.committed_limit = max(state.committed_limit, offset)

    def revoked(self, partitions: set[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions}
        with self.lock:
            for stream_id in [s for s, o in self.streams.items() if o.partition in numbers]:
                del self.streams[stream_id]
            for p in numbers:
                self.partitions.pop(p, None)
        logger.info(
            "aggregator: dropped the state of partitions %s (their new owner restores it)", sorted(numbers)
        )

    def commit_limit(self, partition: TopicPartition) -> int | None:
        state = self.partitions.get(partition.partition)
        return 0 if state is None else state.committed_limit

    # -- queries (under the lock) ------------------------------------------------------------------
    def owned(self) -> list[tuple[str, _Owned]]:
        return list(self.streams.items())

    def stream(self, stream_id: str) -> _Owned | None:
        return self.streams.get(stream_id)

    # -- steps ---------------------------------------------------------------------------------------
    def _load_partition(self, partition: int) -> _PartitionState:
        state = self.partitions.get(partition)
        if state is not None:
            return state
        checkpoints = self.restore(partition)
        state = _PartitionState(committed_limit=max((c.next_offset for c in checkpoints.values()), default=0))
        self.partitions[partition] = state
        for checkpoint in checkpoints.values():
            self._restore_stream(checkpoint)
        return state

    def _restore_stream(self, checkpoint: Checkpoint) -> None:
        try:
            analytics = StreamAnalytics.restore(checkpoint.snapshot, self.stream_config, self.gallery)
        except ValueError as exc:
            logger.error("stream %s: checkpoint skipped (%s): it starts afresh", checkpoint.stream_id, exc)
            return
        self.streams[checkpoint.stream_id] = _Owned(analytics, checkpoint.partition)
        self.evicted.discard(checkpoint.stream_id)

    def _owned_stream(self, stream_id: str, partition: int, outputs: list[OutRecord], offset: int) -> _Owned:
        owned = self.streams.get(stream_id)
        if owned is None and stream_id in self.evicted:
            checkpoint = self.restore(partition).get(stream_id)
            if checkpoint is not None:
                self._restore_stream(checkpoint)
            owned = self.streams.get(stream_id)
        if owned is None:
            owned = _Owned(StreamAnalytics(stream_id, self.stream_config, self.gallery), partition)
            self.streams[stream_id] = owned
        self.streams.move_to_end(stream_id)
        while len(self.streams) > self.config.max_streams:
            old_id, old = self.streams.popitem(last=False)
            outputs.append(self._checkpoint_record(old_id, old, offset))
            self.evicted.add(old_id)
            logger.info("stream %s: evicted (max_streams=%d), checkpointed", old_id, self.config.max_streams)
        return owned

    def _one(self, record: InRecord) -> Result:
        if record.value is None:
            return Result(
                record, dlq_reason="an empty record (tombstone): expected a faceflow.v1.FrameAnalysis"
            )
        message = analysis_pb2.FrameAnalysis()
        try:
            message.ParseFromString(record.value)
            validate_stream_id(message.stream_id)
            frame = frame_in(message)
        except DecodeError as exc:
            return Result(record, dlq_reason=f"not a faceflow.v1.FrameAnalysis: {exc}")
        except (InvalidStreamId, AnalysisError) as exc:
            return Result(record, dlq_reason=str(exc))
        state = self._load_partition(record.partition)
        outputs: list[OutRecord] = []
        owned = self._owned_stream(message.stream_id, record.partition, outputs, record.offset + 1)
        with child_span(
            "aggregate frame",
            traceparent_of_headers(record.headers),
            kind=SpanKind.CONSUMER,
            attributes={"faceflow.stream_id": message.stream_id, "faceflow.seq": message.seq},
            component="faceflow.aggregator",
        ) as span:
            out = owned.analytics.apply(frame)
            if out.repeat:
                self.duplicates += 1
                return Result(record, outputs=tuple(outputs))
            trace = traceparent_of_span(span)
            events = face_events(message, out, publish_embeddings=self.config.publish_embeddings)
            span.set_attribute("faceflow.events", len(events))
        headers = message_headers(EVENT_TYPE, trace)
        key = message.stream_id.encode()
        outputs.extend(
            OutRecord(topic=self.config.faces_topic, key=key, value=e.SerializeToString(), headers=headers)
            for e in events
        )
        self.events += len(events)
        if self.sync is not None:
            for entry in out.gallery_puts:
                value = self.sync.record_value(entry)
                if value is not None:
                    outputs.append(
                        OutRecord(
                            topic=self.config.identities_topic, key=entry.identity_id.encode(), value=value
                        )
                    )
            # anonymous identities merged into another: deleted from the compacted topic too
            outputs.extend(
                OutRecord(topic=self.config.identities_topic, key=identity_id.encode(), value=None)
                for identity_id in out.gallery_removes
            )
        owned.dirty = True
        state.frames_since += 1
        state.next_offset = record.offset + 1
        token = None
        due = (
            state.frames_since >= self.config.checkpoint_frames
            or time.monotonic() - state.since_s >= self.config.checkpoint_interval_s
            or message.end_of_stream
        )
        if due:
            offset = record.offset + 1
            for stream_id, other in self.streams.items():
                if other.partition == record.partition and other.dirty:
                    outputs.append(self._checkpoint_record(stream_id, other, offset))
            state.frames_since, state.since_s = 0, time.monotonic()
            token = ("checkpoint", record.partition, offset)
        return Result(record, outputs=tuple(outputs), token=token)

    def final_results(self) -> list[Result]:
        """When stopping: checkpoint every changed stream, so the final commit covers all applied work."""
        results = []
        with self.lock:
            for partition, state in self.partitions.items():
                outputs = [
                    self._checkpoint_record(stream_id, owned, state.next_offset)
                    for stream_id, owned in self.streams.items()
                    if owned.partition == partition and owned.dirty
                ]
                if outputs:
                    marker = InRecord(
                        topic=self.config.analyses_topic,
                        partition=partition,
                        offset=-1,
                        key=None,
                        value=None,
                        headers=[],
                        timestamp_ms=0,
                    )
                    results.append(
                        Result(
                            marker, outputs=tuple(outputs), token=("checkpoint", partition, state.next_offset)
                        )
                    )
        return results

    def _checkpoint_record(self, stream_id: str, owned: _Owned, next_offset: int) -> OutRecord:
        owned.dirty = False
        value = encode_checkpoint(
            stream_id, owned.analytics.snapshot(), partition=owned.partition, next_offset=next_offset
        )
        return OutRecord(
            topic=self.config.state_topic, key=stream_id.encode(), value=value, partition=owned.partition
        )
