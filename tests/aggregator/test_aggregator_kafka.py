"""The aggregator with the real broker and real gRPC over a socket: events, filters, replay, a slow
subscriber, the gallery (enrol, name, forget), bad requests."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from support_aggregator import TIMEOUT, analysis, config, face, make_topics, produce, running, walking
from support_analyzer import read_all
from support_triton import encode, photo

from faceflow.service.triton import TritonClient
from faceflow.v1 import aggregator_pb2, aggregator_pb2_grpc, face_event_pb2, identity_pb2

pytestmark = pytest.mark.integration

OBS = face_event_pb2.FACE_EVENT_TYPE_OBSERVATION
STARTED = face_event_pb2.FACE_EVENT_TYPE_TRACK_STARTED


def events_of(records: list) -> list[face_event_pb2.FaceEvent]:
    return [face_event_pb2.FaceEvent.FromString(r.value) for r in records]


def collect(stream: object, out: list, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        try:
            for item in stream:  # type: ignore[attr-defined]
                out.append(item)
                if stop.is_set():
                    break
        except grpc.RpcError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_for(predicate: object, timeout_s: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_events_reach_the_faces_topic_and_filtered_subscribers_and_tracks_can_be_queried(
    kafka_bootstrap: str, triton_url: str, unique_name: str
) -> None:
    t = make_topics(kafka_bootstrap, unique_name)
    with running(config(kafka_bootstrap, triton_url, t, unique_name)) as (_, stub):
        got: list[aggregator_pb2.SubscribeResponse] = []
        stop = threading.Event()
        call = stub.Subscribe(
            aggregator_pb2.SubscribeRequest(stream_ids=["s1"], types=[OBS, STARTED]), timeout=120
        )
        collect(call, got, stop)
        time.sleep(1.0)  # the subscription is registered before the events arrive
        produce(
            kafka_bootstrap, t.analyses, walking("s1", "ann", range(10)) + walking("s2", "bob", range(10))
        )
        records = read_all(kafka_bootstrap, t.faces, until=lambda r: len(r) >= 24, timeout_s=60)
        wait_for(lambda: sum(1 for g in got if g.event.type == OBS) >= 10, what="10 observations of s1")
        stop.set()
        call.cancel()
        events = events_of(records)
        assert {e.stream_id for e in events} == {"s1", "s2"}
        assert all(g.event.stream_id == "s1" and g.event.type in (OBS, STARTED) for g in got)
        observations = [e for e in events if e.type == OBS and e.stream_id == "s1"]
        assert [e.seq for e in observations] == list(range(10))
        assert {e.track_id for e in observations} == {"t1"}
        assert (
            observations[-1].identity_id.startswith("anon-")
            and observations[-1].fused.age.top_label == "30-39"
        )
        assert observations[0].analyzed and not observations[1].analyzed and observations[1].results_seq == 0
        assert not observations[0].embedding, "embeddings stay off the public topic by default"
        assert got[0].offset >= 0 and got[0].event.type == STARTED
        stream = stub.GetStream(aggregator_pb2.GetStreamRequest(stream_id="s1"), timeout=TIMEOUT).stream
        assert (stream.frames, stream.total_tracks) == (10, 1)
        track = stub.GetTrack(
            aggregator_pb2.GetTrackRequest(stream_id="s1", track_id="t1"), timeout=TIMEOUT
        ).track
        assert track.observations == 10 and track.analyzed_observations == 2 and track.best_shot.seq in (0, 5)
        listed = stub.ListTracks(
            aggregator_pb2.ListTracksRequest(stream_id="s2", page_size=1), timeout=TIMEOUT
        )
        assert [tr.track_id for tr in listed.tracks] == ["t1"] and listed.next_page_token == ""
        names = {
            s.stream_id
            for s in stub.ListStreams(aggregator_pb2.ListStreamsRequest(), timeout=TIMEOUT).streams
        }
        assert names == {"s1", "s2"}


def test_replay_from_the_earliest_event_and_from_offsets(
    kafka_bootstrap: str, triton_url: str, unique_name: str
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=1)
    with running(config(kafka_bootstrap, triton_url, t, unique_name)) as (_, stub):
        produce(kafka_bootstrap, t.analyses, walking("r1", "ann", range(6)))
        read_all(kafka_bootstrap, t.faces, until=lambda r: len(r) >= 6, timeout_s=60)
        request = aggregator_pb2.SubscribeRequest(
            types=[OBS], start=aggregator_pb2.StartPosition(earliest=True)
        )
        replayed = []
        for item in stub.Subscribe(request, timeout=30):
            replayed.append(item)
            if len(replayed) == 6:
                break
        assert [r.event.seq for r in replayed] == list(range(6))
        resume = aggregator_pb2.StartPosition(
            offsets=aggregator_pb2.PartitionOffsets(offsets={0: replayed[3].offset + 1})
        )
        rest = []
        for item in stub.Subscribe(aggregator_pb2.SubscribeRequest(types=[OBS], start=resume), timeout=30):
            rest.append(item.event.seq)
            if len(rest) == 2:
                break
        assert rest == [4, 5]


def test_a_slow_subscriber_gets_a_gap_and_the_others_get_everything(
    kafka_bootstrap: str, triton_url: str, unique_name: str
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=1)
    with running(config(kafka_bootstrap, triton_url, t, unique_name, subscriber_queue=15)) as (service, stub):
        fast: list[aggregator_pb2.SubscribeResponse] = []
        stop = threading.Event()
        fast_call = stub.Subscribe(aggregator_pb2.SubscribeRequest(types=[OBS]), timeout=120)
        collect(fast_call, fast, stop)
        # A reader with a small transport window (no BDP probing), so it stops taking bytes at once.
        assert service.server is not None
        slow_channel = grpc.insecure_channel(
            f"127.0.0.1:{service.server.port}",
            options=[("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 4096)],
        )
        slow_call = aggregator_pb2_grpc.AggregatorStub(slow_channel).Subscribe(
            aggregator_pb2.SubscribeRequest(types=[OBS]), timeout=120
        )
        wait_for(lambda: service.hub is not None and service.hub.subscribers == 2, what="two subscribers")
        frames = walking("g1", "ann", range(60))
        for i in range(0, 60, 5):  # a camera's pace: the fast reader keeps up, the slow one never reads
            produce(kafka_bootstrap, t.analyses, frames[i : i + 5])
            time.sleep(0.3)
        wait_for(lambda: len(fast) >= 60, what="the fast subscriber's 60 events")
        time.sleep(1.0)
        # The slow reader's first events sit in gRPC's buffers; after them comes the gap.
        slow: list[aggregator_pb2.SubscribeResponse] = []
        while True:
            item = next(slow_call)
            slow.append(item)
            if item.HasField("event") and item.event.seq == 59:
                break
        gaps = [item.gap.dropped for item in slow if item.HasField("gap")]
        events = [item.event.seq for item in slow if item.HasField("event")]
        assert gaps and sum(gaps) >= 20, gaps
        assert len(events) + sum(gaps) == 60, (events, gaps)
        assert events == sorted(events)
        assert [f.event.seq for f in fast[:60]] == list(range(60)) and not any(
            f.HasField("gap") for f in fast
        )
        stop.set()
        fast_call.cancel()
        slow_call.cancel()
        slow_channel.close()


def test_enrol_from_photos_then_results_carry_the_name(
    kafka_bootstrap: str, triton_url: str, unique_name: str, tmp_path: Path
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=1)
    astronaut = encode(photo("astronaut"))
    triton = TritonClient(triton_url, timeout_s=120)
    embedding = triton.pipeline([astronaut]).analyses.embedding[0]
    triton.close()
    with running(config(kafka_bootstrap, triton_url, t, unique_name)) as (_, stub):
        with pytest.raises(grpc.RpcError) as none:
            stub.EnrollIdentity(
                aggregator_pb2.EnrollIdentityRequest(
                    name="Eileen", images=[encode(np.full((120, 160, 3), 90, np.uint8))]
                ),
                timeout=120,
            )
        assert none.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "image 0: no face found; expected exactly one face per photo" in (none.value.details() or "")
        two = np.concatenate([photo("astronaut"), photo("astronaut")], axis=1)
        with pytest.raises(grpc.RpcError) as both:
            stub.EnrollIdentity(
                aggregator_pb2.EnrollIdentityRequest(name="Eileen", images=[astronaut, encode(two)]),
                timeout=120,
            )
        assert "image 1: 2 faces found" in (both.value.details() or "")
        reply = stub.EnrollIdentity(
            aggregator_pb2.EnrollIdentityRequest(name="Eileen", images=[astronaut]), timeout=120
        )
        enrolled = reply.identity
        assert enrolled.kind == identity_pb2.IDENTITY_KIND_ENROLLED and enrolled.identity_id.startswith("id-")
        frames = []
        for seq in range(6):
            f = face("ann", 10.0 + 4 * seq, seq, analyzed=seq % 3 == 0)
            if f.embedding:
                del f.embedding[:]
                f.embedding.extend((embedding + 0.005).tolist())
            frames.append(analysis("cam-e", seq, [f]))
        produce(kafka_bootstrap, t.analyses, frames)
        records = read_all(kafka_bootstrap, t.faces, until=lambda r: len(r) >= 6, timeout_s=60)
        observations = [e for e in events_of(records) if e.type == OBS]
        assert observations[-1].identity_id == enrolled.identity_id
        assert observations[-1].identity_name == "Eileen" and observations[-1].identity_distance < 0.1
        listed = stub.ListIdentities(aggregator_pb2.ListIdentitiesRequest(), timeout=TIMEOUT).identities
        assert [i.name for i in listed] == ["Eileen"]


def test_name_an_anonymous_identity_then_forget_it(
    kafka_bootstrap: str, triton_url: str, unique_name: str
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=1, compact_fast=True)
    with running(config(kafka_bootstrap, triton_url, t, unique_name)) as (_, stub):
        produce(kafka_bootstrap, t.analyses, walking("n1", "bob", range(6)))
        first = read_all(kafka_bootstrap, t.faces, until=lambda r: len(r) >= 6, timeout_s=60)
        anon = [e for e in events_of(first) if e.type == OBS][-1].identity_id
        assert anon.startswith("anon-")
        named = stub.NameIdentity(
            aggregator_pb2.NameIdentityRequest(identity_id=anon, name="Bob"), timeout=TIMEOUT
        )
        assert named.identity.kind == identity_pb2.IDENTITY_KIND_NAMED and named.identity.embeddings >= 1
        produce(kafka_bootstrap, t.analyses, walking("n1", "bob", range(6, 10), x0=34.0))
        after = read_all(kafka_bootstrap, t.faces, until=lambda r: len(r) >= 10, timeout_s=60)
        last = [e for e in events_of(after) if e.type == OBS][-1]
        assert (last.identity_id, last.identity_name) == (anon, "Bob")
        forgotten = stub.ForgetIdentity(aggregator_pb2.ForgetIdentityRequest(identity="Bob"), timeout=TIMEOUT)
        assert list(forgotten.forgotten_ids) == [anon]
        produce(kafka_bootstrap, t.analyses, walking("n1", "bob", range(10, 12), x0=50.0, every=100))
        later = read_all(kafka_bootstrap, t.faces, until=lambda r: len(r) >= 12, timeout_s=60)
        tail = [e for e in events_of(later) if e.type == OBS and e.seq >= 10]
        # The erased identity never comes back; a person still on camera starts a new anonymous one.
        assert tail and all(e.identity_id != anon and e.identity_name == "" for e in tail)
        with pytest.raises(grpc.RpcError) as gone:
            stub.GetIdentity(aggregator_pb2.GetIdentityRequest(identity_id=anon), timeout=TIMEOUT)
        assert gone.value.code() is grpc.StatusCode.NOT_FOUND


@pytest.mark.slow
def test_a_forgotten_identity_is_gone_from_the_gallery_topic_after_compaction(
    kafka_bootstrap: str, triton_url: str, unique_name: str
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=1, compact_fast=True)
    with running(config(kafka_bootstrap, triton_url, t, unique_name)) as (_, stub):
        produce(kafka_bootstrap, t.analyses, walking("c1", "eve", range(3)))
        read_all(kafka_bootstrap, t.faces, until=lambda r: len(r) >= 3, timeout_s=60)
        anon = stub.ListIdentities(
            aggregator_pb2.ListIdentitiesRequest(include_anonymous=True), timeout=TIMEOUT
        ).identities[0]
        stub.ForgetIdentity(aggregator_pb2.ForgetIdentityRequest(identity=anon.identity_id), timeout=TIMEOUT)
        key = anon.identity_id.encode()
        deadline = time.monotonic() + 120
        while True:
            # later records roll the segment that holds the erased record, so the cleaner can compact it
            produce(kafka_bootstrap, t.analyses, walking(f"c{int(time.monotonic())}", "dee", range(1)))
            time.sleep(2.0)
            records = read_all(kafka_bootstrap, t.identities, until=lambda r: False, timeout_s=3)
            if not any(r.key == key and r.value is not None for r in records):
                break
            assert time.monotonic() < deadline, "the erased identity's record is still in the gallery topic"


@pytest.mark.parametrize(
    ("method", "request_", "code", "detail"),
    [
        (
            "GetTrack",
            aggregator_pb2.GetTrackRequest(stream_id="nope", track_id="t1"),
            "NOT_FOUND",
            "not owned",
        ),
        (
            "GetTrack",
            aggregator_pb2.GetTrackRequest(stream_id="bad id", track_id="t1"),
            "INVALID_ARGUMENT",
            "stream_id",
        ),
        (
            "ListTracks",
            aggregator_pb2.ListTracksRequest(stream_id="x", page_size=5000),
            "INVALID_ARGUMENT",
            "page_size",
        ),
        ("GetStream", aggregator_pb2.GetStreamRequest(stream_id="nope"), "NOT_FOUND", "not owned"),
        (
            "NameIdentity",
            aggregator_pb2.NameIdentityRequest(identity_id="anon-x", name="A"),
            "NOT_FOUND",
            "no identity",
        ),
        (
            "NameIdentity",
            aggregator_pb2.NameIdentityRequest(identity_id="anon-x", name=""),
            "INVALID_ARGUMENT",
            "name",
        ),
        ("EnrollIdentity", aggregator_pb2.EnrollIdentityRequest(name="A"), "INVALID_ARGUMENT", "images"),
        ("ForgetIdentity", aggregator_pb2.ForgetIdentityRequest(identity="nobody"), "NOT_FOUND", "nobody"),
        (
            "ForgetIdentity",
            aggregator_pb2.ForgetIdentityRequest(identity=" "),
            "INVALID_ARGUMENT",
            "identity",
        ),
    ],
)
def test_bad_requests_get_precise_codes(
    kafka_bootstrap: str,
    triton_url: str,
    unique_name: str,
    method: str,
    request_: object,
    code: str,
    detail: str,
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=1)
    with (
        running(config(kafka_bootstrap, triton_url, t, unique_name)) as (_, stub),
        pytest.raises(grpc.RpcError) as info,
    ):
        getattr(stub, method)(request_, timeout=TIMEOUT)
    assert info.value.code().name == code
    assert detail in (info.value.details() or "")


@pytest.mark.parametrize(
    ("request_", "detail"),
    [
        (aggregator_pb2.SubscribeRequest(stream_ids=["bad id"]), "stream_ids: stream id: expected"),
        (aggregator_pb2.SubscribeRequest(types=[99]), "types: expected FaceEventType values"),
        (aggregator_pb2.SubscribeRequest(min_quality=2.0), "min_quality: expected a number in [0, 1]"),
        (
            aggregator_pb2.SubscribeRequest(
                start=aggregator_pb2.StartPosition(offsets=aggregator_pb2.PartitionOffsets(offsets={7: 0}))
            ),
            "start.offsets",
        ),
    ],
)
def test_bad_subscriptions_are_invalid_arguments(
    kafka_bootstrap: str,
    triton_url: str,
    unique_name: str,
    request_: aggregator_pb2.SubscribeRequest,
    detail: str,
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=1)
    with (
        running(config(kafka_bootstrap, triton_url, t, unique_name)) as (_, stub),
        pytest.raises(grpc.RpcError) as info,
    ):
        next(stub.Subscribe(request_, timeout=TIMEOUT))
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert detail in (info.value.details() or "")
