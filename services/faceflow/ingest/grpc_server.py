"""The gRPC adapter of ingest: ``faceflow.v1.Ingest``, ``grpc.health.v1`` and server reflection.

Status codes (STYLE.md #9), one meaning each:

==================== =========================================================================
INVALID_ARGUMENT     a stream id that breaks the naming rule; a bad ``SourceSpec`` (fps < 0,
                     JPEG quality > 100, unsupported URL scheme, no spec)
NOT_FOUND            ``StopSource`` of an unknown stream id; ``StartSource`` of a local path
                     that does not exist
ALREADY_EXISTS       ``StartSource`` of a stream id whose source is still running; pushing to it
RESOURCE_EXHAUSTED   a pushed image over the frames topic's payload limit (and, from gRPC itself,
                     a message over the server's receive limit)
UNAVAILABLE          the broker cannot be reached, or the service is shutting down
==================== =========================================================================

A frame that is not a picture is *not* a call error: ``PushFrames`` lists it in the reply's
rejections and goes on (see :mod:`faceflow.ingest.push`).
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from faceflow.ingest.config import SourceConfig
from faceflow.ingest.errors import IngestConfigError, IngestError, InvalidStreamId, SourceNotFound
from faceflow.ingest.push import BrokerUnavailable, PushTooLarge, StreamBusy
from faceflow.ingest.runner import SourceSnapshot, SourceState
from faceflow.ingest.service import IngestService, ServiceStopping, SourceExists, UnknownSource
from faceflow.kafka.headers import TRACEPARENT, TraceParent
from faceflow.topics import FRAMES_MAX_MESSAGE_BYTES
from faceflow.v1 import ingest_pb2, ingest_pb2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME: str = ingest_pb2.DESCRIPTOR.services_by_name["Ingest"].full_name
#: The largest request the server reads: a frame at the topic's limit plus its envelope.
MAX_RECEIVE_BYTES = FRAMES_MAX_MESSAGE_BYTES

_CODES: tuple[tuple[type[IngestError], grpc.StatusCode], ...] = (
    (InvalidStreamId, grpc.StatusCode.INVALID_ARGUMENT),
    (IngestConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownSource, grpc.StatusCode.NOT_FOUND),
    (SourceNotFound, grpc.StatusCode.NOT_FOUND),
    (SourceExists, grpc.StatusCode.ALREADY_EXISTS),
    (StreamBusy, grpc.StatusCode.ALREADY_EXISTS),
    (PushTooLarge, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (BrokerUnavailable, grpc.StatusCode.UNAVAILABLE),
    (ServiceStopping, grpc.StatusCode.UNAVAILABLE),
)

_STATES = {
    SourceState.STARTING: ingest_pb2.SOURCE_STATE_STARTING,
    SourceState.RUNNING: ingest_pb2.SOURCE_STATE_RUNNING,
    SourceState.RECONNECTING: ingest_pb2.SOURCE_STATE_RECONNECTING,
    SourceState.ENDED: ingest_pb2.SOURCE_STATE_ENDED,
    SourceState.FAILED: ingest_pb2.SOURCE_STATE_FAILED,
    SourceState.STOPPED: ingest_pb2.SOURCE_STATE_STOPPED,
}


def status_code_for(exc: IngestError) -> grpc.StatusCode:
    """The status code of a refused request (``INTERNAL`` for an error without a mapping)."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def to_status(snapshot: SourceSnapshot) -> ingest_pb2.SourceStatus:
    """The proto ``SourceStatus`` of a source snapshot (URL passwords redacted)."""
    return ingest_pb2.SourceStatus(
        spec=snapshot.spec.to_proto(),
        state=_STATES[snapshot.state],
        frames_decoded=snapshot.frames_decoded,
        frames_produced=snapshot.frames_produced,
        frames_dropped=snapshot.frames_dropped,
        next_seq=snapshot.next_seq,
        reconnects=snapshot.reconnects,
        last_error=snapshot.last_error,
    )


def _trace_of(context: Any) -> TraceParent | None:
    for key, value in context.invocation_metadata() or ():
        if key == TRACEPARENT:
            try:
                return TraceParent.parse(value)
            except ValueError:
                logger.info("ignoring a malformed traceparent from the client: %r", value)
    return None


class IngestServicer(ingest_pb2_grpc.IngestServicer):
    """``faceflow.v1.Ingest`` over an :class:`IngestService`."""

    def __init__(self, service: IngestService) -> None:
        self.service = service

    def _refuse(self, context: Any, method: str, exc: IngestError) -> None:
        code = status_code_for(exc)
        logger.info("%s refused with %s: %s", method, code.name, exc)
        context.abort(code, str(exc))

    def PushFrames(self, request_iterator: Any, context: Any) -> ingest_pb2.PushFramesResponse:  # noqa: N802
        try:
            return self.service.push(request_iterator, trace=_trace_of(context))
        except IngestError as exc:
            self._refuse(context, "PushFrames", exc)
            raise  # not reached: abort raises

    def StartSource(  # noqa: N802
        self, request: ingest_pb2.StartSourceRequest, context: Any
    ) -> ingest_pb2.StartSourceResponse:
        try:
            if not request.HasField("spec"):
                raise IngestConfigError("spec: expected a SourceSpec, got none")
            spec = SourceConfig.from_proto(request.spec, self.service.config)
            snapshot = self.service.start_source(spec)
        except IngestError as exc:
            self._refuse(context, "StartSource", exc)
            raise
        return ingest_pb2.StartSourceResponse(status=to_status(snapshot))

    def StopSource(  # noqa: N802
        self, request: ingest_pb2.StopSourceRequest, context: Any
    ) -> ingest_pb2.StopSourceResponse:
        try:
            snapshot = self.service.stop_source(request.stream_id)
        except IngestError as exc:
            self._refuse(context, "StopSource", exc)
            raise
        return ingest_pb2.StopSourceResponse(status=to_status(snapshot))

    def ListSources(  # noqa: N802
        self, request: ingest_pb2.ListSourcesRequest, context: Any
    ) -> ingest_pb2.ListSourcesResponse:
        return ingest_pb2.ListSourcesResponse(sources=[to_status(s) for s in self.service.list_sources()])


class IngestServer:
    """The gRPC server of one :class:`IngestService`, with health and reflection.

    Args:
        service: what the RPCs call.
        host, port: where to listen; port 0 picks a free one (see :attr:`port` after :meth:`start`).
        workers: threads serving RPCs (each open ``PushFrames`` call holds one).
    """

    def __init__(self, service: IngestService, host: str, port: int, *, workers: int = 16) -> None:
        self.service = service
        self.host = host
        self.port = port
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest-grpc"),
            options=[
                ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
                ("grpc.max_send_message_length", 4 * 1024 * 1024),
            ],
        )
        ingest_pb2_grpc.add_IngestServicer_to_server(IngestServicer(service), self._server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )

    def start(self) -> int:
        """Listen and serve; return the bound port.

        Raises:
            IngestError: the address cannot be bound (port taken).
        """
        address = f"{self.host}:{self.port}"
        try:
            bound = self._server.add_insecure_port(address)
        except RuntimeError as exc:
            raise IngestError(f"cannot listen for gRPC on {address}: {exc} (port taken?)") from exc
        if not bound:
            raise IngestError(f"cannot listen for gRPC on {address} (port taken?)")
        self.port = int(bound)
        self._server.start()
        for name in ("", SERVICE_NAME):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        logger.info("gRPC %s on %s:%d (health, reflection)", SERVICE_NAME, self.host, bound)
        return self.port

    def stop(self, grace_s: float) -> threading.Event:
        """Report NOT_SERVING, refuse new RPCs, give running ones ``grace_s``; returns when done."""
        self.health.enter_graceful_shutdown()
        event: threading.Event = self._server.stop(grace_s)
        return event
