"""Tests for faceflow.ingest.service with the in-memory sink: the source registry and the push path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from support_ingest import astronaut_jpeg, jpeg_of, wait_until
from support_shots import shot_frames

from faceflow.ingest.config import IngestConfig, SourceConfig
from faceflow.ingest.errors import SourceNotAllowed, SourceNotFound
from faceflow.ingest.metrics import DropCause, RefusalCause
from faceflow.ingest.producer import InMemoryFrameSink
from faceflow.ingest.push import PushTooLarge, StreamBusy
from faceflow.ingest.runner import SourceState
from faceflow.ingest.service import IngestService, ServiceStopping, SourceExists, UnknownSource
from faceflow.ingest.sources import FrameSource, InMemorySource
from faceflow.streams import InvalidStreamId
from faceflow.v1 import ingest_pb2

PIXELS = np.full((24, 32, 3), 200, np.uint8)
JPEG_512 = astronaut_jpeg()


def opener(spec: SourceConfig) -> FrameSource:
    """Files give 5 frames; a URL is a live source that keeps going (one frame every 10 ms of pts)."""
    if spec.is_live:
        return InMemorySource([PIXELS] * 100_000, spec.stream_id, fps=100, is_live=True)
    return InMemorySource([PIXELS] * 5, spec.stream_id, fps=10, is_live=False)


@pytest.fixture
def service(tmp_path: object) -> Iterator[IngestService]:
    config = IngestConfig(target_fps=0.0, seq_start="zero", max_side=256)
    svc = IngestService(config, sink=InMemoryFrameSink(), opener=opener)
    svc.start(serve_metrics=False)
    yield svc
    svc.stop(2)


def sink_of(service: IngestService) -> InMemoryFrameSink:
    sink = service.sink
    assert isinstance(sink, InMemoryFrameSink)
    return sink


def test_start_list_stop(service: IngestService, media: object) -> None:
    clip = str(media.mp4)  # type: ignore[attr-defined]
    service.start_source(service.config.source("live", "rtsp://cam/x"))
    service.start_source(service.config.source("file", clip))
    with pytest.raises(SourceExists, match="stream id 'live' is taken by a running source"):
        service.start_source(service.config.source("live", "rtsp://other/y"))
    wait_until(lambda: service.source("file").state is SourceState.ENDED, what="the file to end")
    assert {s.spec.stream_id for s in service.list_sources()} == {"live", "file"}
    stopped = service.stop_source("live")
    assert stopped.state is SourceState.STOPPED
    with pytest.raises(UnknownSource, match="no source with stream id 'nope'"):
        service.stop_source("nope")
    with pytest.raises(InvalidStreamId):
        service.stop_source("no/pe")


def test_a_stream_started_again_continues_its_seq(service: IngestService, media: object) -> None:
    clip = str(media.mp4)  # type: ignore[attr-defined]
    for _ in range(2):
        service.start_source(service.config.source("again", clip))
        wait_until(lambda: service.source("again").state is SourceState.ENDED, what="the file to end")
    seqs = [f.seq for f in sink_of(service).of("again")]
    assert seqs == list(range(12))  # 5 frames + marker, twice


def test_a_missing_path_is_refused_up_front(service: IngestService, tmp_path: object) -> None:
    with pytest.raises(SourceNotFound, match="no such file or folder"):
        service.start_source(service.config.source("gone", f"{tmp_path}/nothing.mp4"))


def test_requested_sources_pass_the_policy_and_configured_ones_do_not(tmp_path: Path) -> None:
    root, outside = tmp_path / "media", tmp_path / "private"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.mp4").write_bytes(b"x")
    (root / "clip.mp4").write_bytes(b"x")
    (root / "alias.mp4").symlink_to(root / "clip.mp4")
    config = IngestConfig(target_fps=0.0, allow_file_roots=str(root), allow_hosts="cams.example.com")
    svc = IngestService(config, sink=InMemoryFrameSink(), opener=opener)
    svc.start(serve_metrics=False)
    try:
        with pytest.raises(SourceNotAllowed, match="outside the folders allowed"):
            svc.request_source(config.source("secret", str(outside / "secret.mp4")))
        with pytest.raises(SourceNotAllowed, match=r"address 127\.0\.0\.1 is not in the networks allowed"):
            svc.request_source(config.source("local", "rtsp://127.0.0.1/x"))
        with pytest.raises(SourceNotFound, match="no such file or folder"):
            svc.request_source(config.source("gone", str(root / "gone.mp4")))
        started = svc.request_source(config.source("alias", str(root / "alias.mp4")))
        assert started.spec.uri == str(root / "clip.mp4")  # the source opens the resolved path
        assert svc.request_source(config.source("cam", "rtsp://cams.example.com/x")).spec.uri == (
            "rtsp://cams.example.com/x"
        )
        # The operator's own choice is not limited by the policy.
        svc.start_source(config.source("ops", str(outside / "secret.mp4")))
    finally:
        svc.stop(2)


def test_a_service_that_is_not_running_takes_no_sources() -> None:
    svc = IngestService(IngestConfig(), sink=InMemoryFrameSink(), opener=opener)
    with pytest.raises(ServiceStopping):
        svc.start_source(svc.config.source("x", "rtsp://cam/x"))


def request(stream_id: str, image: bytes = JPEG_512, **kwargs: object) -> ingest_pb2.PushFramesRequest:
    return ingest_pb2.PushFramesRequest(stream_id=stream_id, image=image, **kwargs)  # type: ignore[arg-type]


def test_push_counts_accepted_and_rejected_frames(service: IngestService) -> None:
    reply = service.push(
        [
            request("edge-1"),
            request("edge-1", b"garbage bytes"),
            request("edge-1"),
            request("edge-1", end_of_stream=True),
        ]
    )
    assert (reply.accepted, reply.rejected) == (3, 1)
    (rejection,) = reply.rejections
    assert (rejection.index, rejection.stream_id, rejection.reason) == (
        1,
        "edge-1",
        ingest_pb2.REJECT_REASON_NOT_AN_IMAGE,
    )
    assert "garbage" in rejection.detail
    frames = sink_of(service).of("edge-1")
    assert [f.end_of_stream for f in frames] == [False, False, False, True]
    assert [f.seq - frames[0].seq for f in frames] == [0, 1, 2, 3]
    assert (frames[0].width, frames[0].height) == (256, 256)  # bounded to the service's max side
    assert service.metrics.refused_total("edge-1", RefusalCause.NOT_AN_IMAGE) == 1
    assert service.metrics.dropped_total("edge-1") == 0


def test_a_pushed_stream_that_cuts_gets_a_new_shot_exactly_at_the_cut(service: IngestService) -> None:
    # JPEGs that fit are passed through, PNGs are re-encoded: both paths feed the detector
    before = [request("edge-cut", jpeg_of(rgb)) for rgb in shot_frames("male", scale=2)[:6]]
    after = [request("edge-cut", jpeg_of(rgb, "PNG")) for rgb in shot_frames("female", scale=2)[:6]]
    after[-1].end_of_stream = True
    reply = service.push(before + after)
    assert (reply.accepted, reply.rejected) == (12, 0)  # the marker is not counted
    frames = sink_of(service).of("edge-cut")
    first = frames[0].seq
    assert [f.shot_start_seq - first for f in frames] == [0] * 6 + [6] * 7  # the marker: the last shot
    assert frames[-1].end_of_stream
    assert 'faceflow_ingest_shot_cuts_total{stream_id="edge-cut"} 1.0' in service.metrics.render()


@pytest.mark.parametrize(
    ("requests", "error", "message_part"),
    [
        (
            [request("ok"), request("bad id")],
            InvalidStreamId,
            "stream id: expected .*; 1 frame of this call was taken before the error$",
        ),
        (
            [request("big", b"\xff" * (8 * 1024 * 1024))],
            PushTooLarge,
            "frame 0 of stream big: 8388608 bytes.*; 0 frames of this call were taken before the error$",
        ),
    ],
)
def test_push_refusals(
    service: IngestService,
    requests: list[ingest_pb2.PushFramesRequest],
    error: type[Exception],
    message_part: str,
) -> None:
    with pytest.raises(error, match=message_part):
        service.push(requests)


def test_push_to_a_running_source_is_refused(service: IngestService) -> None:
    service.start_source(service.config.source("cam", "rtsp://cam/x"))
    with pytest.raises(StreamBusy, match="belongs to a running source"):
        service.push([request("cam")])


def test_push_backpressure_is_a_rejection(service: IngestService) -> None:
    svc = IngestService(
        IngestConfig(), sink=InMemoryFrameSink(refuse=lambda f: DropCause.BROKER_STALLED), opener=opener
    )
    svc.start(serve_metrics=False)
    try:
        reply = svc.push([request("edge")])
    finally:
        svc.stop(1)
    assert (reply.accepted, reply.rejected) == (0, 1)
    assert reply.rejections[0].reason == ingest_pb2.REJECT_REASON_BACKPRESSURE


def test_gauges_read_every_source(service: IngestService) -> None:
    service.start_source(service.config.source("live", "rtsp://cam/x"))
    wait_until(lambda: service.source("live").frames_decoded > 0, what="frames")
    text = service.metrics.render()
    assert 'faceflow_ingest_queue_depth{stream_id="live"}' in text
    assert 'faceflow_ingest_decode_fps{stream_id="live"}' in text
