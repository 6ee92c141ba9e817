"""OpenTelemetry tracing for every service: one trace per frame, across processes.

The W3C ``traceparent`` travels in Kafka headers (and gRPC metadata); each hop starts a span whose
parent is the incoming context, and writes its own span's context into the headers it produces:
ingest -> Kafka -> analyzer (with a child span for the Triton call) -> Kafka -> aggregator -> Kafka
-> subscriber delivery.

Exporters are configured the standard way (``OTEL_TRACES_EXPORTER``: ``otlp``, ``console`` or
``none``; the OTLP endpoint from ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT``, batching from ``OTEL_BSP_*``...), plus
``FACEFLOW_TRACE_FILE=PATH``: one JSON object per finished span, appended to a local file (the
local runs' exporter). Without either, spans are created (contexts still propagate) but not
exported.

``otlp`` is OTLP over HTTP (protobuf), to a collector's HTTP port (4318), never its gRPC port:
``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` is refused at start-up rather than failing every export.
Spans are batched; :func:`shutdown_tracing` (every service calls it on its way out, SIGTERM
included) exports what is still queued, so the last frames' spans are not lost.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from faceflow.errors import ConfigError
from faceflow.kafka.headers import TRACEPARENT, HeaderList, TraceParent

logger = logging.getLogger(__name__)

TRACE_FILE_ENV = "FACEFLOW_TRACE_FILE"
#: Where ``otlp`` sends spans when no endpoint is configured (the OTLP/HTTP default).
DEFAULT_OTLP_ENDPOINT = "http://localhost:4318"
#: The one OTLP protocol the installed exporter speaks.
OTLP_PROTOCOL = "http/protobuf"
#: How long shutdown waits for the queued spans to be exported.
FLUSH_TIMEOUT_MS = 5000


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one JSON line (trace id, span id, parent, name, times, attrs)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Opened once (export runs for every span); append mode, flushed per export, so the
        # services of one run can share a file.
        self._file = self.path.open("a")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            ctx = span.get_span_context()
            parent = span.parent
            if ctx is None:
                continue
            lines.append(
                json.dumps(
                    {
                        "trace_id": f"{ctx.trace_id:032x}",
                        "span_id": f"{ctx.span_id:016x}",
                        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
                        "name": span.name,
                        "kind": span.kind.name,
                        "service": span.resource.attributes.get("service.name"),
                        "start_ns": span.start_time,
                        "end_ns": span.end_time,
                        "attributes": {k: _plain(v) for k, v in (span.attributes or {}).items()},
                        "status": span.status.status_code.name,
                    },
                    separators=(",", ":"),
                )
            )
        with self._lock:
            if self._file.closed:
                return SpanExportResult.FAILURE
            self._file.write("".join(line + "\n" for line in lines))
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else str(value)


_configured: TracerProvider | None = None


def setup_tracing(service: str, env: Mapping[str, str] | None = None) -> TracerProvider:
    """Install the process's tracer provider for ``service`` (once; later calls return it).

    Raises:
        ConfigError: ``OTEL_TRACES_EXPORTER=otlp`` without the OTLP exporter package installed or
            with an OTLP protocol other than http/protobuf, or an unknown exporter name.
    """
    global _configured  # noqa: PLW0603 - one provider per process, as OpenTelemetry expects
    if _configured is not None:
        return _configured
    env = os.environ if env is None else env
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporters = [e.strip() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()]
    shown = []  # for the log line: where the spans go
    for name in exporters:
        if name == "none":
            continue
        if name == "console":
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
            shown.append(name)
        elif name == "otlp":
            endpoint = otlp_traces_endpoint(env)
            provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(endpoint)))
            shown.append(f"otlp {endpoint}")
        else:
            raise ConfigError(f"OTEL_TRACES_EXPORTER: expected otlp, console or none, got {name!r}")
    trace_file = env.get(TRACE_FILE_ENV)
    if trace_file:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(Path(trace_file))))
    trace.set_tracer_provider(provider)
    _configured = provider
    logger.info(
        "tracing for %s: exporters %s%s",
        service,
        shown or ["none"],
        f", file {trace_file}" * bool(trace_file),
    )
    return provider


def otlp_traces_endpoint(env: Mapping[str, str]) -> str:
    """The URL ``otlp`` posts spans to, by the OTLP rules: the traces endpoint as given, else the
    base endpoint plus ``/v1/traces``, else ``http://localhost:4318/v1/traces``.

    Raises:
        ConfigError: an OTLP protocol other than http/protobuf (``grpc`` would post HTTP to a gRPC
            port and fail every export, far from the cause).
    """
    for key in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = env.get(key, "").strip()
        if protocol and protocol != OTLP_PROTOCOL:
            raise ConfigError(
                f"{key}: expected {OTLP_PROTOCOL} (faceflow exports OTLP over HTTP; point "
                f"OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port, 4318), got {protocol!r}"
            )
    traces = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or DEFAULT_OTLP_ENDPOINT
    return base.rstrip("/") + "/v1/traces"


def _otlp_exporter(endpoint: str) -> SpanExporter:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )
    except ImportError as exc:
        raise ConfigError(
            "OTEL_TRACES_EXPORTER=otlp: the OTLP exporter is not installed "
            "(pip install opentelemetry-exporter-otlp-proto-http)"
        ) from exc
    # The endpoint is passed, not left to the exporter, so that the one logged is the one used;
    # headers, timeout, compression and certificates still come from the OTEL_EXPORTER_OTLP_* variables.
    return OTLPSpanExporter(endpoint=endpoint)


def shutdown_tracing() -> None:
    """Export every span still queued, then stop the exporters; say so when some could not be."""
    if _configured is None:
        return
    if not _configured.force_flush(FLUSH_TIMEOUT_MS):
        logger.warning(
            "tracing: the queued spans were not all exported within %d ms; the last ones may be lost",
            FLUSH_TIMEOUT_MS,
        )
    _configured.shutdown()


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def parent_context(parent: TraceParent | None) -> Any:
    """An OpenTelemetry context whose current span is the remote ``parent`` (None: a new trace)."""
    if parent is None:
        return None
    ctx = SpanContext(
        trace_id=int(parent.trace_id, 16),
        span_id=int(parent.span_id, 16),
        is_remote=True,
        trace_flags=TraceFlags(int(parent.flags, 16)),
    )
    return trace.set_span_in_context(NonRecordingSpan(ctx))


def traceparent_of_headers(headers: HeaderList | None) -> TraceParent | None:
    """The ``traceparent`` of Kafka headers (None when absent or malformed)."""
    for key, value in headers or ():
        if key == TRACEPARENT:
            try:
                return TraceParent.parse(value)
            except ValueError:
                return None
    return None


def traceparent_of_span(span: trace.Span) -> TraceParent | None:
    """The span's context as a ``traceparent`` (None for a span without one: no tracer provider)."""
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return None
    return TraceParent(
        trace_id=f"{ctx.trace_id:032x}", span_id=f"{ctx.span_id:016x}", flags=f"{int(ctx.trace_flags):02x}"
    )


@contextmanager
def child_span(
    name: str,
    parent: TraceParent | None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, Any] | None = None,
    component: str = "faceflow",
) -> Iterator[trace.Span]:
    """A span under the remote ``parent`` (or a new trace), ended when the block leaves."""
    with tracer(component).start_as_current_span(
        name, context=parent_context(parent), kind=kind, attributes=dict(attributes or {})
    ) as span:
        yield span


def start_span(
    name: str,
    parent: TraceParent | None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    start_ns: int | None = None,
    attributes: Mapping[str, Any] | None = None,
    component: str = "faceflow",
) -> trace.Span:
    """A span the caller ends itself (``span.end(end_ns)``): for work that spans a batch."""
    return tracer(component).start_span(
        name,
        context=parent_context(parent),
        kind=kind,
        start_time=start_ns,
        attributes=dict(attributes or {}),
    )
