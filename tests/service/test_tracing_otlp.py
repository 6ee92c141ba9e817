"""Traces over OTLP into a real OpenTelemetry Collector (tools/otelcol, see tests/support_otel.py).

One process first: ``setup_tracing`` with ``OTEL_TRACES_EXPORTER=otlp`` reaches the collector, and
the spans still queued at shutdown are exported by ``shutdown_tracing``. Then the mesh: ingest,
analyzer and aggregator as real processes on the real broker and Triton, one pushed frame with a
face, and the collector's spans of that frame's trace checked hop by hop. The batch delay is set
far beyond the test's length, so every span the collector gets was flushed at shutdown (SIGTERM).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from kafka import TopicPartition
from support_ingest import astronaut_jpeg
from support_otel import OtelCollector, ReceivedSpan, running_collector

from faceflow import topics
from faceflow.errors import ConfigError
from faceflow.kafka import admin
from faceflow.kafka.clients import make_consumer
from faceflow.kafka.headers import TraceParent
from faceflow.run.orchestrate import FACEFLOW, ServiceProcess
from faceflow.runtime.settings import DevSettings
from faceflow.service.tracing import otlp_traces_endpoint
from faceflow.v1 import face_event_pb2, ingest_pb2, ingest_pb2_grpc

TIMEOUT = 60  # every gRPC call has a deadline (STYLE.md #9)
#: Far longer than any test: a span reaches the collector only through the flush at shutdown.
NO_SCHEDULED_EXPORT_MS = "3600000"
INGEST, ANALYZER, AGGREGATOR = "faceflow-ingest", "faceflow-analyzer", "faceflow-aggregator"


@pytest.mark.parametrize(
    ("env", "expected", "error"),
    [
        ({}, "http://localhost:4318/v1/traces", None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318"}, "http://otel:4318/v1/traces", None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318/"}, "http://otel:4318/v1/traces", None),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b/t",
            },
            "http://b/t",
            None,
        ),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "http://localhost:4318/v1/traces", None),
        (
            {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            None,
            r"OTEL_EXPORTER_OTLP_PROTOCOL: expected http/protobuf",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            None,
            r"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: expected http/protobuf .* got 'http/json'",
        ),
    ],
)
def test_the_otlp_endpoint_follows_the_otlp_variables(
    env: Mapping[str, str], expected: str | None, error: str | None
) -> None:
    if error is not None:
        with pytest.raises(ConfigError, match=error):
            otlp_traces_endpoint(env)
    else:
        assert otlp_traces_endpoint(env) == expected


PROBE = """
from faceflow.kafka.headers import TraceParent
from faceflow.service.tracing import child_span, setup_tracing, shutdown_tracing
setup_tracing("faceflow-probe")
with child_span("probe", TraceParent.parse("{parent}"), attributes={{"faceflow.stream_id": "probe-1"}}):
    pass
shutdown_tracing()
"""


@pytest.mark.integration
def test_a_span_queued_at_shutdown_reaches_the_collector(tmp_path: Path) -> None:
    parent = TraceParent.new()
    with running_collector(tmp_path / "collector") as collector:
        env = otlp_env(collector)
        result = subprocess.run(
            [sys.executable, "-c", PROBE.format(parent=parent.header())],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        collector.stop()
        (span,) = collector.spans()
    assert (span.name, span.service, span.trace_id) == ("probe", "faceflow-probe", parent.trace_id)
    assert span.parent_span_id == parent.span_id
    assert span.attributes["faceflow.stream_id"] == "probe-1"
    assert "were not all exported" not in result.stderr


@pytest.mark.integration
def test_otlp_with_the_grpc_protocol_is_one_clear_line_at_start(
    kafka_bootstrap: str, unique_name: str
) -> None:
    env = dict(os.environ, OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="grpc")
    env.pop("FACEFLOW_TRACE_FILE", None)
    args = [
        "--kafka-bootstrap",
        kafka_bootstrap,
        "--topic",
        unique_name,
        "--grpc-port",
        "0",
        "--metrics-port",
        "0",
    ]
    result = subprocess.run(
        [FACEFLOW, "ingest", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "OTEL_EXPORTER_OTLP_PROTOCOL: expected http/protobuf" in lines[0], (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def otlp_env(collector: OtelCollector) -> dict[str, str]:
    """The environment of a traced process: OTLP to ``collector``, no scheduled export, no trace file."""
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.endpoint,
        OTEL_BSP_SCHEDULE_DELAY=NO_SCHEDULED_EXPORT_MS,
    )
    for key in ("FACEFLOW_TRACE_FILE", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        env.pop(key, None)
    return env


# -- the mesh ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traced:
    """What one pushed frame left: the caller's context, every span the collector got, and when."""

    caller: TraceParent
    stream_id: str
    spans: list[ReceivedSpan]
    #: The spans of the caller's trace that the collector had before any service stopped.
    before_stop: list[ReceivedSpan]
    exit_codes: dict[str, int]

    def of_trace(self) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.trace_id == self.caller.trace_id]

    def named(self, name: str) -> ReceivedSpan:
        found = [s for s in self.of_trace() if s.name == name]
        assert len(found) == 1, f"expected one {name!r} span in the trace, got {found}"
        return found[0]


def mesh_topics() -> dict[str, topics.TopicSpec]:
    prefix = f"test.otlp.{uuid.uuid4().hex[:8]}"
    specs = {
        "frames": topics.FRAMES,
        "analyses": topics.ANALYSES,
        "faces": topics.FACES,
        "state": topics.AGGREGATOR_STATE,
        "identities": topics.IDENTITIES,
        "dlq": topics.FRAMES_DLQ,
    }
    return {kind: spec.renamed(f"{prefix}.{kind}") for kind, spec in specs.items()}


def start_mesh(
    runtime: DevSettings, names: Mapping[str, str], env: dict[str, str], logs: Path
) -> tuple[list[ServiceProcess], str]:
    """Aggregator, analyzer, ingest as real processes (the order ``faceflow run`` uses); ingest's address."""
    common = ["--kafka-bootstrap", runtime.kafka_bootstrap, "--grpc-port", "0", "--metrics-port", "0"]
    group = f"test-otlp-{uuid.uuid4().hex[:8]}"
    started: list[ServiceProcess] = []

    def spawn(name: str, *args: str) -> ServiceProcess:
        argv = [FACEFLOW, "--log-level", "INFO", name, *common, *args]
        started.append(ServiceProcess(name, argv, logs / f"{name}.log", env))
        return started[-1]

    aggregator = spawn(
        "aggregator",
        *("--triton-url", runtime.triton_grpc_url, "--group-id", f"{group}-aggregator"),
        *("--analyses-topic", names["analyses"], "--faces-topic", names["faces"]),
        *("--state-topic", names["state"], "--identities-topic", names["identities"]),
        *("--dlq-topic", names["dlq"]),
    )
    analyzer = spawn(
        "analyzer",
        *("--triton-url", runtime.triton_grpc_url, "--group-id", f"{group}-analyzer"),
        *("--frames-topic", names["frames"], "--analyses-topic", names["analyses"]),
        *("--dlq-topic", names["dlq"]),
    )
    try:
        aggregator.wait_for(r"aggregator: assigned", 180)
        analyzer.wait_for(r"analyzer: assigned", 180)
        ingest = spawn("ingest", "--topic", names["frames"], "--seq-start", "zero")
        address = ingest.wait_for(r"faceflow ingest: .*gRPC ([\d.]+:\d+);", 120).group(1)
    except BaseException:
        for service in reversed(started):
            service.stop()
        raise
    return started, address


def push(address: str, stream_id: str, caller: TraceParent) -> None:
    """The astronaut photo pushed under the caller's trace, then the stream's end (a trace of its own)."""
    with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]) as ch:
        stub = ingest_pb2_grpc.IngestStub(ch)
        frame = ingest_pb2.PushFramesRequest(stream_id=stream_id, image=astronaut_jpeg())
        reply = stub.PushFrames(iter([frame]), timeout=TIMEOUT, metadata=[("traceparent", caller.header())])
        assert (reply.accepted, reply.rejected) == (1, 0)
        end = ingest_pb2.PushFramesRequest(stream_id=stream_id, end_of_stream=True)
        stub.PushFrames(iter([end]), timeout=TIMEOUT)


def wait_for_stream_end(bootstrap: str, topic: str, stream_id: str, timeout_s: float = 300.0) -> None:
    """Until the aggregator's ``stream_ended`` event: by then it has applied the frame before it."""
    with closing(make_consumer(bootstrap, group_id=None, client_id="test-otlp")) as consumer:
        deadline = time.monotonic() + timeout_s
        partitions: set[int] = set()
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic) or set()
            time.sleep(0.2)
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                for record in batch:
                    event = face_event_pb2.FaceEvent.FromString(record.value)
                    if (
                        event.stream_id == stream_id
                        and event.type == face_event_pb2.FACE_EVENT_TYPE_STREAM_ENDED
                    ):
                        return
    raise AssertionError(f"no stream_ended event for {stream_id} on {topic} within {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def traced(runtime: DevSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    out = tmp_path_factory.mktemp("otlp-mesh")
    specs = mesh_topics()
    names = {kind: spec.name for kind, spec in specs.items()}
    admin.ensure_topics(runtime.kafka_bootstrap, list(specs.values()))
    caller = TraceParent.new()
    stream_id = f"otlp-{uuid.uuid4().hex[:6]}"
    try:
        with running_collector(out / "collector") as collector:
            services, address = start_mesh(runtime, names, otlp_env(collector), out / "logs")
            codes: dict[str, int] = {}
            try:
                push(address, stream_id, caller)
                wait_for_stream_end(runtime.kafka_bootstrap, names["faces"], stream_id)
                before = [s for s in collector.spans() if s.trace_id == caller.trace_id]
            finally:
                for service in reversed(services):  # ingest, analyzer, aggregator: SIGTERM, then wait
                    codes[service.name] = service.stop()
            collector.stop()
            yield Traced(
                caller=caller,
                stream_id=stream_id,
                spans=collector.spans(),
                before_stop=before,
                exit_codes=codes,
            )
    finally:
        with suppress(Exception):
            admin.delete_topics(runtime.kafka_bootstrap, list(names.values()))


@pytest.mark.integration
@pytest.mark.slow
def test_one_trace_covers_the_three_services(traced: Traced) -> None:
    assert traced.exit_codes == {"ingest": 0, "analyzer": 0, "aggregator": 0}
    spans = traced.of_trace()
    assert {s.service for s in spans} == {INGEST, ANALYZER, AGGREGATOR}, spans
    by_service = {s.service: sorted(x.name for x in spans if x.service == s.service) for s in spans}
    assert by_service[INGEST] == ["ingest frame"]
    assert by_service[AGGREGATOR] == ["aggregate frame"]
    assert by_service[ANALYZER][0] == "analyze frame" and by_service[ANALYZER][1].startswith("triton ")
    assert len(by_service[ANALYZER]) == 2
    assert int(traced.named("analyze frame").attributes["faceflow.faces"]) >= 1, "the astronaut's face"


@pytest.mark.integration
@pytest.mark.slow
def test_each_hop_is_a_child_of_the_hop_before(traced: Traced) -> None:
    by_id = {s.span_id: s for s in traced.of_trace()}
    ingest, analyze = traced.named("ingest frame"), traced.named("analyze frame")
    aggregate = traced.named("aggregate frame")
    (triton,) = [s for s in traced.of_trace() if s.name.startswith("triton ")]
    assert (ingest.kind, analyze.kind, triton.kind, aggregate.kind) == (
        "Producer",
        "Consumer",
        "Client",
        "Consumer",
    )
    assert analyze.parent_span_id == ingest.span_id
    assert triton.parent_span_id == analyze.span_id
    assert aggregate.parent_span_id == analyze.span_id
    for span in (analyze, triton, aggregate):  # never a new root, never a parent nobody exported
        assert span.parent_span_id in by_id, span
    stream = ingest.attributes["faceflow.stream_id"]
    assert analyze.attributes["faceflow.stream_id"] == aggregate.attributes["faceflow.stream_id"] == stream


@pytest.mark.integration
@pytest.mark.slow
def test_the_ingest_span_is_a_child_of_the_pushing_callers_span(traced: Traced) -> None:
    assert traced.named("ingest frame").parent_span_id == traced.caller.span_id


@pytest.mark.integration
@pytest.mark.slow
def test_the_spans_arrive_through_the_flush_at_shutdown(traced: Traced) -> None:
    assert traced.before_stop == [], "no scheduled export was due: the spans must come from the shutdown"
    assert len(traced.of_trace()) == 4  # ingest, analyze, triton, aggregate


@pytest.mark.integration
@pytest.mark.slow
def test_the_end_of_stream_markers_aggregate_span_is_a_child_of_its_ingest_span(traced: Traced) -> None:
    """The analyzer makes no span for a marker, so the aggregator's parent is ingest's span."""
    marker = [
        s
        for s in traced.spans
        if s.trace_id != traced.caller.trace_id and s.attributes.get("faceflow.stream_id") == traced.stream_id
    ]
    assert sorted((s.service, s.name) for s in marker) == [
        (AGGREGATOR, "aggregate frame"),
        (INGEST, "ingest frame"),
    ]
    ingest = next(s for s in marker if s.service == INGEST)
    aggregate = next(s for s in marker if s.service == AGGREGATOR)
    assert ingest.parent_span_id is None  # pushed without a traceparent: a new trace
    assert aggregate.parent_span_id == ingest.span_id
