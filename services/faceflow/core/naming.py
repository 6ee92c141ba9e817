"""Who is behind a track: open-set identification from a track's accumulated evidence (pure).

Naming is *open-set* identification: most faces a camera sees belong to nobody in the gallery,
and the costly error is a false name (a stranger named as an enrolled person), the common one a
missed name. So a track is not named from one frame but from everything it has seen:

* :class:`TrackIdentity` keeps a track's best descriptors with their quality
  (:func:`evidence_quality`: what the embedder's input was worth), at most ``capacity``; when
  full, the least useful one is dropped (lowest quality, then oldest).
* :meth:`faceflow.core.identity.Gallery.evidence` turns them into one distance per identity: the
  quality-weighted median over the track's descriptors of the nearest exemplar.
* :func:`decide` applies :class:`NamingPolicy`:

  1. descriptors below ``min_quality`` are no evidence; until the evidence sums to
     ``min_evidence`` a track is neither named nor re-linked (it keeps what it has, or gets an
     anonymous identity of its own), so a blurred first shot neither names nor blocks naming;
  2. **cannot-link**: identities held by tracks that share (or shared) a frame with this one are
     never candidates: two faces of one frame are two people;
  3. a known (enrolled or named) identity names the track when its distance is at most
     ``name_threshold`` *and* the nearest known identity of another name is at least
     ``name_margin`` farther (an ambiguous face stays unnamed) *and* no anonymous identity is
     more than ``name_margin`` nearer (a stranger seen before is not named after a look-alike);
  4. a named track changes its name only on clearly stronger evidence (``switch_margin``), and
     loses it when its evidence drifts past ``name_threshold + release_margin``;
  5. otherwise an anonymous identity of the stream within ``anon_threshold`` (stricter: two
     strangers merged are a wrong identity nobody will correct) takes the track (a returning
     face); else the track keeps, or gets, its own anonymous identity.

The operating point (``name_threshold``) is calibrated on the real-footage set in ``eval/``
(``bench/identities.py`` prints the false-name / recall trade-off); dlib documents 0.6 on its
descriptors for 99.38% on LFW, which is a verification operating point, not an open-set one.

Pure: numpy and our own types only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Set
from dataclasses import dataclass, fields
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from faceflow.core.identity import (
    SNAPSHOT_VERSION,
    Candidates,
    IdentityKind,
    IdentityMatch,
    _check_header,
    _check_int,
    _descriptors,
    _frozen,
    _number_rows,
)
from faceflow.core.quality import detection_quality
from faceflow.models.contract import IDENTITY_DIM

__all__ = ["Decision", "NamingPolicy", "TrackIdentity", "decide", "evidence_quality"]

#: Face sides (pixels) at which a descriptor is worth nothing / fully worth it as identity evidence.
#: dlib aligns a 150 px chip from the face: a 64 px face gives a sound descriptor (same person
#: 0.15-0.45 apart on eval/), a 16 px one a number near everybody. Fusion's quality curve (24 to
#: 112 px) is for the face model's 224 px crop and would throw away most faces a camera sees.
EVIDENCE_MIN_SIDE_PX: Final[float] = 16.0
EVIDENCE_GOOD_SIDE_PX: Final[float] = 64.0


def evidence_quality(box: npt.ArrayLike, score: float, keypoints5: npt.ArrayLike | None) -> float:
    """How much one face's descriptor is worth as identity evidence, in [0, 1]: the detector's
    score x size (16 to 64 px) x frontalness. The face model's pose and occlusion are left out:
    dlib aligns its own chip, and the face model may run with random weights."""
    return detection_quality(
        box,
        min(1.0, max(0.0, float(score))),
        keypoints5,
        min_side_px=EVIDENCE_MIN_SIDE_PX,
        good_side_px=EVIDENCE_GOOD_SIDE_PX,
    )


Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class NamingPolicy:
    """The open-set operating point (distances are dlib Euclidean; see the module docstring)."""

    name_threshold: float = 0.55
    name_margin: float = 0.05
    anon_threshold: float = 0.5
    switch_margin: float = 0.1
    release_margin: float = 0.1
    min_quality: float = 0.05
    min_evidence: float = 0.1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{f.name}: expected a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"{f.name}: expected a number >= 0, got {value!r}")
        for name in ("name_threshold", "anon_threshold"):
            if not 0 < getattr(self, name) < 2:
                raise ValueError(f"{name}: expected a distance in (0, 2), got {getattr(self, name)!r}")
        if self.min_quality > 1:
            raise ValueError(f"min_quality: expected a quality in [0, 1], got {self.min_quality!r}")


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` chose: ``match`` (None: give the track an anonymous identity of its
    own) and ``reason`` ("named", "kept", "renamed", "released", "returning", "insufficient",
    "no-match", "cannot-link"), for logs and tests."""

    match: IdentityMatch | None
    reason: str


def _match(c: Candidates, i: int) -> IdentityMatch:
    kind = IdentityKind.ANONYMOUS if not c.known[i] else IdentityKind.NAMED
    return IdentityMatch(identity_id=c.ids[i], name=c.names[i], kind=kind, distance=float(c.distances[i]))


def decide(
    current: IdentityMatch | None,
    candidates: Candidates,
    *,
    own: str | None,
    forbidden: Set[str],
    evidence: float,
    policy: NamingPolicy,
) -> Decision:
    """The identity a track should hold now (see the module docstring).

    ``current``: what it holds; ``own``: the id of the anonymous identity it created itself, if it
    holds it (never a candidate: it holds only this track's own descriptors); ``forbidden``: the
    cannot-link identities; ``evidence``: the summed quality of its usable descriptors. The
    returned match's ``kind`` says known (NAMED stands for ENROLLED too) or anonymous; the caller
    reads the entry's real kind from the gallery.
    """
    dist = candidates.distances.copy()
    ids = candidates.ids
    pos = candidates.positions or {identity_id: k for k, identity_id in enumerate(ids)}
    for identity_id in (*forbidden, own):
        k = pos.get(identity_id) if identity_id is not None else None
        if k is not None:
            dist[k] = np.inf
    if current is not None and current.identity_id in forbidden:
        return Decision(None, "cannot-link")
    if evidence < policy.min_evidence:
        return Decision(current, "insufficient")
    held = current is not None and current.identity_id in pos
    known = candidates.known & np.isfinite(dist)
    best_known: int | None = None
    if known.any():
        kd = np.where(known, dist, np.inf)
        k1 = int(np.argmin(kd))
        codes = candidates.name_codes
        if codes.shape[0] == len(ids):
            other_name = codes != codes[k1]
        else:
            other_name = np.asarray(candidates.names) != candidates.names[k1]
        runner_up = float(np.where(known & other_name, dist, np.inf).min())
        # a stranger's own earlier anonymous identity, clearly nearer, says it is not this person
        anonymous = float(np.where(~candidates.known, dist, np.inf).min()) if len(ids) else math.inf
        if (
            kd[k1] <= policy.name_threshold
            and runner_up - kd[k1] >= policy.name_margin
            and kd[k1] <= anonymous + policy.name_margin
        ):
            best_known = k1
    if held and current is not None and candidates.known[pos[current.identity_id]]:
        dc = float(candidates.distances[pos[current.identity_id]])
        if (
            best_known is not None
            and ids[best_known] != current.identity_id
            and float(dist[best_known]) + policy.switch_margin < dc
        ):
            return Decision(_match(candidates, best_known), "renamed")
        if dc <= policy.name_threshold + policy.release_margin:
            return Decision(_match(candidates, pos[current.identity_id]), "kept")
        held = False  # released: the evidence no longer says who this is
        current = None
    if best_known is not None:
        return Decision(_match(candidates, best_known), "named")
    anon = ~candidates.known & np.isfinite(dist) & (dist <= policy.anon_threshold)
    if anon.any():
        a1 = int(np.argmin(np.where(anon, dist, np.inf)))
        if not held or current is None or current.identity_id == own:
            return Decision(_match(candidates, a1), "returning")
        dc = float(candidates.distances[pos[current.identity_id]])
        if ids[a1] != current.identity_id and float(dist[a1]) + policy.switch_margin < dc:
            return Decision(_match(candidates, a1), "returning")
    if held:
        return Decision(current, "kept")
    return Decision(None, "no-match")


# --- per-track evidence --------------------------------------------------------------------------

_DEFAULT_WEIGHT: Final[float] = 1.0


class TrackIdentity:
    """A track's identity evidence (descriptors with their quality) and the identity it holds.

    Holds at most ``capacity`` descriptors; when full, a new one replaces the least useful held
    one (lowest quality, ties: the oldest) if it is at least as good, else it is not kept. With
    equal qualities this is a ring (the oldest is dropped first). Pure and bounded; checkpointed
    with the track through :meth:`snapshot` / :meth:`restore`.
    """

    __slots__ = ("_added", "_capacity", "_descriptors", "_match", "_weights")

    def __init__(self, *, capacity: int = 8) -> None:
        self._capacity = _check_int(capacity, "capacity", 1)
        self._descriptors: list[Float32Array] = []
        self._weights: list[float] = []
        self._added = 0
        self._match: IdentityMatch | None = None

    @property
    def capacity(self) -> int:
        """The most descriptors held."""
        return self._capacity

    @property
    def added(self) -> int:
        """Descriptors added over the track's life (held or dropped)."""
        return self._added

    def __len__(self) -> int:
        return len(self._descriptors)

    def add(self, embedding: npt.ArrayLike, quality: float = _DEFAULT_WEIGHT) -> bool:
        """Add one descriptor [128] (finite) of quality in [0, 1]; True if it is held."""
        arr = _descriptors(embedding, "embedding", allow_empty=False)
        if arr.shape[0] != 1:
            raise ValueError(f"embedding: expected one descriptor [{IDENTITY_DIM}], got {list(arr.shape)}")
        if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not 0 <= quality <= 1:
            raise ValueError(f"quality: expected a number in [0, 1], got {quality!r}")
        self._added += 1
        row = _frozen(arr[0].copy())
        if len(self._descriptors) >= self._capacity:
            worst = min(range(len(self._weights)), key=lambda i: (self._weights[i], i))
            if self._weights[worst] > quality:
                return False
            del self._descriptors[worst], self._weights[worst]
        self._descriptors.append(row)
        self._weights.append(float(quality))
        return True

    def descriptors(self) -> Float32Array:
        """The held descriptors, oldest first: float32 [n,128] (n may be 0), a fresh copy."""
        if not self._descriptors:
            return np.zeros((0, IDENTITY_DIM), np.float32)
        return np.stack(self._descriptors)

    def weights(self) -> npt.NDArray[np.float64]:
        """The held descriptors' qualities, in the order of :meth:`descriptors`."""
        return np.asarray(self._weights, dtype=np.float64)

    def usable(self, min_quality: float) -> tuple[Float32Array, npt.NDArray[np.float64]]:
        """The descriptors of quality >= ``min_quality`` (and > 0) and their qualities."""
        w = self.weights()
        keep = (w >= min_quality) & (w > 0)
        return self.descriptors()[keep], w[keep]

    @property
    def match(self) -> IdentityMatch | None:
        """The identity the track is linked to, or None."""
        return self._match

    @property
    def identity_id(self) -> str | None:
        """The linked identity's id, or None."""
        return None if self._match is None else self._match.identity_id

    @property
    def name(self) -> str:
        """The linked identity's name ("" when anonymous or unlinked)."""
        return "" if self._match is None else self._match.name

    @property
    def kind(self) -> IdentityKind | None:
        """The linked identity's kind, or None."""
        return None if self._match is None else self._match.kind

    @property
    def distance(self) -> float | None:
        """The distance at which it was linked, or None."""
        return None if self._match is None else self._match.distance

    def assign(self, match: IdentityMatch | None) -> None:
        """Link the track to ``match`` (None unlinks it)."""
        if match is not None and not isinstance(match, IdentityMatch):
            raise TypeError(f"match: expected an IdentityMatch or None, got {type(match).__name__}")
        self._match = match

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state (descriptors round-trip exactly through ``json``)."""
        m = self._match
        return {
            "version": SNAPSHOT_VERSION,
            "capacity": self._capacity,
            "added": self._added,
            "descriptors": [[float(x) for x in d] for d in self._descriptors],
            "weights": list(self._weights),
            "match": None
            if m is None
            else {"identity_id": m.identity_id, "name": m.name, "kind": m.kind.value, "distance": m.distance},
        }

    @classmethod
    def restore(cls, snapshot: Mapping[str, Any]) -> TrackIdentity:
        """Rebuild from :meth:`snapshot`'s output (one without ``weights``, from before quality
        weighting, restores with weight 1); ``ValueError`` on malformed input."""
        snapshot = _check_header(snapshot, "snapshot")
        try:
            track = cls(capacity=snapshot["capacity"])
            added = _check_int(snapshot["added"], "added", 0)
            rows = _number_rows(snapshot["descriptors"], "descriptors")
            if rows.shape[0] > min(track.capacity, added):
                raise ValueError(
                    f"descriptors: expected at most min(capacity, added) rows, got {rows.shape[0]}"
                )
            weights = snapshot.get("weights", [_DEFAULT_WEIGHT] * rows.shape[0])
            if (
                not isinstance(weights, list)
                or len(weights) != rows.shape[0]
                or not all(
                    isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w <= 1 for w in weights
                )
            ):
                raise ValueError(f"weights: expected {rows.shape[0]} numbers in [0, 1], got {weights!r:.80}")
            for row, w in zip(rows, weights, strict=True):
                track._descriptors.append(_frozen(row.copy()))
                track._weights.append(float(w))
            m = snapshot.get("match")
            if m is not None:
                if not isinstance(m, Mapping) or set(m) != {"identity_id", "name", "kind", "distance"}:
                    raise ValueError(f"match: expected identity_id, name, kind, distance, got {m!r}")
                distance = m["distance"]
                if isinstance(distance, int) and not isinstance(distance, bool):
                    distance = float(distance)
                track._match = IdentityMatch(
                    identity_id=m["identity_id"],
                    name=m["name"],
                    kind=IdentityKind(m["kind"]),
                    distance=distance,
                )
            track._added = added
        except KeyError as exc:
            raise ValueError(f"snapshot: expected key {exc}, got none") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"snapshot: {exc}") from None
        return track
