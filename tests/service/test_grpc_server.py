"""The shared gRPC scaffold over a real socket: one status-code table, health, reflection, bind errors."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from faceflow import errors
from faceflow.service.grpc_server import (
    GrpcServer,
    ServerSettings,
    ServiceBinding,
    status_code_for,
    trace_parent_of,
)
from faceflow.service.metrics import ServiceMetrics
from faceflow.v1 import aggregator_pb2, aggregator_pb2_grpc

TIMEOUT = 10
SERVICE = aggregator_pb2.DESCRIPTOR.services_by_name["Aggregator"].full_name


class Raising(aggregator_pb2_grpc.AggregatorServicer):
    """GetStream raises whatever ``self.error`` is; Subscribe yields one event, then raises it."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.seen_trace: object = None

    def GetStream(self, request: Any, context: Any) -> aggregator_pb2.GetStreamResponse:  # noqa: N802
        self.seen_trace = trace_parent_of(context)
        if self.error is not None:
            raise self.error
        return aggregator_pb2.GetStreamResponse(stream=aggregator_pb2.StreamInfo(stream_id=request.stream_id))

    def Subscribe(self, request: Any, context: Any) -> Iterator[aggregator_pb2.SubscribeResponse]:  # noqa: N802
        yield aggregator_pb2.SubscribeResponse(offset=1)
        if self.error is not None:
            raise self.error


@pytest.fixture
def served() -> Iterator[tuple[Raising, grpc.Channel, GrpcServer, ServiceMetrics]]:
    servicer = Raising()
    metrics = ServiceMetrics("faceflow-test")
    server = GrpcServer(
        "test",
        ServerSettings(port=0, workers=4),
        [ServiceBinding(SERVICE, aggregator_pb2_grpc.add_AggregatorServicer_to_server, servicer)],
        metrics=metrics,
    )
    port = server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield servicer, channel, server, metrics
    channel.close()
    server.stop(0).wait(5)
    metrics.shutdown()


CASES = [
    (errors.InvalidArgument("stream id: expected X, got Y"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound("no stream 'x'"), grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists("taken"), grpc.StatusCode.ALREADY_EXISTS),
    (errors.ResourceExhausted("too big"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.FailedPrecondition("not yet"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.PermissionDenied("no"), grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated("who?"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.Unavailable("broker down"), grpc.StatusCode.UNAVAILABLE),
    (errors.DeadlineExceeded("late"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.ConfigError("some config"), grpc.StatusCode.INTERNAL),
    (KeyError("object at 0x7f"), grpc.StatusCode.INTERNAL),
]


@pytest.mark.parametrize(("error", "code"), CASES, ids=[type(e).__name__ for e, _ in CASES])
def test_every_request_error_becomes_its_code_over_a_socket(
    served: tuple[Raising, grpc.Channel, GrpcServer, ServiceMetrics], error: Exception, code: grpc.StatusCode
) -> None:
    servicer, channel, _, metrics = served
    servicer.error = error
    stub = aggregator_pb2_grpc.AggregatorStub(channel)
    with pytest.raises(grpc.RpcError) as unary:
        stub.GetStream(aggregator_pb2.GetStreamRequest(stream_id="cam"), timeout=TIMEOUT)
    assert unary.value.code() is code
    details = unary.value.details() or ""
    if code is grpc.StatusCode.INTERNAL:
        assert details == "test: GetStream failed with an internal error (see its log)"
        assert "0x7f" not in details and "Traceback" not in details
    else:
        assert details == str(error)
    stream = stub.Subscribe(aggregator_pb2.SubscribeRequest(), timeout=TIMEOUT)
    assert next(stream).offset == 1
    with pytest.raises(grpc.RpcError) as streamed:
        next(stream)
    assert streamed.value.code() is code
    assert f'code="{code.name}",method="GetStream"' in metrics.render()


def test_status_code_for_prefers_the_request_class_over_the_package_root() -> None:
    class PackageError(errors.FaceflowError):
        pass

    class SourceExists(PackageError, errors.AlreadyExists):  # noqa: N818
        pass

    assert status_code_for(SourceExists("x")) is grpc.StatusCode.ALREADY_EXISTS
    assert status_code_for(ValueError("x")) is grpc.StatusCode.INTERNAL


def test_health_follows_readiness_and_drains_on_stop(
    served: tuple[Raising, grpc.Channel, GrpcServer, ServiceMetrics],
) -> None:
    _, channel, server, _ = served
    health = health_pb2_grpc.HealthStub(channel)

    def status(name: str) -> int:
        return health.Check(health_pb2.HealthCheckRequest(service=name), timeout=TIMEOUT).status

    assert status("") == status(SERVICE) == health_pb2.HealthCheckResponse.SERVING
    server.set_serving(False)
    assert status("") == status(SERVICE) == health_pb2.HealthCheckResponse.NOT_SERVING
    server.set_serving(True)
    assert status(SERVICE) == health_pb2.HealthCheckResponse.SERVING


def test_trace_context_comes_from_metadata(
    served: tuple[Raising, grpc.Channel, GrpcServer, ServiceMetrics],
) -> None:
    servicer, channel, _, _ = served
    stub = aggregator_pb2_grpc.AggregatorStub(channel)
    header = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    stub.GetStream(aggregator_pb2.GetStreamRequest(), timeout=TIMEOUT, metadata=[("traceparent", header)])
    assert servicer.seen_trace is not None and servicer.seen_trace.header() == header  # type: ignore[attr-defined]
    stub.GetStream(aggregator_pb2.GetStreamRequest(), timeout=TIMEOUT, metadata=[("traceparent", "garbage")])
    assert servicer.seen_trace is None


def test_a_taken_port_is_one_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = GrpcServer("test", ServerSettings(port=port), [])
        with pytest.raises(
            errors.ServiceStartError, match=f"test: cannot listen for gRPC on 127.0.0.1:{port}"
        ):
            server.start()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 70000}, "port: expected 0..65535"),
        ({"host": ""}, "host: expected an address"),
        ({"workers": 1}, "workers: expected >= 2"),
        ({"max_receive_bytes": 10}, "max_receive_bytes: expected >= 1024"),
    ],
)
def test_server_settings_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerSettings(**kwargs)
