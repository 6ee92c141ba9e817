"""Tests for faceflow.core.identity: entries, exemplars, the gallery, ids and track linking."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from typing import Any

import numpy as np
import pytest

from faceflow.core.identity import (
    SNAPSHOT_VERSION,
    Gallery,
    IdentityEntry,
    IdentityKind,
    IdentityMatch,
    add_exemplars,
    anonymous_identity_id,
    new_identity_id,
)
from faceflow.core.naming import TrackIdentity
from faceflow.models.contract import IDENTITY_DIM


def person(seed: int) -> np.ndarray:
    """A random unit descriptor: two different people are ~1.4 apart."""
    v = np.random.default_rng(seed).normal(size=IDENTITY_DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def shot(base: np.ndarray, seed: int, spread: float = 0.2) -> np.ndarray:
    """Another descriptor of the same person, ``spread`` away from ``base``."""
    v = np.random.default_rng(10_000 + seed).normal(size=IDENTITY_DIM)
    return (base + spread * v / np.linalg.norm(v)).astype(np.float32)


def entry(
    identity_id: str = "id-000000000001",
    *,
    kind: IdentityKind = IdentityKind.ENROLLED,
    embeddings: Any = None,
    name: str | None = None,
    origin_stream: str | None = None,
    last_seen_s: float = 100.0,
) -> IdentityEntry:
    if name is None:
        name = "" if kind is IdentityKind.ANONYMOUS else "Ada"
    if origin_stream is None:
        origin_stream = "" if kind is IdentityKind.ENROLLED else "cam-1"
    return IdentityEntry(
        identity_id=identity_id,
        name=name,
        kind=kind,
        embeddings=person(1)[None] if embeddings is None else embeddings,
        origin_stream=origin_stream,
        source="test",
        created_s=10.0,
        updated_s=20.0,
        last_seen_s=last_seen_s,
    )


# --- entries ---------------------------------------------------------------------------------------


def test_entry_stores_a_read_only_float32_copy() -> None:
    emb = np.stack([person(1), person(2)]).astype(np.float64)
    e = entry(embeddings=emb)
    assert e.embeddings.dtype == np.float32 and e.embeddings.shape == (2, IDENTITY_DIM)
    assert not e.embeddings.flags.writeable
    emb[0, 0] = 99.0
    assert e.embeddings[0, 0] != 99.0
    assert entry(embeddings=person(3)).num_exemplars == 1  # a single [128] vector is one exemplar


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"identity_id": ""}, ValueError, "identity_id: expected a non-empty str"),
        ({"identity_id": "x" * 300}, ValueError, "identity_id: expected at most 256"),
        ({"kind": IdentityKind.ANONYMOUS, "name": "Bob"}, ValueError, "name: expected '' for an anonymous"),
        ({"kind": IdentityKind.NAMED, "name": " "}, ValueError, "name: expected a non-empty name"),
        ({"origin_stream": "cam-1"}, ValueError, "origin_stream: expected '' for an enrolled"),
        (
            {"kind": IdentityKind.ANONYMOUS, "origin_stream": ""},
            ValueError,
            "origin_stream: expected the stream",
        ),
        ({"embeddings": np.zeros((0, IDENTITY_DIM))}, ValueError, "embeddings: expected at least one"),
        ({"embeddings": np.zeros((2, 64))}, ValueError, r"embeddings: expected shape \[k,128\]"),
        ({"embeddings": np.full((1, IDENTITY_DIM), np.nan)}, ValueError, "embeddings: expected finite"),
        ({"embeddings": "abc"}, TypeError, "embeddings: expected a numeric array"),
    ],
)
def test_entry_validation(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        entry(**kwargs)


@pytest.mark.parametrize(
    ("field", "value", "error", "match"),
    [
        ("kind", "enrolled", TypeError, "kind: expected an IdentityKind"),
        ("created_s", math.nan, ValueError, "created_s: expected finite epoch seconds"),
        ("updated_s", "now", ValueError, "updated_s"),
        ("last_seen_s", True, ValueError, "last_seen_s"),
        ("source", None, TypeError, "source: expected a str"),
    ],
)
def test_entry_field_validation(field: str, value: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        dataclasses.replace(entry(), **{field: value})


def test_entry_to_dict_round_trips_exactly_through_json() -> None:
    e = entry(kind=IdentityKind.NAMED, embeddings=np.stack([person(1), person(2)]))
    doc = json.loads(json.dumps(e.to_dict()))
    back = IdentityEntry.from_dict(doc)
    assert np.array_equal(back.embeddings, e.embeddings)
    assert back.to_dict() == e.to_dict()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"version": 2}, "identity.version: expected 1"),
        ({"kind": "friend"}, "identity: 'friend' is not a valid IdentityKind"),
        ({"embeddings": [["0.1"] * IDENTITY_DIM]}, "embeddings: expected a list of lists of numbers"),
        ({"embeddings": []}, "embeddings: expected at least one"),
        ({"extra": 1}, "identity: expected keys"),
        ({"created_s": None}, "created_s"),
    ],
)
def test_entry_from_dict_rejects_malformed_input(change: dict[str, Any], match: str) -> None:
    doc = {**entry().to_dict(), **change}
    with pytest.raises(ValueError, match=match):
        IdentityEntry.from_dict(doc)


def test_naming_an_anonymous_identity_makes_it_named() -> None:
    anon = entry("anon-1", kind=IdentityKind.ANONYMOUS)
    named = anon.with_name("Grace", now_s=50.0)
    assert named.kind is IdentityKind.NAMED and named.name == "Grace" and named.updated_s == 50.0
    assert named.embeddings is anon.embeddings
    assert anon.seen(50.0).last_seen_s == 100.0  # never lowered
    assert anon.seen(150.0).last_seen_s == 150.0


# --- exemplars -------------------------------------------------------------------------------------


def min_pairwise(x: np.ndarray) -> float:
    d = np.linalg.norm(x[:, None].astype(np.float64) - x[None].astype(np.float64), axis=-1)
    np.fill_diagonal(d, np.inf)
    return float(d.min())


def test_add_exemplars_skips_near_duplicates_and_appends_distinct_ones() -> None:
    base = person(1)
    e = entry(embeddings=base[None])
    near = shot(base, 1, spread=0.05)
    far = shot(base, 2, spread=0.3)
    out = add_exemplars(e, np.stack([near, far]), min_spacing=0.1, now_s=42.0)
    assert out.num_exemplars == 2
    assert np.array_equal(out.embeddings[1], far)
    assert out.updated_s == 42.0
    assert add_exemplars(e, near[None], min_spacing=0.1, now_s=42.0) is e  # nothing changed
    assert add_exemplars(e, np.zeros((0, IDENTITY_DIM))) is e


def test_add_exemplars_stays_bounded_and_spread_out() -> None:
    base = person(1)
    e = entry(embeddings=base[None])
    spreads = []
    for i in range(200):
        e = add_exemplars(e, shot(base, i, spread=0.3)[None], max_exemplars=8, min_spacing=0.1)
        assert e.num_exemplars <= 8
        if e.num_exemplars == 8:
            spreads.append(min_pairwise(e.embeddings))
    assert e.num_exemplars == 8
    # replacing the most redundant point never shrinks the smallest pairwise distance
    assert all(b >= a - 1e-6 for a, b in itertools.pairwise(spreads))
    assert spreads[-1] > spreads[0]


def test_add_exemplars_is_deterministic() -> None:
    base = person(4)
    new = np.stack([shot(base, i, 0.3) for i in range(40)])
    a = add_exemplars(entry(embeddings=base[None]), new, max_exemplars=5)
    b = add_exemplars(entry(embeddings=base[None]), new, max_exemplars=5)
    assert np.array_equal(a.embeddings, b.embeddings)


def test_add_exemplars_replaces_one_of_the_closest_pair_with_an_outlier() -> None:
    a, b, c = person(1), person(2), person(3)
    close = (a + 0.15 * (b - a) / np.linalg.norm(b - a)).astype(np.float32)  # 0.15 from a
    e = entry(embeddings=np.stack([a, close, b]))
    out = add_exemplars(e, c[None], max_exemplars=3, min_spacing=0.1)
    kept = {tuple(np.round(v, 5)) for v in out.embeddings}
    assert tuple(np.round(c, 5)) in kept
    assert tuple(np.round(b, 5)) in kept
    assert len(kept & {tuple(np.round(a, 5)), tuple(np.round(close, 5))}) == 1


def test_add_exemplars_thins_an_oversized_entry() -> None:
    e = entry(embeddings=np.stack([person(i) for i in range(6)]))
    assert add_exemplars(e, np.zeros((0, IDENTITY_DIM)), max_exemplars=4).num_exemplars == 4


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"max_exemplars": 0}, ValueError, "max_exemplars: expected an int >= 1"),
        ({"max_exemplars": 2.0}, TypeError, "max_exemplars"),
        ({"min_spacing": -0.1}, ValueError, "min_spacing"),
        ({"min_spacing": math.inf}, ValueError, "min_spacing"),
        ({"new": np.zeros((2, 10))}, ValueError, r"new: expected shape \[k,128\]"),
        ({"now_s": math.nan}, ValueError, "now_s"),
    ],
)
def test_add_exemplars_validation(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    args: dict[str, Any] = {"new": person(9)[None], **kwargs}
    new = args.pop("new")
    with pytest.raises(error, match=match):
        add_exemplars(entry(), new, **args)


# --- ids -------------------------------------------------------------------------------------------


def test_anonymous_ids_are_deterministic_and_distinct() -> None:
    a = anonymous_identity_id("cam-1", "t7", 120)
    assert re.fullmatch(r"anon-[0-9a-f]{12}", a)
    assert a == anonymous_identity_id("cam-1", "t7", 120)
    others = {
        anonymous_identity_id("cam-2", "t7", 120),
        anonymous_identity_id("cam-1", "t8", 120),
        anonymous_identity_id("cam-1", "t7", 121),
        anonymous_identity_id("cam-1t", "7", 120),  # no ambiguity across the field boundary
    }
    assert a not in others and len(others) == 4


def test_new_identity_ids_are_deterministic_and_distinct() -> None:
    a = new_identity_id("Ada", 1_700_000_000_000_000_000)
    assert re.fullmatch(r"id-[0-9a-f]{12}", a)
    assert a == new_identity_id("Ada", 1_700_000_000_000_000_000)
    assert a != new_identity_id("Ada", 1_700_000_000_000_000_001)
    assert a != new_identity_id("Bob", 1_700_000_000_000_000_000)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: anonymous_identity_id("", "t", 0), ValueError, "stream_id: expected a non-empty str"),
        (lambda: anonymous_identity_id("s", "", 0), ValueError, "track_id"),
        (lambda: anonymous_identity_id("s", "t", -1), ValueError, "first_seq: expected an int >= 0"),
        (lambda: anonymous_identity_id("s", "t", True), TypeError, "first_seq"),
        (lambda: anonymous_identity_id("s", 3, 0), TypeError, "track_id: expected a str"),
        (lambda: new_identity_id("", 0), ValueError, "name"),
        (lambda: new_identity_id("Ada", 1.5), TypeError, "created_ns"),
    ],
)
def test_id_validation(call: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


# --- gallery ---------------------------------------------------------------------------------------


def test_gallery_basic_operations() -> None:
    g = Gallery(max_identities=10)
    ada = entry("id-a", name="Ada")
    ada2 = entry("id-b", name="Ada", embeddings=person(2)[None])
    anon = entry("anon-c", kind=IdentityKind.ANONYMOUS, embeddings=person(3)[None])
    for e in (anon, ada2, ada):
        assert g.put(e) is None
    assert len(g) == 3 and "id-a" in g and g.get("id-a") is ada and g.get("nope") is None
    assert [e.identity_id for e in g.by_name("Ada")] == ["id-a", "id-b"]
    assert [e.identity_id for e in g.entries()] == ["anon-c", "id-a", "id-b"]
    assert [e.identity_id for e in g.entries(IdentityKind.ANONYMOUS)] == ["anon-c"]
    renamed = ada2.with_name("Bea", now_s=30.0)
    g.put(renamed)
    assert [e.identity_id for e in g.by_name("Ada")] == ["id-a"]
    assert g.by_name("Bea") == [renamed]
    assert g.remove("id-a") and not g.remove("id-a")
    assert g.by_name("Ada") == [] and len(g) == 2


def test_match_finds_the_right_person_under_the_threshold() -> None:
    g = Gallery()
    bases = {i: person(i) for i in range(20)}
    for i, base in bases.items():
        g.put(
            entry(
                f"id-{i:02d}", name=f"P{i}", embeddings=np.stack([shot(base, 100 + i), shot(base, 200 + i)])
            )
        )
    query = np.stack([shot(bases[7], k, 0.15) for k in range(5)])
    m = g.match(query, stream_id="cam-1", cross_stream=False)
    assert m is not None and m.identity_id == "id-07" and m.name == "P7" and m.kind is IdentityKind.ENROLLED
    assert 0.0 < m.distance < 0.5
    assert g.match(person(999)[None], stream_id="cam-1", cross_stream=False) is None
    assert g.match(query, stream_id="cam-1", cross_stream=False, threshold=m.distance - 1e-3) is None


def test_match_distance_is_the_median_of_per_descriptor_minimums() -> None:
    base = person(1)
    g = Gallery()
    g.put(entry("id-a", embeddings=np.stack([base, person(50)])))
    good = [shot(base, k, 0.2) for k in range(4)]
    bad = person(77)  # one bad frame: a different face entirely
    query = np.stack([*good, bad])
    m = g.match(query, stream_id="s", cross_stream=False)
    assert m is not None and m.identity_id == "id-a"
    per = [min(np.linalg.norm(q - base), np.linalg.norm(q - person(50))) for q in query.astype(np.float64)]
    assert m.distance == pytest.approx(float(np.median(per)), abs=1e-5)
    assert g.distances(query)["id-a"] == pytest.approx(m.distance)


def test_anonymous_identities_match_only_their_own_stream_unless_cross_stream() -> None:
    base = person(1)
    g = Gallery()
    g.put(entry("anon-a", kind=IdentityKind.ANONYMOUS, origin_stream="cam-1", embeddings=base[None]))
    query = shot(base, 1, 0.2)[None]
    m = g.match(query, stream_id="cam-1", cross_stream=False)
    assert m is not None and m.identity_id == "anon-a" and m.name == ""
    assert g.match(query, stream_id="cam-2", cross_stream=False) is None
    m2 = g.match(query, stream_id="cam-2", cross_stream=True)
    assert m2 is not None and m2.identity_id == "anon-a"


def test_named_identities_match_on_every_stream() -> None:
    base = person(1)
    g = Gallery()
    g.put(entry("id-a", kind=IdentityKind.NAMED, origin_stream="cam-1", embeddings=base[None]))
    assert g.match(shot(base, 1)[None], stream_id="cam-9", cross_stream=False) is not None


def _offset(base: np.ndarray, distance: float, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=IDENTITY_DIM)
    return (base + distance * v / np.linalg.norm(v)).astype(np.float32)


@pytest.mark.parametrize(
    ("anon_distance", "known_distance", "expected"),
    [
        (0.20, 0.23, "id-known"),  # within the margin: prefer the known person
        (0.20, 0.30, "anon-x"),  # known much farther: the anonymous one is the better match
        (0.30, 0.20, "id-known"),  # known simply nearer
        (0.40, 0.52, "anon-x"),  # known within the margin but over the threshold
    ],
)
def test_known_identities_are_preferred_within_a_margin(
    anon_distance: float, known_distance: float, expected: str
) -> None:
    q = person(1)
    g = Gallery()
    g.put(
        entry(
            "anon-x", kind=IdentityKind.ANONYMOUS, origin_stream="s", embeddings=_offset(q, anon_distance, 1)
        )
    )
    g.put(entry("id-known", embeddings=_offset(q, known_distance, 2)))
    m = g.match(q[None], stream_id="s", cross_stream=False, threshold=0.5, known_margin=0.05)
    assert m is not None and m.identity_id == expected


def test_match_is_vectorised_and_agrees_with_brute_force_on_a_large_gallery() -> None:
    rng = np.random.default_rng(0)
    g = Gallery()
    exemplars: dict[str, np.ndarray] = {}
    for i in range(1000):
        ex = rng.normal(size=(16, IDENTITY_DIM)).astype(np.float32) * 0.09
        kind = IdentityKind.ANONYMOUS if i % 3 == 0 else IdentityKind.ENROLLED
        e = entry(
            f"id-{i:04d}",
            kind=kind,
            embeddings=ex,
            origin_stream="s" if kind is IdentityKind.ANONYMOUS else "",
        )
        g.put(e)
        exemplars[e.identity_id] = ex.astype(np.float64)
    target = exemplars["id-0412"]
    query = (target[[0, 3, 5]] + rng.normal(size=(3, IDENTITY_DIM)) * 0.01).astype(np.float32)
    brute = {
        i: float(np.median([np.linalg.norm(ex - q, axis=1).min() for q in query.astype(np.float64)]))
        for i, ex in exemplars.items()
    }
    fast = g.distances(query)
    assert fast.keys() == brute.keys()
    assert max(abs(fast[i] - brute[i]) for i in brute) < 1e-4
    m = g.match(query, stream_id="s", cross_stream=False, threshold=0.5)
    assert m is not None and m.identity_id == "id-0412"


def test_the_index_follows_changes() -> None:
    g = Gallery()
    base = person(1)
    q = shot(base, 1)[None]
    assert g.match(q, stream_id="s", cross_stream=False) is None
    g.put(entry("id-a", embeddings=person(2)[None]))
    assert g.match(q, stream_id="s", cross_stream=False) is None
    g.put(add_exemplars(g.get("id-a"), base[None]))  # type: ignore[arg-type]
    m = g.match(q, stream_id="s", cross_stream=False)
    assert m is not None and m.identity_id == "id-a"
    g.remove("id-a")
    assert g.match(q, stream_id="s", cross_stream=False) is None


def test_eviction_drops_the_least_recently_seen_anonymous_identity() -> None:
    g = Gallery(max_identities=3)
    g.put(entry("id-named", kind=IdentityKind.NAMED, last_seen_s=1.0))
    g.put(entry("anon-old", kind=IdentityKind.ANONYMOUS, last_seen_s=10.0))
    g.put(entry("anon-new", kind=IdentityKind.ANONYMOUS, last_seen_s=20.0))
    assert g.touch("anon-old", 30.0) and not g.touch("missing", 30.0)
    assert g.put(entry("anon-third", kind=IdentityKind.ANONYMOUS, last_seen_s=25.0)) == "anon-new"
    assert sorted(e.identity_id for e in g.entries()) == ["anon-old", "anon-third", "id-named"]
    # replacing an existing id never evicts
    assert g.put(entry("anon-old", kind=IdentityKind.ANONYMOUS, last_seen_s=40.0)) is None
    assert g.put(entry("anon-fourth", kind=IdentityKind.ANONYMOUS, last_seen_s=50.0)) == "anon-third"


def test_a_gallery_full_of_known_people_refuses_instead_of_evicting() -> None:
    g = Gallery(max_identities=2)
    g.put(entry("id-a"))
    g.put(entry("anon-b", kind=IdentityKind.ANONYMOUS))
    g.put(g.get("anon-b").with_name("Bob", now_s=1.0))  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"gallery: expected room for identity 'id-c'.*max_identities=2"):
        g.put(entry("id-c"))
    with pytest.raises(ValueError, match="expected room"):
        g.put(entry("anon-d", kind=IdentityKind.ANONYMOUS))
    assert len(g) == 2


def test_eviction_stays_correct_under_many_touches() -> None:
    g = Gallery(max_identities=50)
    for i in range(50):
        g.put(entry(f"anon-{i:03d}", kind=IdentityKind.ANONYMOUS, last_seen_s=float(i)))
    for t in range(1000):  # keep touching everything but anon-007
        i = t % 50
        if i != 7:
            g.touch(f"anon-{i:03d}", 1000.0 + t)
    assert g.put(entry("anon-new", kind=IdentityKind.ANONYMOUS, last_seen_s=5000.0)) == "anon-007"
    assert len(g._heap) <= 2 * 50 + 64 + 1  # the lazy heap is compacted


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"embeddings": np.zeros((0, IDENTITY_DIM))}, ValueError, "embeddings: expected at least one"),
        ({"embeddings": np.zeros((3, 127))}, ValueError, r"embeddings: expected shape \[k,128\]"),
        ({"threshold": -0.1}, ValueError, "threshold: expected a finite distance"),
        ({"threshold": math.nan}, ValueError, "threshold"),
        ({"known_margin": -1.0}, ValueError, "known_margin"),
        ({"cross_stream": 1}, TypeError, "cross_stream: expected a bool"),
        ({"stream_id": None}, TypeError, "stream_id: expected a str"),
    ],
)
def test_match_validation(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    g = Gallery()
    g.put(entry())
    args: dict[str, Any] = {"embeddings": person(1)[None], "stream_id": "s", "cross_stream": False, **kwargs}
    embeddings = args.pop("embeddings")
    with pytest.raises(error, match=match):
        g.match(embeddings, **args)


def test_gallery_snapshot_round_trips() -> None:
    g = Gallery(max_identities=5)
    g.put(entry("id-a", embeddings=np.stack([person(1), person(2)])))
    g.put(entry("anon-b", kind=IdentityKind.ANONYMOUS, embeddings=person(3)[None], last_seen_s=3.0))
    g.put(entry("anon-c", kind=IdentityKind.ANONYMOUS, embeddings=person(4)[None], last_seen_s=2.0))
    snap = g.snapshot()
    r = Gallery.restore(json.loads(json.dumps(snap)))
    assert r.snapshot() == snap and r.max_identities == 5
    q = shot(person(3), 1)[None]
    assert r.match(q, stream_id="cam-1", cross_stream=False) == g.match(
        q, stream_id="cam-1", cross_stream=False
    )
    for gallery in (g, r):
        gallery.put(entry("id-d"))
        gallery.put(entry("id-e"))
        assert gallery.put(entry("id-f")) == "anon-c"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"version": 0}, "snapshot.version"),
        ({"max_identities": 0}, "max_identities: expected an int >= 1"),
        ({"max_identities": 1}, "snapshot.entries: expected at most 1"),
        ({"entries": {}}, "snapshot.entries: expected a list"),
        ({"entries": [{"version": 1}]}, r"snapshot.entries\[0\]: identity: expected keys"),
    ],
)
def test_gallery_restore_rejects_malformed_input(change: dict[str, Any], match: str) -> None:
    g = Gallery()
    g.put(entry("id-a"))
    g.put(entry("id-b"))
    with pytest.raises(ValueError, match=match):
        Gallery.restore({**g.snapshot(), **change})


def test_gallery_restore_rejects_duplicates() -> None:
    g = Gallery()
    g.put(entry("id-a"))
    snap = g.snapshot()
    snap["entries"] = snap["entries"] * 2
    with pytest.raises(ValueError, match="duplicate identity_id 'id-a'"):
        Gallery.restore(snap)


# --- track identity --------------------------------------------------------------------------------


def test_track_identity_keeps_a_bounded_ring_of_descriptors() -> None:
    track = TrackIdentity(capacity=3)
    assert track.descriptors().shape == (0, IDENTITY_DIM) and track.identity_id is None
    for i in range(5):
        track.add(person(i))
    assert len(track) == 3 and track.added == 5
    assert np.array_equal(track.descriptors(), np.stack([person(2), person(3), person(4)]))
    match = IdentityMatch(identity_id="id-a", name="Ada", kind=IdentityKind.ENROLLED, distance=0.3)
    track.assign(match)
    assert (track.identity_id, track.name, track.kind, track.distance) == (
        "id-a",
        "Ada",
        IdentityKind.ENROLLED,
        0.3,
    )
    track.assign(None)
    assert track.identity_id is None and track.name == "" and track.kind is None and track.distance is None


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (np.zeros(64), ValueError, r"embedding: expected shape \[k,128\]"),
        (np.zeros((2, IDENTITY_DIM)), ValueError, "embedding: expected one descriptor"),
        (np.full(IDENTITY_DIM, np.inf), ValueError, "embedding: expected finite"),
    ],
)
def test_track_identity_add_validation(value: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        TrackIdentity().add(value)


def test_track_identity_snapshot_round_trips_and_continues_exactly() -> None:
    track = TrackIdentity(capacity=4)
    for i in range(6):
        track.add(person(i))
    track.assign(IdentityMatch(identity_id="anon-x", name="", kind=IdentityKind.ANONYMOUS, distance=0.25))
    snap = track.snapshot()
    assert snap["version"] == SNAPSHOT_VERSION
    restored = TrackIdentity.restore(json.loads(json.dumps(snap)))
    assert restored.snapshot() == snap
    for t in (track, restored):
        t.add(person(99))
    assert np.array_equal(track.descriptors(), restored.descriptors())
    assert restored.match == track.match and restored.added == track.added == 7
    assert TrackIdentity.restore(TrackIdentity().snapshot()).snapshot() == TrackIdentity().snapshot()


def _track_snapshot() -> dict[str, Any]:
    track = TrackIdentity(capacity=2)
    track.add(person(1))
    return json.loads(json.dumps(track.snapshot()))


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"version": 5}, "snapshot.version"),
        ({"capacity": 0}, "capacity: expected an int >= 1"),
        ({"added": -1}, "added: expected an int >= 0"),
        ({"added": 0}, "descriptors: expected at most"),
        ({"descriptors": [[1.0] * 5]}, r"descriptors: expected shape \[k,128\]"),
        ({"descriptors": [[True] * IDENTITY_DIM]}, "descriptors: expected a list of lists"),
        ({"match": {"identity_id": "a"}}, "match: expected identity_id, name, kind, distance"),
        (
            {"match": {"identity_id": "a", "name": "", "kind": "x", "distance": 0.1}},
            "not a valid IdentityKind",
        ),
        ({"match": {"identity_id": "a", "name": "", "kind": "named", "distance": -1.0}}, "distance"),
    ],
)
def test_track_identity_restore_rejects_malformed_input(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrackIdentity.restore({**_track_snapshot(), **change})


def test_track_identity_restore_names_a_missing_key() -> None:
    snap = _track_snapshot()
    del snap["added"]
    with pytest.raises(ValueError, match="expected key 'added'"):
        TrackIdentity.restore(snap)


def test_refreshing_last_seen_keeps_the_descriptor_array_and_the_index() -> None:
    e = entry("anon-a", kind=IdentityKind.ANONYMOUS, embeddings=person(1))
    assert e.seen(500.0).embeddings is e.embeddings
    g = Gallery()
    g.put(e)
    g.match(person(1)[None], stream_id="cam-1", cross_stream=False)
    index = g._index
    g.touch("anon-a", 600.0)
    g.put(g.get("anon-a"))  # type: ignore[arg-type]
    assert g._index is index and g.get("anon-a").last_seen_s == 600.0  # type: ignore[union-attr]


def test_a_same_size_exemplar_change_patches_the_index_and_matches_as_a_rebuild() -> None:
    def anon(i: int, seeds: tuple[int, ...]) -> IdentityEntry:
        shots = np.stack([shot(person(i), s) for s in seeds])
        return entry(f"anon-{i}", kind=IdentityKind.ANONYMOUS, embeddings=shots)

    patched = Gallery()
    for i in range(1, 6):
        patched.put(anon(i, (1, 2, 3)))
    probe = shot(person(3), 99)[None]
    patched.match(probe, stream_id="cam-1", cross_stream=False)
    index = patched._index
    patched.put(anon(3, (4, 5, 6)))  # three exemplars again: written in place
    assert patched._index is index
    patched.put(anon(4, (7, 8)))  # a different count: rebuilt on the next match
    assert patched._index is None

    fresh = Gallery()
    for e in [
        anon(1, (1, 2, 3)),
        anon(2, (1, 2, 3)),
        anon(3, (4, 5, 6)),
        anon(4, (7, 8)),
        anon(5, (1, 2, 3)),
    ]:
        fresh.put(e)
    patched.put(anon(4, (1, 2, 3)))
    fresh.put(anon(4, (1, 2, 3)))
    patched.match(probe, stream_id="cam-1", cross_stream=False)
    index = patched._index
    patched.put(anon(2, (9, 10, 11)))
    fresh.put(anon(2, (9, 10, 11)))
    assert patched._index is index
    assert patched.distances(probe) == fresh.distances(probe)
    assert patched.match(probe, stream_id="cam-1", cross_stream=False) == fresh.match(
        probe, stream_id="cam-1", cross_stream=False
    )
