"""What the aggregator does with a batch of analysis records (the consume loop's Processor).

For each record: parse the ``FrameAnalysis`` (a record that is not one goes to the DLQ with the
reason), find its stream's state (restoring the partition's checkpoints the first time the
partition is seen after an assignment), apply it (a repeat ``(stream_id, seq)`` is dropped), and
produce its ``FaceEvent`` records to the faces topic and the gallery entries it created or changed
to the identities topic. With ``faces_json_mirror``, each faces record is followed by its JSON twin
on the faces JSON topic (same key, same headers, :func:`faceflow.kafka.json_mirror.to_json`): both
are outputs of the same input record, so its offset is committed only once both are acknowledged,
and a crash before that replays the record and writes both again.

Checkpoints: every ``checkpoint_frames`` frames or ``checkpoint_interval_s`` of a partition (and at
a stream's end), every stream of that partition changed since its last checkpoint is written to the
state topic with the offset after the current record. Offsets are committed no further than the
last *delivered* checkpoint of the partition (:meth:`commit_limit`), so a new owner that restores
the checkpoints and resumes from the committed offset replays, and drops as repeats, exactly what
the state already holds: track and identity ids stay the same across a restart or a rebalance.

A checkpoint never runs ahead of its events: it is held back (:attr:`OutRecord.after`) until every
output of every record it covers is acknowledged, so a crash cannot leave state in the topic whose
events were never published (a restore would drop their replay as repeats). The invariant behind
:meth:`commit_limit` is that a checkpoint offset ``o`` of partition ``p`` means *every* stream of
``p`` is in the topic as of ``o``: so evicting a changed stream (``max_streams``) checkpoints every
changed stream of its own partition at that partition's offset, never another partition's.

Erasure (:meth:`erase`, called when an identity is forgotten): every stream in memory drops the
identity (the link, the descriptors, the tracker's appearance), and every checkpoint that held it is
rewritten without it. Streams in memory are checkpointed at once, through the consume loop's
:meth:`pending_results`, as a regular checkpoint of their partition; evicted streams (whose
checkpoints live only in the state topic) are read back, erased and written again at their own
offsets. A restore drops the erased ids too, and any enrolled or named identity the gallery no
longer holds (its tombstone may have been compacted away), so a stale checkpoint cannot bring a
name back.

Kafka reads (a partition's checkpoints on its first record after an assignment, an evicted stream
that returns, an erasure's scan of evicted streams) happen before the state lock is taken, so they
never stall the gRPC API. An evicted stream's checkpoint stays in memory until the state topic
acknowledges it: a stream that comes back sooner resumes from it rather than from an older record
in the topic.
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
from faceflow.core.identity import Gallery, IdentityKind
from faceflow.core.stream import StreamAnalytics, StreamConfig
from faceflow.kafka.headers import message_headers
from faceflow.kafka.json_mirror import to_json
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
    #: The offset its last checkpoint was written at (0: none written by this replica).
    checkpoint_offset: int = 0


@dataclass
class _PartitionState:
    frames_since: int = 0
    since_s: float = field(default_factory=time.monotonic)
    #: The highest checkpoint offset of this partition the state topic has acknowledged.
    committed_limit: int = 0
    next_offset: int = 0
    #: Streams of this partition checkpointed and dropped from memory (max_streams), oldest first.
    evicted: OrderedDict[str, None] = field(default_factory=OrderedDict)
    #: Evicted streams whose checkpoint the topic has not acknowledged yet: kept to resume from.
    unacked: dict[str, Checkpoint] = field(default_factory=dict)
    #: Evicted streams whose checkpoint is being rewritten by an erasure: kept in ``unacked`` until
    #: that rewrite is acknowledged, whatever its (older) offset.
    rewriting: set[str] = field(default_factory=set)


@dataclass
class _Checkpointed:
    """A result's token: the checkpoint offsets per partition its outputs write."""

    limits: list[tuple[int, int]] = field(default_factory=list)
    #: Evicted streams' checkpoints rewritten by an erasure: (partition, stream id).
    rewritten: list[tuple[int, str]] = field(default_factory=list)


#: Erased identity ids remembered, so a restore drops them (the gallery forgets them with its own TTL).
MAX_ERASED_REMEMBERED = 100_000

#: Evicted stream ids remembered per partition, at least (a stream forgotten here that returns
#: starts afresh: new track ids). The real bound is the larger of this and 16 x max_streams.
MIN_EVICTED_REMEMBERED = 10_000


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
        #: Checkpoints read from the state topic by :meth:`_prefetch` (outside the lock) for this batch.
        self._prefetched: dict[int, dict[str, Checkpoint]] = {}
        self.duplicates = 0
        self.events = 0
        #: Identities erased here (most recent last): dropped from every restored stream.
        self.erased: OrderedDict[str, None] = OrderedDict()
        #: Erasure work for the loop thread (:meth:`pending_results`): partitions whose streams in
        #: memory must be checkpointed now, and partitions whose evicted streams must be scanned.
        self._erase_checkpoint: set[int] = set()
        self._erase_scan: dict[int, set[str]] = {}
        self._erase_rewrites: dict[int, dict[str, Checkpoint]] = {}
        #: Partitions assigned and not yet restored (the loop's thread only).
        self._to_restore: set[int] = set()

    # -- Processor -------------------------------------------------------------------------------
    def process(self, records: Sequence[InRecord]) -> list[Result]:
        self._prefetch(records)
        results = []
        try:
            with self.lock:
                self._free_unacked()
                for record in records:
                    results.append(self._one(record))
        finally:
            self._prefetched.clear()
        return results

    def delivered(self, results: Sequence[Result]) -> None:
        # The loop's thread, while a batch may hold the lock: only plain int updates here; the
        # snapshots of evicted streams now in the topic are freed by the next batch (_free_unacked).
        for result in results:
            token = result.token
            if not isinstance(token, _Checkpointed):
                continue
            for partition, offset in token.limits:
                state = self.partitions.get(partition)
                if state is not None:
                    state.committed_limit = max(state.committed_limit, offset)
            for partition, stream_id in token.rewritten:
                state = self.partitions.get(partition)
                if state is not None:
                    state.rewriting.discard(stream_id)  # freed by the next batch (_free_unacked)

    def assigned(self, partitions: set[TopicPartition]) -> None:
        """New partitions: restored by the next :meth:`pending_results`, not when their first record
        comes, so an idle or ended stream of a moved partition is answerable at once."""
        self._to_restore |= {tp.partition for tp in partitions}

    def revoked(self, partitions: set[TopicPartition]) -> None:
        numbers = {tp.partition for tp in partitions}
        self._to_restore -= numbers
        with self.lock:
            for stream_id in [s for s, o in self.streams.items() if o.partition in numbers]:
                del self.streams[stream_id]
            for p in numbers:
                self.partitions.pop(p, None)  # with its evicted index: the new owner has the topic
        logger.info(
            "aggregator: dropped the state of partitions %s (their new owner restores it)", sorted(numbers)
        )

    def erase(self, identity_id: str) -> None:
        """Erase an identity from this replica's streams and checkpoints (under the lock; see the
        module docstring). The checkpoints go out with the loop's next :meth:`pending_results`."""
        self.erased[identity_id] = None
        self.erased.move_to_end(identity_id)
        while len(self.erased) > MAX_ERASED_REMEMBERED:
            self.erased.popitem(last=False)
        for owned in self.streams.values():
            if owned.analytics.forget_identity(identity_id):
                owned.dirty = True
                self._erase_checkpoint.add(owned.partition)
        for partition, state in self.partitions.items():
            for stream_id, checkpoint in list(state.unacked.items()):
                rewritten = self._erased_checkpoint(checkpoint, {identity_id})
                if rewritten is not None:
                    state.unacked[stream_id] = rewritten
                    self._erase_rewrites.setdefault(partition, {})[stream_id] = rewritten
            if any(stream_id not in state.unacked for stream_id in state.evicted) or len(
                state.evicted
            ) >= max(MIN_EVICTED_REMEMBERED, 16 * self.config.max_streams):
                # checkpoints only in the topic (or of streams forgotten as evicted): read them back
                self._erase_scan.setdefault(partition, set()).add(identity_id)

    def pending_results(self) -> list[Result]:
        """Erasure's checkpoints, for the consume loop to send now (its own thread; the state topic
        is read before the lock is taken). One result per partition, with ``offset == -1``."""
        self._restore_assigned()
        if not (self._erase_checkpoint or self._erase_scan or self._erase_rewrites):
            return []
        with self.lock:
            scans, self._erase_scan = self._erase_scan, {}
        read = {partition: self.restore(partition) for partition in sorted(scans)}
        results = []
        with self.lock:
            for partition, checkpoints in read.items():
                state = self.partitions.get(partition)
                if state is None:
                    continue  # revoked meanwhile: the new owner restores with the filter
                for stream_id, checkpoint in checkpoints.items():
                    if stream_id in self.streams or stream_id in state.unacked:
                        continue  # in memory: checkpointed below, or already rewritten
                    rewritten = self._erased_checkpoint(checkpoint, scans[partition])
                    if rewritten is not None:
                        self._erase_rewrites.setdefault(partition, {})[stream_id] = rewritten
                        if stream_id in state.evicted:
                            state.unacked[stream_id] = rewritten  # a stream that returns resumes from it
            partitions = sorted(self._erase_checkpoint | set(self._erase_rewrites))
            for partition in partitions:
                state = self.partitions.get(partition)
                rewrites = self._erase_rewrites.pop(partition, {})
                if state is None:
                    continue
                note = _Checkpointed()
                outputs = []
                if partition in self._erase_checkpoint:
                    outputs.extend(self._checkpoint_partition(partition, state, note))
                for stream_id, checkpoint in rewrites.items():
                    outputs.append(self._rewrite_record(checkpoint))
                    if stream_id in state.unacked:
                        state.rewriting.add(stream_id)
                        note.rewritten.append((partition, stream_id))
                if outputs:
                    results.append(Result(self._marker(partition), outputs=tuple(outputs), token=note))
            self._erase_checkpoint.clear()
        if results:
            logger.info(
                "aggregator: erasure: %d checkpoint records rewritten in partitions %s",
                sum(len(r.outputs) for r in results),
                partitions,
            )
        return results

    def commit_limit(self, partition: TopicPartition) -> int | None:
        state = self.partitions.get(partition.partition)
        return 0 if state is None else state.committed_limit

    # -- queries (under the lock) ------------------------------------------------------------------
    def owned(self) -> list[tuple[str, _Owned]]:
        return list(self.streams.items())

    def stream(self, stream_id: str) -> _Owned | None:
        return self.streams.get(stream_id)

    # -- steps ---------------------------------------------------------------------------------------
    def _free_unacked(self) -> None:
        """Drop kept checkpoints of evicted streams that the state topic has acknowledged."""
        for state in self.partitions.values():
            if state.unacked:
                for stream_id in [
                    s
                    for s, c in state.unacked.items()
                    if c.next_offset <= state.committed_limit and s not in state.rewriting
                ]:
                    del state.unacked[stream_id]

    def _prefetch(self, records: Sequence[InRecord]) -> None:
        """Read, without the lock, the state partitions this batch needs: partitions seen for the
        first time since their assignment, and partitions an evicted stream returns to."""
        with self.lock:
            wanted = set()
            for record in records:
                state = self.partitions.get(record.partition)
                if state is None:
                    wanted.add(record.partition)
                    continue
                stream_id = (record.key or b"").decode("utf-8", "replace")
                if stream_id in state.evicted and stream_id not in state.unacked:
                    wanted.add(record.partition)  # evicted, and its checkpoint is only in the topic
        for partition in sorted(wanted):
            self._prefetched[partition] = self.restore(partition)

    def _read(self, partition: int) -> dict[str, Checkpoint]:
        """A state partition's checkpoints: prefetched for this batch, else read now (under the lock:
        only when a record's key did not name its stream, which the analyzer never does)."""
        found = self._prefetched.get(partition)
        if found is None:
            found = self._prefetched[partition] = self.restore(partition)
        return found

    def _restore_assigned(self) -> None:
        """Restore newly assigned partitions (read before the lock is taken)."""
        while self._to_restore:
            partition = min(self._to_restore)
            with self.lock:
                loaded = partition in self.partitions
            checkpoints = None if loaded else self.restore(partition)
            if partition not in self._to_restore:
                continue  # revoked while it was read
            self._to_restore.discard(partition)
            if checkpoints is not None:
                with self.lock:
                    if partition not in self.partitions:
                        self._install_partition(partition, checkpoints)

    def _load_partition(self, partition: int) -> _PartitionState:
        state = self.partitions.get(partition)
        if state is not None:
            return state
        return self._install_partition(partition, self._read(partition))

    def _install_partition(self, partition: int, checkpoints: dict[str, Checkpoint]) -> _PartitionState:
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
        owned = _Owned(analytics, checkpoint.partition)
        stale = self._stale_identities(analytics)
        for identity_id in stale:
            analytics.forget_identity(identity_id)
        if stale:
            logger.info(
                "stream %s: %d erased identities dropped on restore", checkpoint.stream_id, len(stale)
            )
            owned.dirty = True
            self._erase_checkpoint.add(checkpoint.partition)  # and its checkpoint rewritten
        self.streams[checkpoint.stream_id] = owned

    def _stale_identities(self, analytics: StreamAnalytics) -> list[str]:
        """Identities a restored stream holds that are erased: forgotten here, or enrolled or named
        and no longer in the gallery (only anonymous identities leave it without an erasure)."""
        return [
            identity_id
            for identity_id, kind in analytics.held_identities().items()
            if identity_id in self.erased
            or (kind is not IdentityKind.ANONYMOUS and self.gallery.get(identity_id) is None)
        ]

    def _erased_checkpoint(self, checkpoint: Checkpoint, identity_ids: set[str]) -> Checkpoint | None:
        """``checkpoint`` without ``identity_ids``, or None if it holds none of them (or is unreadable)."""
        try:
            analytics = StreamAnalytics.restore(checkpoint.snapshot, self.stream_config, self.gallery)
        except ValueError:
            return None  # a restore skips it too
        touched = [t for identity_id in identity_ids for t in analytics.forget_identity(identity_id)]
        if not touched:
            return None
        return Checkpoint(
            stream_id=checkpoint.stream_id,
            partition=checkpoint.partition,
            next_offset=checkpoint.next_offset,
            snapshot=analytics.snapshot(),
        )

    def _rewrite_record(self, checkpoint: Checkpoint) -> OutRecord:
        """An evicted stream's checkpoint, rewritten at its own offset (what it covers is unchanged)."""
        value = encode_checkpoint(
            checkpoint.stream_id,
            checkpoint.snapshot,
            partition=checkpoint.partition,
            next_offset=checkpoint.next_offset,
        )
        return OutRecord(
            topic=self.config.state_topic,
            key=checkpoint.stream_id.encode(),
            value=value,
            partition=checkpoint.partition,
            after=(checkpoint.partition, checkpoint.next_offset),
        )

    def _marker(self, partition: int) -> InRecord:
        """The input a processor's own results (final or erasure checkpoints) are tied to."""
        return InRecord(
            topic=self.config.analyses_topic,
            partition=partition,
            offset=-1,
            key=None,
            value=None,
            headers=[],
            timestamp_ms=0,
        )

    def _owned_stream(
        self,
        stream_id: str,
        state: _PartitionState,
        partition: int,
        outputs: list[OutRecord],
        note: _Checkpointed,
    ) -> _Owned:
        owned = self.streams.get(stream_id)
        if owned is None and stream_id in state.evicted:
            del state.evicted[stream_id]
            checkpoint = state.unacked.pop(stream_id, None) or self._read(partition).get(stream_id)
            if checkpoint is not None:
                self._restore_stream(checkpoint)
            owned = self.streams.get(stream_id)
        if owned is None:
            owned = _Owned(StreamAnalytics(stream_id, self.stream_config, self.gallery), partition)
            self.streams[stream_id] = owned
        self.streams.move_to_end(stream_id)
        while len(self.streams) > self.config.max_streams:
            self._evict_oldest(outputs, note)
        return owned

    def _evict_oldest(self, outputs: list[OutRecord], note: _Checkpointed) -> None:
        """Drop the least recently seen stream. If it changed, every changed stream of its partition
        is checkpointed at that partition's offset first (see the module docstring); its checkpoint
        stays in memory until the topic acknowledges it."""
        old_id, old = next(iter(self.streams.items()))
        partition = old.partition
        state = self.partitions[partition]
        if old.dirty:
            outputs.extend(self._checkpoint_partition(partition, state, note))
        if old.checkpoint_offset > state.committed_limit:
            state.unacked[old_id] = Checkpoint(
                stream_id=old_id,
                partition=partition,
                next_offset=old.checkpoint_offset,
                snapshot=old.analytics.snapshot(),
            )
        del self.streams[old_id]
        state.evicted[old_id] = None
        remembered = max(MIN_EVICTED_REMEMBERED, 16 * self.config.max_streams)
        while len(state.evicted) > remembered:
            forgotten, _ = state.evicted.popitem(last=False)
            state.unacked.pop(forgotten, None)
            logger.warning(
                "stream %s: forgotten as evicted (over %d in partition %d): it starts afresh if it returns",
                forgotten,
                remembered,
                partition,
            )
        logger.info("stream %s: evicted (max_streams=%d)", old_id, self.config.max_streams)

    def _checkpoint_partition(
        self, partition: int, state: _PartitionState, note: _Checkpointed
    ) -> list[OutRecord]:
        """Checkpoint every changed stream of ``partition`` as of its next offset, held back until
        every record before that offset is acknowledged."""
        offset = state.next_offset
        outputs = [
            self._checkpoint_record(stream_id, owned, offset)
            for stream_id, owned in self.streams.items()
            if owned.partition == partition and owned.dirty
        ]
        state.frames_since, state.since_s = 0, time.monotonic()
        note.limits.append((partition, offset))
        return outputs

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
        note = _Checkpointed()
        owned = self._owned_stream(message.stream_id, state, record.partition, outputs, note)
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
                return Result(record, outputs=tuple(outputs), token=note if note.limits else None)
            trace = traceparent_of_span(span)
            events = face_events(message, out, publish_embeddings=self.config.publish_embeddings)
            span.set_attribute("faceflow.events", len(events))
        headers = message_headers(EVENT_TYPE, trace)
        key = message.stream_id.encode()
        for e in events:
            outputs.append(
                OutRecord(
                    topic=self.config.faces_topic, key=key, value=e.SerializeToString(), headers=headers
                )
            )
            if self.config.faces_json_mirror:
                outputs.append(
                    OutRecord(topic=self.config.faces_json_topic, key=key, value=to_json(e), headers=headers)
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
        due = (
            state.frames_since >= self.config.checkpoint_frames
            or time.monotonic() - state.since_s >= self.config.checkpoint_interval_s
            or message.end_of_stream
        )
        if due:
            outputs.extend(self._checkpoint_partition(record.partition, state, note))
        return Result(record, outputs=tuple(outputs), token=note if note.limits else None)

    def final_results(self) -> list[Result]:
        """When stopping: checkpoint every changed stream, so the final commit covers all applied work."""
        results = []
        with self.lock:
            for partition, state in self.partitions.items():
                if not any(o.partition == partition and o.dirty for o in self.streams.values()):
                    continue
                note = _Checkpointed()
                outputs = self._checkpoint_partition(partition, state, note)
                if outputs:
                    results.append(Result(self._marker(partition), outputs=tuple(outputs), token=note))
        return results

    def _checkpoint_record(self, stream_id: str, owned: _Owned, next_offset: int) -> OutRecord:
        """The stream's checkpoint as of ``next_offset``, held back until every analysis record of its
        partition before that offset has all its outputs acknowledged."""
        owned.dirty = False
        owned.checkpoint_offset = next_offset
        value = encode_checkpoint(
            stream_id, owned.analytics.snapshot(), partition=owned.partition, next_offset=next_offset
        )
        return OutRecord(
            topic=self.config.state_topic,
            key=stream_id.encode(),
            value=value,
            partition=owned.partition,
            after=(owned.partition, next_offset),
        )
