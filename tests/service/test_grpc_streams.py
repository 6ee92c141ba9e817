"""Streams can not starve a server: the stream bound, idle streams, drain on stop, malformed requests.

Over real sockets, with real gRPC clients; the last test does it against the real ingest service
and broker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support_ingest import wait_until

from faceflow import errors
from faceflow.service.grpc_server import (
    IDLE_STREAM_ENV,
    MAX_STREAMS_ENV,
    GrpcServer,
    ServerSettings,
    ServiceBinding,
    StreamGuard,
)
from faceflow.service.metrics import ServiceMetrics
from faceflow.v1 import ingest_pb2, ingest_pb2_grpc

TIMEOUT = 30
SERVICE = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name
IDLE_CLIENTS = 64


class Counting(ingest_pb2_grpc.IngestServicer):
    """PushFrames counts what it reads; ListSources answers at once."""

    def __init__(self) -> None:
        self.read = 0
        self.lock = threading.Lock()

    def PushFrames(self, request_iterator: Any, context: Any) -> ingest_pb2.PushFramesResponse:  # noqa: N802
        for _ in request_iterator:
            with self.lock:
                self.read += 1
        return ingest_pb2.PushFramesResponse(accepted=self.read)

    def ListSources(self, request: Any, context: Any) -> ingest_pb2.ListSourcesResponse:  # noqa: N802
        return ingest_pb2.ListSourcesResponse()

    def StopSource(self, request: Any, context: Any) -> ingest_pb2.StopSourceResponse:  # noqa: N802
        return ingest_pb2.StopSourceResponse()


@dataclass
class Served:
    servicer: Counting
    server: GrpcServer
    channel: grpc.Channel
    metrics: ServiceMetrics
    stub: ingest_pb2_grpc.IngestStub = field(init=False)

    def __post_init__(self) -> None:
        self.stub = ingest_pb2_grpc.IngestStub(self.channel)

    def health(self) -> int:
        stub = health_pb2_grpc.HealthStub(self.channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT).status


def serve(settings: ServerSettings) -> Served:
    servicer = Counting()
    metrics = ServiceMetrics("faceflow-test")
    server = GrpcServer(
        "test",
        settings,
        [ServiceBinding(SERVICE, ingest_pb2_grpc.add_IngestServicer_to_server, servicer)],
        metrics=metrics,
        env={},
    )
    port = server.start()
    return Served(servicer, server, grpc.insecure_channel(f"127.0.0.1:{port}"), metrics)


def close(served: Served) -> None:
    served.channel.close()
    served.server.stop(0).wait(10)
    served.metrics.shutdown()


def idle(release: threading.Event, first: list[ingest_pb2.PushFramesRequest] | None = None) -> Iterator[Any]:
    """Requests that send ``first`` and then nothing until ``release`` is set."""
    yield from first or []
    release.wait()


def outcome(future: Any) -> grpc.StatusCode:
    try:
        future.result(timeout=TIMEOUT)
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_64_idle_streams_leave_health_and_unary_calls_served_and_do_not_hold_the_grace() -> None:
    served = serve(ServerSettings(workers=16, idle_stream_s=600))
    release = threading.Event()
    try:
        assert served.server.streams.max_streams == 12
        futures = [served.stub.PushFrames.future(idle(release), timeout=120) for _ in range(IDLE_CLIENTS)]
        refused = settled(futures, IDLE_CLIENTS - 12)
        assert [outcome(f) for f in refused] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * (IDLE_CLIENTS - 12)
        open_ = [f for f in futures if f not in refused]
        assert len(open_) == 12 and not any(f.done() for f in open_)
        message = refused[0].exception().details()
        assert f"12 streams are open, the limit ({MAX_STREAMS_ENV}=12)" in message
        # while 12 streams sit idle: health and a unary call still answer
        assert served.health() == health_pb2.HealthCheckResponse.SERVING
        served.stub.ListSources(ingest_pb2.ListSourcesRequest(), timeout=TIMEOUT)
        # stop with a long grace: the idle streams are closed at once, with UNAVAILABLE
        assert served.server.stop(60).wait(20), "idle streams held the grace period"
        codes = [outcome(f) for f in open_]
        assert codes == [grpc.StatusCode.UNAVAILABLE] * 12
        assert "test is shutting down" in open_[0].exception().details()
        rendered = served.metrics.render()
        assert 'code="RESOURCE_EXHAUSTED",method="PushFrames",reason="ResourceExhausted"' in rendered
        assert 'code="UNAVAILABLE",method="PushFrames",reason="Unavailable"' in rendered
    finally:
        release.set()
        close(served)


def settled(futures: list[Any], count: int) -> list[Any]:
    """The calls that have ended, once ``count`` of them have (or after TIMEOUT)."""
    deadline = time.monotonic() + TIMEOUT
    while sum(f.done() for f in futures) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return [f for f in futures if f.done()]


def test_a_client_stream_that_goes_quiet_is_closed_with_deadline_exceeded() -> None:
    served = serve(ServerSettings(workers=4, max_streams=2, idle_stream_s=0.5))
    release = threading.Event()
    try:
        frame = ingest_pb2.PushFramesRequest(stream_id="cam", image=b"x")
        future = served.stub.PushFrames.future(idle(release, [frame, frame]), timeout=TIMEOUT)
        assert outcome(future) is grpc.StatusCode.DEADLINE_EXCEEDED
        details = future.exception().details()
        assert details == (
            f"test: PushFrames sent nothing for 0.5 s ({IDLE_STREAM_ENV}); the stream is closed, "
            "open a new one to go on"
        )
        assert served.servicer.read == 2  # what came before the silence was read
        # the client sees the status as soon as the sweeper cancels the call; the handler's thread
        # wakes from its read and leaves the guard just after
        wait_until(lambda: len(served.server.streams) == 0, 10, "the closed stream to leave the guard")
        # a stream that keeps sending is never idle, and the server takes new streams again
        reply = served.stub.PushFrames(iter([frame] * 3), timeout=TIMEOUT)
        assert reply.accepted == 5
        assert 'reason="DeadlineExceeded"' in served.metrics.render()
    finally:
        release.set()
        close(served)


def test_requests_that_do_not_parse_are_invalid_argument_not_internal() -> None:
    served = serve(ServerSettings(workers=4))
    try:
        good = ingest_pb2.StopSourceRequest(stream_id="abc").SerializeToString()
        bad_utf8 = good.replace(b"abc", b"a\xff\xfe")
        raw_unary = served.channel.unary_unary("/faceflow.v1.Ingest/StopSource")
        with pytest.raises(grpc.RpcError) as unary:
            raw_unary(bad_utf8, timeout=TIMEOUT)
        assert unary.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert unary.value.details().startswith(
            "the request is not a valid faceflow.v1.StopSourceRequest message (5 bytes): a string field "
            "holds bytes that are not UTF-8"
        )
        assert raw_unary(good, timeout=TIMEOUT) == b""  # the next good request is answered

        frame = ingest_pb2.PushFramesRequest(stream_id="cam", image=b"x").SerializeToString()
        raw_stream = served.channel.stream_unary("/faceflow.v1.Ingest/PushFrames")
        with pytest.raises(grpc.RpcError) as streamed:
            raw_stream(iter([frame, b"\xff\xff\xff", frame]), timeout=TIMEOUT)
        assert streamed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "faceflow.v1.PushFramesRequest" in streamed.value.details()
        assert served.servicer.read == 1
        assert 'code="INVALID_ARGUMENT",method="StopSource",reason="Malformed"' in served.metrics.render()
    finally:
        close(served)


class FakeContext:
    def __init__(self) -> None:
        self.cancelled = 0

    def cancel(self) -> None:
        self.cancelled += 1


def test_the_guard_closes_only_streams_waiting_for_their_client() -> None:
    now = [0.0]
    guard = StreamGuard("svc", max_streams=3, idle_s=10.0, clock=lambda: now[0])
    waiting_ctx, working_ctx = FakeContext(), FakeContext()
    waiting = guard.enter("/x.Y/Push", waiting_ctx)
    working = guard.enter("/x.Y/Push", working_ctx)
    requests = guard.requests(working, iter([1, 2]))
    assert next(requests) == 1  # the service now works on it: not waiting
    waiting.waiting_since = 0.0
    now[0] = 9.9
    assert guard.sweep() == 0
    now[0] = 10.0
    assert guard.sweep() == 1 and waiting_ctx.cancelled == 1 and working_ctx.cancelled == 0
    assert isinstance(waiting.closed, errors.DeadlineExceeded)
    # on drain the working stream is closed the moment it asks for more
    assert guard.drain() == 0
    with pytest.raises(errors.Unavailable, match="svc is shutting down"):
        next(requests)
    with pytest.raises(errors.Unavailable):
        guard.enter("/x.Y/Push", FakeContext())
    guard.leave(waiting)
    guard.leave(working)
    assert len(guard) == 0


def test_the_guard_refuses_past_its_bound() -> None:
    guard = StreamGuard("svc", max_streams=1, idle_s=1.0)
    first = guard.enter("/x.Y/Push", FakeContext())
    with pytest.raises(errors.ResourceExhausted, match=r"1 streams are open, the limit"):
        guard.enter("/x.Y/Push", FakeContext())
    guard.leave(first)
    guard.leave(guard.enter("/x.Y/Push", FakeContext()))


@pytest.mark.parametrize(
    ("settings", "env", "message"),
    [
        ({"workers": 4, "max_streams": 4}, {}, "max_streams: expected 1..3"),
        ({"idle_stream_s": 0.0}, {}, "idle_stream_s: expected > 0"),
        ({"workers": 8}, {MAX_STREAMS_ENV: "lots"}, f"{MAX_STREAMS_ENV}: expected an integer, got 'lots'"),
        ({"workers": 8}, {MAX_STREAMS_ENV: "8"}, f"{MAX_STREAMS_ENV}: expected 1..7"),
        ({}, {IDLE_STREAM_ENV: "-1"}, f"{IDLE_STREAM_ENV}: expected > 0 seconds"),
    ],
)
def test_stream_bounds_are_validated(settings: dict[str, Any], env: dict[str, str], message: str) -> None:
    with pytest.raises((ValueError, errors.ConfigError), match=message):
        ServerSettings(**settings).stream_bounds(env)


def test_stream_bounds_come_from_settings_then_the_environment_then_the_defaults() -> None:
    assert ServerSettings(workers=16).stream_bounds({}) == (12, 30.0)
    assert ServerSettings(workers=3).stream_bounds({}) == (1, 30.0)
    env = {MAX_STREAMS_ENV: "5", IDLE_STREAM_ENV: "2.5"}
    assert ServerSettings(workers=16).stream_bounds(env) == (5, 2.5)
    assert ServerSettings(workers=16, max_streams=7, idle_stream_s=1).stream_bounds(env) == (7, 1)


@pytest.mark.integration
def test_the_real_ingest_service_survives_64_idle_pushers(kafka_bootstrap: str, unique_name: str) -> None:
    from support_ingest import astronaut_jpeg, create_frames_topic, ingest_config  # noqa: PLC0415

    from faceflow.ingest.grpc_server import IngestServer  # noqa: PLC0415
    from faceflow.ingest.service import IngestService  # noqa: PLC0415

    topic = create_frames_topic(kafka_bootstrap, unique_name)
    service = IngestService(
        ingest_config(kafka_bootstrap, topic, seq_start="zero", target_fps=0.0, max_reconnect_attempts=0)
    )
    service.start(serve_metrics=False)
    server = IngestServer(service, "127.0.0.1", 0, workers=16)
    port = server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = ingest_pb2_grpc.IngestStub(channel)
    release = threading.Event()
    try:
        futures = [stub.PushFrames.future(idle(release), timeout=120) for _ in range(IDLE_CLIENTS)]
        limit = server.server.streams.max_streams
        refused = settled(futures, IDLE_CLIENTS - limit)
        assert [outcome(f) for f in refused] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * (IDLE_CLIENTS - limit)
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        assert list(stub.ListSources(ingest_pb2.ListSourcesRequest(), timeout=TIMEOUT).sources) == []
        # a real pusher still gets through once an idle one is gone
        release.set()
        for f in futures:
            outcome(f)
        frame = ingest_pb2.PushFramesRequest(stream_id="cam", image=astronaut_jpeg())
        assert stub.PushFrames(iter([frame]), timeout=TIMEOUT).accepted == 1
    finally:
        release.set()
        channel.close()
        assert server.stop(30).wait(20)
        service.stop(5)
