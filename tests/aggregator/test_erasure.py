"""Erasure that erases (issue 20.5), on the real broker: after ForgetIdentity, no record of the
compacted state topic mentions the person, neither the checkpoints of streams in memory nor
those of evicted streams that only the topic holds. The record is shown to exist before, and to
be gone after compaction. A restart does not bring the link or the name back.

The unit half (no broker) checks the processor's bookkeeping: the tracker's appearance of an erased
person's track is dropped, a restore drops an enrolled or named identity the gallery no longer holds.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from support_aggregator import TIMEOUT, config, make_topics, produce, running, walking
from support_analyzer import read_all

from faceflow.aggregator.config import AggregatorConfig
from faceflow.aggregator.processor import AggregatorProcessor
from faceflow.aggregator.state import Checkpoint, decode_checkpoint
from faceflow.core.identity import Gallery, IdentityKind
from faceflow.service.config import DEFAULT_TRITON_URL
from faceflow.service.consume import InRecord
from faceflow.v1 import aggregator_pb2, face_event_pb2

OBS = face_event_pb2.FACE_EVENT_TYPE_OBSERVATION


def observations(records: list) -> list[face_event_pb2.FaceEvent]:
    return [e for e in (face_event_pb2.FaceEvent.FromString(r.value) for r in records) if e.type == OBS]


def has(stream: str, seq: int) -> Callable[[list], bool]:
    return lambda records: any(e.stream_id == stream and e.seq == seq for e in observations(records))


def mentions(record: Any, identity_id: str) -> bool:
    """Whether a state-topic record holds ``identity_id`` anywhere (its raw, decompressed bytes)."""
    return record.value is not None and identity_id.encode() in zlib.decompress(record.value)


def track_of(checkpoint: Checkpoint, track_id: str) -> tuple[dict[str, Any], Any]:
    """(the stream's track snapshot, the tracker's embedding for it or None if it is not live)."""
    snap = checkpoint.snapshot
    track = next(t for t in (*snap["tracks"], *snap["ended"]) if t["track_id"] == track_id)
    columns = snap["tracker"]["tracks"]
    rows = [i for i, tid in enumerate(columns["id"]) if tid == track_id]
    return track, (columns["embedding"][rows[0]] if rows else None)


@pytest.mark.integration
@pytest.mark.slow
def test_forget_rewrites_every_checkpoint_and_compaction_removes_the_old_ones(
    kafka_bootstrap: str, unique_name: str
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=1, compact_fast=True)
    cfg = config(kafka_bootstrap, DEFAULT_TRITON_URL, t, unique_name, max_streams=1)
    with running(cfg) as (service, stub):
        produce(kafka_bootstrap, t.analyses, walking("e1", "bob", range(6)))
        anon = observations(read_all(kafka_bootstrap, t.faces, until=has("e1", 5)))[-1].identity_id
        assert anon.startswith("anon-")
        stub.NameIdentity(aggregator_pb2.NameIdentityRequest(identity_id=anon, name="Bob"), timeout=TIMEOUT)
        produce(kafka_bootstrap, t.analyses, walking("e1", "bob", range(6, 11), x0=34.0))
        read_all(kafka_bootstrap, t.faces, until=has("e1", 10))
        # A second stream pushes e1 out (max_streams=1): its checkpoint is now only in the topic.
        produce(kafka_bootstrap, t.analyses, walking("e2", "ann", range(3)))
        read_all(kafka_bootstrap, t.faces, until=has("e2", 2))
        before = read_all(
            kafka_bootstrap, t.state, until=lambda rs: any(mentions(r, anon) for r in rs), timeout_s=30
        )
        assert any(r.key == b"e1" and mentions(r, anon) for r in before), "the record existed before"
        # One more batch frees the in-memory copy of e1's (now acknowledged) checkpoint.
        produce(kafka_bootstrap, t.analyses, walking("e2", "ann", range(3, 5), x0=22.0))
        read_all(kafka_bootstrap, t.faces, until=has("e2", 4))
        assert service.processor is not None
        with service.processor.lock:
            state = service.processor.partitions[0]
            assert "e1" in state.evicted and "e1" not in state.unacked, "e1 is only in the topic"

        stub.ForgetIdentity(aggregator_pb2.ForgetIdentityRequest(identity="Bob"), timeout=TIMEOUT)
        deadline = time.monotonic() + 180
        filler = 0
        while True:
            # New records roll the segments that hold the old checkpoints, so the cleaner compacts them.
            produce(kafka_bootstrap, t.analyses, walking(f"f{filler}", "dee", range(1)))
            filler += 1
            time.sleep(2.0)
            after = read_all(kafka_bootstrap, t.state, until=lambda _: False, timeout_s=3)
            if after and not any(mentions(r, anon) for r in after):
                break
            assert time.monotonic() < deadline, "a state record still holds the erased identity"

    latest = {r.key: decode_checkpoint(r.value) for r in after if r.value is not None}
    e1 = latest[b"e1"]
    track, embedding = track_of(e1, "t1")
    assert track["identity"]["match"] is None and track["identity"]["descriptors"] == []
    assert embedding is None, "the tracker's appearance of the erased person is dropped"

    # A restart restores e1 from the rewritten checkpoint: the same track, no identity, no name.
    with running(cfg) as (_service, _stub):
        produce(kafka_bootstrap, t.analyses, walking("e1", "bob", range(11, 13), x0=54.0, every=100))
        tail = [
            e for e in observations(read_all(kafka_bootstrap, t.faces, until=has("e1", 12))) if e.seq >= 11
        ]
    assert tail and all(e.track_id == "t1" for e in tail)
    assert all(e.identity_id != anon and e.identity_name == "" for e in tail)


# -- the processor, without a broker -------------------------------------------------------------------


def record(message: Any, offset: int) -> InRecord:
    return InRecord(
        topic="t",
        partition=0,
        offset=offset,
        key=message.stream_id.encode(),
        value=message.SerializeToString(),
        headers=[],
        timestamp_ms=0,
    )


def make(gallery: Gallery, restore: Callable[[int], dict[str, Checkpoint]]) -> AggregatorProcessor:
    cfg = AggregatorConfig(checkpoint_frames=1000, checkpoint_interval_s=3600.0)
    return AggregatorProcessor(cfg, gallery=gallery, lock=threading.RLock(), restore=restore)


def test_erase_drops_the_link_the_descriptors_and_the_appearance_and_checkpoints_now() -> None:
    p = make(Gallery(), lambda _p: {})
    p.process([record(m, i) for i, m in enumerate(walking("s", "bob", range(6)))])
    owned = p.stream("s")
    assert owned is not None
    (identity_id,) = owned.analytics.held_identities()
    assert owned.analytics.tracker.track_embedding("t1") is not None
    p.erase(identity_id)
    assert owned.analytics.held_identities() == {}
    assert owned.analytics.tracker.track_embedding("t1") is None
    (result,) = p.pending_results()
    (checkpoint,) = result.outputs
    assert checkpoint.after == (0, 6) and checkpoint.key == b"s"
    assert identity_id.encode() not in zlib.decompress(checkpoint.value or b"")
    assert p.pending_results() == []  # nothing left to do


def test_a_restore_drops_a_named_identity_the_gallery_no_longer_holds() -> None:
    gallery = Gallery()
    first = make(gallery, lambda _p: {})
    first.process([record(m, i) for i, m in enumerate(walking("s", "bob", range(6)))])
    owned = first.stream("s")
    assert owned is not None
    (anon,) = owned.analytics.held_identities()
    # The track holds the identity as named (as after NameIdentity), and the gallery has lost it
    # (its tombstone compacted away, so no replica remembers the erasure).
    track = owned.analytics.tracks["t1"]
    match = track.identity.match
    assert match is not None
    track.identity.assign(
        type(match)(
            identity_id=match.identity_id, name="Bob", kind=IdentityKind.NAMED, distance=match.distance
        )
    )
    snapshot = owned.analytics.snapshot()
    gallery.remove(anon)
    checkpoint = Checkpoint(stream_id="s", partition=0, next_offset=6, snapshot=snapshot)
    second = make(gallery, lambda _p: {"s": checkpoint})
    second.process([record(m, 6) for m in walking("s", "bob", range(6, 7), every=100)])
    restored = second.stream("s")
    assert restored is not None and anon not in restored.analytics.held_identities()
    (result,) = second.pending_results()  # and its checkpoint is rewritten without it
    assert all(anon.encode() not in zlib.decompress(o.value or b"") for o in result.outputs)
