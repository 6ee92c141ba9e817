"""Fuzz the gRPC services: malformed bytes, bad UTF-8, truncated messages and hostile pictures
against every method of the real ingest and aggregator services, over real sockets.

Seeded and bounded. Properties: every call is answered with a precise status (never INTERNAL or
UNKNOWN, never a traceback or an object repr in the message); the next good request is answered
correctly; the services' memory (this process: they run in it) stays within a bound.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from fuzz.cases import Case, astronaut, bad_utf8, bomb_cases, broken_cases, encode, field_bytes, mode_cases
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor
from support_aggregator import config as aggregator_config
from support_aggregator import make_topics, running
from support_ingest import create_frames_topic, ingest_config

from faceflow.ingest.grpc_server import IngestServer
from faceflow.ingest.service import IngestService
from faceflow.v1 import aggregator_pb2, ingest_pb2, ingest_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

SEED = 20261201
TIMEOUT = 30
#: Growth of this process's resident memory (the services run in it) over a whole test (MB).
RSS_GROWTH_MB = 300
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
LEAKS = re.compile(r"object at 0x|Traceback|File \"")
FACE = encode(astronaut(), "JPEG")


def rss_mb() -> float:
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    assert match is not None
    return int(match.group(1)) / 1024


def payloads(request_type: type, rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    """Hostile encodings of ``request_type``: bad UTF-8 in each string field, random bytes,
    truncated and bit-flipped valid messages."""
    descriptor = request_type.DESCRIPTOR  # type: ignore[attr-defined]
    strings = [f for f in descriptor.fields if f.type == FieldDescriptor.TYPE_STRING]
    out = [(f"bad UTF-8 in {f.name}", field_bytes(f.number, bad_utf8(rng))) for f in strings]
    valid = request_type()
    for f in strings:
        if not f.is_repeated:
            setattr(valid, f.name, "cam-1")
    good = valid.SerializeToString()
    while len(out) < count:
        kind = rng.choice(("random", "truncated", "flipped"))
        if kind == "random":
            blob = rng.randbytes(rng.randint(1, 512))
        elif kind == "truncated" and len(good) > 1:
            blob = good[: rng.randint(1, len(good) - 1)]
        else:
            mutable = bytearray(good or b"\x0a\x01a")
            mutable[rng.randrange(len(mutable))] = rng.randrange(256)
            blob = bytes(mutable)
        out.append((kind, blob))
    return out


def raw_call(
    channel: grpc.Channel, service: ServiceDescriptor, method: MethodDescriptor, blob: bytes
) -> None:
    """Call ``method`` with raw request bytes; raise its RpcError, if any."""
    path = f"/{service.full_name}/{method.name}"
    if method.client_streaming:
        channel.stream_unary(path)(iter([blob]), timeout=TIMEOUT)
    elif method.server_streaming:
        # a valid subscription streams until its deadline: DEADLINE_EXCEEDED is a precise answer
        for _ in channel.unary_stream(path)(blob, timeout=0.3):
            break
    else:
        channel.unary_unary(path)(blob, timeout=TIMEOUT)


def fuzz_methods(channel: grpc.Channel, module: object, service_name: str, per_method: int) -> dict[str, int]:
    """Every method of ``service_name`` with hostile payloads; returns status counts, fails on a bad one."""
    service = module.DESCRIPTOR.services_by_name[service_name]  # type: ignore[attr-defined]
    rng = random.Random(f"{SEED}:{service_name}")
    counts: dict[str, int] = {}
    bad: list[str] = []
    for method in service.methods:
        request_type = getattr(module, method.input_type.name)
        for name, blob in payloads(request_type, rng, per_method):
            try:
                raw_call(channel, service, method, blob)
                code = grpc.StatusCode.OK
                details = ""
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
            counts[code.name] = counts.get(code.name, 0) + 1
            if code in NEVER or LEAKS.search(details):
                bad.append(f"{method.name} <- {name} {blob[:24]!r}: {code.name} {details[:200]}")
    assert not bad, bad
    return counts


@pytest.fixture
def ingest(kafka_bootstrap: str, unique_name: str) -> Iterator[tuple[IngestService, grpc.Channel]]:
    topic = create_frames_topic(kafka_bootstrap, unique_name)
    service = IngestService(
        ingest_config(kafka_bootstrap, topic, seq_start="zero", target_fps=0.0, max_reconnect_attempts=0)
    )
    service.start(serve_metrics=False)
    server = IngestServer(service, "127.0.0.1", 0, workers=8)
    port = server.start()
    channel = grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    )
    try:
        yield service, channel
    finally:
        channel.close()
        server.stop(1).wait(5)
        service.stop(5)


def push(stub: ingest_pb2_grpc.IngestStub, images: list[bytes], stream: str) -> ingest_pb2.PushFramesResponse:
    requests = [ingest_pb2.PushFramesRequest(stream_id=stream, image=image) for image in images]
    return stub.PushFrames(iter(requests), timeout=TIMEOUT)  # type: ignore[no-any-return]


def test_ingest_answers_every_hostile_request_precisely(ingest: tuple[IngestService, grpc.Channel]) -> None:
    _, channel = ingest
    stub = ingest_pb2_grpc.IngestStub(channel)
    assert push(stub, [FACE], "warm").accepted == 1
    before = rss_mb()
    counts = fuzz_methods(channel, ingest_pb2, "Ingest", per_method=30)
    assert counts.get("INVALID_ARGUMENT", 0) >= 30, counts
    # pictures: every call answered, each frame taken or rejected, never the call's error
    bombs = bomb_cases()
    pictures: list[Case] = mode_cases() + bombs + broken_cases(SEED, 60)
    for start in range(0, len(pictures), 10):
        group = pictures[start : start + 10]
        reply = push(stub, [c.data for c in group], f"fuzz-{start}")
        assert reply.accepted + reply.rejected == len(group), [c.name for c in group]
        rejected = {r.index for r in reply.rejections}
        for r in reply.rejections:
            assert not LEAKS.search(r.detail), r.detail
        for i, case in enumerate(group):
            if case in bombs:
                assert i in rejected, f"{case.name} was taken"
    # the next good requests are answered
    assert push(stub, [FACE], "after").accepted == 1
    stub.ListSources(ingest_pb2.ListSourcesRequest(), timeout=TIMEOUT)
    assert rss_mb() - before < RSS_GROWTH_MB


def test_the_aggregator_answers_every_hostile_request_precisely(
    kafka_bootstrap: str, triton_url: str, unique_name: str
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=1)
    cfg = aggregator_config(kafka_bootstrap, triton_url, t, unique_name)
    with running(cfg) as (service, stub):
        assert service.server is not None
        channel = grpc.insecure_channel(f"127.0.0.1:{service.server.port}")
        try:
            before = rss_mb()
            counts = fuzz_methods(channel, aggregator_pb2, "Aggregator", per_method=15)
            assert counts.get("INVALID_ARGUMENT", 0) >= 10, counts
            # enrolment photos: hostile pictures are refused precisely
            refusals = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
            for case in bomb_cases() + broken_cases(SEED + 3, 12):
                request = aggregator_pb2.EnrollIdentityRequest(name="x", images=[case.data])
                try:
                    stub.EnrollIdentity(request, timeout=TIMEOUT)
                except grpc.RpcError as exc:
                    code, details = exc.code(), exc.details() or ""
                    assert code in refusals, (case.name, code, details)
                    assert not LEAKS.search(details), details
                else:  # a few flipped bytes can leave the photo's face intact: enrolled, fine
                    assert case.name.startswith("flipped"), f"{case.name} was enrolled"
            # the next good requests are answered
            enrolled = stub.EnrollIdentity(
                aggregator_pb2.EnrollIdentityRequest(name="astronaut", images=[FACE]), timeout=TIMEOUT
            )
            assert enrolled.identity.name == "astronaut"
            listed = stub.ListIdentities(aggregator_pb2.ListIdentitiesRequest(), timeout=TIMEOUT)
            assert "astronaut" in [i.name for i in listed.identities]
            assert rss_mb() - before < RSS_GROWTH_MB
        finally:
            channel.close()
