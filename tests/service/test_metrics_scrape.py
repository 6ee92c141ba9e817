"""Every service's ``/metrics``, scraped over a real socket from a real mesh, against docs/metrics.md.

One module-scoped mesh (the real broker, the real Triton): ingest takes frames over gRPC, the
analyzer sends them through Triton, the aggregator turns the analyses into events. The test drives
each documented event once (a shot cut, a refused picture, a reconnect, a drop, poison for both
DLQs, a refused gRPC call) so that every promised family has samples, then parses each exposition
with prometheus_client's text parser (strict: a malformed line raises) and checks every family
that docs/metrics.md promises, with its type and labels, and that nothing undocumented is
exported. Triton's own endpoint is scraped the same way. The last test ties k8s/monitoring to
these expositions: every metric name the alerts and the dashboard read must be really exported.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest
from support_aggregator import config as aggregator_config
from support_aggregator import make_topics as aggregator_topics
from support_aggregator import running as running_aggregator
from support_analyzer import FACE
from support_ingest import jpeg_of
from support_monitoring import (
    Scrape,
    dashboard_queries,
    label_names,
    metric_names,
    promised,
    recorded_names,
    rule_queries,
    scrape,
)
from support_shots import shot_frames

from faceflow import topics
from faceflow.analyzer.config import AnalyzerConfig
from faceflow.analyzer.service import AnalyzerService
from faceflow.ingest.config import IngestConfig
from faceflow.ingest.grpc_server import IngestServer
from faceflow.ingest.service import IngestService
from faceflow.kafka import admin
from faceflow.kafka.clients import make_producer
from faceflow.kafka.headers import message_headers
from faceflow.runtime.settings import DevSettings
from faceflow.v1 import aggregator_pb2, ingest_pb2, ingest_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICES = ("ingest", "analyzer", "aggregator")
#: The doc's sections and the services each one covers (the analyzer serves health only: no API
#: method to refuse, so no faceflow_grpc_refused_total).
SECTIONS = {
    "Ingest": ("ingest",),
    "Analyzer": ("analyzer",),
    "Aggregator": ("aggregator",),
    "Every gRPC service": ("ingest", "aggregator"),
    "Triton": ("triton",),
}
#: Families every OpenTelemetry-exported service has besides its own (the resource attributes).
RESOURCE_FAMILIES = {"target_info"}
TIMEOUT_S = 180


def wait_scrape(url: str, ready: Callable[[Scrape], bool], what: str, timeout_s: float = TIMEOUT_S) -> Scrape:
    """Scrape ``url`` until ``ready(scrape)`` holds."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = scrape(url)
        if ready(got):
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {what} at {url}:\n{got.text[-3000:]}"
            )
        time.sleep(0.5)


def closed_port() -> int:
    """A local TCP port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def triton_metrics_url(runtime: DevSettings) -> str:
    """The private runtime's Triton metrics; an external Triton (FACEFLOW_TEST_TRITON_URL host:8001)
    serves them on the same host at Triton's default port 8002."""
    if runtime.external_triton is None:
        return f"http://{runtime.host}:{runtime.triton_metrics_port}/metrics"
    host = runtime.external_triton.rsplit(":", 1)[0]
    return f"http://{host}:8002/metrics"


def pushed(stream: str) -> list[ingest_pb2.PushFramesRequest]:
    """Two shots and a face (hard cuts between them), a picture that is not one, the end."""
    pictures = [jpeg_of(rgb) for rgb in shot_frames("female", scale=4)[:3] + shot_frames("male", scale=4)[:3]]
    requests = [ingest_pb2.PushFramesRequest(stream_id=stream, image=p) for p in [*pictures, FACE]]
    requests.append(ingest_pb2.PushFramesRequest(stream_id=stream, image=b"not an image"))
    requests.append(ingest_pb2.PushFramesRequest(stream_id=stream, end_of_stream=True))
    return requests


def produce_poison(bootstrap: str, topic: str, content_type: str) -> None:
    producer = make_producer(bootstrap, client_id="test-poison")
    try:
        producer.send(
            topic, key=b"poison", value=b"\x08\x96\x01garbage", headers=message_headers(content_type)
        )
        producer.flush(10)
    finally:
        producer.close(5)


@dataclass(frozen=True)
class Mesh:
    scrapes: dict[str, Scrape]


@pytest.fixture(scope="module")
def mesh(runtime: DevSettings) -> Iterator[Mesh]:
    bootstrap, triton_url = runtime.kafka_bootstrap, runtime.triton_grpc_url
    name = f"test.metrics-scrape.{uuid.uuid4().hex[:8]}"
    t = aggregator_topics(bootstrap, name, partitions=1)
    frames = f"{name}.frames"
    admin.ensure_topics(
        bootstrap, [topics.TopicSpec(name=frames, partitions=1, configs=topics.FRAMES.configs)]
    )
    ingest = IngestService(
        IngestConfig(
            kafka_bootstrap=bootstrap,
            topic=frames,
            grpc_port=0,
            metrics_port=0,
            seq_start="zero",  # type: ignore[arg-type]
            reconnect_initial_s=0.1,
            reconnect_max_s=0.2,
            max_reconnect_attempts=3,
            open_timeout_s=5.0,
            # Below request_timeout (30 s) + linger, kafka-python refuses the producer.
            delivery_timeout_s=31.0,
            produce_block_s=2.0,
        )
    )
    analyzer = AnalyzerService(
        AnalyzerConfig(
            kafka_bootstrap=bootstrap,
            triton_url=triton_url,
            frames_topic=frames,
            analyses_topic=t.analyses,
            dlq_topic=t.dlq,
            group_id=f"{name}.analyzer",
            grpc_port=0,
            metrics_port=0,
            max_wait_ms=20,
            schedule="all",  # type: ignore[arg-type]
        )
    )
    scrapes: dict[str, Scrape] = {}
    with running_aggregator(aggregator_config(bootstrap, triton_url, t, f"{name}.aggregator")) as (agg, stub):
        analyzer.start()
        ingest.start()
        server = IngestServer(ingest, "127.0.0.1", 0)
        server.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        try:
            urls = {
                "ingest": f"http://127.0.0.1:{ingest.metrics_port}/metrics",
                "analyzer": f"http://127.0.0.1:{analyzer.metrics.base.port}/metrics",
                "aggregator": f"http://127.0.0.1:{agg.metrics.port}/metrics",
            }
            ingest_stub = ingest_pb2_grpc.IngestStub(channel)
            reply = ingest_stub.PushFrames(iter(pushed("cam-1")), timeout=60)
            assert (reply.accepted, reply.rejected) == (7, 1), reply
            with pytest.raises(grpc.RpcError) as stop_unknown:
                ingest_stub.StopSource(ingest_pb2.StopSourceRequest(stream_id="no-such-stream"), timeout=10)
            assert stop_unknown.value.code() is grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as unknown_track:
                stub.GetTrack(aggregator_pb2.GetTrackRequest(stream_id="nobody", track_id="t1"), timeout=10)
            assert unknown_track.value.code() is grpc.StatusCode.NOT_FOUND
            # A live source nobody serves: it reconnects, then fails.
            ingest.start_source(ingest.config.source("cam-dead", f"rtsp://127.0.0.1:{closed_port()}/cam"))
            produce_poison(bootstrap, frames, "faceflow.v1.Frame")
            produce_poison(bootstrap, t.analyses, "faceflow.v1.FrameAnalysis")

            scrapes["analyzer"] = wait_scrape(
                urls["analyzer"],
                lambda s: (
                    s.value("faceflow_analyzer_frames_total", outcome="analyzed") >= 7
                    and s.value("faceflow_analyzer_frames_total", outcome="dlq") >= 1
                    and s.value("faceflow_analyzer_faces_total", kind="analyzed") >= 1
                    and "faceflow_analyzer_consumer_lag" in s.families
                ),
                "7 frames analyzed, 1 to the DLQ, a face analyzed",
            )
            scrapes["aggregator"] = wait_scrape(
                urls["aggregator"],
                lambda s: (
                    s.value("faceflow_aggregator_records_total", what="events") >= 1
                    and s.value("faceflow_aggregator_records_total", what="dlq") >= 1
                    and "faceflow_aggregator_consumer_lag" in s.families
                ),
                "face events and 1 DLQ record",
            )
            scrapes["triton"] = scrape(triton_metrics_url(runtime))
        finally:
            analyzer.stop(5)
            # The last ingest event, a drop: with the frames topic gone, no frame can be acknowledged.
            admin.delete_topics(bootstrap, [frames])
            try:
                ingest_stub = ingest_pb2_grpc.IngestStub(channel)
                ingest_stub.PushFrames(iter([pushed("cam-2")[0]]), timeout=60)
            except grpc.RpcError as exc:  # UNAVAILABLE when the producer cannot even send
                assert exc.code() is grpc.StatusCode.UNAVAILABLE, exc
            try:
                scrapes["ingest"] = wait_scrape(
                    urls["ingest"],
                    lambda s: (
                        s.value("faceflow_ingest_frames_dropped_total", stream_id="cam-2") >= 1
                        and s.value("faceflow_ingest_reconnects_total", stream_id="cam-dead") >= 1
                    ),
                    "a dropped frame of cam-2 and a reconnect of cam-dead",
                )
            finally:
                channel.close()
                server.stop(2).wait(5)
                ingest.stop(5)
    yield Mesh(scrapes)


@pytest.mark.parametrize("service", [*SERVICES, "triton"])
def test_metrics_are_prometheus_text(mesh: Mesh, service: str) -> None:
    got = mesh.scrapes[service]
    assert got.content_type.startswith("text/plain"), got.content_type
    if service != "triton":  # Triton says only text/plain, which Prometheus reads as 0.0.4
        assert "version=0.0.4" in got.content_type, got.content_type
    assert got.families, f"{service}: an empty exposition"


@pytest.mark.parametrize(("section", "service"), [(s, svc) for s, svcs in SECTIONS.items() for svc in svcs])
def test_every_documented_family_is_exported_with_its_type_and_labels(
    mesh: Mesh, section: str, service: str
) -> None:
    got = mesh.scrapes[service]
    for promise in promised(section):
        family = got.family(promise.family)
        assert family.type == promise.type, (
            f"{service}: {promise.name}: expected {promise.type}, got {family.type}"
        )
        assert family.samples, f"{service}: {promise.name} has no samples"
        labels = label_names(family)
        assert labels == promise.labels, (
            f"{service}: {promise.name}: docs/metrics.md says {sorted(promise.labels)}, got {sorted(labels)}"
        )


@pytest.mark.parametrize("service", SERVICES)
def test_nothing_undocumented_is_exported(mesh: Mesh, service: str) -> None:
    documented = {p.family for s, svcs in SECTIONS.items() if service in svcs for p in promised(s)}
    extra = set(mesh.scrapes[service].families) - documented - RESOURCE_FAMILIES
    assert not extra, f"{service} exports families docs/metrics.md does not list: {sorted(extra)}"


@pytest.mark.parametrize(
    ("service", "sample", "labels"),
    [
        ("ingest", "faceflow_ingest_frames_in_total", {"stream_id": "cam-1"}),
        ("ingest", "faceflow_ingest_frames_produced_total", {"stream_id": "cam-1"}),
        ("ingest", "faceflow_ingest_frames_refused_total", {"stream_id": "cam-1", "reason": "not_an_image"}),
        ("ingest", "faceflow_ingest_shot_cuts_total", {"stream_id": "cam-1"}),
        ("ingest", "faceflow_ingest_produce_latency_seconds_count", {"stream_id": "cam-1"}),
        ("ingest", "faceflow_grpc_refused_total", {"method": "StopSource", "code": "NOT_FOUND"}),
        ("analyzer", "faceflow_analyzer_faces_total", {"kind": "detected"}),
        ("analyzer", "faceflow_analyzer_batch_size_count", {}),
        ("analyzer", "faceflow_analyzer_triton_latency_seconds_count", {}),
        ("analyzer", "faceflow_analyzer_triton_ready", {}),
        ("aggregator", "faceflow_grpc_refused_total", {"method": "GetTrack", "code": "NOT_FOUND"}),
        ("aggregator", "faceflow_aggregator_state", {"what": "streams"}),
        ("triton", "nv_inference_request_success", {"model": "face_pipeline"}),
        ("triton", "nv_inference_count", {"model": "face_pipeline"}),
    ],
)
def test_what_the_mesh_did_is_counted(mesh: Mesh, service: str, sample: str, labels: dict[str, str]) -> None:
    assert mesh.scrapes[service].value(sample, **labels) >= 1, f"{service}: {sample}{labels}"


def test_every_metric_the_alerts_and_the_dashboard_read_is_exported(mesh: Mesh) -> None:
    exported = set().union(*(s.series_names() for s in mesh.scrapes.values())) | recorded_names()
    queries = rule_queries() + dashboard_queries()
    missing = {}
    for query in queries:
        names = metric_names(query.expr)
        assert names, f"{query.where}: reads no metric: {query.expr!r}"
        if names - exported:
            missing[query.where] = sorted(names - exported)
    assert not missing, f"read but exported by no service, Triton or recording rule: {missing}"
