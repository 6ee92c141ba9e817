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
* refusals counted by method, code and reason in the service's metrics;
* the caller's trace context from the ``traceparent`` metadata (:func:`trace_parent_of`);
* a request that does not parse (a string field that is not UTF-8, truncated bytes) answered
  ``INVALID_ARGUMENT`` naming its message type, instead of gRPC's own ``INTERNAL``;
* bounded streams (:class:`StreamGuard`): at most ``max_streams`` streaming calls at once, so
  ``workers - max_streams`` threads always remain for unary calls and health checks; the
  ``max_streams + 1``-th stream gets ``RESOURCE_EXHAUSTED``; a client stream that sends nothing
  for ``idle_stream_s`` is closed with ``DEADLINE_EXCEEDED``; on stop, every stream waiting for its
  client is closed at once with ``UNAVAILABLE`` (idle streams never hold the grace period);
* transport security and authentication (:class:`TransportSecurity`, see
  :mod:`faceflow.service.security`): with scoped tokens, every method of every service served
  must have a scope, or the server does not start; a servicer learns who called with
  :func:`faceflow.service.security.caller_subject`.

What a client sees on shutdown (SIGTERM) is in docs/grpc.md.

Services register their servicers as :class:`ServiceBinding` values and raise the request errors of
:mod:`faceflow.errors` (or their own subclasses); they never call ``context.abort`` themselves.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Final, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from faceflow.errors import (
    AlreadyExists,
    ConfigError,
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
from faceflow.service.security import server_security_from_env

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
#: Threads kept free of streaming calls, for unary calls and health checks.
RESERVED_WORKERS: Final[int] = 4
#: A client stream that sends nothing for this long (seconds) is closed (DEADLINE_EXCEEDED).
DEFAULT_IDLE_STREAM_S: Final[float] = 30.0
#: Mesh-wide variables that set the stream bounds of every service (ServerSettings fields win).
MAX_STREAMS_ENV: Final[str] = "FACEFLOW_GRPC_MAX_STREAMS"
IDLE_STREAM_ENV: Final[str] = "FACEFLOW_GRPC_IDLE_STREAM_S"
#: Reason label of a request that did not parse.
MALFORMED: Final[str] = "Malformed"


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
    ``RESOURCE_EXHAUSTED`` before they reach the service); ``max_streams``: streaming calls served
    at once (None: :data:`MAX_STREAMS_ENV` or ``workers -`` :data:`RESERVED_WORKERS`; at most
    ``workers - 1``); ``idle_stream_s``: how long a client stream may send nothing (None:
    :data:`IDLE_STREAM_ENV` or :data:`DEFAULT_IDLE_STREAM_S`).
    """

    host: str = "127.0.0.1"
    port: int = 0
    workers: int = 16
    max_receive_bytes: int = DEFAULT_MAX_SEND_BYTES
    max_send_bytes: int = DEFAULT_MAX_SEND_BYTES
    max_streams: int | None = None
    idle_stream_s: float | None = None

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
        if self.max_streams is not None and not 1 <= self.max_streams < self.workers:
            raise ValueError(
                f"max_streams: expected 1..{self.workers - 1} (below workers={self.workers}, so unary "
                f"calls and health checks keep a thread), got {self.max_streams}"
            )
        if self.idle_stream_s is not None and not self.idle_stream_s > 0:
            raise ValueError(f"idle_stream_s: expected > 0 seconds, got {self.idle_stream_s}")

    def stream_bounds(self, env: Mapping[str, str] | None = None) -> tuple[int, float]:
        """(max_streams, idle_stream_s) after the mesh-wide variables and the defaults.

        Raises:
            ConfigError: a variable that is not a number in range.
        """
        env = os.environ if env is None else env
        max_streams = self.max_streams
        if max_streams is None:
            raw = env.get(MAX_STREAMS_ENV, "").strip()
            if raw:
                try:
                    max_streams = int(raw)
                except ValueError:
                    raise ConfigError(f"{MAX_STREAMS_ENV}: expected an integer, got {raw!r}") from None
                if not 1 <= max_streams < self.workers:
                    raise ConfigError(
                        f"{MAX_STREAMS_ENV}: expected 1..{self.workers - 1} (below the {self.workers} "
                        f"workers), got {max_streams}"
                    )
            else:
                max_streams = max(1, self.workers - RESERVED_WORKERS)
        idle = self.idle_stream_s
        if idle is None:
            raw = env.get(IDLE_STREAM_ENV, "").strip()
            if raw:
                try:
                    idle = float(raw)
                except ValueError:
                    raise ConfigError(f"{IDLE_STREAM_ENV}: expected seconds, got {raw!r}") from None
                if not idle > 0:
                    raise ConfigError(f"{IDLE_STREAM_ENV}: expected > 0 seconds, got {raw!r}")
            else:
                idle = DEFAULT_IDLE_STREAM_S
        return max_streams, idle


class TransportSecurity(Protocol):
    """How a server listens and whom it serves (implemented by :mod:`faceflow.service.security`)."""

    def interceptors(self, services: Sequence[str]) -> Sequence[grpc.ServerInterceptor]:
        """Interceptors placed inside the error mapping (they refuse by raising request errors),
        for a server of ``services`` (full names, health and reflection included).

        Raises:
            ServiceStartError: a method of ``services`` cannot be authorized (no scope).
        """
        ...

    def bind(self, server: grpc.Server, address: str) -> int:
        """Add the listening port (plaintext or TLS); return the port, 0 when it cannot be bound."""
        ...

    def describe(self) -> str:
        """One line for the start-up log, no secrets."""
        ...


class _Refusals:
    """Refusal counter by method, code and reason (bounded: methods, codes and the request error
    classes are fixed sets in the code, never client input)."""

    def __init__(self, metrics: ServiceMetrics | None) -> None:
        self._counter = (
            metrics.meter.create_counter(
                "faceflow.grpc.refused",
                description="gRPC calls answered with an error status, by method, code and reason",
            )
            if metrics is not None
            else None
        )

    def count(self, method: str, code: grpc.StatusCode, reason: str) -> None:
        if self._counter is not None:
            self._counter.add(1, {"method": method, "code": code.name, "reason": reason})


def _short_method(full: str) -> str:
    return full.rsplit("/", 1)[-1] if full else "?"


def reason_of(exc: BaseException) -> str:
    """The bounded reason label of a refusal: the request error's class name, else ``Internal``."""
    if isinstance(exc, _MalformedRequest):
        return MALFORMED
    return type(exc).__name__ if isinstance(exc, RequestError) else "Internal"


@dataclass(frozen=True)
class _Malformed:
    """What a request deserializer returns for bytes that do not parse (the handler refuses it)."""

    message_type: str
    size: int


class _MalformedRequest(InvalidArgument):
    def __init__(self, bad: _Malformed) -> None:
        super().__init__(
            f"the request is not a valid {bad.message_type} message ({bad.size} bytes): a string field "
            "holds bytes that are not UTF-8, or the message is truncated or not protobuf"
        )


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """``deserializer`` that returns :class:`_Malformed` instead of raising."""
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    message_type = str(getattr(descriptor, "full_name", "protobuf"))

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # noqa: BLE001 - any parse failure is this request's INVALID_ARGUMENT
            return _Malformed(message_type, len(data))

    return parse


def _checked(request: Any) -> Any:
    if isinstance(request, _Malformed):
        raise _MalformedRequest(request)
    return request


class _Stream:
    """One streaming call in flight."""

    __slots__ = ("closed", "context", "method", "waiting_since")

    def __init__(self, method: str, context: Any) -> None:
        self.method = method
        self.context = context
        #: When it began waiting for its client's next message (monotonic); None while working.
        self.waiting_since: float | None = None
        #: Why the scaffold closed it (raised from the handler's request iterator).
        self.closed: RequestError | None = None


def _close_call(context: Any, code: grpc.StatusCode, message: str) -> None:
    """End a call from another thread, the client seeing ``code`` and ``message``.

    gRPC's public ``context.cancel()`` sends CANCELLED with no message; the core call's
    ``cancel(code, details)`` sends the status we give (tests/service/test_grpc_streams.py pins it).
    """
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    if call is not None:
        try:
            call.cancel(code.value[0], message)
            return
        except Exception:
            logger.debug("cancel with status failed; cancelling plainly", exc_info=True)
    context.cancel()


class StreamGuard:
    """Bounds the streaming calls of one server: how many, how idle, and what happens on stop.

    Args:
        component: the service's name in messages.
        max_streams: streaming calls served at once; more get ``RESOURCE_EXHAUSTED``.
        idle_s: a client stream whose next message has not come for this long is closed with
            ``DEADLINE_EXCEEDED`` (server streams are not idle: the server is the one sending).
        clock: monotonic seconds (tests).
    """

    def __init__(
        self, component: str, max_streams: int, idle_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.component = component
        self.max_streams = max_streams
        self.idle_s = idle_s
        self._clock = clock
        self._lock = threading.Lock()
        self._streams: set[_Stream] = set()
        self._draining = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._streams)

    def enter(self, method: str, context: Any) -> _Stream:
        """Admit a streaming call.

        Raises:
            ResourceExhausted: ``max_streams`` calls are open.
            Unavailable: the server is stopping.
        """
        with self._lock:
            if self._draining:
                raise Unavailable(f"{self.component} is shutting down; retry on another replica")
            if len(self._streams) >= self.max_streams:
                raise ResourceExhausted(
                    f"{self.component}: {len(self._streams)} streams are open, the limit "
                    f"({MAX_STREAMS_ENV}={self.max_streams}); retry later or close idle streams"
                )
            stream = _Stream(_short_method(method), context)
            self._streams.add(stream)
            return stream

    def leave(self, stream: _Stream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def requests(self, stream: _Stream, iterator: Iterator[Any]) -> Iterator[Any]:
        """The call's request iterator, watched: idle time measured, malformed messages refused,
        and a stream closed by the scaffold raising its reason in the handler."""
        while True:
            with self._lock:
                if self._draining and stream.closed is None:
                    stream.closed = Unavailable(
                        f"{self.component} is shutting down; retry on another replica"
                    )
                if stream.closed is not None:
                    raise stream.closed
                stream.waiting_since = self._clock()
            try:
                request = next(iterator)
            except (StopIteration, grpc.RpcError):
                if stream.closed is not None:
                    raise stream.closed from None
                return
            finally:
                stream.waiting_since = None
            if stream.closed is not None:
                raise stream.closed
            yield _checked(request)

    def _close(self, stream: _Stream, error: RequestError, code: grpc.StatusCode) -> None:
        if stream.closed is None:
            stream.closed = error
            logger.info("%s: closing %s stream: %s", self.component, stream.method, error)
            _close_call(stream.context, code, str(error))

    def sweep(self) -> int:
        """Close every client stream idle for ``idle_s`` or more; return how many."""
        now = self._clock()
        with self._lock:
            idle = [
                s
                for s in self._streams
                if s.closed is None and s.waiting_since is not None and now - s.waiting_since >= self.idle_s
            ]
        for stream in idle:
            self._close(
                stream,
                DeadlineExceeded(
                    f"{self.component}: {stream.method} sent nothing for {self.idle_s:g} s "
                    f"({IDLE_STREAM_ENV}); the stream is closed, open a new one to go on"
                ),
                grpc.StatusCode.DEADLINE_EXCEEDED,
            )
        return len(idle)

    def drain(self) -> int:
        """Refuse new streams; close every stream waiting for its client now (UNAVAILABLE), and
        any other the moment it asks for its next message. Return how many were closed now."""
        with self._lock:
            self._draining = True
            waiting = [s for s in self._streams if s.closed is None and s.waiting_since is not None]
        for stream in waiting:
            self._close(
                stream,
                Unavailable(f"{self.component} is shutting down; retry on another replica"),
                grpc.StatusCode.UNAVAILABLE,
            )
        return len(waiting)

    def start(self) -> None:
        """Sweep idle streams in the background (a few times per ``idle_s``)."""
        if self._thread is not None:
            return
        period = min(1.0, self.idle_s / 4)

        def run() -> None:
            while not self._stop.wait(period):
                try:
                    self.sweep()
                except Exception:
                    logger.exception("%s: idle stream sweep failed", self.component)

        self._thread = threading.Thread(target=run, name=f"{self.component}-stream-guard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()


class _ErrorMapping(grpc.ServerInterceptor):  # type: ignore[misc]
    """Applies :data:`STATUS_CODES` to every handler, unary and streaming, refuses requests that do
    not parse, and puts streaming calls under the :class:`StreamGuard`."""

    def __init__(self, component: str, refusals: _Refusals, guard: StreamGuard) -> None:
        self.component = component
        self.refusals = refusals
        self.guard = guard

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = str(details.method)
        tolerant = _tolerant(handler.request_deserializer)
        if handler.unary_unary:
            return handler._replace(
                unary_unary=self._unary(method, handler.unary_unary), request_deserializer=tolerant
            )
        if handler.stream_unary:
            return handler._replace(
                stream_unary=self._client_stream(method, handler.stream_unary), request_deserializer=tolerant
            )
        if handler.unary_stream:
            return handler._replace(
                unary_stream=self._responses(method, handler.unary_stream, client_streams=False),
                request_deserializer=tolerant,
            )
        if handler.stream_stream:
            return handler._replace(
                stream_stream=self._responses(method, handler.stream_stream, client_streams=True),
                request_deserializer=tolerant,
            )
        return handler

    def _refuse(self, method: str, context: Any, exc: BaseException) -> None:
        code = context.code()
        if code is not None and code != grpc.StatusCode.OK:
            self.refusals.count(_short_method(method), code, "Aborted")
            return  # the handler aborted on its own (health servicers, gRPC itself)
        code = status_code_for(exc)
        self.refusals.count(_short_method(method), code, reason_of(exc))
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
                return behavior(_checked(request), context)
            except Exception as exc:
                self._refuse(method, context, exc)
                raise

        return wrapped

    def _client_stream(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(requests: Iterator[Any], context: Any) -> Any:
            try:
                stream = self.guard.enter(method, context)
                try:
                    return behavior(self.guard.requests(stream, requests), context)
                finally:
                    self.guard.leave(stream)
            except Exception as exc:
                self._refuse(method, context, exc)
                raise

        return wrapped

    def _responses(
        self, method: str, behavior: Callable[..., Iterator[Any]], *, client_streams: bool
    ) -> Callable[..., Iterator[Any]]:
        """A server-streaming (``client_streams`` False) or bidirectional handler, guarded."""

        def wrapped(request: Any, context: Any) -> Iterator[Any]:
            try:
                stream = self.guard.enter(method, context)
                try:
                    given = self.guard.requests(stream, request) if client_streams else _checked(request)
                    yield from behavior(given, context)
                finally:
                    self.guard.leave(stream)
            except Exception as exc:
                self._refuse(method, context, exc)
                raise

        return wrapped


class GrpcServer:
    """A service's gRPC server with health, reflection, the shared error mapping and stream bounds.

    Args:
        component: the service's name in messages and logs (``ingest``, ``aggregator``...).
        settings: address, threads, message limits, stream bounds.
        bindings: the services to serve.
        metrics: where refusals are counted (optional).
        security: TLS and authentication (None: from the mesh-wide ``FACEFLOW_TLS_*``,
            ``FACEFLOW_AUTH_TOKEN_FILE`` and ``FACEFLOW_AUTH_TOKENS_FILE`` variables, plaintext
            without a token when none is set).
        env: where the mesh-wide variables are read (default ``os.environ``).
    """

    def __init__(
        self,
        component: str,
        settings: ServerSettings,
        bindings: Sequence[ServiceBinding],
        *,
        metrics: ServiceMetrics | None = None,
        security: TransportSecurity | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.component = component
        self.settings = settings
        self.bindings = tuple(bindings)
        self.port = settings.port
        self.security: TransportSecurity = (
            security if security is not None else server_security_from_env(os.environ if env is None else env)
        )
        max_streams, idle_s = settings.stream_bounds(env)
        self.streams = StreamGuard(component, max_streams, idle_s)
        names = [b.name for b in self.bindings]
        served = (*names, health.SERVICE_NAME, reflection.SERVICE_NAME)
        checks = self.security.interceptors(served)  # before any thread: it may refuse the start
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix=f"{component}-grpc"),
            interceptors=[_ErrorMapping(component, _Refusals(metrics), self.streams), *checks],
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
        reflection.enable_server_reflection(served, self._server)
        self._lock = threading.Lock()
        self._draining = False
        self._serving = False

    @property
    def service_names(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.bindings)

    @property
    def serving(self) -> bool:
        """True while health reports SERVING (started, ready, not draining): the readiness fact."""
        with self._lock:
            return self._serving

    def start(self, *, serving: bool = True) -> int:
        """Listen and serve; return the bound port.

        Raises:
            ServiceStartError: the address cannot be bound (port taken, bad host).
        """
        address = f"{self.settings.host}:{self.settings.port}"
        try:
            bound = self.security.bind(self._server, address)
        except RuntimeError as exc:
            raise ServiceStartError(
                f"{self.component}: cannot listen for gRPC on {address}: {exc} (port taken?)"
            ) from exc
        if not bound:
            raise ServiceStartError(f"{self.component}: cannot listen for gRPC on {address} (port taken?)")
        self.port = int(bound)
        self._server.start()
        self.streams.start()
        self.set_serving(serving)
        logger.info(
            "%s: gRPC %s on %s:%d (health, reflection; %s; at most %d streams, idle after %g s)",
            self.component,
            ", ".join(self.service_names),
            self.settings.host,
            self.port,
            self.security.describe(),
            self.streams.max_streams,
            self.streams.idle_s,
        )
        return self.port

    def set_serving(self, serving: bool) -> None:
        """Report SERVING or NOT_SERVING for the server and each service (readiness).

        Ignored once draining: a stopping server stays NOT_SERVING.
        """
        with self._lock:
            if self._draining:
                return
            self._serving = serving
            status = (
                health_pb2.HealthCheckResponse.SERVING
                if serving
                else health_pb2.HealthCheckResponse.NOT_SERVING
            )
            for name in ("", *self.service_names):
                self.health.set(name, status)

    def stop(self, grace_s: float) -> threading.Event:
        """Stop serving; the event is set when done.

        In order: NOT_SERVING for every service; streams waiting for their client closed with
        UNAVAILABLE (the others as soon as they ask for their next message); new calls refused;
        running calls given ``grace_s``, then cancelled.
        """
        with self._lock:
            self._draining = True
            self._serving = False
        self.health.enter_graceful_shutdown()
        closed = self.streams.drain()
        logger.info(
            "%s: gRPC draining (grace %.1f s; %d idle streams closed)", self.component, grace_s, closed
        )
        event: threading.Event = self._server.stop(grace_s)
        self.streams.stop()
        return event
