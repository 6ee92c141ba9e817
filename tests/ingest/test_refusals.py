"""Every pushed message counted in is counted out once: in = produced + dropped + refused.

With the in-memory sink (every path, including an unexpected error), through the real service into
the real broker, and with a private broker frozen by SIGSTOP while frames are pushed.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import signal
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support_ingest import astronaut_jpeg, consume, create_frames_topic, ingest_config, of_stream, wait_until
from support_runtime import free_port_settings

from faceflow.ingest.config import IngestConfig, SourceConfig
from faceflow.ingest.frames import EncodedFrame
from faceflow.ingest.metrics import DropCause, IngestMetrics, RefusalCause
from faceflow.ingest.producer import DeliveryCallback, InMemoryFrameSink, KafkaFrameSink
from faceflow.ingest.push import BrokerUnavailable, PushTooLarge, StreamBusy
from faceflow.ingest.runner import SourceState
from faceflow.ingest.service import IngestService
from faceflow.ingest.sources import FrameSource, InMemorySource
from faceflow.kafka.headers import TraceParent
from faceflow.runtime.stack import DevStack, require_ready
from faceflow.streams import InvalidStreamId
from faceflow.topics import FRAME_PAYLOAD_LIMIT, FRAMES, FRAMES_MAX_MESSAGE_BYTES
from faceflow.v1 import ingest_pb2

JPEG = astronaut_jpeg()
_SAMPLE = re.compile(r"faceflow_ingest_frames_(in|produced|dropped|refused)_total\{(.*)\} (\S+)$")


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 65-byte PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def request(stream_id: str, image: bytes = JPEG, **kwargs: object) -> ingest_pb2.PushFramesRequest:
    return ingest_pb2.PushFramesRequest(stream_id=stream_id, image=image, **kwargs)  # type: ignore[arg-type]


def counted(text: str, stream_id: str) -> dict[str, dict[str, float]]:
    """The in / produced / dropped / refused counters of one stream from the Prometheus text,
    by reason (``""`` for the counters without one)."""
    out: dict[str, dict[str, float]] = {k: {} for k in ("in", "produced", "dropped", "refused")}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or f'stream_id="{stream_id}"' not in match.group(2):
            continue
        reason = re.search(r'reason="([^"]*)"', match.group(2))
        out[match.group(1)][reason.group(1) if reason else ""] = float(match.group(3))
    return out


def assert_balanced(metrics: IngestMetrics, stream_id: str) -> dict[str, dict[str, float]]:
    counts = counted(metrics.render(), stream_id)
    total = {kind: sum(values.values()) for kind, values in counts.items()}
    assert total["in"] == total["produced"] + total["dropped"] + total["refused"], (stream_id, counts)
    return counts


# -- with the in-memory sink ----------------------------------------------------------------------


class _BrokenSink(InMemoryFrameSink):
    """Raises an unexpected error for stream ``boom``; otherwise the in-memory sink."""

    def send(
        self,
        frame: EncodedFrame,
        *,
        source_uri: str,
        trace: TraceParent | None = None,
        on_delivery: DeliveryCallback | None = None,
    ) -> None:
        if frame.stream_id == "boom":
            raise RuntimeError("the sink broke")
        super().send(frame, source_uri=source_uri, trace=trace, on_delivery=on_delivery)


def _refuse(frame: EncodedFrame) -> DropCause | None:
    return {"down": DropCause.BROKER_TIMEOUT, "slow": DropCause.BROKER_STALLED}.get(frame.stream_id)


def _live(spec: SourceConfig) -> FrameSource:
    return InMemorySource(
        [np.full((24, 32, 3), 90, np.uint8)] * 100_000, spec.stream_id, fps=100, is_live=True
    )


@pytest.fixture
def fake() -> Iterator[IngestService]:
    metrics = IngestMetrics()
    service = IngestService(
        IngestConfig(target_fps=0.0, max_side=256),
        sink=_BrokenSink(metrics, refuse=_refuse),
        metrics=metrics,
        opener=_live,
    )
    service.start(serve_metrics=False)
    yield service
    service.stop(2)


def test_every_path_of_a_pushed_frame_is_counted_once(fake: IngestService) -> None:
    reply = fake.push(
        [
            request("edge"),
            request("edge", b"\x00\x01 not an image"),
            request("edge", png_bomb()),
            request("edge", end_of_stream=True),  # a frame and a marker
            request("edge", b"", end_of_stream=True),  # only a marker
            request("slow"),
        ]
    )
    assert (reply.accepted, reply.rejected) == (2, 3)
    assert [r.reason for r in reply.rejections] == [
        ingest_pb2.REJECT_REASON_NOT_AN_IMAGE,
        ingest_pb2.REJECT_REASON_TOO_LARGE,
        ingest_pb2.REJECT_REASON_BACKPRESSURE,
    ]
    assert all("object at 0x" not in r.detail for r in reply.rejections)
    with pytest.raises(BrokerUnavailable, match=r"0 frames of this call were taken before the error$"):
        fake.push([request("down", end_of_stream=True)])
    with pytest.raises(PushTooLarge, match=r"1 frame of this call was taken before the error$"):
        fake.push([request("edge"), request("edge", b"\xff" * (FRAME_PAYLOAD_LIMIT + 1), end_of_stream=True)])
    fake.start_source(fake.config.source("busy", "rtsp://cam/busy"))
    with pytest.raises(StreamBusy, match=r"1 frame of this call was taken before the error$"):
        fake.push([request("edge"), request("busy")])
    with pytest.raises(InvalidStreamId, match=r"2 frames of this call were taken before the error$"):
        fake.push([request("edge"), request("edge"), request("no/such")])
    with pytest.raises(RuntimeError, match="the sink broke"):
        fake.push([request("boom", end_of_stream=True)])
    fake.stop_source("busy")

    edge = assert_balanced(fake.metrics, "edge")
    assert edge["in"] == {"": 12}
    assert edge["produced"] == {"": 8}  # 6 pictures and 2 markers; 3 bad pictures and 1 marker refused
    assert edge["refused"] == {"not_an_image": 1, "too_large": 1, "over_payload_limit": 2}
    assert assert_balanced(fake.metrics, "slow")["dropped"] == {"broker_stalled": 1}
    assert assert_balanced(fake.metrics, "down")["dropped"] == {"broker_timeout": 2}
    assert assert_balanced(fake.metrics, "boom")["refused"] == {"internal_error": 2}
    wait_until(lambda: fake.source("busy").state is SourceState.STOPPED, what="the pulled source to stop")
    busy = assert_balanced(fake.metrics, "busy")  # a pulled source at fps 0, stopped: balanced too
    assert busy["refused"] == {"stream_busy": 1}
    assert fake.metrics.refused_total("busy", RefusalCause.STREAM_BUSY) == 1


# -- through the real service into the real broker ------------------------------------------------


@pytest.mark.integration
def test_in_equals_produced_dropped_refused_with_the_real_broker(
    kafka_bootstrap: str, unique_name: str, closed_port: int
) -> None:
    topic = create_frames_topic(kafka_bootstrap, unique_name)
    config = ingest_config(kafka_bootstrap, topic, target_fps=0.0, max_reconnect_attempts=1000)
    service = IngestService(config)
    service.start(serve_metrics=False)
    try:
        reply = service.push(
            [
                request("mix"),
                request("mix", b"GIF89a not really"),
                request("mix", png_bomb()),
                request("mix", JPEG[: len(JPEG) // 2]),  # truncated
                request("mix"),
            ]
        )
        assert (reply.accepted, reply.rejected) == (2, 3)
        with pytest.raises(PushTooLarge, match="1 frame of this call was taken"):
            service.push([request("mix"), request("mix", b"\xff" * (FRAME_PAYLOAD_LIMIT + 1))])
        # A stream id that a pulled source holds (a dead camera, reconnecting) ends the call.
        service.start_source(config.source("held", f"rtsp://127.0.0.1:{closed_port}/cam"))
        with pytest.raises(StreamBusy, match="0 frames of this call were taken"):
            service.push([request("held")])
        with pytest.raises(InvalidStreamId, match="1 frame of this call was taken"):
            service.push([request("mix", end_of_stream=True), request("bad id")])
        service.stop_source("held")
        assert service.sink.flush(30)
        mix = assert_balanced(service.metrics, "mix")
        assert mix["in"] == {"": 9} and mix["produced"] == {"": 5}  # 4 pictures and the marker
        assert mix["refused"] == {"not_an_image": 2, "too_large": 1, "over_payload_limit": 1}
        assert assert_balanced(service.metrics, "held")["refused"] == {"stream_busy": 1}
    finally:
        service.stop(5)
    frames = of_stream(consume(kafka_bootstrap, topic, until=lambda rs: len(rs) >= 5), "mix")
    assert len(frames) == 5 and frames[-1].end_of_stream  # what "produced" counted is on the topic


@pytest.mark.integration
@pytest.mark.slow
def test_frames_pushed_while_the_broker_is_frozen_are_counted(tmp_path: Path) -> None:
    """SIGSTOP a private broker in the middle of a push call: the frames that find no room in the
    in-flight window are dropped as ``broker_stalled`` and rejected as backpressure; after SIGCONT
    the rest are acknowledged, and the counters balance."""
    settings = dataclasses.replace(free_port_settings(tmp_path / "home"), external_kafka=None)
    stack = DevStack(settings)
    require_ready(stack.up(["kafka"], quiet=True))
    pid = json.loads(stack.state_path.read_text())["processes"]["kafka"]["pid"]
    buffer = io.BytesIO()
    noise = np.random.default_rng(7).integers(0, 256, (1280, 1280, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="JPEG", quality=100)
    big = buffer.getvalue()
    assert 3 * len(big) > FRAMES_MAX_MESSAGE_BYTES  # at most two fit in the in-flight window
    config = ingest_config(
        settings.kafka_bootstrap,
        FRAMES.name,
        produce_block_s=0.3,
        max_in_flight_bytes=FRAMES_MAX_MESSAGE_BYTES,
        delivery_timeout_s=60.0,
    )
    frozen = False

    def requests() -> Iterator[ingest_pb2.PushFramesRequest]:
        nonlocal frozen
        yield request("cold")
        yield request("cold")
        os.kill(pid, signal.SIGSTOP)
        frozen = True
        for _ in range(6):
            yield request("cold", big)
        yield request("cold", b"not an image")
        os.kill(pid, signal.SIGCONT)
        frozen = False
        wait_until(lambda: _kafka(service).in_flight[0] == 0, timeout_s=60, what="acks after SIGCONT")
        yield request("cold", end_of_stream=True)

    try:
        service = IngestService(config)
        service.start(serve_metrics=False)
        try:
            reply = service.push(requests())
            stalled = service.metrics.dropped_total("cold", DropCause.BROKER_STALLED)
            assert stalled >= 4
            cold = assert_balanced(service.metrics, "cold")
        finally:
            service.stop(10)
        assert cold["in"] == {"": 11}  # 9 pictures, 1 bad picture, 1 marker
        assert cold["refused"] == {"not_an_image": 1}
        assert cold["dropped"] == {"broker_stalled": stalled}
        assert cold["produced"] == {"": 11 - 1 - stalled}
        assert (reply.accepted, reply.rejected) == (9 - stalled, 1 + stalled)
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        stack.down(quiet=True)


def _kafka(service: IngestService) -> KafkaFrameSink:
    sink = service.sink
    assert isinstance(sink, KafkaFrameSink)
    return sink
