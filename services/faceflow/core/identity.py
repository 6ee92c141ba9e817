"""Identities: the gallery of known faces and the matching of a track's descriptors against it.

Descriptors are dlib ResNet 128-D vectors (``IDENTITY_DIM``), compared by Euclidean distance:
the same person is typically < 0.4 apart, different people > 0.6 (DESIGN.md "Identities").

* :class:`IdentityEntry`: one identity (enrolled from photos, named from video, or anonymous)
  with a bounded, diverse set of exemplar descriptors (:func:`add_exemplars`).
* :class:`Gallery`: the bounded set of identities of one aggregator replica, with a vectorised
  :meth:`Gallery.match`.
* :func:`anonymous_identity_id` / :func:`new_identity_id`: deterministic ids, so a replayed
  stream recreates the same anonymous ids.

Pure: standard library, numpy and the model contract only.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import hashlib
import heapq
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from faceflow.models.contract import IDENTITY_DIM

logger = logging.getLogger(__name__)

__all__ = [
    "SNAPSHOT_VERSION",
    "Candidates",
    "Gallery",
    "IdentityEntry",
    "IdentityKind",
    "IdentityMatch",
    "add_exemplars",
    "anonymous_identity_id",
    "new_identity_id",
]

Float32Array = npt.NDArray[np.float32]
FloatArray = npt.NDArray[np.float64]

#: Version of every ``snapshot()`` / ``to_dict()`` format in this module.
SNAPSHOT_VERSION: Final[int] = 1

_MAX_ID_LENGTH: Final[int] = 256


class IdentityKind(enum.StrEnum):
    """Where an identity came from.

    ENROLLED: enrolled by an operator (photos); NAMED: an anonymous identity an operator named
    (enrolment from video); ANONYMOUS: created automatically for a track that matched nobody.
    Only ANONYMOUS identities are ever evicted automatically.
    """

    ENROLLED = "enrolled"
    NAMED = "named"
    ANONYMOUS = "anonymous"


# --- validation helpers --------------------------------------------------------------------------


def _check_str(value: object, name: str, *, non_empty: bool) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a str, got {type(value).__name__}")
    if non_empty and not value.strip():
        raise ValueError(f"{name}: expected a non-empty str, got {value!r}")
    if len(value) > _MAX_ID_LENGTH and name in ("identity_id", "stream_id", "track_id", "origin_stream"):
        raise ValueError(f"{name}: expected at most {_MAX_ID_LENGTH} characters, got {len(value)}")
    return value


def _check_time(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected finite epoch seconds, got {value!r}")
    return float(value)


def _check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int >= {minimum}, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def _descriptors(value: object, name: str, *, allow_empty: bool) -> Float32Array:
    """``value`` as a finite float32 [k,128] array ([128] is read as k = 1)."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name}: expected a numeric array [k,{IDENTITY_DIM}], got {type(value).__name__}")
    try:
        arr = np.array(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(
            f"{name}: expected a numeric array [k,{IDENTITY_DIM}], got {type(value).__name__}"
        ) from None
    if arr.ndim == 1 and arr.shape[0] == IDENTITY_DIM:
        arr = arr[None]
    if arr.ndim == 1 and arr.shape[0] == 0 and allow_empty:
        arr = arr.reshape(0, IDENTITY_DIM)
    if arr.ndim != 2 or arr.shape[1] != IDENTITY_DIM:
        raise ValueError(f"{name}: expected shape [k,{IDENTITY_DIM}], got {list(arr.shape)}")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name}: expected at least one descriptor, got shape {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite descriptors, got NaN or inf")
    return arr


def _frozen(arr: Float32Array) -> Float32Array:
    arr.setflags(write=False)
    return arr


def _number_rows(raw: object, name: str) -> Float32Array:
    """JSON rows of numbers (a list of lists; may be empty) as float32 [k,128], else ValueError."""
    if not isinstance(raw, list) or not all(
        isinstance(row, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in row)
        for row in raw
    ):
        raise ValueError(f"{name}: expected a list of lists of numbers, got {type(raw).__name__}")
    return _descriptors(raw, name, allow_empty=True)


def _check_header(snapshot: object, what: str) -> Mapping[str, Any]:
    if not isinstance(snapshot, Mapping):
        raise ValueError(f"{what}: expected a mapping, got {type(snapshot).__name__}")
    if snapshot.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"{what}.version: expected {SNAPSHOT_VERSION}, got {snapshot.get('version')!r}")
    return snapshot


# --- ids -----------------------------------------------------------------------------------------


def _hex12(payload: object, person: bytes) -> str:
    data = json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode()
    return hashlib.blake2b(data, digest_size=6, person=person).hexdigest()


def anonymous_identity_id(stream_id: str, track_id: str, first_seq: int) -> str:
    """``"anon-"`` + 12 hex chars: blake2b (6 bytes) of the stream, the track and its first seq.

    Deterministic, so a replayed stream recreates the same id. The inputs are JSON-encoded as a
    list before hashing, so no two different triples share an encoding.
    """
    _check_str(stream_id, "stream_id", non_empty=True)
    _check_str(track_id, "track_id", non_empty=True)
    _check_int(first_seq, "first_seq", 0)
    return "anon-" + _hex12([stream_id, track_id, first_seq], b"faceflow.anon")


def new_identity_id(name: str, created_ns: int) -> str:
    """``"id-"`` + 12 hex chars: blake2b (6 bytes) of the name and the creation time (ns epoch)."""
    _check_str(name, "name", non_empty=True)
    _check_int(created_ns, "created_ns", 0)
    return "id-" + _hex12([name, created_ns], b"faceflow.id")


# --- entries -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False)
class IdentityEntry:
    """One identity of the gallery.

    Attributes:
        identity_id: ``anon-...`` / ``id-...`` (see the id functions), non-empty, <= 256 chars.
        name: display name; "" exactly for ANONYMOUS identities.
        kind: :class:`IdentityKind`.
        embeddings: float32 [K,128] exemplar descriptors, K >= 1 (stored read-only).
        origin_stream: the stream it was first seen on; "" for ENROLLED, non-empty for ANONYMOUS.
        source: free text: what it was enrolled or created from (a file name, a track reference).
        created_s, updated_s, last_seen_s: epoch seconds (finite floats): creation, last change
            of name or exemplars, last time a track was linked to it (drives eviction).

    Equality is identity (``eq=False``): comparing descriptor arrays field by field is ambiguous.
    """

    identity_id: str
    name: str
    kind: IdentityKind
    embeddings: Float32Array
    origin_stream: str
    source: str
    created_s: float
    updated_s: float
    last_seen_s: float

    def __post_init__(self) -> None:
        _check_str(self.identity_id, "identity_id", non_empty=True)
        if not isinstance(self.kind, IdentityKind):
            raise TypeError(f"kind: expected an IdentityKind, got {type(self.kind).__name__} {self.kind!r}")
        _check_str(self.name, "name", non_empty=False)
        if self.kind is IdentityKind.ANONYMOUS and self.name:
            raise ValueError(f"name: expected '' for an anonymous identity, got {self.name!r}")
        if self.kind is not IdentityKind.ANONYMOUS and not self.name.strip():
            raise ValueError(
                f"name: expected a non-empty name for a {self.kind.value} identity, got {self.name!r}"
            )
        _check_str(self.origin_stream, "origin_stream", non_empty=False)
        if self.kind is IdentityKind.ENROLLED and self.origin_stream:
            raise ValueError(
                f"origin_stream: expected '' for an enrolled identity, got {self.origin_stream!r}"
            )
        if self.kind is IdentityKind.ANONYMOUS and not self.origin_stream:
            raise ValueError("origin_stream: expected the stream an anonymous identity came from, got ''")
        _check_str(self.source, "source", non_empty=False)
        for name in ("created_s", "updated_s", "last_seen_s"):
            object.__setattr__(self, name, _check_time(getattr(self, name), name))
        emb = self.embeddings
        owned = (
            isinstance(emb, np.ndarray)
            and emb.dtype == np.float32
            and not emb.flags.writeable
            and emb.base is None
            and emb.ndim == 2
            and emb.shape[0] >= 1
            and emb.shape[1] == IDENTITY_DIM
        )
        if not owned:  # arrays built here are reused as they are; anything else is copied
            arr = _descriptors(emb, "embeddings", allow_empty=False)
            object.__setattr__(self, "embeddings", _frozen(arr if arr.base is None else arr.copy()))

    @property
    def num_exemplars(self) -> int:
        """K, the number of exemplar descriptors."""
        return int(self.embeddings.shape[0])

    def seen(self, last_seen_s: float) -> IdentityEntry:
        """A copy with ``last_seen_s`` raised to ``last_seen_s`` (never lowered)."""
        t = _check_time(last_seen_s, "last_seen_s")
        if t <= self.last_seen_s:
            return self
        return dataclasses.replace(self, last_seen_s=t)

    def with_name(self, name: str, *, now_s: float) -> IdentityEntry:
        """A copy renamed to ``name``; an ANONYMOUS identity becomes NAMED (enrolment from video)."""
        kind = IdentityKind.NAMED if self.kind is IdentityKind.ANONYMOUS else self.kind
        return dataclasses.replace(self, name=name, kind=kind, updated_s=now_s)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (float32 descriptors round-trip exactly through ``json``)."""
        return {
            "version": SNAPSHOT_VERSION,
            "identity_id": self.identity_id,
            "name": self.name,
            "kind": self.kind.value,
            "embeddings": [[float(x) for x in row] for row in self.embeddings],
            "origin_stream": self.origin_stream,
            "source": self.source,
            "created_s": self.created_s,
            "updated_s": self.updated_s,
            "last_seen_s": self.last_seen_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IdentityEntry:
        """Rebuild from :meth:`to_dict`'s output; ``ValueError`` on malformed input."""
        data = _check_header(data, "identity")
        fields = {f.name for f in dataclasses.fields(cls)}
        if set(data) != fields | {"version"}:
            raise ValueError(f"identity: expected keys {sorted(fields | {'version'})}, got {sorted(data)}")
        try:
            return cls(
                identity_id=data["identity_id"],
                name=data["name"],
                kind=IdentityKind(data["kind"]),
                embeddings=_number_rows(data["embeddings"], "embeddings"),
                origin_stream=data["origin_stream"],
                source=data["source"],
                created_s=data["created_s"],
                updated_s=data["updated_s"],
                last_seen_s=data["last_seen_s"],
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"identity: {exc}") from None


def _pairwise(x: FloatArray) -> FloatArray:
    diff = x[:, None, :] - x[None, :, :]
    out: FloatArray = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    return out


def add_exemplars(
    entry: IdentityEntry,
    new: npt.ArrayLike,
    *,
    max_exemplars: int = 16,
    min_spacing: float = 0.1,
    now_s: float | None = None,
) -> IdentityEntry:
    """Return ``entry`` with ``new`` descriptors [k,128] folded into its exemplar set.

    The set stays bounded (``max_exemplars``) and spread out. Each new descriptor, in order:

    1. closer than ``min_spacing`` (Euclidean) to an exemplar already kept: skipped (redundant);
    2. else, while fewer than ``max_exemplars``: appended;
    3. else (full): among the kept exemplars plus the new one, the closest pair is found and the
       more redundant of its two points is dropped: the one whose *second*-nearest neighbour is
       closer (ties: the later one, so the new descriptor on a full tie). This greedily keeps the
       smallest pairwise distance as large as possible (farthest-point style).

    Deterministic (depends only on the inputs and their order). ``now_s`` (epoch seconds), when
    given, becomes ``updated_s`` if the exemplars changed. Returns ``entry`` itself when nothing
    changed. ``max_exemplars`` >= 1; ``min_spacing`` >= 0.
    """
    if not isinstance(entry, IdentityEntry):
        raise TypeError(f"entry: expected an IdentityEntry, got {type(entry).__name__}")
    _check_int(max_exemplars, "max_exemplars", 1)
    if (
        isinstance(min_spacing, bool)
        or not isinstance(min_spacing, (int, float))
        or not math.isfinite(min_spacing)
    ):
        raise ValueError(f"min_spacing: expected a finite distance >= 0, got {min_spacing!r}")
    if min_spacing < 0.0:
        raise ValueError(f"min_spacing: expected a finite distance >= 0, got {min_spacing!r}")
    incoming = _descriptors(new, "new", allow_empty=True).astype(np.float64)
    kept = entry.embeddings.astype(np.float64)
    changed = False
    if kept.shape[0] > max_exemplars:  # an entry built with more: thin it first
        while kept.shape[0] > max_exemplars:
            kept = np.delete(kept, _most_redundant(kept), axis=0)
        changed = True
    for x in incoming:
        nearest = float(np.sqrt(((kept - x) ** 2).sum(axis=1)).min())
        if nearest < min_spacing:
            continue
        if kept.shape[0] < max_exemplars:
            kept = np.vstack([kept, x[None]])
            changed = True
            continue
        candidates = np.vstack([kept, x[None]])
        drop = _most_redundant(candidates)
        if drop == candidates.shape[0] - 1:
            continue
        kept = np.delete(candidates, drop, axis=0)
        changed = True
    if not changed:
        return entry
    updated_s = entry.updated_s if now_s is None else _check_time(now_s, "now_s")
    return dataclasses.replace(entry, embeddings=_frozen(kept.astype(np.float32)), updated_s=updated_s)


def _most_redundant(points: FloatArray) -> int:
    """Index of the point to drop to keep the set spread out (see :func:`add_exemplars`)."""
    n = int(points.shape[0])
    dist = _pairwise(points)
    np.fill_diagonal(dist, np.inf)
    flat = int(np.argmin(dist))  # row-major: the first closest pair (i < j)
    i, j = sorted(divmod(flat, n))
    if n < 3:
        return j
    second = np.sort(dist, axis=1)[:, 1]
    return i if second[i] < second[j] else j


# --- matching ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class IdentityMatch:
    """The result of :meth:`Gallery.match`: the identity and its robust distance (>= 0)."""

    identity_id: str
    name: str
    kind: IdentityKind
    distance: float

    def __post_init__(self) -> None:
        _check_str(self.identity_id, "identity_id", non_empty=True)
        _check_str(self.name, "name", non_empty=False)
        if not isinstance(self.kind, IdentityKind):
            raise TypeError(f"kind: expected an IdentityKind, got {type(self.kind).__name__}")
        if not (isinstance(self.distance, float) and math.isfinite(self.distance) and self.distance >= 0.0):
            raise ValueError(f"distance: expected a finite float >= 0, got {self.distance!r}")


@dataclass(frozen=True, slots=True)
class Candidates:
    """:meth:`Gallery.evidence`: every identity's distance to one track's evidence.

    ``ids`` sorted; ``distances`` [N] (+inf: not a candidate); ``known`` [N] ENROLLED or NAMED;
    ``names`` [N] ("" for anonymous identities).
    """

    ids: tuple[str, ...]
    distances: FloatArray
    known: npt.NDArray[np.bool_]
    names: tuple[str, ...]
    #: id -> position, and one int per identity standing for its name (equal names, equal codes)
    positions: Mapping[str, int] = dataclasses.field(default_factory=dict)
    name_codes: npt.NDArray[np.int64] = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass(frozen=True, slots=True)
class _Index:
    """Every exemplar stacked, grouped by identity (identities sorted by id)."""

    ids: tuple[str, ...]
    exemplars: Float32Array  # [M,128]
    sq_norms: FloatArray  # [M]
    starts: npt.NDArray[np.intp]  # [N] first exemplar row of each identity
    known: npt.NDArray[np.bool_]  # [N] ENROLLED or NAMED
    origin: npt.NDArray[np.int64]  # [N] code of origin_stream
    origin_codes: dict[str, int]
    names: tuple[str, ...]  # [N]
    name_codes: npt.NDArray[np.int64]  # [N] equal names, equal codes
    positions: dict[str, int]  # id -> position


class Gallery:
    """The bounded set of identities an aggregator replica matches tracks against.

    Eviction: adding an identity beyond ``max_identities`` evicts the ANONYMOUS identity with the
    oldest ``last_seen_s`` (ties: smallest id); when no anonymous identity is left, :meth:`put`
    refuses with ``ValueError`` instead of silently dropping an enrolled or named person.

    Matching stacks every exemplar into one float32 matrix, rebuilt lazily on the first
    :meth:`match` after a change of exemplars, kinds or membership (:meth:`touch` does not
    invalidate it; a new exemplar set of the same size is written into it in place). Not
    thread-safe: callers serialise access (the aggregator holds its service lock around every use).
    """

    def __init__(self, *, max_identities: int = 100_000) -> None:
        self._max = _check_int(max_identities, "max_identities", 1)
        self._entries: dict[str, IdentityEntry] = {}
        self._names: dict[str, set[str]] = {}
        # Lazy min-heap of (last_seen_s, identity_id, token) over anonymous entries; an item is
        # live only while its token is the identity's current one in _tokens.
        self._heap: list[tuple[float, str, int]] = []
        self._tokens: dict[str, int] = {}
        self._next_token = 0
        self._index: _Index | None = None

    @property
    def max_identities(self) -> int:
        """The bound on the number of identities."""
        return self._max

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, identity_id: object) -> bool:
        return identity_id in self._entries

    def get(self, identity_id: str) -> IdentityEntry | None:
        """The entry with this id, or None."""
        return self._entries.get(identity_id)

    def by_name(self, name: str) -> list[IdentityEntry]:
        """Every identity with exactly this name (names are not unique), sorted by id."""
        return [self._entries[i] for i in sorted(self._names.get(name, ()))]

    def entries(self, kind: IdentityKind | None = None) -> list[IdentityEntry]:
        """Every identity (of ``kind`` when given), sorted by id."""
        return [
            self._entries[i] for i in sorted(self._entries) if kind is None or self._entries[i].kind is kind
        ]

    def put(self, entry: IdentityEntry) -> str | None:
        """Insert or replace ``entry``; return the id of an identity evicted to make room, or None.

        Raises ``ValueError`` when the gallery is full and holds no anonymous identity to evict.
        """
        if not isinstance(entry, IdentityEntry):
            raise TypeError(f"entry: expected an IdentityEntry, got {type(entry).__name__}")
        evicted: str | None = None
        old = self._entries.get(entry.identity_id)
        if old is None and len(self._entries) >= self._max:
            evicted = self._pop_least_recent_anonymous()
            if evicted is None:
                raise ValueError(
                    f"gallery: expected room for identity {entry.identity_id!r}, got {len(self)} enrolled "
                    f"or named identities (max_identities={self._max}); remove some or raise max_identities"
                )
            logger.info("gallery: evicted least recently seen anonymous identity %s", evicted)
        if old is not None:
            self._unlink(old)
        self._entries[entry.identity_id] = entry
        self._names.setdefault(entry.name, set()).add(entry.identity_id)
        if entry.kind is IdentityKind.ANONYMOUS:
            self._push(entry)
        if (
            old is None
            or old.kind is not entry.kind
            or old.name != entry.name
            or old.origin_stream != entry.origin_stream
        ):
            self._index = None
        elif old.embeddings is not entry.embeddings:
            self._patch_index(entry)
        return evicted

    def _patch_index(self, entry: IdentityEntry) -> None:
        """Overwrite ``entry``'s exemplar rows in the built index, or drop the index (rebuilt on the
        next match) when its row count changed. A full exemplar set changes on almost every analysed face of
        a linked track: rebuilding the whole stack for each would cost O(gallery) per face."""
        index = self._index
        if index is None:
            return
        pos = bisect.bisect_left(index.ids, entry.identity_id)
        start = int(index.starts[pos]) if pos < len(index.ids) else 0
        end = int(index.starts[pos + 1]) if pos + 1 < len(index.ids) else index.exemplars.shape[0]
        if pos == len(index.ids) or index.ids[pos] != entry.identity_id or end - start != entry.num_exemplars:
            self._index = None
            return
        rows = entry.embeddings.astype(np.float32)
        index.exemplars[start:end] = rows
        wide = rows.astype(np.float64)
        index.sq_norms[start:end] = np.einsum("ij,ij->i", wide, wide)

    def touch(self, identity_id: str, seen_s: float) -> bool:
        """Record that a track was linked to ``identity_id`` at ``seen_s``; False if unknown."""
        entry = self._entries.get(identity_id)
        if entry is None:
            return False
        updated = entry.seen(seen_s)
        if updated is not entry:
            self._entries[identity_id] = updated
            if updated.kind is IdentityKind.ANONYMOUS:
                self._push(updated)
        return True

    def remove(self, identity_id: str) -> bool:
        """Forget an identity (a tombstone); False if it was not there."""
        entry = self._entries.pop(identity_id, None)
        if entry is None:
            return False
        self._unlink(entry)
        self._index = None
        return True

    def _unlink(self, entry: IdentityEntry) -> None:
        ids = self._names.get(entry.name)
        if ids is not None:
            ids.discard(entry.identity_id)
            if not ids:
                del self._names[entry.name]
        self._tokens.pop(entry.identity_id, None)

    def _push(self, entry: IdentityEntry) -> None:
        self._next_token += 1
        self._tokens[entry.identity_id] = self._next_token
        heapq.heappush(self._heap, (entry.last_seen_s, entry.identity_id, self._next_token))
        if len(self._heap) > 2 * len(self._tokens) + 64:  # drop dead items
            self._heap = [item for item in self._heap if self._tokens.get(item[1]) == item[2]]
            heapq.heapify(self._heap)

    def _pop_least_recent_anonymous(self) -> str | None:
        while self._heap:
            _, identity_id, token = heapq.heappop(self._heap)
            if self._tokens.get(identity_id) == token:
                entry = self._entries.pop(identity_id)
                self._unlink(entry)
                self._index = None
                return identity_id
        return None

    def _ensure_index(self) -> _Index:
        if self._index is not None:
            return self._index
        ids = tuple(sorted(self._entries))
        entries = [self._entries[i] for i in ids]
        counts = np.array([e.num_exemplars for e in entries], dtype=np.intp)
        starts = (
            np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp) if ids else np.zeros(0, np.intp)
        )
        exemplars = (
            np.concatenate([e.embeddings for e in entries]).astype(np.float32)
            if ids
            else np.zeros((0, IDENTITY_DIM), np.float32)
        )
        codes: dict[str, int] = {}
        origin = np.array([codes.setdefault(e.origin_stream, len(codes)) for e in entries], dtype=np.int64)
        known = np.array([e.kind is not IdentityKind.ANONYMOUS for e in entries], dtype=bool)
        sq = np.einsum("ij,ij->i", exemplars.astype(np.float64), exemplars.astype(np.float64))
        names = tuple(e.name for e in entries)
        name_ids: dict[str, int] = {}
        name_codes = np.array([name_ids.setdefault(n, len(name_ids)) for n in names], dtype=np.int64)
        positions = {identity_id: k for k, identity_id in enumerate(ids)}
        self._index = _Index(ids, exemplars, sq, starts, known, origin, codes, names, name_codes, positions)
        return self._index

    def distances(self, embeddings: npt.ArrayLike) -> dict[str, float]:
        """The robust distance (see :meth:`match`) from ``embeddings`` to every identity, by id."""
        index = self._ensure_index()
        if not index.ids:
            return {}
        dist = self._robust_distances(_descriptors(embeddings, "embeddings", allow_empty=False), index)
        return {i: float(d) for i, d in zip(index.ids, dist, strict=True)}

    @staticmethod
    def _nearest_exemplar(query: Float32Array, index: _Index) -> FloatArray:
        """[k,N]: each query descriptor's distance to the nearest exemplar of each identity."""
        cross = (query @ index.exemplars.T).astype(np.float64)  # [k,M]
        q64 = query.astype(np.float64)
        sq = np.einsum("ij,ij->i", q64, q64)[:, None] + index.sq_norms[None, :] - 2.0 * cross
        out: FloatArray = np.minimum.reduceat(np.sqrt(np.maximum(sq, 0.0)), index.starts, axis=1)
        return out

    @classmethod
    def _robust_distances(cls, query: Float32Array, index: _Index) -> FloatArray:
        out: FloatArray = np.median(cls._nearest_exemplar(query, index), axis=0)
        return out

    def evidence(
        self,
        descriptors: npt.ArrayLike,
        weights: npt.ArrayLike,
        *,
        stream_id: str,
        cross_stream: bool,
    ) -> Candidates:
        """Every candidate identity's distance to a track's quality-weighted descriptors.

        For each descriptor the smallest Euclidean distance to an identity's exemplars, then the
        *weighted* median over the descriptors (weights: their quality, > 0): one blurred or
        turned-away frame neither decides nor blocks. Anonymous identities of other streams are
        candidates only with ``cross_stream`` (their distance is +inf otherwise).
        """
        query = _descriptors(descriptors, "descriptors", allow_empty=False)
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (query.shape[0],) or not np.isfinite(w).all() or (w <= 0).any():
            raise ValueError(f"weights: expected {query.shape[0]} finite weights > 0, got {w.tolist()!r:.80}")
        index = self._ensure_index()
        if not index.ids:
            return Candidates((), np.zeros(0), np.zeros(0, bool), ())
        per_identity = self._nearest_exemplar(query, index)  # [k,N]
        order = np.argsort(per_identity, axis=0, kind="stable")
        cum = np.cumsum(w[order], axis=0)
        half = 0.5 * cum[-1]
        # the weighted median: the mean of the lower and the upper one (np.median for equal weights)
        lower = np.argmax(cum >= half * (1 - 1e-12), axis=0)
        upper = np.argmax(cum > half * (1 + 1e-12), axis=0)
        ranked = np.take_along_axis(per_identity, order, axis=0)
        cols = np.arange(len(index.ids))
        dist = 0.5 * (ranked[lower, cols] + ranked[upper, cols])
        if not cross_stream:
            code = index.origin_codes.get(stream_id, -1)
            dist = np.where(index.known | (index.origin == code), dist, np.inf)
        return Candidates(index.ids, dist, index.known.copy(), index.names, index.positions, index.name_codes)

    def match(
        self,
        embeddings: npt.ArrayLike,
        *,
        stream_id: str,
        cross_stream: bool,
        threshold: float = 0.5,
        known_margin: float = 0.05,
        exclude: str | None = None,
    ) -> IdentityMatch | None:
        """The identity that a track's descriptors [k,128] (k >= 1) belong to, or None.

        Distance to an identity: for each of the track's descriptors the smallest Euclidean
        distance to the identity's exemplars, then the median over the track's descriptors (one
        bad frame does not decide). Candidates: every ENROLLED and NAMED identity; ANONYMOUS ones
        only when their ``origin_stream`` is ``stream_id``, or any when ``cross_stream``.

        The nearest candidate matches when its distance is <= ``threshold``. Preference for known
        people: when the nearest candidate is anonymous but the nearest ENROLLED/NAMED candidate
        is also <= ``threshold`` and at most ``known_margin`` farther, the known one is returned
        (an anonymous identity of a person who was later enrolled must not shadow the
        enrolment). Exact ties go to the smallest identity id. ``exclude`` (an identity id) is
        never a candidate: a track re-matching without the anonymous identity it created itself.
        ``touch`` the result to keep it from eviction.
        """
        _check_str(stream_id, "stream_id", non_empty=False)
        if not isinstance(cross_stream, bool):
            raise TypeError(f"cross_stream: expected a bool, got {type(cross_stream).__name__}")
        for name, value in (("threshold", threshold), ("known_margin", known_margin)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{name}: expected a finite distance >= 0, got {value!r}")
        query = _descriptors(embeddings, "embeddings", allow_empty=False)
        index = self._ensure_index()
        if not index.ids:
            return None
        dist = self._robust_distances(query, index)
        if not cross_stream:
            code = index.origin_codes.get(stream_id, -1)
            dist = np.where(index.known | (index.origin == code), dist, np.inf)
        if exclude is not None:
            dist = np.where(np.asarray(index.ids) == exclude, np.inf, dist)
        best = int(np.argmin(dist))
        if not dist[best] <= threshold:
            return None
        if not index.known[best]:
            known_dist = np.where(index.known, dist, np.inf)
            best_known = int(np.argmin(known_dist))
            if known_dist[best_known] <= threshold and known_dist[best_known] <= dist[best] + known_margin:
                best = best_known
        entry = self._entries[index.ids[best]]
        return IdentityMatch(
            identity_id=entry.identity_id, name=entry.name, kind=entry.kind, distance=float(dist[best])
        )

    # --- checkpointing ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state: the bound and every entry (:meth:`IdentityEntry.to_dict`)."""
        return {
            "version": SNAPSHOT_VERSION,
            "max_identities": self._max,
            "entries": [e.to_dict() for e in self.entries()],
        }

    @classmethod
    def restore(cls, snapshot: Mapping[str, Any]) -> Gallery:
        """Rebuild from :meth:`snapshot`'s output; ``ValueError`` on malformed input."""
        snapshot = _check_header(snapshot, "snapshot")
        try:
            gallery = cls(max_identities=snapshot["max_identities"])
        except KeyError as exc:
            raise ValueError(f"snapshot: expected key {exc}, got none") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"snapshot: {exc}") from None
        raw = snapshot.get("entries")
        if not isinstance(raw, list):
            raise ValueError(f"snapshot.entries: expected a list, got {type(raw).__name__}")
        if len(raw) > gallery.max_identities:
            raise ValueError(f"snapshot.entries: expected at most {gallery.max_identities}, got {len(raw)}")
        for i, item in enumerate(raw):
            try:
                entry = IdentityEntry.from_dict(item)
            except ValueError as exc:
                raise ValueError(f"snapshot.entries[{i}]: {exc}") from None
            if entry.identity_id in gallery:
                raise ValueError(f"snapshot.entries[{i}]: duplicate identity_id {entry.identity_id!r}")
            gallery.put(entry)
        return gallery
