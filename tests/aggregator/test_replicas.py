"""Two aggregator replicas in one consumer group on the real broker, called over real gRPC: either
one answers every stream (forwarding to the owner, found through the group's metadata), a live
Subscribe on either carries the other's streams, the survivor answers for all after the other
stops, and with a bearer token a forwarded call passes the caller's token through."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from support_aggregator import TIMEOUT, AggTopics, config, make_topics, produce, walking
from support_security import Certificates, make_certificates

from faceflow.aggregator.service import AggregatorService
from faceflow.kafka.membership import key_partition
from faceflow.service.config import DEFAULT_TRITON_URL
from faceflow.service.security import ClientSecurity, channel_for
from faceflow.v1 import aggregator_pb2, aggregator_pb2_grpc, face_event_pb2

pytestmark = pytest.mark.integration

PARTITIONS = 4
FRAMES = 6
OBS = face_event_pb2.FACE_EVENT_TYPE_OBSERVATION
TOKEN = "replica-token-5d1e9f"


def streams_over(partitions: int, per_partition: int = 2) -> list[str]:
    """Stream ids that the producers spread over every partition, ``per_partition`` in each."""
    chosen: dict[int, list[str]] = {p: [] for p in range(partitions)}
    for i in range(10_000):
        name = f"cam{i}"
        bucket = chosen[key_partition(name.encode(), partitions)]
        if len(bucket) < per_partition:
            bucket.append(name)
        if all(len(b) == per_partition for b in chosen.values()):
            return sorted(n for b in chosen.values() for n in b)
    raise AssertionError("no stream ids cover every partition")


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def owned(service: AggregatorService) -> set[int]:
    assert service.loop is not None
    return {tp.partition for tp in service.loop.assignment()}


def split(a: AggregatorService, b: AggregatorService) -> bool:
    """Both own partitions, together all of them, and the group's metadata says the same."""
    pa, pb = owned(a), owned(b)
    if not pa or not pb or pa & pb or pa | pb != set(range(PARTITIONS)):
        return False
    assert a.router is not None
    seen = {m.address: set(m.partitions) for m in a.router.watch.refresh().members}
    return seen == {a.advertised: pa, b.advertised: pb}


class Replicas:
    """Replicas started in this process; each stopped once, at the latest at the end."""

    def __init__(self, bootstrap: str, t: AggTopics, group: str) -> None:
        self.bootstrap, self.t, self.group = bootstrap, t, group
        self.services: list[AggregatorService] = []
        self.stopped: set[int] = set()

    def start(self) -> AggregatorService:
        cfg = config(self.bootstrap, DEFAULT_TRITON_URL, self.t, self.group, session_timeout_ms=10_000)
        service = AggregatorService(cfg)
        self.services.append(service)
        service.start()
        return service

    def stop(self, service: AggregatorService) -> None:
        if id(service) not in self.stopped:
            self.stopped.add(id(service))
            service.stop(5)

    def close(self) -> None:
        for service in self.services:
            self.stop(service)


@contextmanager
def two_replicas(
    bootstrap: str, name: str
) -> Iterator[tuple[Replicas, AggregatorService, AggregatorService]]:
    t = make_topics(bootstrap, name, partitions=PARTITIONS)
    replicas = Replicas(bootstrap, t, name)
    try:
        a = replicas.start()
        wait_for(lambda: owned(a) == set(range(PARTITIONS)), "the first replica's assignment")
        b = replicas.start()
        wait_for(lambda: split(a, b), "two replicas splitting the partitions")
        yield replicas, a, b
    finally:
        replicas.close()


def stub(
    service: AggregatorService, stack: ExitStack, security: ClientSecurity | None = None
) -> aggregator_pb2_grpc.AggregatorStub:
    assert service.server is not None
    channel = stack.enter_context(
        channel_for(f"127.0.0.1:{service.server.port}", security or ClientSecurity())
    )
    return aggregator_pb2_grpc.AggregatorStub(channel)


def stream_frames(s: aggregator_pb2_grpc.AggregatorStub, stream_id: str) -> int:
    """The frames the stream's owner has applied, asked through ``s`` (0: not known yet)."""
    try:
        return int(
            s.GetStream(aggregator_pb2.GetStreamRequest(stream_id=stream_id), timeout=TIMEOUT).stream.frames
        )
    except grpc.RpcError as exc:
        if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
            return 0
        raise


def collect(call: object, out: list[face_event_pb2.FaceEvent]) -> None:
    def run() -> None:
        try:
            for item in call:  # type: ignore[attr-defined]
                if item.HasField("event"):
                    out.append(item.event)
        except grpc.RpcError:
            pass

    threading.Thread(target=run, daemon=True).start()


def check_every_stream(s: aggregator_pb2_grpc.AggregatorStub, streams: list[str], frames: int) -> None:
    for stream_id in streams:
        info = s.GetStream(aggregator_pb2.GetStreamRequest(stream_id=stream_id), timeout=TIMEOUT).stream
        assert (info.stream_id, info.frames, info.total_tracks) == (stream_id, frames, 1)
        assert info.partition == key_partition(stream_id.encode(), PARTITIONS)
        track = s.GetTrack(
            aggregator_pb2.GetTrackRequest(stream_id=stream_id, track_id="t1"), timeout=TIMEOUT
        )
        assert track.track.stream_id == stream_id and track.track.observations == frames
        listed = s.ListTracks(aggregator_pb2.ListTracksRequest(stream_id=stream_id), timeout=TIMEOUT)
        assert [t.track_id for t in listed.tracks] == ["t1"]
        with pytest.raises(grpc.RpcError) as missing:
            s.GetTrack(aggregator_pb2.GetTrackRequest(stream_id=stream_id, track_id="t9"), timeout=TIMEOUT)
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        assert f"stream {stream_id!r} has no track 't9'" in (missing.value.details() or "")
    every = s.ListStreams(aggregator_pb2.ListStreamsRequest(), timeout=TIMEOUT).streams
    assert [(i.stream_id, i.frames) for i in every] == [(sid, frames) for sid in streams]


def test_either_replica_answers_for_every_stream_and_the_survivor_for_all(
    kafka_bootstrap: str, unique_name: str
) -> None:
    streams = streams_over(PARTITIONS)
    with two_replicas(kafka_bootstrap, unique_name) as (replicas, a, b), ExitStack() as stack:
        sa, sb = stub(a, stack), stub(b, stack)
        of_a = [s for s in streams if key_partition(s.encode(), PARTITIONS) in owned(a)]
        of_b = [s for s in streams if s not in of_a]
        assert of_a and of_b, "both replicas own streams"
        # Live subscribers of the other replica's streams, on each replica.
        on_a: list[face_event_pb2.FaceEvent] = []
        on_b: list[face_event_pb2.FaceEvent] = []
        calls = [
            sa.Subscribe(aggregator_pb2.SubscribeRequest(stream_ids=of_b, types=[OBS]), timeout=180),
            sb.Subscribe(aggregator_pb2.SubscribeRequest(stream_ids=of_a, types=[OBS]), timeout=180),
        ]
        for call in calls:
            stack.callback(call.cancel)
        collect(calls[0], on_a)
        collect(calls[1], on_b)
        wait_for(
            lambda: a.hub is not None and b.hub is not None and a.hub.subscribers == b.hub.subscribers == 1,
            "a live subscriber on each replica",
        )
        people = ["ann", "bob", "cy", "dee", "eve"]
        frames = [m for i, s in enumerate(streams) for m in walking(s, people[i % 5], range(FRAMES))]
        produce(kafka_bootstrap, replicas.t.analyses, frames)
        wait_for(lambda: all(stream_frames(sa, s) == FRAMES for s in streams), "every stream applied")
        check_every_stream(sa, streams, FRAMES)
        check_every_stream(sb, streams, FRAMES)
        assert a.router is not None and b.router is not None
        assert a.router.stats.forwarded_out > 0 and b.router.stats.forwarded_in > 0
        assert b.router.stats.forwarded_out > 0 and a.router.stats.forwarded_in > 0

        def seen(events: list[face_event_pb2.FaceEvent], wanted: list[str]) -> bool:
            return all(sum(1 for e in events if e.stream_id == s) >= FRAMES for s in wanted)

        wait_for(
            lambda: seen(on_a, of_b) and seen(on_b, of_a),
            "each replica's subscriber gets the other's streams",
        )
        assert {e.stream_id for e in on_a} == set(of_b) and {e.stream_id for e in on_b} == set(of_a)
        # B stops (leaves the group): A takes its partitions over. A new owner restores a partition's
        # streams from their checkpoints with the partition's next record, so the cameras go on.
        replicas.stop(b)
        wait_for(lambda: owned(a) == set(range(PARTITIONS)), "the survivor owning every partition")
        later = [
            m
            for i, s in enumerate(streams)
            for m in walking(s, people[i % 5], range(FRAMES, 2 * FRAMES), x0=10.0 + 4 * FRAMES)
        ]
        produce(kafka_bootstrap, replicas.t.analyses, later)
        wait_for(
            lambda: all(stream_frames(sa, s) == 2 * FRAMES for s in streams), "the survivor answering all"
        )
        check_every_stream(sa, streams, 2 * FRAMES)  # one track each: B's state carried over


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.mark.parametrize("transport", ["plaintext", "mtls"])
def test_a_forwarded_call_carries_the_callers_token_and_a_call_without_one_stops_at_the_first_replica(
    kafka_bootstrap: str,
    unique_name: str,
    tmp_path: Path,
    certs: Certificates,
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    monkeypatch.setenv("FACEFLOW_AUTH_TOKEN_FILE", str(token))
    client = ClientSecurity(token=TOKEN)
    if transport == "mtls":
        for variable, path in (
            ("FACEFLOW_TLS_CERT_FILE", certs.server_cert),
            ("FACEFLOW_TLS_KEY_FILE", certs.server_key),
            ("FACEFLOW_TLS_CLIENT_CA_FILE", certs.ca),
            # how a replica reaches the others: the mesh's CA and a client certificate
            ("FACEFLOW_TLS_CA_FILE", certs.ca),
            ("FACEFLOW_TLS_CLIENT_CERT_FILE", certs.client_cert),
            ("FACEFLOW_TLS_CLIENT_KEY_FILE", certs.client_key),
        ):
            monkeypatch.setenv(variable, str(path))
        client = ClientSecurity(
            root_certificates=certs.ca.read_bytes(),
            certificate_chain=certs.client_cert.read_bytes(),
            private_key=certs.client_key.read_bytes(),
            token=TOKEN,
        )
    no_token, wrong = replace(client, token=None), replace(client, token="not-the-token")
    streams = streams_over(PARTITIONS, per_partition=1)
    with two_replicas(kafka_bootstrap, unique_name) as (replicas, a, b), ExitStack() as stack:
        assert a.router is not None and b.router is not None
        assert a.router.transport.tls is (transport == "mtls")
        sa, sb = stub(a, stack, client), stub(b, stack, client)
        of_b = [s for s in streams if key_partition(s.encode(), PARTITIONS) in owned(b)]
        assert of_b
        produce(
            kafka_bootstrap, replicas.t.analyses, [m for s in streams for m in walking(s, "ann", range(3))]
        )
        wait_for(
            lambda: all(stream_frames(sa, s) == 3 for s in streams), "every stream applied, asked through A"
        )
        got = sa.GetStream(aggregator_pb2.GetStreamRequest(stream_id=of_b[0]), timeout=TIMEOUT).stream
        assert got.stream_id == of_b[0] and got.frames == 3
        assert b.router.stats.forwarded_in > 0, "B answered a call A forwarded with the caller's token"
        listed = sb.ListStreams(aggregator_pb2.ListStreamsRequest(), timeout=TIMEOUT).streams
        assert [s.stream_id for s in listed] == streams
        before = (a.router.stats.forwarded_out, b.router.stats.forwarded_in)
        for security, code in (
            (no_token, grpc.StatusCode.UNAUTHENTICATED),
            (wrong, grpc.StatusCode.PERMISSION_DENIED),
        ):
            refused_stub = stub(a, stack, security)
            with pytest.raises(grpc.RpcError) as refused:
                refused_stub.GetStream(aggregator_pb2.GetStreamRequest(stream_id=of_b[0]), timeout=TIMEOUT)
            assert refused.value.code() is code
            with pytest.raises(grpc.RpcError) as refused_list:
                refused_stub.ListStreams(aggregator_pb2.ListStreamsRequest(), timeout=TIMEOUT)
            assert refused_list.value.code() is code
        assert (a.router.stats.forwarded_out, b.router.stats.forwarded_in) == before, (
            "refused at A, never forwarded"
        )
