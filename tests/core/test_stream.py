"""Per-stream analytics (pure): tracks, identities across gaps, fusion, erasure, checkpoints."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from faceflow.core.identity import Gallery, IdentityEntry, IdentityKind
from faceflow.core.stream import FaceIn, FrameIn, StreamAnalytics, StreamConfig, TaskResults
from faceflow.models.contract import AGE_BINS, ATTRIBUTES, RACES, VISIBILITY_POINTS

RNG = np.random.default_rng(7)
PEOPLE = {name: (RNG.standard_normal(128) * 0.09).astype(np.float32) for name in ("ann", "bob")}


def tasks(age_top: int = 3) -> TaskResults:
    age = np.full(len(AGE_BINS), 0.02, np.float32)
    age[age_top] = 1 - 0.02 * (len(AGE_BINS) - 1)
    return TaskResults(
        landmarks68=np.zeros((68, 2), np.float32),
        head_pose=np.zeros(3, np.float32),
        attributes=np.full(len(ATTRIBUTES), 0.2, np.float32),
        occlusion=np.full(len(VISIBILITY_POINTS), 0.1, np.float32),
        age=age,
        gender=np.array([0.8, 0.2], np.float32),
        race=np.full(len(RACES), 0.2, np.float32),
    )


def face(person: str, x: float, seq: int, *, analyzed: bool, index: int = 0) -> FaceIn:
    box = np.array([x, 40, x + 100, 160], np.float32)
    kps = np.array([[x + 30, 80], [x + 70, 80], [x + 50, 105], [x + 35, 130], [x + 65, 130]], np.float32)
    noise = np.random.default_rng(seq * 10 + index).standard_normal(128).astype(np.float32) * 0.01
    return FaceIn(
        face_index=index, box=box, score=0.95, keypoints5=kps, analyzed=analyzed, results_seq=seq,
        tasks=tasks() if analyzed else None, embedding=(PEOPLE[person] + noise) if analyzed else None,
    )  # fmt: skip


def run(stream: StreamAnalytics, frames: list[tuple[int, list[FaceIn]]], fps: float = 5.0) -> list:
    return [
        stream.apply(FrameIn(seq=seq, t=seq / fps, capture_ns=seq, faces=tuple(faces)))
        for seq, faces in frames
    ]


def walking(person: str, seqs: range, every: int = 5) -> list[tuple[int, list[FaceIn]]]:
    return [
        (s, [face(person, 10.0 + 4 * (s - seqs.start), s, analyzed=(s - seqs.start) % every == 0)])
        for s in seqs
    ]


def test_one_face_one_track_one_anonymous_identity_with_fused_results() -> None:
    stream = StreamAnalytics("cam", StreamConfig(), Gallery())
    outs = run(stream, walking("ann", range(0, 20)))
    assert {o.track_id for out in outs for o in out.observations} == {"t1"}
    kinds = [e.kind for out in outs for e in out.lifecycle]
    assert kinds[:2] == ["track_started", "identity_resolved"]
    last = outs[-1].observations[0].track
    assert last.identity is not None and last.identity.identity_id.startswith("anon-")
    assert last.identity.kind is IdentityKind.ANONYMOUS and last.observations == 20 and last.analyzed == 4
    assert last.fused is not None and last.fused.age.top_label == AGE_BINS[3] and last.fused.evidence == 4
    assert last.best_shot is not None
    assert any(put.identity_id == last.identity.identity_id for out in outs for put in out.gallery_puts)


def test_a_face_that_leaves_for_3_s_returns_as_a_new_track_with_the_same_identity() -> None:
    stream = StreamAnalytics("cam", StreamConfig(), Gallery())
    first = run(stream, walking("ann", range(0, 10)))
    back = run(stream, walking("ann", range(25, 35)))  # 5 s later at 5 fps: beyond max_lost_s
    before = first[-1].observations[0].track
    after = back[-1].observations[0].track
    assert before.track_id != after.track_id
    assert before.identity is not None and after.identity is not None
    assert after.identity.identity_id == before.identity.identity_id
    ended = [e for out in back for e in out.lifecycle if e.kind == "track_ended"]
    assert ended and ended[0].track is not None and ended[0].track.end_reason == "lost"


def test_two_people_get_two_identities_and_an_enrolled_person_is_named() -> None:
    gallery = Gallery()
    now = time.time()
    gallery.put(
        IdentityEntry(
            identity_id="id-bob", name="Bob", kind=IdentityKind.ENROLLED, embeddings=PEOPLE["bob"][None],
            origin_stream="", source="photos:1", created_s=now, updated_s=now, last_seen_s=now,
        )
    )  # fmt: skip
    stream = StreamAnalytics("cam", StreamConfig(), gallery)
    frames = [
        (
            s,
            [
                face("ann", 10.0 + 2 * s, s, analyzed=s % 5 == 0),
                face("bob", 400.0 - 2 * s, s, analyzed=s % 5 == 0, index=1),
            ],
        )
        for s in range(10)
    ]
    outs = run(stream, frames)
    ann, bob = (o.track for o in outs[-1].observations)
    assert ann.identity is not None and bob.identity is not None
    assert ann.identity.kind is IdentityKind.ANONYMOUS
    assert (bob.identity.identity_id, bob.identity.name) == ("id-bob", "Bob")
    assert bob.identity.distance < 0.3


def test_forgetting_an_identity_removes_it_from_tracks_and_later_observations() -> None:
    gallery = Gallery()
    stream = StreamAnalytics("cam", StreamConfig(), gallery)
    outs = run(stream, walking("ann", range(0, 6)))
    identity = outs[-1].observations[0].track.identity
    assert identity is not None
    gallery.remove(identity.identity_id)
    assert stream.forget_identity(identity.identity_id) == ["t1"]
    later = run(stream, [(6, [face("ann", 34.0, 6, analyzed=False)])])
    assert later[0].observations[0].track.identity is None


def test_repeats_are_dropped_and_the_end_of_stream_ends_every_track() -> None:
    stream = StreamAnalytics("cam", StreamConfig(), Gallery())
    run(stream, walking("ann", range(0, 3)))
    assert stream.apply(FrameIn(seq=2, t=0.4, capture_ns=0)).repeat
    end = stream.apply(FrameIn(seq=3, t=0.6, capture_ns=0, end_of_stream=True))
    assert [e.kind for e in end.lifecycle] == ["track_ended", "stream_ended"]
    assert stream.duplicates == 1 and stream.stream_ended
    # a stream that starts again (its pts from 0) goes on with new track ids
    again = run(stream, [(4, [face("ann", 10.0, 4, analyzed=True)])])
    assert again[0].observations[0].track_id == "t2"


def test_snapshot_restore_continues_exactly_as_the_original() -> None:
    gallery = Gallery()
    original = StreamAnalytics("cam", StreamConfig(), gallery, clock=lambda: 1000.0)
    frames = walking("ann", range(0, 30))
    run(original, frames[:12])
    snapshot = json.loads(json.dumps(original.snapshot()))
    restored = StreamAnalytics.restore(snapshot, StreamConfig(), gallery, clock=lambda: 1000.0)
    a = run(original, frames[12:])
    b = run(restored, frames[12:])
    for x, y in zip(a, b, strict=True):
        assert [(o.track_id, o.track.identity, o.track.observations) for o in x.observations] == [
            (o.track_id, o.track.identity, o.track.observations) for o in y.observations
        ]
        assert [e.kind for e in x.lifecycle] == [e.kind for e in y.lifecycle]


@pytest.mark.parametrize(
    ("snapshot", "message"),
    [({"version": 99}, "expected version 1"), ({"version": 1}, "malformed"), ([], "expected version 1")],
)
def test_a_malformed_snapshot_is_refused(snapshot: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StreamAnalytics.restore(snapshot, StreamConfig(), Gallery())  # type: ignore[arg-type]


def poor_shot(person: str, x: float, seq: int, *, away: float) -> FaceIn:
    """An analyzed face whose embedding is ``away`` from the person's (a blurred, half-visible shot)."""
    good = face(person, x, seq, analyzed=True)
    direction = np.random.default_rng(seq).standard_normal(128).astype(np.float32)
    drift = direction / np.linalg.norm(direction) * away
    return FaceIn(
        face_index=0, box=good.box, score=good.score, keypoints5=good.keypoints5, analyzed=True,
        results_seq=seq, tasks=good.tasks, embedding=PEOPLE[person] + drift,
    )  # fmt: skip


def test_a_return_first_seen_in_a_poor_shot_is_merged_into_the_person_once_better_shots_come() -> None:
    gallery = Gallery()
    stream = StreamAnalytics("cam", StreamConfig(), gallery)
    first = run(stream, walking("ann", range(0, 10)))
    ann = first[-1].observations[0].track.identity.identity_id
    # back 5 s later; the first analyzed shot of the return matches nobody: a new anonymous identity
    back = [(25, [poor_shot("ann", 10.0, 25, away=0.8)])]
    back += [(s, [face("ann", 10.0 + 4 * (s - 25), s, analyzed=s % 2 == 1)]) for s in range(26, 34)]
    outs = run(stream, back)
    orphan = outs[0].observations[0].track.identity.identity_id
    assert orphan != ann and orphan in [p.identity_id for p in outs[0].gallery_puts]
    # two good shots make the median say "ann": the track switches, the orphan is merged away
    merged = [i for i, out in enumerate(outs) if out.gallery_removes]
    assert len(merged) == 1 and outs[merged[0]].gallery_removes == (orphan,)
    assert gallery.get(orphan) is None and orphan not in [p.identity_id for p in outs[merged[0]].gallery_puts]
    resolved = [e.track for e in outs[merged[0]].lifecycle if e.kind == "identity_resolved"]
    assert resolved and resolved[0] is not None and resolved[0].identity.identity_id == ann
    assert outs[-1].observations[0].track.identity.identity_id == ann
    entry = gallery.get(ann)
    assert entry is not None and entry.embeddings.shape[0] > 1  # the return's shots joined its exemplars


def test_an_own_identity_another_track_uses_is_not_merged_away() -> None:
    gallery = Gallery()
    stream = StreamAnalytics("cam", StreamConfig(), gallery)
    ann = run(stream, walking("ann", range(0, 10)))[-1].observations[0].track.identity.identity_id
    # two faces appear together, far apart; the first is a poor shot of ann, the second bob
    frames = []
    for s in range(25, 34):
        a = poor_shot("ann", 10.0, s, away=0.8) if s == 25 else face("ann", 10.0, s, analyzed=s % 2 == 1)
        b = face("bob", 400.0, s, analyzed=s == 25, index=1)
        frames.append((s, [a, b]))
    outs = run(stream, frames)
    assert outs[-1].observations[0].track.identity.identity_id == ann
    assert sum(len(out.gallery_removes) for out in outs) == 1  # ann's orphan only; bob's stays
    bob = outs[-1].observations[1].track.identity
    assert bob is not None and gallery.get(bob.identity_id) is not None


# --- constraints on real-footage failure modes (issue: identities on real footage) --------------


def _enrolled(gallery: Gallery, name: str, embedding: np.ndarray) -> None:
    now = time.time()
    gallery.put(
        IdentityEntry(
            identity_id=f"id-{name}", name=name, kind=IdentityKind.ENROLLED, embeddings=embedding[None],
            origin_stream="", source="photos:1", created_s=now, updated_s=now, last_seen_s=now,
        )
    )  # fmt: skip


def test_two_faces_of_one_frame_near_one_identity_get_two_identities() -> None:
    # twins: both faces are within the naming threshold of the one enrolled person
    gallery = Gallery()
    _enrolled(gallery, "Ann", PEOPLE["ann"])
    stream = StreamAnalytics("cam", StreamConfig(), gallery)
    frames = [
        (s, [face("ann", 10.0, s, analyzed=True), face("ann", 400.0, s, analyzed=True, index=1)])
        for s in range(6)
    ]
    for out in run(stream, frames):
        ids = [o.track.identity.identity_id for o in out.observations if o.track.identity is not None]
        assert len(ids) == 2 and len(set(ids)) == 2, ids
    names = [o.track.identity.name for o in out.observations if o.track.identity is not None]
    assert sorted(names) == ["", "Ann"]


def test_an_identity_held_by_two_tracks_is_split_when_they_share_a_frame() -> None:
    # t1 creates an anonymous identity and goes unseen; t2 (alone, elsewhere) returns to it; then
    # both are in one frame, unanalyzed: only one may keep it
    stream = StreamAnalytics("cam", StreamConfig(), Gallery())
    first = run(stream, [(s, [face("ann", 10.0, s, analyzed=s == 0)]) for s in range(3)])
    a = first[-1].observations[0].track.identity
    # 0.47 from t1's descriptor: beyond the tracker's re-acquisition (0.45), within the anonymous
    # threshold (0.5), so t2 is a new track that returns to t1's identity
    shifted = poor_shot("ann", 400.0, 4, away=0.47)
    alone = run(stream, [(4, [shifted]), (5, [face("ann", 400.0, 5, analyzed=False)])])
    t2 = alone[-1].observations[0].track
    assert t2.track_id != "t1" and t2.identity is not None and a is not None
    assert t2.identity.identity_id == a.identity_id  # a returning face: t1 is not in these frames
    both = run(
        stream, [(6, [face("ann", 10.0, 6, analyzed=False), face("ann", 400.0, 6, analyzed=False, index=1)])]
    )
    tracks = [o.track for o in both[0].observations]
    assert [t.track_id for t in tracks] == ["t1", t2.track_id]
    ids = [t.identity.identity_id for t in tracks if t.identity is not None]
    assert len(ids) == 2 and len(set(ids)) == 2 and a.identity_id in ids


def test_a_shot_cut_ends_every_track_and_the_person_keeps_their_identity() -> None:
    # shot/reverse shot: Bob, then Ann at the very same place, then Bob again
    gallery = Gallery()
    _enrolled(gallery, "Bob", PEOPLE["bob"])
    stream = StreamAnalytics("cam", StreamConfig(), gallery)
    shots = [(1, "bob", 1), (6, "ann", 6), (11, "bob", 11)]  # (first seq, person, shot_start_seq)
    outs = []
    for start, person, shot_seq in shots:
        for s in range(start, start + 5):
            faces = (face(person, 10.0, s, analyzed=s == start),)
            outs.append(
                stream.apply(FrameIn(seq=s, t=s / 5, capture_ns=s, shot_start_seq=shot_seq, faces=faces))
            )
    tracks = [out.observations[0].track for out in outs]
    assert [t.track_id for t in tracks[::5]] == ["t1", "t2", "t3"]  # a new track at every cut
    assert [t.identity.name if t.identity else None for t in tracks[4::5]] == ["Bob", "", "Bob"]
    reasons = [
        e.track.end_reason for out in outs for e in out.lifecycle if e.kind == "track_ended" and e.track
    ]
    assert reasons == ["cut", "cut"] and stream.cuts == 2


@pytest.mark.parametrize(
    ("shots", "cuts"),
    [
        ([0, 0, 0, 0, 0, 0], 0),  # a producer without a cut detector
        ([0, 0, 0, 3, 3, 3], 1),  # a stream whose seqs start at 0: its first shot starts at seq 0
        ([7, 7, 7, 7, 7, 7], 0),  # restored or joined mid-shot: the first frame seen is no cut
    ],
)
def test_a_change_of_shot_id_is_a_cut(shots: list[int], cuts: int) -> None:
    stream = StreamAnalytics("cam", StreamConfig(), Gallery())
    outs = [
        stream.apply(
            FrameIn(
                seq=s, t=s / 5, capture_ns=s, shot_start_seq=shot,
                faces=(face("ann", 10.0, s, analyzed=s == 0),),
            )
        )
        for s, shot in enumerate(shots)
    ]  # fmt: skip
    assert len({out.observations[0].track.track_id for out in outs}) == 1 + cuts and stream.cuts == cuts


def test_a_blurred_first_shot_neither_names_nor_blocks_naming() -> None:
    gallery = Gallery()
    _enrolled(gallery, "Bob", PEOPLE["bob"])
    stream = StreamAnalytics("cam", StreamConfig(), gallery)
    blurred = face("ann", 10.0, 0, analyzed=True)  # the wrong descriptor, from a useless shot
    blurred = FaceIn(
        face_index=0, box=np.array([10, 40, 30, 62], np.float32), score=0.4, keypoints5=None,
        analyzed=True, results_seq=0, tasks=blurred.tasks, embedding=PEOPLE["bob"] + 0.0,
    )  # fmt: skip
    first = stream.apply(FrameIn(seq=0, t=0.0, capture_ns=0, faces=(blurred,)))
    track = first.observations[0].track
    assert track.identity is not None and track.identity.name == ""  # no name from a 20 px face
    outs = run(stream, [(s, [face("bob", 10.0 + s, s, analyzed=True)]) for s in range(1, 3)])
    assert outs[-1].observations[0].track.identity is not None
    assert outs[-1].observations[0].track.identity.name == "Bob"


def test_snapshot_keeps_cut_state_and_cannot_link_memory() -> None:
    stream = StreamAnalytics("cam", StreamConfig(), Gallery())
    for s in range(1, 4):
        stream.apply(
            FrameIn(
                seq=s, t=s / 5, capture_ns=s, shot_start_seq=1,
                faces=(face("ann", 10.0, s, analyzed=True), face("bob", 400.0, s, analyzed=True, index=1)),
            )
        )  # fmt: skip
    snap = json.loads(json.dumps(stream.snapshot()))
    restored = StreamAnalytics.restore(snap, StreamConfig(), stream.gallery)
    assert restored.snapshot() == snap
    assert restored.shot_start_seq == 1 and set(restored.tracks["t1"].cooccur) == {"t2"}
