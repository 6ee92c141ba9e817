"""What ``faceflow run`` reads back while the mesh works: frames (for the annotated video) and
analyses (progress and hop timings) from its topics, and face events (``faces.jsonl``, the report)
from the aggregator's gRPC ``Subscribe``, as any client would."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from faceflow.kafka.clients import make_consumer
from faceflow.run.events_json import JsonlWriter, event_to_json
from faceflow.v1 import analysis_pb2, face_event_pb2, frame_pb2

logger = logging.getLogger(__name__)


@dataclass
class StreamProgress:
    frames: int = 0
    faces: int = 0
    ended: bool = False


@dataclass
class Collected:
    """Everything read so far (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    streams: dict[str, StreamProgress] = field(default_factory=lambda: defaultdict(StreamProgress))
    events: list[dict[str, Any]] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    frames_on_disk: dict[str, dict[int, tuple[float, Path]]] = field(
        default_factory=lambda: defaultdict(dict)
    )
    #: stream -> seq -> media time of every frame analysed (with or without faces): for scoring.
    analyzed_frames: dict[str, dict[int, float]] = field(default_factory=lambda: defaultdict(dict))
    random_init: bool = False
    errors: list[str] = field(default_factory=list)


class Collector:
    """Three tails (frames, analyses, faces) from the beginning of the run's own topics."""

    def __init__(
        self,
        bootstrap: str,
        *,
        frames_topic: str,
        analyses_topic: str,
        spill_dir: Path,
        jsonl: JsonlWriter,
        keep_frames: bool,
        include_parsing_mask: bool,
        include_embedding: bool,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = {"frames": frames_topic, "analyses": analyses_topic}
        self.spill_dir = spill_dir
        self.jsonl = jsonl
        self.keep_frames = keep_frames
        self.include_parsing_mask = include_parsing_mask
        self.include_embedding = include_embedding
        self.data = Collected()
        self._last_event = time.monotonic()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._call: Any = None  # the Subscribe call (grpc is imported where it is used)

    def start(self, aggregator_url: str, stream_ids: list[str]) -> None:
        """Tail frames and analyses from Kafka; take face events from the aggregator's Subscribe."""
        handlers: dict[str, Callable[[Any], None]] = {"analyses": self._analysis}
        if self.keep_frames:
            handlers["frames"] = self._frame
        for name, handler in handlers.items():
            thread = threading.Thread(
                target=self._tail, args=(self.topics[name], handler), name=f"run-{name}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        thread = threading.Thread(
            target=self._subscribe, args=(aggregator_url, stream_ids), name="run-subscribe", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _subscribe(self, url: str, stream_ids: list[str]) -> None:
        """Face events through ``Aggregator.Subscribe`` from the start of the run's faces topic: what a
        gRPC client sees, delivered without loss (a replay waits for its reader instead of dropping)."""
        import grpc  # noqa: PLC0415

        from faceflow.service.security import channel_for  # noqa: PLC0415
        from faceflow.v1 import aggregator_pb2, aggregator_pb2_grpc  # noqa: PLC0415

        request = aggregator_pb2.SubscribeRequest(
            stream_ids=stream_ids, start=aggregator_pb2.StartPosition(earliest=True)
        )
        with channel_for(url, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]) as channel:
            call = aggregator_pb2_grpc.AggregatorStub(channel).Subscribe(request)
            self._call = call
            try:
                for item in call:
                    if self._stop.is_set():
                        break
                    if item.HasField("gap"):
                        with self.data.lock:
                            self.data.errors.append(f"{item.gap.dropped} events lost by the subscription")
                        continue
                    self._event(item.event)
            except grpc.RpcError as exc:
                if not self._stop.is_set():
                    with self.data.lock:
                        self.data.errors.append(f"the subscription ended: {exc.code()}: {exc.details()}")

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._call is not None:
            self._call.cancel()
        for thread in self._threads:
            thread.join(timeout_s)

    def idle_for(self) -> float:
        """Seconds since the last face event arrived."""
        return time.monotonic() - self._last_event

    def _tail(self, topic: str, handler: Callable[[Any], None]) -> None:
        consumer = make_consumer(self.bootstrap, group_id=None, client_id=f"faceflow-run-{topic}")
        try:
            partitions = None
            while not partitions and not self._stop.is_set():
                partitions = consumer.partitions_for_topic(topic)
                time.sleep(0.05)
            tps = [TopicPartition(topic, p) for p in sorted(partitions or [])]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            while not self._stop.is_set():
                for records in consumer.poll(timeout_ms=200).values():
                    for record in records:
                        try:
                            handler(record)
                        except Exception as exc:
                            logger.exception("run: a record of %s could not be read", topic)
                            with self.data.lock:
                                self.data.errors.append(f"{topic}@{record.offset}: {exc}")
        finally:
            with suppress(Exception):
                consumer.close()

    def _frame(self, record: Any) -> None:
        frame = frame_pb2.Frame.FromString(record.value)
        if not frame.image:
            return
        folder = self.spill_dir / frame.stream_id
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{frame.seq:020d}.jpg"
        path.write_bytes(frame.image)
        with self.data.lock:
            self.data.frames_on_disk[frame.stream_id][frame.seq] = (frame.pts.ToNanoseconds() / 1e9, path)

    def _analysis(self, record: Any) -> None:
        analysis = analysis_pb2.FrameAnalysis.FromString(record.value)
        now_ns = time.time_ns()
        with self.data.lock:
            stream = self.data.streams[analysis.stream_id]
            if analysis.end_of_stream:
                return
            stream.frames += 1
            stream.faces += len(analysis.faces)
            self.data.analyzed_frames[analysis.stream_id][analysis.seq] = analysis.pts.ToNanoseconds() / 1e9
            if any(m.random_init for m in analysis.models):
                self.data.random_init = True
            capture = analysis.capture_time.ToNanoseconds()
            self.data.latencies["capture->analysis start"].append(
                analysis.timings.queue_delay.ToNanoseconds() / 1e9
            )
            self.data.latencies["triton (per batch)"].append(analysis.timings.inference.ToNanoseconds() / 1e9)
            if capture:
                self.data.latencies["capture->analyses topic"].append(
                    max(0, record.timestamp * 1_000_000 - capture) / 1e9
                )
                self.data.latencies["capture->run (analysis)"].append(max(0, now_ns - capture) / 1e9)

    def _event(self, event: face_event_pb2.FaceEvent) -> None:
        self._last_event = time.monotonic()
        line = event_to_json(
            event, include_parsing_mask=self.include_parsing_mask, include_embedding=self.include_embedding
        )
        self.jsonl.write(line)
        with self.data.lock:
            self.data.events.append(line)
            stream = self.data.streams[event.stream_id]
            if event.type == face_event_pb2.FACE_EVENT_TYPE_STREAM_ENDED:
                stream.ended = True
            if event.type == face_event_pb2.FACE_EVENT_TYPE_OBSERVATION:
                capture = event.capture_time.ToNanoseconds()
                if capture:
                    self.data.latencies["capture->subscriber"].append(max(0, time.time_ns() - capture) / 1e9)
