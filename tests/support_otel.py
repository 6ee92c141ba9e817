"""A real OpenTelemetry Collector for the trace tests (importable: tests/ is on pytest's pythonpath).

The collector is tools/otelcol: the OTLP receiver and the debug exporter, built by ``make tools``
(tools/otelcol/build.sh) into .cache/bin/otelcol-faceflow. A test starts it on a free port with a
config file of its own; the debug exporter (``verbosity: detailed``, ``use_internal_logger:
false``) prints every span it receives to the collector's stdout, which :func:`parse_spans` reads
back from the collector's log (run as :class:`~faceflow.run.orchestrate.ServiceProcess` runs a
mesh service: stdout and stderr in one file, SIGTERM then SIGKILL to stop). Tests never build it:
a build needs the Go module proxy, and tests use no network.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from faceflow.run.orchestrate import ServiceProcess
from faceflow.runtime.procs import free_port

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "tools" / "otelcol"
BINARY = REPO / ".cache" / "bin" / "otelcol-faceflow"
BUILD_HINT = "build it with `make tools` (or tools/otelcol/build.sh)"
READY_LINE = "Everything is ready"

_ATTRIBUTE = re.compile(r"^\s*-> (?P<key>[^:]+): (?P<type>\w+)\((?P<value>.*)\)$")
_FIELD = re.compile(r"^\s{4}(?P<key>[A-Za-z][A-Za-z ]*?)\s*: ?(?P<value>.*)$")


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector received it (ids in lowercase hex, attributes as printed)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: str
    service: str | None
    attributes: dict[str, str] = field(default_factory=dict)


def collector_binary() -> Path:
    """The built collector; fails the test, naming the fix, when it is missing or older than its source."""
    if not BINARY.exists():
        pytest.fail(f"the test collector {BINARY} is missing: {BUILD_HINT}")
    built = BINARY.stat().st_mtime
    stale = [
        p.name
        for p in (SOURCE / "go.mod", SOURCE / "go.sum", SOURCE / "main.go")
        if p.stat().st_mtime > built
    ]
    if stale:
        pytest.fail(
            f"the test collector {BINARY} is older than tools/otelcol/{', '.join(stale)}: {BUILD_HINT}"
        )
    return BINARY


def collector_config(port: int) -> dict[str, object]:
    """OTLP/HTTP on 127.0.0.1:``port`` -> the debug exporter on stdout; no internal metrics port."""
    return {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{port}"}}}},
        "exporters": {"debug": {"verbosity": "detailed", "use_internal_logger": False}},
        "service": {
            "telemetry": {"metrics": {"level": "none"}},
            "pipelines": {"traces": {"receivers": ["otlp"], "exporters": ["debug"]}},
        },
    }


class OtelCollector:
    """A running collector: its OTLP/HTTP endpoint, and the spans it has printed so far."""

    def __init__(self, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = workdir / "otelcol.yaml"
        self.config.write_text(json.dumps(collector_config(self.port), indent=1) + "\n")  # JSON is YAML
        # one log of stdout (the debug exporter's spans) and stderr (its own log lines, which
        # parse_spans passes over): a mesh service's process, started and stopped the same way
        self.process = ServiceProcess(
            "otelcol",
            [str(collector_binary()), "--config", str(self.config)],
            workdir / "otelcol.log",
            dict(os.environ),
        )

    @property
    def endpoint(self) -> str:
        """The base URL for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter adds ``/v1/traces``)."""
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        self.process.wait_for(re.escape(READY_LINE), timeout_s)

    def spans(self) -> list[ReceivedSpan]:
        return parse_spans(self.process.text())

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then wait: the debug exporter has printed every span it acknowledged."""
        return self.process.stop(timeout_s)


@contextmanager
def running_collector(workdir: Path) -> Iterator[OtelCollector]:
    """A collector on a free port, ready to receive, stopped when the block leaves."""
    collector = OtelCollector(workdir)
    try:
        collector.wait_ready()
        yield collector
    finally:
        collector.stop()


def parse_spans(text: str) -> list[ReceivedSpan]:
    """The spans in the debug exporter's detailed output.

    The output is blocks of ``ResourceSpans #i`` (with ``Resource attributes:``), ``ScopeSpans #j``
    and ``Span #k`` (fields indented four spaces, then ``Attributes:``, ``Events:``, ``Links:``).

    Raises:
        ValueError: a span block without its trace id, id or name (the format is not the one
            this parser knows: the collector's version changed).
    """
    spans: list[ReceivedSpan] = []
    resource: dict[str, str] = {}
    current: dict[str, str] | None = None
    attributes: dict[str, str] = {}
    section = ""  # which "-> key: value" lines follow: resource, span or other

    def finish() -> None:
        if current is None:
            return
        missing = [k for k in ("Trace ID", "ID", "Name") if not current.get(k)]
        if missing:
            raise ValueError(f"expected a span with {', '.join(missing)}, got {current}")
        spans.append(
            ReceivedSpan(
                trace_id=current["Trace ID"],
                span_id=current["ID"],
                parent_span_id=current.get("Parent ID") or None,
                name=current["Name"],
                kind=current.get("Kind", ""),
                service=resource.get("service.name"),
                attributes=dict(attributes),
            )
        )

    for line in text.splitlines():
        if line.startswith("ResourceSpans #"):
            finish()
            current, resource, section = None, {}, ""
        elif line.startswith("Resource attributes:"):
            section = "resource"
        elif line.startswith("ScopeSpans #"):
            finish()
            current, section = None, ""
        elif line.startswith("Span #"):
            finish()
            current, attributes, section = {}, {}, "span"
        elif line.startswith("Attributes:"):
            section = "span" if current is not None else ""
        elif line.startswith(("Events:", "Links:", "SpanEvent #", "SpanLink #")):
            section = ""
        elif (match := _ATTRIBUTE.match(line)) is not None:
            if section == "resource":
                resource[match["key"]] = match["value"]
            elif section == "span":
                attributes[match["key"]] = match["value"]
        elif current is not None and section == "span" and (match := _FIELD.match(line)) is not None:
            current[match["key"]] = match["value"].strip()
    finish()
    return spans
