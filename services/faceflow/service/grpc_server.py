"""The gRPC server scaffold every faceflow service runs on (STYLE.md #9).

:class:`GrpcServer` gives each service, in one place:

* a thread pool and message size limits;
* ``grpc.health.v1`` for the whole server (``""``) and each service, NOT_SERVING while draining
  or while the service reports itself not ready (:meth:`GrpcServer.set_serving`);
* server reflection;
* a clear :class:`~faceflow.errors.ServiceStartError` when the address cannot be bound;
* graceful stop: NOT_SERVING first, new calls refused, running ones given the grace period;
* ONE table from exceptions to status codes (:data:`STATUS_CODES`), applied by an interceptor to
  every method of every service: a :class:`~faceflow.errors.RequestError` becomes its precise code
  with its message; any other exception becomes ``INTERNAL`` with a message that names the
  method, never an object repr or a traceback (that goes to the log);
* refusals counted by method and code in the service's metrics;
* the caller's trace context from the ``traceparent`` metadata (:func:`trace_parent_of`).

Services register their servicers as :class:`ServiceBinding` values and raise the request errors of
:mod:`faceflow.errors` (or their own subclasses); they never call ``context.abort`` themselves.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from faceflow.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    RequestError,
    ResourceExhausted,
    ServiceStartError,
    Unauthenticated,
    Unavailable,
)
from faceflow.kafka.headers import TRACEPARENT, TraceParent
from faceflow.service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)

#: Every request error class and the status code it becomes; the first match wins.
STATUS_CODES: tuple[tuple[type[RequestError], grpc.StatusCode], ...] = (
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (Unavailable, grpc.StatusCode.UNAVAILABLE),
    (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
)
#: The largest message a server sends unless told otherwise.
DEFAULT_MAX_SEND_BYTES = 4 * 1024 * 1024


def status_code_for(exc: BaseException) -> grpc.StatusCode:
    """The status code of a refused request (``INTERNAL`` for anything that is not a request error)."""
    for kind, code in STATUS_CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def trace_parent_of(context: Any) -> TraceParent | None:
    """The caller's W3C trace context from the call's ``traceparent`` metadata (None if absent or
    malformed: a bad header from a client never fails its call)."""
    for key, value in context.invocation_metadata() or ():
        if key == TRACEPARENT:
            try:
                return TraceParent.parse(value)
            except ValueError:
                logger.info("ignoring a malformed traceparent from the client: %.80r", value)
    return None


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to serve: its full name, the generated ``add_*Servicer_to_server`` and the
    servicer object."""

    name: str
    add: Callable[[Any, grpc.Server], None]
    servicer: object


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """Where and how a service listens.

    ``workers``: threads serving calls (an open streaming call holds one); ``max_receive_bytes``
    and ``max_send_bytes``: message size limits (gRPC refuses larger ones with
    ``RESOURCE_EXHAUSTED`` before they reach the service).
    """

    host: str = "127.0.0.1"
    port: int = 0
    workers: int = 16
    max_receive_bytes: int = DEFAULT_MAX_SEND_BYTES
    max_send_bytes: int = DEFAULT_MAX_SEND_BYTES

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host: expected an address to listen on, got ''")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port: expected 0..65535 (0 picks a free one), got {self.port!r}")
        if self.workers < 2:
            raise ValueError(f"workers: expected >= 2, got {self.workers}")
        for name in ("max_receive_bytes", "max_send_bytes"):
            if getattr(self, name) < 1024:
                raise ValueError(f"{name}: expected >= 1024, got {getattr(self, name)}")


class _Refusals:
    """Refusal counter by method and code (bounded: methods and codes are fixed sets)."""

    def __init__(self, metrics: ServiceMetrics | None) -> None:
        self._counter = (
            metrics.meter.create_counter(
                "faceflow.grpc.refused",
                description="gRPC calls answered with an error status, by method and code",
            )
            if metrics is not None
            else None
        )

    def count(self, method: str, code: grpc.StatusCode) -> None:
        if self._counter is not None:
            self._counter.add(1, {"method": method, "code": code.name})


def _short_method(full: str) -> str:
    return full.rsplit("/", 1)[-1] if full else "?"


class _ErrorMapping(grpc.ServerInterceptor):  # type: ignore[misc]
    """Applies :data:`STATUS_CODES` to every handler, unary and streaming."""

    def __init__(self, component: str, refusals: _Refusals) -> None:
        self.component = component
        self.refusals = refusals

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = str(details.method)
        wrap_unary = functools.partial(self._unary, method)
        wrap_stream = functools.partial(self._streaming, method)
        if handler.unary_unary:
            return handler._replace(unary_unary=wrap_unary(handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=wrap_unary(handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=wrap_stream(handler.unary_stream))
        if handler.stream_stream:
            return handler._replace(stream_stream=wrap_stream(handler.stream_stream))
        return handler

    def _refuse(self, method: str, context: Any, exc: BaseException) -> None:
        code = context.code()
        if code is not None and code != grpc.StatusCode.OK:
            self.refusals.count(_short_method(method), code)
            return  # the handler aborted on its own (health servicers, gRPC itself)
        code = status_code_for(exc)
        self.refusals.count(_short_method(method), code)
        if code is grpc.StatusCode.INTERNAL:
            logger.exception("%s %s failed", self.component, method)
            message = f"{self.component}: {_short_method(method)} failed with an internal error (see its log)"
        else:
            logger.info("%s %s refused with %s: %s", self.component, method, code.name, exc)
            message = str(exc)
        context.abort(code, message)

    def _unary(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(request: Any, context: Any) -> Any:
            try:
                return behavior(request, context)
            except Exception as exc:
                self._refuse(method, context, exc)
                raise

        return wrapped

    def _streaming(self, method: str, behavior: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        def wrapped(request: Any, context: Any) -> Iterator[Any]:
            try:
                yield from behavior(request, context)
            except Exception as exc:
                self._refuse(method, context, exc)
                raise

        return wrapped


class GrpcServer:
    """A service's gRPC server with health, reflection and the shared error mapping.

    Args:
        component: the service's name in messages and logs (``ingest``, ``aggregator``...).
        settings: address, threads, message limits.
        bindings: the services to serve.
        metrics: where refusals are counted (optional).
    """

    def __init__(
        self,
        component: str,
        settings: ServerSettings,
        bindings: Sequence[ServiceBinding],
        *,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.component = component
        self.settings = settings
        self.bindings = tuple(bindings)
        self.port = settings.port
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix=f"{component}-grpc"),
            interceptors=[_ErrorMapping(component, _Refusals(metrics))],
            options=[
                ("grpc.max_receive_message_length", settings.max_receive_bytes),
                ("grpc.max_send_message_length", settings.max_send_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        for binding in self.bindings:
            binding.add(binding.servicer, self._server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = [b.name for b in self.bindings]
        reflection.enable_server_reflection(
            (*names, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )
        self._lock = threading.Lock()
        self._draining = False

    @property
    def service_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bindings)

    def start(self, *, serving: bool = True) -> int:
        """Listen and serve; return the bound port.

        Raises:
            ServiceStartError: the address cannot be bound (port taken, bad host).
        """
        address = f"{self.settings.host}:{self.settings.port}"
        try:
            bound = self._server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ServiceStartError(
                f"{self.component}: cannot listen for gRPC on {address}: {exc} (port taken?)"
            ) from exc
        if not bound:
            raise ServiceStartError(f"{self.component}: cannot listen for gRPC on {address} (port taken?)")
        self.port = int(bound)
        self._server.start()
        self.set_serving(serving)
        logger.info(
            "%s: gRPC %s on %s:%d (health, reflection)",
            self.component,
            ", ".join(self.service_names),
            self.settings.host,
            self.port,
        )
        return self.port

    def set_serving(self, serving: bool) -> None:
        """Report SERVING or NOT_SERVING for the server and each service (readiness).

        Ignored once draining: a stopping server stays NOT_SERVING.
        """
        with self._lock:
            if self._draining:
                return
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if serving
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in ("", *self.service_names):
                self.health.set(name, status)

    def stop(self, grace_s: float) -> threading.Event:
        """Report NOT_SERVING, refuse new calls, give running ones ``grace_s``; the event is set when done."""
        with self._lock:
            self._draining = True
        self.health.enter_graceful_shutdown()
        logger.info("%s: gRPC draining (grace %.1f s)", self.component, grace_s)
        event: threading.Event = self._server.stop(grace_s)
        return event
