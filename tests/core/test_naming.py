"""Open-set naming (faceflow.core.naming): the decision table and a track's evidence."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from faceflow.core.identity import Candidates, IdentityKind, IdentityMatch
from faceflow.core.naming import NamingPolicy, TrackIdentity, decide
from faceflow.models.contract import IDENTITY_DIM

POLICY = NamingPolicy(name_threshold=0.55, name_margin=0.05, anon_threshold=0.5, min_evidence=0.25)


def cands(**rows: tuple[float, str]) -> Candidates:
    """identity id -> (distance, name); a name of "" is an anonymous identity."""
    ids = tuple(sorted(rows))
    return Candidates(
        ids,
        np.array([rows[i][0] for i in ids], np.float64),
        np.array([bool(rows[i][1]) for i in ids]),
        tuple(rows[i][1] for i in ids),
    )


def held(identity_id: str, name: str = "", distance: float = 0.3) -> IdentityMatch:
    kind = IdentityKind.ENROLLED if name else IdentityKind.ANONYMOUS
    return IdentityMatch(identity_id=identity_id, name=name, kind=kind, distance=distance)


@pytest.mark.parametrize(
    ("current", "candidates", "own", "forbidden", "evidence", "want_id", "reason"),
    [
        (None, cands(a=(0.40, "Ann"), b=(0.70, "Bob")), None, set(), 1.0, "a", "named"),
        (None, cands(a=(0.58, "Ann"), b=(0.70, "Bob")), None, set(), 1.0, None, "no-match"),  # beyond 0.55
        (None, cands(a=(0.40, "Ann"), b=(0.43, "Bob")), None, set(), 1.0, None, "no-match"),  # ambiguous
        (None, cands(a=(0.40, "Ann"), a2=(0.42, "Ann")), None, set(), 1.0, "a", "named"),  # same name twice
        (None, cands(a=(0.40, "Ann")), None, set(), 0.1, None, "insufficient"),  # a blurred first shot
        (None, cands(a=(0.40, "Ann")), None, {"a"}, 1.0, None, "no-match"),  # Ann is in this frame already
        (held("a", "Ann"), cands(a=(0.40, "Ann")), None, {"a"}, 1.0, None, "cannot-link"),
        (held("a", "Ann"), cands(a=(0.45, "Ann"), b=(0.40, "Bob")), None, set(), 1.0, "a", "kept"),  # weak
        (held("a", "Ann"), cands(a=(0.60, "Ann"), b=(0.30, "Bob")), None, set(), 1.0, "b", "renamed"),
        (
            held("a", "Ann"),
            cands(a=(0.70, "Ann"), b=(0.90, "Bob")),
            None,
            set(),
            1.0,
            None,
            "no-match",
        ),  # released
        (held("own"), cands(own=(0.0, ""), x=(0.45, "")), "own", set(), 1.0, "x", "returning"),
        (held("own"), cands(own=(0.0, ""), x=(0.52, "")), "own", set(), 1.0, "own", "kept"),
        (held("own"), cands(own=(0.0, ""), a=(0.40, "Ann")), "own", set(), 1.0, "a", "named"),
        (held("own"), cands(own=(0.0, ""), x=(0.30, "")), "own", {"x"}, 1.0, "own", "kept"),  # co-occurs
        (None, cands(x=(0.45, "")), None, set(), 1.0, "x", "returning"),
        # a stranger seen before (x, clearly nearer) is not named after a look-alike
        (None, cands(x=(0.25, ""), a=(0.53, "Ann"), b=(0.70, "Bob")), None, set(), 1.0, "x", "returning"),
        (None, cands(x=(0.45, ""), a=(0.48, "Ann"), b=(0.70, "Bob")), None, set(), 1.0, "a", "named"),
    ],
)
def test_decide(
    current: IdentityMatch | None,
    candidates: Candidates,
    own: str | None,
    forbidden: set[str],
    evidence: float,
    want_id: str | None,
    reason: str,
) -> None:
    decision = decide(current, candidates, own=own, forbidden=forbidden, evidence=evidence, policy=POLICY)
    assert (None if decision.match is None else decision.match.identity_id, decision.reason) == (
        want_id,
        reason,
    )


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"name_threshold": 0.0}, "name_threshold: expected a distance in"),
        ({"name_margin": -0.1}, "name_margin: expected a number >= 0"),
        ({"min_quality": 2.0}, "min_quality: expected a quality in"),
        ({"anon_threshold": math.nan}, "anon_threshold: expected a finite number"),
    ],
)
def test_policy_validation(change: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        NamingPolicy(**change)


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=IDENTITY_DIM)
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_evidence_keeps_the_best_descriptors_when_full() -> None:
    track = TrackIdentity(capacity=2)
    assert track.add(unit(1), 0.9) and track.add(unit(2), 0.2)
    assert track.add(unit(3), 0.5)  # replaces the 0.2 one
    assert not track.add(unit(4), 0.1)  # worse than everything held
    assert np.allclose(track.weights(), [0.9, 0.5]) and track.added == 4
    usable, w = track.usable(0.6)
    assert usable.shape == (1, IDENTITY_DIM) and np.allclose(w, [0.9])
    with pytest.raises(ValueError, match=r"quality: expected a number in \[0, 1\]"):
        track.add(unit(5), 1.5)


def test_evidence_snapshot_round_trips_and_old_snapshots_restore_with_weight_one() -> None:
    track = TrackIdentity(capacity=3)
    track.add(unit(1), 0.7)
    snap = json.loads(json.dumps(track.snapshot()))
    assert TrackIdentity.restore(snap).snapshot() == snap
    del snap["weights"]
    assert np.allclose(TrackIdentity.restore(snap).weights(), [1.0])


def test_gallery_evidence_is_the_weighted_median_over_the_tracks_descriptors() -> None:
    from faceflow.core.identity import Gallery, IdentityEntry  # noqa: PLC0415

    ann = unit(1)
    gallery = Gallery()
    gallery.put(
        IdentityEntry(
            identity_id="id-ann", name="Ann", kind=IdentityKind.ENROLLED, embeddings=ann[None],
            origin_stream="", source="photo", created_s=0.0, updated_s=0.0, last_seen_s=0.0,
        )
    )  # fmt: skip
    away = [ann + d * unit(10 + i) for i, d in enumerate((0.2, 0.6, 0.9))]
    dist = [float(np.linalg.norm(v - ann)) for v in away]
    even = gallery.evidence(away[:2], [1.0, 1.0], stream_id="cam", cross_stream=False)
    assert even.distances[0] == pytest.approx(np.median(dist[:2]))  # not the nearer of the two
    weighted = gallery.evidence(away, [0.1, 0.1, 0.9], stream_id="cam", cross_stream=False)
    assert weighted.distances[0] == pytest.approx(dist[2])  # the good shot outweighs two poor ones
    with pytest.raises(ValueError, match="weights: expected 2 finite weights > 0"):
        gallery.evidence(away[:2], [1.0, 0.0], stream_id="cam", cross_stream=False)
