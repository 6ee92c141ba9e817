"""The Ingest gRPC API over a real socket, with a real gRPC client, into the real broker."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support_ingest import (
    astronaut_jpeg,
    consume,
    create_frames_topic,
    has_end,
    ingest_config,
    of_stream,
    wait_until,
)

from faceflow.ingest.grpc_server import FRAMES_TAKEN_KEY, SERVICE_NAME, IngestServer
from faceflow.ingest.service import IngestService
from faceflow.kafka.headers import TraceParent
from faceflow.topics import FRAME_PAYLOAD_LIMIT
from faceflow.v1 import ingest_pb2, ingest_pb2_grpc

pytestmark = pytest.mark.integration

TIMEOUT = 60  # every client call has a deadline (STYLE.md #9)
JPEG = astronaut_jpeg()


@dataclass
class Api:
    service: IngestService
    stub: ingest_pb2_grpc.IngestStub
    channel: grpc.Channel
    topic: str
    bootstrap: str


@pytest.fixture
def api(kafka_bootstrap: str, unique_name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    topic = create_frames_topic(kafka_bootstrap, unique_name)
    service = IngestService(
        ingest_config(
            kafka_bootstrap,
            topic,
            seq_start="zero",
            target_fps=0.0,
            max_reconnect_attempts=0,
            allow_file_roots=str(tmp_path_factory.getbasetemp()),  # the media and every tmp_path
            allow_hosts="127.0.0.1",
        )
    )
    service.start(serve_metrics=False)
    server = IngestServer(service, "127.0.0.1", 0, workers=8)
    port = server.start()
    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    try:
        yield Api(service, ingest_pb2_grpc.IngestStub(channel), channel, topic, kafka_bootstrap)
    finally:
        channel.close()
        server.stop(1).wait(5)
        service.stop(5)


def push(stream_id: str, image: bytes = JPEG, **kwargs: object) -> ingest_pb2.PushFramesRequest:
    return ingest_pb2.PushFramesRequest(stream_id=stream_id, image=image, **kwargs)  # type: ignore[arg-type]


def test_health_and_reflection(api: Api) -> None:
    health = health_pb2_grpc.HealthStub(api.channel)
    for name in ("", SERVICE_NAME):
        reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=TIMEOUT)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(api.channel)
    (answer,) = reflection.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT
    )
    names = {s.name for s in answer.list_services_response.service}
    assert {"faceflow.v1.Ingest", "grpc.health.v1.Health"} <= names


def test_pushed_frames_reach_the_topic(api: Api) -> None:
    trace = TraceParent.new()
    reply = api.stub.PushFrames(
        iter(
            [
                push("edge-1"),
                push("edge-1", b"\x00\x01 not an image"),
                push("edge-1"),
                push("edge-1", b"", end_of_stream=True),
            ]
        ),
        timeout=TIMEOUT,
        metadata=[("traceparent", trace.header())],
    )
    assert (reply.accepted, reply.rejected) == (2, 1)
    assert reply.rejections[0].reason == ingest_pb2.REJECT_REASON_NOT_AN_IMAGE
    assert reply.rejections[0].index == 1
    assert "object at 0x" not in reply.rejections[0].detail  # PIL's message names a BytesIO object
    records = consume(api.bootstrap, api.topic, until=has_end("edge-1"))
    frames = of_stream(records, "edge-1")
    assert [f.seq - frames[0].seq for f in frames] == [0, 1, 2]
    assert [f.end_of_stream for f in frames] == [False, False, True]
    assert frames[0].image == JPEG  # a JPEG that fits is passed through untouched
    assert (frames[0].width, frames[0].height, frames[0].source_uri) == (512, 512, "grpc:push")
    for record in records:
        assert record.headers["content-type"] == b"application/x-protobuf; type=faceflow.v1.Frame"
        assert record.headers["schema-version"] == b"1"
        assert TraceParent.parse(record.headers["traceparent"]).trace_id == trace.trace_id


def spec(stream_id: str, uri: str, **kwargs: object) -> ingest_pb2.StartSourceRequest:
    return ingest_pb2.StartSourceRequest(spec=ingest_pb2.SourceSpec(stream_id=stream_id, uri=uri, **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "expected", "message_part"),
    [
        (
            lambda s, m: s.StartSource(spec("bad id", str(m.mp4)), timeout=TIMEOUT),
            "INVALID_ARGUMENT",
            "stream id",
        ),
        (
            lambda s, m: s.StartSource(ingest_pb2.StartSourceRequest(), timeout=TIMEOUT),
            "INVALID_ARGUMENT",
            "spec",
        ),
        (
            lambda s, m: s.StartSource(spec("q", str(m.mp4), jpeg_quality=101), timeout=TIMEOUT),
            "INVALID_ARGUMENT",
            "jpeg_quality: expected an int in 1..100",
        ),
        (
            lambda s, m: s.StartSource(spec("g", "gopher://x/y"), timeout=TIMEOUT),
            "INVALID_ARGUMENT",
            "scheme 'gopher'",
        ),
        (lambda s, m: s.StartSource(spec("m", str(m.missing)), timeout=TIMEOUT), "NOT_FOUND", "no such file"),
        (
            lambda s, m: s.StopSource(ingest_pb2.StopSourceRequest(stream_id="nobody"), timeout=TIMEOUT),
            "NOT_FOUND",
            "no source with stream id 'nobody'",
        ),
        (
            lambda s, m: s.PushFrames(iter([push("a/b")]), timeout=TIMEOUT),
            "INVALID_ARGUMENT",
            "stream id: expected",
        ),
        (
            lambda s, m: s.PushFrames(
                iter([push("big", b"\xff" * (FRAME_PAYLOAD_LIMIT + 1))]), timeout=TIMEOUT
            ),
            "RESOURCE_EXHAUSTED",
            "the frames topic's payload limit",
        ),
        (
            lambda s, m: s.PushFrames(iter([push("huge", b"\xff" * (9 * 1024 * 1024))]), timeout=TIMEOUT),
            "RESOURCE_EXHAUSTED",
            "larger than max",
        ),
    ],
)
def test_status_codes(api: Api, media: object, call: object, expected: str, message_part: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        call(api.stub, media)  # type: ignore[operator]
    assert info.value.code() == getattr(grpc.StatusCode, expected)
    assert message_part in info.value.details()


def test_sources_at_run_time(api: Api, media: object) -> None:
    clip = str(media.mp4)  # type: ignore[attr-defined]
    started = api.stub.StartSource(spec("clip", clip, target_fps=5, max_side=160), timeout=TIMEOUT)
    assert started.status.spec.stream_id == "clip"
    api.stub.StartSource(spec("zero", str(media.zero)), timeout=TIMEOUT)  # type: ignore[attr-defined]
    api.stub.StartSource(spec("live", "rtsp://127.0.0.1:9/none"), timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as info:
        api.stub.StartSource(spec("live", "rtsp://127.0.0.1:9/other"), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS

    def states() -> dict[str, ingest_pb2.SourceStatus]:
        reply = api.stub.ListSources(ingest_pb2.ListSourcesRequest(), timeout=TIMEOUT)
        return {s.spec.stream_id: s for s in reply.sources}

    wait_until(
        lambda: (
            states()["clip"].state == ingest_pb2.SOURCE_STATE_ENDED
            and states()["zero"].state == ingest_pb2.SOURCE_STATE_FAILED
        ),
        what="the clip to end and the empty file to fail",
    )
    now = states()
    assert (now["clip"].frames_decoded, now["clip"].frames_produced, now["clip"].frames_dropped) == (
        50,
        10,
        0,
    )
    assert now["clip"].spec.max_side == 160
    assert "not a decodable video" in now["zero"].last_error
    assert now["live"].state in (ingest_pb2.SOURCE_STATE_STARTING, ingest_pb2.SOURCE_STATE_RECONNECTING)
    stopped = api.stub.StopSource(ingest_pb2.StopSourceRequest(stream_id="live"), timeout=TIMEOUT)
    assert stopped.status.state == ingest_pb2.SOURCE_STATE_STOPPED
    frames = of_stream(consume(api.bootstrap, api.topic, until=has_end("clip")), "clip")
    assert [f.seq for f in frames] == list(range(11))
    assert max(frames[0].width, frames[0].height) == 160


@pytest.mark.parametrize(
    ("uri", "expected", "message_part"),
    [
        ("/etc/passwd", "PERMISSION_DENIED", "outside the folders allowed for sources started over gRPC"),
        (
            "/etc/no-such-file",
            "PERMISSION_DENIED",
            "outside the folders allowed for sources started over gRPC",
        ),
        ("{tmp}/../../../../../../etc/passwd", "PERMISSION_DENIED", "outside the folders allowed"),
        ("{tmp}/passwd-link", "PERMISSION_DENIED", "through a symbolic link"),
        ("file:///etc/passwd", "PERMISSION_DENIED", "FACEFLOW_INGEST_ALLOW_FILE_ROOTS"),
        ("http://169.254.169.254/latest/meta-data/", "PERMISSION_DENIED", "FACEFLOW_INGEST_ALLOW_HOSTS"),
        ("rtsp://[::1]:8554/cam", "PERMISSION_DENIED", "address ::1 is not in the networks allowed"),
        ("rtsp://localhost:8554/cam", "PERMISSION_DENIED", "host localhost is not allowed"),
        ("udp://127.0.0.1:1234", "PERMISSION_DENIED", "FACEFLOW_INGEST_ALLOW_SCHEMES"),
        ("rtsp://127.0.0.1:99999/cam", "INVALID_ARGUMENT", "expected a port in 0..65535"),
        ("{tmp}/clip\x00.mp4", "INVALID_ARGUMENT", "no control characters"),
        ("{tmp}/missing.mp4", "NOT_FOUND", "no such file or folder"),
        ("{tmp}/clip.mp4", "OK", "{tmp}/clip.mp4"),
        ("{tmp}/alias.mp4", "OK", "{tmp}/clip.mp4"),  # a link inside the allowed folders: resolved
        ("file://{tmp}/clip.mp4", "OK", "{tmp}/clip.mp4"),
    ],
)
def test_the_source_policy_over_grpc(
    api: Api, media: object, tmp_path: Path, uri: str, expected: str, message_part: str
) -> None:
    shutil.copy(media.mp4, tmp_path / "clip.mp4")  # type: ignore[attr-defined]
    (tmp_path / "alias.mp4").symlink_to(tmp_path / "clip.mp4")
    (tmp_path / "passwd-link").symlink_to("/etc/passwd")
    uri, message_part = (text.replace("{tmp}", str(tmp_path)) for text in (uri, message_part))
    request = spec("asked", uri)
    if expected == "OK":
        reply = api.stub.StartSource(request, timeout=TIMEOUT)
        assert reply.status.spec.uri == message_part
        api.stub.StopSource(ingest_pb2.StopSourceRequest(stream_id="asked"), timeout=TIMEOUT)
        return
    with pytest.raises(grpc.RpcError) as info:
        api.stub.StartSource(request, timeout=TIMEOUT)
    assert info.value.code() == getattr(grpc.StatusCode, expected)
    assert message_part in info.value.details()
    assert "asked" not in {s.spec.stream_id for s in api.service.list_sources()}


def test_a_refusal_does_not_tell_whether_a_path_exists(api: Api) -> None:
    details = []
    for path in ("/etc/passwd", "/etc/no-such-file"):
        with pytest.raises(grpc.RpcError) as info:
            api.stub.StartSource(spec("probe", path), timeout=TIMEOUT)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        details.append(info.value.details().replace(path, "PATH"))
    assert details[0] == details[1]


@pytest.mark.parametrize(
    ("last", "expected", "message_part"),
    [
        (push("bad id"), "INVALID_ARGUMENT", "stream id: expected"),
        (push("edge-t", b"\xff" * (FRAME_PAYLOAD_LIMIT + 1)), "RESOURCE_EXHAUSTED", "payload limit"),
    ],
)
def test_a_failed_push_says_how_many_frames_were_taken(
    api: Api, last: ingest_pb2.PushFramesRequest, expected: str, message_part: str
) -> None:
    requests = [push("edge-t"), push("edge-t", b"not an image"), push("edge-t"), last]
    with pytest.raises(grpc.RpcError) as info:
        api.stub.PushFrames(iter(requests), timeout=TIMEOUT)
    assert info.value.code() == getattr(grpc.StatusCode, expected)
    assert message_part in info.value.details()
    assert info.value.details().endswith("; 3 frames of this call were taken before the error")
    assert (FRAMES_TAKEN_KEY, "3") in tuple(info.value.trailing_metadata())
    frames = of_stream(consume(api.bootstrap, api.topic, until=lambda rs: len(rs) >= 2), "edge-t")
    assert len(frames) == 2  # the two pictures before the error were sent (the bad one rejected)
