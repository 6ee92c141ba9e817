"""The consume -> process -> produce loop every consuming service runs (DESIGN.md "Delivery contract").

:class:`ConsumeLoop` owns one consumer in a group and one producer, and calls a
:class:`Processor` (the analyzer's Triton step, the aggregator's tracking) on micro-batches:

* **At least once.** An input offset is committed only after every output of it and of every
  earlier record of its partition is acknowledged (``acks=all``, idempotent producer), and not
  beyond what the processor allows (:meth:`Processor.commit_limit`: the aggregator's checkpoint).
* **Order.** Batches complete in submission order; outputs are sent in input order, so the
  per-partition (= per-stream) order of the input is the order of the output.
* **Poison input** goes to the DLQ topic with the reason and the original headers (plus where it
  came from); its offset then counts as done, so a bad record never blocks a partition.
* **Backpressure and liveness.** While work is pending beyond ``max_pending`` records (a slow or
  absent Triton), every partition is paused and the loop keeps polling, so the group never ejects
  the member for exceeding ``max.poll.interval.ms``; consumption resumes by itself.
* **Transient failures** (:class:`~faceflow.errors.Unavailable` from the processor) retry the
  batch with exponential backoff; nothing is committed meanwhile and readiness is false.
* **Rebalance** (cooperative-sticky): for revoked partitions, what is done is committed before they
  go, in-flight work is dropped cleanly (its results are discarded, not produced), and the
  processor is told.
* **Stop** (SIGTERM): no new batches; the running one finishes within the grace; outputs are
  flushed; offsets committed synchronously; the consumer closes and leaves the group.
* A failure to deliver outputs (the broker gone for longer than the producer's delivery timeout)
  is fatal: the process exits and resumes from the committed offsets when restarted.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any, cast

from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from faceflow.errors import FatalError, Unavailable
from faceflow.service.offsets import OffsetTracker

# The contract types live in processing.py; they are re-exported here, where callers import them.
from faceflow.service.processing import (
    DLQ_REASON,
    DLQ_SERVICE,
    DLQ_SOURCE,
    InRecord,
    LoopConfig,
    OutRecord,
    Processor,
    Result,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DLQ_REASON",
    "DLQ_SERVICE",
    "DLQ_SOURCE",
    "ConsumeLoop",
    "InRecord",
    "LoopConfig",
    "LoopStats",
    "OutRecord",
    "Processor",
    "Result",
]


@dataclass
class _Held:
    """A result with held-back outputs (:attr:`OutRecord.after`), queued when it was produced.

    ``epochs``: the assignment epoch of each ``after`` partition then (an output whose partition
    was revoked since, even if assigned back, is dropped). ``ready``: the result's first outputs
    are acknowledged (set on the producer's thread).
    """

    result: Result
    outputs: tuple[OutRecord, ...]
    epochs: dict[int, int]
    ready: bool = False

    def mark_ready(self) -> None:
        self.ready = True


@dataclass
class _Batch:
    records: list[InRecord]
    future: Future[Sequence[Result]] | None = None
    results: Sequence[Result] | None = None
    error: BaseException | None = None

    def done(self) -> bool:
        return (
            self.results is not None
            or self.error is not None
            or (self.future is not None and self.future.done())
        )

    def collect(self) -> Sequence[Result]:
        if self.results is None and self.future is not None:
            self.results = self.future.result()
        if self.error is not None:
            raise self.error
        return self.results or []


Work = Callable[[list[InRecord]], Sequence[Result]]


def _run_in_daemon(name: str, fn: Work, records: list[InRecord]) -> Future[Sequence[Result]]:
    """Run ``fn(records)`` on a daemon thread (a Triton call that outlives the grace must not hold the
    process at exit, as a ThreadPoolExecutor's threads would)."""
    future: Future[Sequence[Result]] = Future()

    def target() -> None:
        try:
            future.set_result(fn(records))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            future.set_exception(exc)

    threading.Thread(target=target, name=name, daemon=True).start()
    return future


class LoopStats:
    """What the services export as metrics (read under no lock: plain values only)."""

    def __init__(self) -> None:
        #: Records sent to the DLQ.
        self.dlq = 0
        #: True while every partition is paused (backpressure or stopping).
        self.paused = False
        #: Records behind the end of each assigned partition, as of the last poll.
        self.lag: dict[int, int] = {}


class ConsumeLoop:
    """Consume -> process -> produce with the delivery contract; see the module docstring.

    Args:
        config: batching and retry settings.
        consumer: a ``KafkaConsumer`` in a group, not yet subscribed (the loop subscribes it).
        producer: a ``KafkaProducer`` (``acks=all``, idempotent).
        processor: the service's logic.
        on_batch: called after each processed batch with (records, seconds) for metrics.
    """

    def __init__(
        self,
        config: LoopConfig,
        *,
        consumer: KafkaConsumer,
        producer: KafkaProducer,
        processor: Processor,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.config = config
        self.consumer = consumer
        self.producer = producer
        self.processor = processor
        self.on_batch = on_batch
        self.stats = LoopStats()
        self.tracker = OffsetTracker()
        self._lock = threading.RLock()
        self._epochs: dict[TopicPartition, int] = {}
        self._assigned: set[TopicPartition] = set()
        self._pending: deque[InRecord] = deque()
        self._oldest_s: float | None = None
        self._batches: deque[_Batch] = deque()
        self._delivered_queue: deque[Result] = deque()
        #: Results with held-back (``after``) outputs, in the order they were produced.
        self._held: deque[_Held] = deque()
        #: Outputs sent and not yet acknowledged (or failed).
        self._sends = 0
        self._sends_lock = threading.Lock()
        self._last_polled: dict[TopicPartition, int] = {}
        self._grace_s = 10.0
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._delivery_error: str | None = None
        self._healthy = True
        self._thread: threading.Thread | None = None
        self._last_commit_s = 0.0
        self._committed: dict[TopicPartition, int] = {}
        self._paused = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, *, metadata_timeout_s: float = 30.0) -> None:
        """Subscribe and start the loop thread.

        The consumer learns the topics' partitions first, from a metadata refresh made after
        subscribing (the first poll joins the group): a member that joins before its metadata
        knows a just-created topic gets an empty assignment from the sticky assignor, and one whose
        coordinator took its metadata snapshot before the subscription rebalances a second time
        as soon as the next metadata arrives, pausing consumption for that rebalance.
        """
        self.consumer.subscribe(list(self.config.topics), listener=_Listener(self))
        deadline = time.monotonic() + metadata_timeout_s
        while True:
            self.consumer.topics()  # a blocking metadata refresh, seen by the group coordinator
            missing = [t for t in self.config.topics if not self.consumer.partitions_for_topic(t)]
            if not missing:
                break
            if time.monotonic() > deadline:
                raise FatalError(f"{self.config.service}: the consumer sees no partitions of {missing}")
            time.sleep(0.1)
        self._thread = threading.Thread(target=self._run, name=f"{self.config.service}-loop", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float) -> None:
        """Finish what runs within ``grace_s``, commit what is done, leave the group."""
        self._grace_s = grace_s
        self._stop.set()
        if self._thread is not None:
            self._thread.join(grace_s + 15.0)
            if self._thread.is_alive():
                logger.error("%s: the consume loop did not stop within its grace", self.config.service)

    def failure(self) -> BaseException | None:
        return self._failure

    @property
    def healthy(self) -> bool:
        """False while the processor's dependency is failing (retrying) or after a fatal error."""
        return self._healthy and self._failure is None

    def assignment(self) -> set[TopicPartition]:
        with self._lock:
            return set(self._assigned)

    # -- the loop ------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._poll_once()
                self._submit_ready()
                self._complete_ready()
                self._send_pending()
                self._release_held()
                self._flow_control()
                self._maybe_commit(force=False)
                if self._delivery_error is not None:
                    raise FatalError(
                        f"{self.config.service}: outputs could not be delivered: {self._delivery_error}"
                    )
            self._drain(self._grace_s)
        except BaseException as exc:
            logger.exception("%s: the consume loop failed", self.config.service)
            self._failure = exc
            self._close(commit=False)

    def _poll_timeout_ms(self) -> int:
        """How long the next poll may wait, after waiting for a running batch if nothing else can
        happen before one finishes.

        While every worker is busy, the loop waits on the batches themselves (up to
        ``poll_timeout_ms``), then polls without waiting: the consumer's IO thread fetches in the
        background meanwhile, and a finished batch is produced, and the next one submitted, at once.
        Polling Kafka every few milliseconds instead costs about a tenth of a core in kafka-python,
        taken from the model server when both share a machine.
        """
        cfg = self.config
        with self._lock:
            if self._batches and self._batches[0].done():
                return 0
            running = [b.future for b in self._batches if b.future is not None and not b.done()]
            pending = len(self._pending)
            oldest = self._oldest_s
        if running and len(running) >= cfg.concurrency:
            wait(running, timeout=cfg.poll_timeout_ms / 1000, return_when=FIRST_COMPLETED)
            return 0
        if pending >= cfg.max_batch_records:
            return 0  # a full batch and a free worker: submit it now
        if pending:
            waited_ms = (time.monotonic() - (oldest or time.monotonic())) * 1000
            return int(max(0.0, min(cfg.max_wait_ms - waited_ms, cfg.poll_timeout_ms)))
        return cfg.poll_timeout_ms

    def _poll_once(self) -> None:
        timeout = self._poll_timeout_ms()
        polled = self.consumer.poll(timeout_ms=timeout, max_records=self.config.max_pending)
        now = time.monotonic()
        with self._lock:
            for tp, batch in polled.items():
                epoch = self._epochs.get(tp, 0)
                if tp not in self._assigned:
                    continue
                for r in batch:
                    self.tracker.add(tp, r.offset)
                    self._last_polled[tp] = r.offset
                    self._pending.append(
                        InRecord(
                            topic=r.topic,
                            partition=r.partition,
                            offset=r.offset,
                            key=r.key,
                            value=r.value,
                            headers=list(r.headers or []),
                            timestamp_ms=int(r.timestamp or 0),
                            epoch=epoch,
                        )
                    )
                    if self._oldest_s is None:
                        self._oldest_s = now
            for tp in self._assigned:
                high = self.consumer.highwater(tp)
                if high is not None and tp in self._last_polled:
                    self.stats.lag[tp.partition] = max(0, int(high) - self._last_polled[tp] - 1)

    def _submit_ready(self) -> None:
        cfg = self.config
        while True:
            with self._lock:
                if not self._pending:
                    return
                running = sum(1 for b in self._batches if not b.done())
                if running >= cfg.concurrency:
                    return
                waited_ms = (time.monotonic() - (self._oldest_s or time.monotonic())) * 1000
                if len(self._pending) < cfg.max_batch_records and waited_ms < cfg.max_wait_ms:
                    return
                records = [
                    self._pending.popleft() for _ in range(min(cfg.max_batch_records, len(self._pending)))
                ]
                self._oldest_s = time.monotonic() if self._pending else None
                batch = _Batch(records)
                self._batches.append(batch)
            if cfg.inline:
                try:
                    batch.results = self._process_with_retry(records)
                except BaseException as exc:  # noqa: BLE001 - surfaced by collect()
                    batch.error = exc
            else:
                batch.future = _run_in_daemon(f"{cfg.service}-work", self._process_with_retry, records)

    def _current(self, record: InRecord) -> bool:
        if record.offset < 0:
            return True  # a processor's own output (a final checkpoint), not tied to an input record
        with self._lock:
            return record.tp in self._assigned and self._epochs.get(record.tp, 0) == record.epoch

    def _process_with_retry(self, records: list[InRecord]) -> Sequence[Result]:
        delay = self.config.retry_initial_s
        while True:
            live = [r for r in records if self._current(r)]
            if not live:
                return []
            started = time.monotonic()
            try:
                results = self.processor.process(live)
            except Unavailable as exc:
                self._healthy = False
                logger.warning(
                    "%s: %d records wait: %s (retry in %.1f s)", self.config.service, len(live), exc, delay
                )
                if self._stop.wait(delay):
                    raise
                delay = min(delay * 2, self.config.retry_max_s)
                continue
            self._healthy = True
            elapsed = time.monotonic() - started
            if self.on_batch is not None:
                self.on_batch(len(live), elapsed)
            if len(results) != len(live):
                raise FatalError(f"processor returned {len(results)} results for {len(live)} records")
            return results

    def _complete_ready(self) -> None:
        while True:
            with self._lock:
                if not self._batches or not self._batches[0].done():
                    return
                batch = self._batches.popleft()
            results = batch.collect()
            self._send(results)

    def _send(self, results: Sequence[Result]) -> None:
        cfg = self.config
        for result in results:
            record = result.record
            if not self._current(record):
                continue
            outputs = list(result.outputs)
            if result.dlq_reason is not None:
                if cfg.dlq_topic is None:
                    raise FatalError(f"{cfg.service}: a poison record and no DLQ topic: {result.dlq_reason}")
                outputs = [self._dlq_record(record, result.dlq_reason)]
                self.stats.dlq += 1
                logger.warning(
                    "%s: %s/%d@%d to the DLQ: %s",
                    cfg.service,
                    record.topic,
                    record.partition,
                    record.offset,
                    result.dlq_reason,
                )
            self._produce(result, outputs)

    def _produce(self, result: Result, outputs: list[OutRecord]) -> None:
        record = result.record
        first = [o for o in outputs if o.after is None]
        held = tuple(o for o in outputs if o.after is not None)
        if not first and not held:
            self.tracker.done(record.tp, record.offset)
            self.processor.delivered([result])
            return
        if not held:
            self._send_all(first, functools.partial(self._finished, result))
            return
        # Queued now, in production order, even before its first outputs are acknowledged: the
        # release keeps that order per target partition (a later checkpoint of a stream never goes
        # out before an earlier one of the same partition and overwrites it in a compacted topic).
        epochs = {
            p: self._epoch(TopicPartition(record.topic, p)) for p in {o.after[0] for o in held if o.after}
        }
        entry = _Held(result, held, epochs, ready=not first)
        self._held.append(entry)
        if first:
            self._send_all(first, entry.mark_ready)

    def _send_all(self, outputs: Sequence[OutRecord], then: Callable[[], None]) -> None:
        """Send ``outputs``; call ``then`` (on the producer's thread) once every one is acknowledged."""
        remaining = [len(outputs)]
        lock = threading.Lock()
        with self._sends_lock:
            self._sends += len(outputs)

        def acked(_: Any) -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            with self._sends_lock:
                self._sends -= 1
            if last:
                then()

        def failed(exc: BaseException) -> None:
            with self._sends_lock:
                self._sends -= 1
            self._delivery_error = f"{type(exc).__name__}: {exc}"

        for out in outputs:
            future = self.producer.send(
                out.topic, key=out.key, value=out.value, headers=out.headers, partition=out.partition
            )
            future.add_callback(acked)
            future.add_errback(failed)

    def _send_pending(self) -> None:
        pending = getattr(self.processor, "pending_results", None)
        if callable(pending):
            results = pending()
            if results:
                self._send(results)

    def _finished(self, result: Result) -> None:
        self.tracker.done(result.record.tp, result.record.offset)
        self._delivered_queue.append(result)

    def _epoch(self, tp: TopicPartition) -> int:
        with self._lock:
            return self._epochs.get(tp, 0)

    def _release_held(self) -> bool:
        """Send held-back outputs whose inputs are done (see :attr:`OutRecord.after`). Returns
        whether anything moved (sent or dropped).

        Each output is judged by its own ``after`` partition. One that left this member since the
        output was made (revoked; reassigned counts as left), or the result's own partition when its
        record is no longer current, is dropped unsent: the next owner replays what it would have
        covered. The others wait until every input below their offset is done (the result's own
        record apart) and the result's first outputs are acknowledged. Entries are released in the
        order they were produced, per target partition: one that waits holds back every later one
        writing to the same partition. A result whose outputs are all sent or dropped is finished.
        """
        moved = False
        kept: deque[_Held] = deque()
        blocked: set[tuple[str, int | None]] = set()
        while self._held:
            entry = self._held.popleft()
            record = entry.result.record
            current = self._current(record)
            live = []
            for out in entry.outputs:
                assert out.after is not None
                partition, offset = out.after
                tp = TopicPartition(record.topic, partition)
                gone = (partition == record.partition and not current) or (
                    self._epoch(tp) != entry.epochs[partition]
                    or self.tracker.undone_below(tp, offset) is None
                )
                if gone:
                    logger.info(
                        "%s: a held output for %s/%d (of %s/%d@%d) dropped: the partition left this member",
                        self.config.service,
                        out.topic,
                        out.partition if out.partition is not None else -1,
                        record.topic,
                        record.partition,
                        record.offset,
                    )
                    moved = True
                else:
                    live.append(out)
            entry.outputs = tuple(live)
            targets = {(o.topic, o.partition) for o in live}
            if not entry.ready or targets & blocked or not all(self._inputs_done(record, o) for o in live):
                blocked |= targets
                kept.append(entry)
                continue
            moved = True
            if live:
                self._send_all(live, functools.partial(self._finished, entry.result))
            else:
                self._finished(entry.result)
        self._held.extend(kept)
        return moved

    def _inputs_done(self, record: InRecord, out: OutRecord) -> bool:
        """Every input of ``out.after``'s partition below its offset is done, ``record`` apart."""
        assert out.after is not None
        partition, offset = out.after
        undone = self.tracker.undone_below(TopicPartition(record.topic, partition), offset) or []
        return all(o == record.offset and partition == record.partition for o in undone)

    def _dlq_record(self, record: InRecord, reason: str) -> OutRecord:
        headers = [
            *record.headers,
            (DLQ_REASON, reason.encode("utf-8", "replace")[:4096]),
            (DLQ_SOURCE, f"{record.topic}/{record.partition}@{record.offset}".encode()),
            (DLQ_SERVICE, self.config.service.encode()),
        ]
        return OutRecord(
            topic=self.config.dlq_topic or "", key=record.key, value=record.value, headers=headers
        )

    def _flow_control(self) -> None:
        delivered: list[Result] = []
        while self._delivered_queue:
            delivered.append(self._delivered_queue.popleft())
        if delivered:
            self.processor.delivered(delivered)
        with self._lock:
            waiting = len(self._pending) + sum(len(b.records) for b in self._batches)
            assigned = set(self._assigned)
        should_pause = waiting >= self.config.max_pending or self._stop.is_set()
        if should_pause and not self._paused and assigned:
            self.consumer.pause(*assigned)
            self._paused = True
            logger.info(
                "%s: paused %d partitions (%d records waiting)", self.config.service, len(assigned), waiting
            )
        elif self._paused and not should_pause and waiting <= self.config.max_pending // 2:
            self.consumer.resume(*self.consumer.paused())
            self._paused = False
            logger.info("%s: resumed consumption (%d records waiting)", self.config.service, waiting)
        self.stats.paused = self._paused

    def _offsets_to_commit(self, partitions: set[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for key, offset in self.tracker.all_committable().items():
            tp = cast(TopicPartition, key)
            if partitions is not None and tp not in partitions:
                continue
            limit = self.processor.commit_limit(tp)
            target = offset if limit is None else min(offset, limit)
            if target > self._committed.get(tp, -1):
                out[tp] = target
        return out

    def _maybe_commit(self, *, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_commit_s < self.config.commit_interval_s:
            return
        self._last_commit_s = now
        with self._lock:
            offsets = self._offsets_to_commit(self._assigned)
        if not offsets:
            return
        payload = {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()}
        if force:
            self.consumer.commit(payload)
        else:
            self.consumer.commit_async(payload)
        self._committed.update(offsets)
        logger.debug(
            "%s: committed %s", self.config.service, {f"{tp.partition}": o for tp, o in offsets.items()}
        )

    # -- rebalances (called on the consumer's IO thread, while the loop thread waits in poll) ---------
    def _assigned_partitions(self, partitions: set[TopicPartition]) -> None:
        with self._lock:
            new = partitions - self._assigned  # a cooperative assignment may repeat owned partitions
            for tp in new:
                self._epochs[tp] = self._epochs.get(tp, 0) + 1
                self._committed.pop(tp, None)
            self._assigned |= new
            if self._paused and new:
                self.consumer.pause(*new)
        logger.info("%s: assigned %s", self.config.service, sorted(tp.partition for tp in partitions))
        hook = getattr(self.processor, "assigned", None)
        if callable(hook) and new:
            hook(new)

    def _revoke_offsets(self, partitions: set[TopicPartition]) -> dict[TopicPartition, OffsetAndMetadata]:
        with self._lock:
            offsets = self._offsets_to_commit(partitions)
            self._assigned -= partitions
            for tp in partitions:
                self._epochs[tp] = self._epochs.get(tp, 0) + 1
            kept = deque(r for r in self._pending if r.tp not in partitions)
            self._pending = kept
            self.tracker.drop(partitions)
            for tp in partitions:
                self._committed.pop(tp, None)
        self.processor.revoked(partitions)
        logger.info(
            "%s: revoked %s, committing %s",
            self.config.service,
            sorted(tp.partition for tp in partitions),
            {tp.partition: o for tp, o in offsets.items()},
        )
        return {tp: OffsetAndMetadata(o, "", -1) for tp, o in offsets.items()}

    # -- stop ------------------------------------------------------------------------------------------
    def _drain(self, grace_s: float) -> None:
        deadline = time.monotonic() + grace_s
        logger.info(
            "%s: stopping: finishing %d batches (grace %.1f s)",
            self.config.service,
            len(self._batches),
            grace_s,
        )
        with self._lock:
            self._pending.clear()
        while self._batches and time.monotonic() < deadline:
            try:
                self._complete_ready()
            except Exception as exc:  # noqa: BLE001 - unfinished work is replayed by the next owner
                logger.warning("%s: abandoning a batch while stopping: %s", self.config.service, exc)
                with self._lock:
                    if self._batches and self._batches[0].done():
                        self._batches.popleft()
            time.sleep(0.02)
        if self._batches:
            logger.warning(
                "%s: %d batches unfinished at the end of the grace; they will be replayed",
                self.config.service,
                len(self._batches),
            )
        final = getattr(self.processor, "final_results", None)
        if callable(final):
            self._send(
                final()
            )  # e.g. the aggregator's last checkpoints, so the commit covers everything done
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            self.producer.flush(timeout=max(1.0, remaining))
            moved = self._release_held()
            with self._sends_lock:
                sending = self._sends
            if not self._held or time.monotonic() >= deadline or (not moved and not sending):
                break  # done, out of time, or stuck: nothing in flight can unblock what is held
            if not moved:
                time.sleep(0.02)
        self.producer.flush(timeout=max(1.0, deadline - time.monotonic()))
        if self._held:
            logger.warning(
                "%s: %d held-back outputs (checkpoints) not sent: the records they cover are not all "
                "acknowledged; the next owner replays from the last checkpoint",
                self.config.service,
                len(self._held),
            )
        self._flow_control()
        self._close(commit=True)

    def _close(self, *, commit: bool) -> None:
        if commit:
            try:
                self._maybe_commit(force=True)
            except Exception as exc:  # noqa: BLE001 - at-least-once: the next owner replays the rest
                logger.error(
                    "%s: the final commit failed (%s: %s); the next owner replays from the last one",
                    self.config.service,
                    type(exc).__name__,
                    exc,
                )
        try:
            self.producer.close(timeout=5)
        finally:
            self.consumer.close(autocommit=False, timeout_ms=5000)
        logger.info("%s: consumer closed (left the group)", self.config.service)


class _Listener(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what is done for partitions that leave, before they go (cooperative rebalancing)."""

    def __init__(self, loop: ConsumeLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        partitions = set(revoked)
        if not partitions:
            return
        offsets = self.loop._revoke_offsets(partitions)
        if offsets:
            try:
                await self.loop.consumer.commit_async(offsets)
            except Exception as exc:  # noqa: BLE001 - the next owner replays from the last commit
                logger.warning(
                    "%s: commit on revoke failed (%s: %s); the next owner replays from the last one",
                    self.loop.config.service,
                    type(exc).__name__,
                    exc,
                )

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if assigned:
            self.loop._assigned_partitions(set(assigned))

    async def on_partitions_lost(self, lost: Any) -> None:
        partitions = set(lost)
        if partitions:
            self.loop._revoke_offsets(partitions)  # nothing can be committed: just drop them
