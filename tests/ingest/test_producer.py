"""Tests for faceflow.ingest.producer: the Frame message, the Kafka sink against real brokers, and a
stalled broker (SIGSTOP on a private one) that must not stall decoding or grow memory."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest
from support_ingest import (
    astronaut_jpeg,
    consume,
    create_frames_topic,
    ingest_config,
    of_stream,
    running_service,
    wait_until,
)
from support_runtime import free_port_settings

from faceflow.ingest.errors import IngestError
from faceflow.ingest.frames import EncodedFrame
from faceflow.ingest.metrics import DropCause, IngestMetrics
from faceflow.ingest.producer import Delivery, KafkaFrameSink, _InFlightWindow, to_proto
from faceflow.ingest.service import IngestService
from faceflow.runtime.stack import DevStack, require_ready
from faceflow.topics import FRAMES, FRAMES_MAX_MESSAGE_BYTES

JPEG = astronaut_jpeg()


def frame(seq: int, stream_id: str = "cam-1", **kwargs: object) -> EncodedFrame:
    values: dict[str, object] = {
        "stream_id": stream_id,
        "seq": seq,
        "pts_s": seq / 25,
        "capture_time_ns": 1_700_000_000_123_456_789,
        "jpeg": JPEG,
        "width": 512,
        "height": 512,
    }
    values.update(kwargs)
    return EncodedFrame(**values)  # type: ignore[arg-type]


def test_to_proto_keeps_every_field() -> None:
    message = to_proto(frame(3, shot_start_seq=2), "rtsp://u:***@cam/x")
    assert (message.stream_id, message.seq, message.width, message.height) == ("cam-1", 3, 512, 512)
    assert message.shot_start_seq == 2
    assert message.pts.ToNanoseconds() == 120_000_000
    assert message.capture_time.ToNanoseconds() == 1_700_000_000_123_456_789
    assert (message.content_type, message.source_uri, message.end_of_stream) == (
        "image/jpeg",
        "rtsp://u:***@cam/x",
        False,
    )
    assert message.image == JPEG
    marker = to_proto(EncodedFrame.end_marker("cam-1", 4, 0.2, 5, shot_start_seq=2), "x")
    assert (marker.end_of_stream, marker.image, marker.content_type, marker.width) == (True, b"", "", 0)
    assert marker.shot_start_seq == 2


def test_in_flight_window_blocks_then_gives_up() -> None:
    window = _InFlightWindow(100)
    assert window.acquire(60, 0.0)
    assert not window.acquire(60, 0.05)
    threading.Timer(0.05, window.release, args=(60,)).start()
    assert window.acquire(60, 10.0)
    assert window.acquire(1000, 0.0) is False  # larger than the budget: waits for an empty window
    window.release(60)
    assert window.acquire(1000, 0.0)
    window.release(1000)
    assert window.wait_empty(0.0)


@pytest.mark.integration
def test_sink_round_trip(kafka_bootstrap: str, unique_name: str) -> None:
    topic = create_frames_topic(kafka_bootstrap, unique_name)
    metrics = IngestMetrics()
    sink = KafkaFrameSink(kafka_bootstrap, topic, metrics)
    deliveries: list[Delivery] = []
    try:
        assert sink.check_topic(10) == FRAMES.partitions
        for seq in range(5):
            sink.send(frame(seq), source_uri="/clip.mp4", on_delivery=deliveries.append)
        assert sink.flush(30)
    finally:
        sink.close(10)
    assert [d.seq for d in deliveries] == list(range(5)) and all(d.ok for d in deliveries)
    records = consume(kafka_bootstrap, topic, until=lambda rs: len(rs) >= 5)
    assert [r.frame.seq for r in records] == list(range(5))
    assert all(r.key == b"cam-1" and r.frame.source_uri == "/clip.mp4" for r in records)
    assert 'faceflow_ingest_frames_produced_total{stream_id="cam-1"} 5.0' in metrics.render()


@pytest.mark.integration
@pytest.mark.parametrize("delivery_timeout_s", [1.0, 5.0, 29.0])
def test_a_delivery_timeout_under_30_s_starts_and_delivers(
    kafka_bootstrap: str, unique_name: str, delivery_timeout_s: float
) -> None:
    # It used to be refused by kafka-python (delivery < linger + request timeout), reported as
    # "cannot reach the Kafka broker".
    topic = create_frames_topic(kafka_bootstrap, unique_name)
    sink = KafkaFrameSink(kafka_bootstrap, topic, IngestMetrics(), delivery_timeout_s=delivery_timeout_s)
    deliveries: list[Delivery] = []
    try:
        sink.send(frame(0), source_uri="/clip.mp4", on_delivery=deliveries.append)
        assert sink.flush(30)
    finally:
        sink.close(10)
    assert [d.ok for d in deliveries] == [True]


@pytest.mark.integration
def test_missing_topic_and_unreachable_broker_are_clear_errors(
    kafka_bootstrap: str, closed_port: int
) -> None:
    sink = KafkaFrameSink(kafka_bootstrap, "faceflow.no-such-topic", IngestMetrics(), produce_block_s=0.5)
    try:
        with pytest.raises(IngestError, match=r"did not report topic 'faceflow\.no-such-topic'"):
            sink.check_topic(1)
    finally:
        sink.close(1)
    with pytest.raises(IngestError, match=f"cannot reach the Kafka broker at 127.0.0.1:{closed_port}"):
        KafkaFrameSink(f"127.0.0.1:{closed_port}", "t", IngestMetrics(), connect_timeout_s=1)


@pytest.mark.integration
@pytest.mark.slow
def test_stalled_broker_bounds_memory_and_counts_drops(tmp_path: Path, stream_server: object) -> None:
    """SIGSTOP a private broker: decoding goes on, the queue and the in-flight window stay within their
    bounds, drops are counted by reason; after SIGCONT frames flow again."""
    settings = free_port_settings(tmp_path / "home")
    if settings.external_kafka:
        pytest.skip("needs a broker of its own to freeze (FACEFLOW_TEST_KAFKA_BOOTSTRAP is set)")
    stack = DevStack(settings)
    require_ready(stack.up(["kafka"], quiet=True))
    pid = json.loads(stack.state_path.read_text())["processes"]["kafka"]["pid"]
    bootstrap = settings.kafka_bootstrap
    config = ingest_config(
        bootstrap,
        FRAMES.name,
        target_fps=0.0,  # keep every frame: the HTTP source decodes far faster than real time
        queue_size=4,
        produce_block_s=0.3,
        max_in_flight_bytes=FRAMES_MAX_MESSAGE_BYTES,
        delivery_timeout_s=60.0,
        max_reconnect_attempts=0,
    )
    frozen = False
    try:
        with running_service(config) as service:
            service.start_source(config.source("cam-stall", stream_server.url("/live")))  # type: ignore[attr-defined]
            wait_until(
                lambda: service.source("cam-stall").frames_produced >= 20, what="frames before the stall"
            )
            os.kill(pid, signal.SIGSTOP)
            frozen = True
            decoded_at_stall = service.source("cam-stall").frames_decoded
            depths: list[int] = []
            in_flight: list[int] = []

            def stalled_enough() -> bool:
                depths.append(service.source("cam-stall").queue_depth)
                in_flight.append(_sink(service).in_flight[1])
                return service.metrics.dropped_total("cam-stall", DropCause.BROKER_STALLED) >= 3 and (
                    service.metrics.dropped_total("cam-stall", DropCause.QUEUE_OLDEST) >= 20
                )

            wait_until(stalled_enough, timeout_s=60, what="counted drops while the broker is frozen")
            status = service.source("cam-stall")
            assert status.frames_decoded > decoded_at_stall + 20, (
                "decoding must go on while the broker stalls"
            )
            assert max(depths) <= config.queue_size
            assert service.source("cam-stall").queue_depth <= config.queue_size
            assert max(in_flight) <= config.max_in_flight_bytes
            assert status.frames_dropped >= 23
            text = service.metrics.render()
            assert 'reason="broker_stalled",stream_id="cam-stall"' in text
            assert 'reason="queue_oldest",stream_id="cam-stall"' in text
            os.kill(pid, signal.SIGCONT)
            frozen = False
            produced = status.frames_produced
            wait_until(
                lambda: service.source("cam-stall").frames_produced >= produced + 20,
                timeout_s=60,
                what="frames to flow again after SIGCONT",
            )
        records = consume(bootstrap, FRAMES.name, until=lambda rs: len(rs) >= produced + 20)
        seqs = [f.seq for f in of_stream(records, "cam-stall")]
        assert seqs == sorted(set(seqs))  # gaps (the drops) but never out of order or repeated
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        stack.down(quiet=True)


def _sink(service: IngestService) -> KafkaFrameSink:
    sink = service.sink
    assert isinstance(sink, KafkaFrameSink)
    return sink
