"""The demo clip's validated types: the scene spec and the ground truth.

A :class:`ClipSpec` says what is in a clip: people (:class:`Actor`, cut from the real face photos
that scikit-image and matplotlib ship, see :data:`PHOTOS`), where their faces are over time
(:class:`Waypoint`), foreground occluders (:class:`Occluder`: a pillar, a planter, a passing
panel) and the room behind them (:class:`Backdrop`). :class:`GroundTruth` is what a generated
clip's ``<name>.ground_truth.json`` holds: per frame (:class:`GTFrame`), every face
(:class:`GTFace`) with its box, visible fraction and stable instance and appearance ids.
Everything validates on construction with "expected X, got Y" errors; only the standard library
is imported.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple, TypeVar, get_args

from faceflow.errors import FaceflowError

__all__ = [
    "GROUND_TRUTH_VERSION",
    "MATERIALS",
    "OCCLUDED_BELOW",
    "PHOTOS",
    "Actor",
    "Backdrop",
    "Blob",
    "Box",
    "ClipSpec",
    "ClipSpecError",
    "DemoClipError",
    "GTFace",
    "GTFrame",
    "GroundTruth",
    "GroundTruthError",
    "Keyframe",
    "Occluder",
    "Photo",
    "Waypoint",
]

Box = tuple[float, float, float, float]
Colour = tuple[float, float, float]
Material = Literal["concrete", "panel", "planter"]
MATERIALS: Final[tuple[str, ...]] = get_args(Material)

#: Faces at or above this visible fraction are "not occluded".
OCCLUDED_BELOW: Final[float] = 0.5
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_INSTANCE = re.compile(r"^[a-z][a-z0-9_]{0,39}(-[0-9]{1,3})?$")
#: The ``version`` of the ground-truth JSON format.
GROUND_TRUTH_VERSION: Final[int] = 1
_T = TypeVar("_T")


class DemoClipError(FaceflowError):
    """Root of the demo clip's errors: a bad spec, a broken ground-truth file, a failed write."""


class ClipSpecError(DemoClipError, ValueError):
    """A clip spec (or one of its parts) has a value of the wrong type or out of range."""


class GroundTruthError(DemoClipError, ValueError):
    """A ground-truth file is missing, is not JSON, or has a field of the wrong type or value."""


# --- The photos ------------------------------------------------------------------------------------


class Blob(NamedTuple):
    """An ellipse (``power`` 2) or a squarer superellipse (``power`` 4) centred on (cx, cy), with
    semi-axes rx, ry, all in photo pixels."""

    cx: float
    cy: float
    rx: float
    ry: float
    power: int = 2


@dataclass(frozen=True, kw_only=True)
class Photo:
    """A real face photo that an installed package ships, and how to cut a person out of it.

    ``face_box`` is CenterFace's detection on the original photo (x1, y1, x2, y2 in photo pixels);
    ``silhouette`` is the person's head and shoulders as a union of :class:`Blob` in photo pixels;
    everything outside it is made transparent (with a feathered edge).
    """

    person: str
    source: str
    face_box: Box
    silhouette: tuple[Blob, ...]

    def __post_init__(self) -> None:
        x1, y1, x2, y2 = self.face_box
        if not (x1 < x2 and y1 < y2):
            raise ClipSpecError(
                f"Photo({self.person!r}).face_box: expected x1 < x2 and y1 < y2, got {self.face_box}"
            )
        if not self.silhouette or any(
            b.rx <= 0 or b.ry <= 0 or b.power not in (2, 4) for b in self.silhouette
        ):
            raise ClipSpecError(
                f"Photo({self.person!r}).silhouette: expected blobs with rx, ry > 0 and power 2 or 4, "
                f"got {self.silhouette}"
            )


PHOTOS: Final = MappingProxyType(
    {
        "astronaut": Photo(
            person="astronaut",
            source="skimage.astronaut",
            face_box=(181.5, 58.2, 269.9, 177.8),
            silhouette=(
                Blob(226, 82, 74, 68),
                Blob(226, 128, 52, 60),
                Blob(208, 230, 102, 80),
                Blob(196, 500, 178, 250),
            ),
        ),
        "cameraman": Photo(
            person="cameraman",
            source="skimage.camera",
            face_box=(202.3, 118.9, 257.6, 196.9),
            silhouette=(
                Blob(214, 112, 56, 50),
                Blob(222, 160, 44, 48),
                Blob(292, 163, 38, 25),
                Blob(298, 205, 34, 30),
                Blob(150, 265, 140, 125),
                Blob(95, 470, 105, 200),
            ),
        ),
        "grace_hopper": Photo(
            person="grace_hopper",
            source="matplotlib.grace_hopper",
            face_box=(174.8, 131.5, 357.0, 336.3),
            silhouette=(
                Blob(262, 82, 114, 60),
                Blob(265, 140, 108, 50),
                Blob(265, 222, 112, 118),
                Blob(265, 330, 75, 50),
                Blob(265, 600, 250, 270, power=4),
            ),
        ),
    }
)


# --- Validation helpers ----------------------------------------------------------------------------


def _number(value: object, what: str, lo: float, hi: float, *, lo_open: bool = False) -> float:
    shown = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ClipSpecError(f"{what}: expected a number in {shown}, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value > hi or value < lo or (lo_open and value == lo):
        raise ClipSpecError(f"{what}: expected a number in {shown}, got {value!r}")
    return float(value)


def _integer(value: object, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ClipSpecError(f"{what}: expected an int in {lo}..{hi}, got {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise ClipSpecError(f"{what}: expected an int in {lo}..{hi}, got {value}")
    return value


def _name(value: object, what: str, pattern: re.Pattern[str] = _NAME) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ClipSpecError(f"{what}: expected a name matching {pattern.pattern}, got {value!r}")
    return value


def _items(
    obj: object, field: str, value: object, item_type: type, what: str, *, min_len: int
) -> tuple[Any, ...]:
    """Check that ``value`` is a tuple (or list, converted) of ``item_type``; store it as a tuple."""
    if not isinstance(value, tuple | list):
        raise ClipSpecError(f"{what}: expected a tuple of {item_type.__name__}, got {type(value).__name__}")
    if len(value) < min_len:
        raise ClipSpecError(f"{what}: expected at least {min_len} {item_type.__name__}, got {len(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, item_type):
            raise ClipSpecError(
                f"{what}[{i}]: expected {item_type.__name__}, got {type(item).__name__} {item!r:.40}"
            )
    items = tuple(value)
    object.__setattr__(obj, field, items)
    return items


def _colour(obj: object, field: str, value: object, what: str) -> None:
    if not isinstance(value, tuple | list) or len(value) != 3:
        raise ClipSpecError(f"{what}: expected 3 numbers (r, g, b), got {value!r}")
    rgb = tuple(_number(v, f"{what}[{i}]", 0.0, 3.0, lo_open=True) for i, v in enumerate(value))
    object.__setattr__(obj, field, rgb)


def _check_times(path: Sequence[Waypoint | Keyframe], what: str) -> None:
    for i in range(1, len(path)):
        if path[i].t <= path[i - 1].t:
            raise ClipSpecError(
                f"{what}[{i}].t: expected > {path[i - 1].t:g} (times must increase), got {path[i].t:g}"
            )


# --- The spec types --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Waypoint:
    """Where an actor's face is at media time ``t`` (seconds): its box centre (x, y) and height, in
    frame pixels. Between waypoints the face moves in a straight line at constant speed."""

    t: float
    x: float
    y: float
    face_height: float

    def __post_init__(self) -> None:
        _number(self.t, "Waypoint.t", 0.0, 3600.0)
        _number(self.x, "Waypoint.x", -4000.0, 8000.0)
        _number(self.y, "Waypoint.y", -4000.0, 8000.0)
        _number(self.face_height, "Waypoint.face_height", 8.0, 1000.0)


@dataclass(frozen=True, kw_only=True)
class Keyframe:
    """Where an occluder's centre (x, y, frame pixels) is at media time ``t`` (seconds)."""

    t: float
    x: float
    y: float

    def __post_init__(self) -> None:
        _number(self.t, "Keyframe.t", 0.0, 3600.0)
        _number(self.x, "Keyframe.x", -4000.0, 8000.0)
        _number(self.y, "Keyframe.y", -4000.0, 8000.0)


@dataclass(frozen=True, kw_only=True)
class Actor:
    """One on-screen copy of a person.

    ``instance`` names the copy ("astronaut", or "astronaut-2" for a second one); ``person`` is a
    key of :data:`PHOTOS`. The actor is in the scene from its first waypoint's ``t`` to its
    last's (a single waypoint: the whole clip, standing still); it leaves the frame by walking out
    of it. ``z`` orders every layer (higher is nearer the camera). ``mirror``, ``tint`` (per-channel
    gain) and ``brightness`` recolour a copy; ``bob`` is the gait's vertical bounce in pixels.
    """

    instance: str
    person: str
    path: tuple[Waypoint, ...]
    z: int
    mirror: bool = False
    tint: Colour = (1.0, 1.0, 1.0)
    brightness: float = 1.0
    bob: float = 1.5

    def __post_init__(self) -> None:
        what = f"Actor({self.instance!r})"
        _name(self.instance, "Actor.instance", _INSTANCE)
        if self.person not in PHOTOS:
            raise ClipSpecError(f"{what}.person: expected one of {sorted(PHOTOS)}, got {self.person!r}")
        path = _items(self, "path", self.path, Waypoint, f"{what}.path", min_len=1)
        _check_times(path, f"{what}.path")
        _integer(self.z, f"{what}.z", -1000, 1000)
        if not isinstance(self.mirror, bool):
            raise ClipSpecError(f"{what}.mirror: expected a bool, got {type(self.mirror).__name__}")
        _colour(self, "tint", self.tint, f"{what}.tint")
        _number(self.brightness, f"{what}.brightness", 0.0, 3.0, lo_open=True)
        _number(self.bob, f"{what}.bob", 0.0, 20.0)


@dataclass(frozen=True, kw_only=True)
class Occluder:
    """Something in front of (some of) the people: a ``concrete`` pillar, a wooden ``panel``, a
    ``planter`` with a hedge. ``width`` x ``height`` frame pixels, centred on its keyframes; present
    from the first keyframe's ``t`` to the last's (one keyframe: the whole clip)."""

    name: str
    material: Material
    width: float
    height: float
    path: tuple[Keyframe, ...]
    z: int

    def __post_init__(self) -> None:
        what = f"Occluder({self.name!r})"
        _name(self.name, "Occluder.name")
        if self.material not in MATERIALS:
            raise ClipSpecError(f"{what}.material: expected one of {list(MATERIALS)}, got {self.material!r}")
        _number(self.width, f"{what}.width", 4.0, 8000.0)
        _number(self.height, f"{what}.height", 4.0, 8000.0)
        path = _items(self, "path", self.path, Keyframe, f"{what}.path", min_len=1)
        _check_times(path, f"{what}.path")
        _integer(self.z, f"{what}.z", -1000, 1000)


@dataclass(frozen=True, kw_only=True)
class Backdrop:
    """The room behind everyone: a tinted brick wall down to ``horizon`` (a fraction of the frame
    height), a gravel floor below it with a depth gradient, and a soft light pool centred at
    ``light`` (fractions of width and height)."""

    wall_tint: Colour = (0.86, 0.66, 0.52)
    floor_tint: Colour = (0.62, 0.58, 0.54)
    horizon: float = 0.66
    light: tuple[float, float] = (0.4, 0.3)
    light_strength: float = 0.35

    def __post_init__(self) -> None:
        _colour(self, "wall_tint", self.wall_tint, "Backdrop.wall_tint")
        _colour(self, "floor_tint", self.floor_tint, "Backdrop.floor_tint")
        _number(self.horizon, "Backdrop.horizon", 0.2, 0.95)
        if not isinstance(self.light, tuple | list) or len(self.light) != 2:
            raise ClipSpecError(f"Backdrop.light: expected 2 numbers (x, y), got {self.light!r}")
        light = tuple(_number(v, f"Backdrop.light[{i}]", 0.0, 1.0) for i, v in enumerate(self.light))
        object.__setattr__(self, "light", light)
        _number(self.light_strength, "Backdrop.light_strength", 0.0, 1.0)


@dataclass(frozen=True, kw_only=True)
class ClipSpec:
    """Everything that decides a generated clip: size, rate, length, seed and the scene.

    ``width`` and ``height`` must be even (H.264 in yuv420p); ``noise`` is the amplitude, in 8-bit
    levels, of the per-frame sensor noise. Frame ``i`` is at media time ``i / fps``.
    """

    name: str
    width: int
    height: int
    fps: float
    seconds: float
    seed: int
    actors: tuple[Actor, ...]
    occluders: tuple[Occluder, ...] = ()
    backdrop: Backdrop = Backdrop()
    noise: int = 3

    def __post_init__(self) -> None:
        what = f"ClipSpec({self.name!r})"
        _name(self.name, "ClipSpec.name")
        for field in ("width", "height"):
            value = _integer(getattr(self, field), f"{what}.{field}", 64, 4096)
            if value % 2:
                raise ClipSpecError(f"{what}.{field}: expected an even int (yuv420p), got {value}")
        _number(self.fps, f"{what}.fps", 1.0, 120.0)
        _number(self.seconds, f"{what}.seconds", 0.0, 600.0, lo_open=True)
        if self.frame_count < 1:
            raise ClipSpecError(
                f"{what}.seconds: expected at least one frame at {self.fps:g} fps, got {self.seconds:g} s"
            )
        _integer(self.seed, f"{what}.seed", 0, 2**63 - 1)
        actors = _items(self, "actors", self.actors, Actor, f"{what}.actors", min_len=1)
        occluders = _items(self, "occluders", self.occluders, Occluder, f"{what}.occluders", min_len=0)
        if not isinstance(self.backdrop, Backdrop):
            raise ClipSpecError(f"{what}.backdrop: expected a Backdrop, got {type(self.backdrop).__name__}")
        _integer(self.noise, f"{what}.noise", 0, 32)
        names = [a.instance for a in actors] + [o.name for o in occluders]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ClipSpecError(
                f"{what}: expected unique actor instances and occluder names, got {dupes} twice"
            )
        layers = [(a.z, a.instance) for a in actors] + [(o.z, o.name) for o in occluders]
        for z in sorted({z for z, _ in layers}):
            same = [n for zz, n in layers if zz == z]
            if len(same) > 1:
                raise ClipSpecError(f"{what}: expected one layer per z (depth order), got z={z} for {same}")

    @property
    def frame_count(self) -> int:
        """Number of frames: ``round(seconds * fps)``."""
        return round(self.seconds * self.fps)

    @property
    def people(self) -> tuple[str, ...]:
        """The persons that appear, sorted."""
        return tuple(sorted({a.person for a in self.actors}))


# --- Ground truth records --------------------------------------------------------------------------


def _truth_error(what: str, expected: str, got: object) -> GroundTruthError:
    return GroundTruthError(f"{what}: expected {expected}, got {got!r}")


@dataclass(frozen=True, kw_only=True)
class GTFace:
    """One face in one frame of the ground truth.

    ``box`` is the face box (x1, y1, x2, y2, frame pixels, clamped to the frame, CenterFace's
    convention); ``visible`` the fraction of the whole (unclamped) face box that can really be seen,
    after everything in front of it and the frame border; ``occluded`` is ``visible < 0.5``.
    ``instance`` is stable per on-screen copy; ``appearance`` ("astronaut/2") changes each time that
    copy comes back after leaving the frame completely.
    """

    person: str
    instance: str
    appearance: str
    box: Box
    visible: float
    occluded: bool

    def __post_init__(self) -> None:
        for field in ("person", "instance", "appearance"):
            if not isinstance(getattr(self, field), str) or not getattr(self, field):
                raise _truth_error(field, "a non-empty string", getattr(self, field))
        if not self.appearance.startswith(self.instance + "/"):
            raise _truth_error("appearance", f"'{self.instance}/<n>'", self.appearance)
        box = self.box
        if (
            not isinstance(box, tuple | list)
            or len(box) != 4
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box
            )
        ):
            raise _truth_error("box", "4 finite numbers [x1, y1, x2, y2]", box)
        if box[2] < box[0] or box[3] < box[1]:
            raise _truth_error("box", "x2 >= x1 and y2 >= y1", list(box))
        object.__setattr__(self, "box", tuple(float(v) for v in box))
        visible = self.visible
        if isinstance(visible, bool) or not isinstance(visible, int | float) or not 0.0 <= visible <= 1.0:
            raise _truth_error("visible", "a number in [0, 1]", visible)
        if not isinstance(self.occluded, bool) or self.occluded != (visible < OCCLUDED_BELOW):
            raise _truth_error("occluded", f"{visible < OCCLUDED_BELOW} (visible={visible})", self.occluded)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this face."""
        return {
            "person": self.person,
            "instance": self.instance,
            "appearance": self.appearance,
            "box": list(self.box),
            "visible": self.visible,
            "occluded": self.occluded,
        }


@dataclass(frozen=True, kw_only=True)
class GTFrame:
    """The faces of frame ``index`` (media time ``pts`` seconds), nearest the camera last."""

    index: int
    pts: float
    faces: tuple[GTFace, ...]

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or not isinstance(self.index, int) or self.index < 0:
            raise _truth_error("index", "an int >= 0", self.index)
        if isinstance(self.pts, bool) or not isinstance(self.pts, int | float) or not math.isfinite(self.pts):
            raise _truth_error("pts", "a finite number of seconds", self.pts)
        if not isinstance(self.faces, tuple) or not all(isinstance(f, GTFace) for f in self.faces):
            raise _truth_error("faces", "a tuple of GTFace", type(self.faces).__name__)
        instances = [f.instance for f in self.faces]
        if len(set(instances)) != len(instances):
            raise _truth_error("faces", "each instance at most once", instances)

    def face(self, instance: str) -> GTFace | None:
        """The face of ``instance`` in this frame, or None."""
        return next((f for f in self.faces if f.instance == instance), None)

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this frame."""
        return {"index": self.index, "pts": self.pts, "faces": [f.to_json() for f in self.faces]}


# --- Ground truth ----------------------------------------------------------------------------------


def _get(obj: object, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``obj[key]`` if ``obj`` is a JSON object holding a value of type ``kind`` there (a bool is
    not a number); ``where`` is the object's place in the document, for the error message."""
    if not isinstance(obj, dict):
        raise GroundTruthError(f"{where + ': ' if where else ''}expected an object, got {type(obj).__name__}")
    name = f"{where}.{key}" if where else key
    if key not in obj:
        raise GroundTruthError(f"{name}: expected a field, got none")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = "/".join(k.__name__ for k in kinds)
        raise GroundTruthError(f"{name}: expected {names}, got {type(value).__name__} {value!r:.60}")
    return value


_FACE_FIELDS: Final[dict[str, type | tuple[type, ...]]] = {
    "person": str,
    "instance": str,
    "appearance": str,
    "box": list,
    "visible": (int, float),
    "occluded": bool,
}


def _prefixed(where: str, build: Callable[[], _T]) -> _T:
    """``build()``, with ``where`` put in front of the field named by a :class:`GroundTruthError`."""
    try:
        return build()
    except GroundTruthError as exc:
        raise GroundTruthError(f"{where}.{exc}") from None


@dataclass(frozen=True, kw_only=True)
class GroundTruth:
    """The ground truth of a generated clip.

    The JSON file is ``{"version": 1, "clip", "width", "height", "fps", "frame_count",
    "people": {person: {"photo", "enroll"}}, "instances": {instance: {"person"}},
    "frames": [{"index", "pts", "faces": [{"person", "instance", "appearance", "box", "visible",
    "occluded"}]}]}`` (see :class:`GTFace` for the fields of a face). ``people`` maps each person to
    its photo ("skimage.astronaut", ...), ``instances`` each on-screen copy to its person.
    """

    clip: str
    width: int
    height: int
    fps: float
    frame_count: int
    people: Mapping[str, str]
    instances: Mapping[str, str]
    frames: tuple[GTFrame, ...]
    _pts: tuple[float, ...] = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for field in ("width", "height", "frame_count"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise GroundTruthError(f"{field}: expected an int >= 1, got {value!r}")
        if isinstance(self.fps, bool) or not isinstance(self.fps, int | float) or not 0 < self.fps <= 1000:
            raise GroundTruthError(f"fps: expected a number in (0, 1000], got {self.fps!r}")
        object.__setattr__(self, "people", MappingProxyType(dict(self.people)))
        object.__setattr__(self, "instances", MappingProxyType(dict(self.instances)))
        if not isinstance(self.frames, tuple) or len(self.frames) != self.frame_count:
            got = len(self.frames) if isinstance(self.frames, tuple) else type(self.frames).__name__
            raise GroundTruthError(
                f"frames: expected a tuple of frame_count={self.frame_count} frames, got {got}"
            )
        for i, frame in enumerate(self.frames):
            if not isinstance(frame, GTFrame) or frame.index != i:
                raise GroundTruthError(
                    f"frames[{i}].index: expected {i}, got {getattr(frame, 'index', frame)!r}"
                )
            if i and frame.pts <= self.frames[i - 1].pts:
                raise GroundTruthError(
                    f"frames[{i}].pts: expected > {self.frames[i - 1].pts}, got {frame.pts}"
                )
            for j, face in enumerate(frame.faces):
                where = f"frames[{i}].faces[{j}]"
                if self.instances.get(face.instance) != face.person:
                    raise GroundTruthError(
                        f"{where}.instance: expected an instance of {face.person!r}, got {face.instance!r}"
                    )
                box = face.box
                if box[0] < 0 or box[1] < 0 or box[2] > self.width or box[3] > self.height:
                    raise GroundTruthError(
                        f"{where}.box: expected inside {self.width}x{self.height}, got {list(box)}"
                    )
        unknown = sorted(set(self.instances.values()) - set(self.people))
        if unknown:
            raise GroundTruthError(f"instances: expected persons listed in people, got {unknown}")
        object.__setattr__(self, "_pts", tuple(f.pts for f in self.frames))

    @classmethod
    def from_json(cls, obj: object, *, source: str = "ground truth") -> GroundTruth:
        """Validate and convert a decoded ground-truth JSON document; errors name ``source``."""
        try:
            version = _get(obj, "version", int, "")
            if version != GROUND_TRUTH_VERSION:
                raise GroundTruthError(f"version: expected {GROUND_TRUTH_VERSION}, got {version!r}")
            people = {
                p: _get(v, "photo", str, f"people.{p}") for p, v in _get(obj, "people", dict, "").items()
            }
            instances = {
                i: _get(v, "person", str, f"instances.{i}")
                for i, v in _get(obj, "instances", dict, "").items()
            }
            frames = []
            for i, raw in enumerate(_get(obj, "frames", list, "")):
                faces = []
                for j, face in enumerate(_get(raw, "faces", list, f"frames[{i}]")):
                    where = f"frames[{i}].faces[{j}]"
                    fields = {k: _get(face, k, t, where) for k, t in _FACE_FIELDS.items()}
                    fields["box"] = tuple(fields["box"])
                    faces.append(_prefixed(where, functools.partial(GTFace, **fields)))
                index = _get(raw, "index", int, f"frames[{i}]")
                pts = _get(raw, "pts", (int, float), f"frames[{i}]")
                frames.append(
                    _prefixed(
                        f"frames[{i}]", functools.partial(GTFrame, index=index, pts=pts, faces=tuple(faces))
                    )
                )
            return cls(
                clip=_get(obj, "clip", str, ""),
                width=_get(obj, "width", int, ""),
                height=_get(obj, "height", int, ""),
                fps=_get(obj, "fps", (int, float), ""),
                frame_count=_get(obj, "frame_count", int, ""),
                people=people,
                instances=instances,
                frames=tuple(frames),
            )
        except GroundTruthError as exc:
            raise GroundTruthError(f"{source}: {exc}") from None

    @classmethod
    def load(cls, path: Path | str) -> GroundTruth:
        """Read and validate a ``<name>.ground_truth.json`` file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise GroundTruthError(
                f"{path}: expected a readable ground-truth file, got {exc.strerror}"
            ) from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GroundTruthError(
                f"{path}: expected JSON, got an error at line {exc.lineno}: {exc.msg}"
            ) from None
        return cls.from_json(obj, source=str(path))

    def to_json(self) -> dict[str, Any]:
        """The JSON document (what :meth:`load` reads)."""
        return {
            "version": GROUND_TRUTH_VERSION,
            "clip": self.clip,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frame_count": self.frame_count,
            "people": {
                p: {"photo": photo, "enroll": f"enroll/{p}.jpg"} for p, photo in sorted(self.people.items())
            },
            "instances": {i: {"person": p} for i, p in sorted(self.instances.items())},
            "frames": [f.to_json() for f in self.frames],
        }

    def at_pts(self, pts: float, tolerance: float | None = None) -> GTFrame | None:
        """The frame nearest media time ``pts`` (seconds) if within ``tolerance`` (default half a
        frame interval), else None. The mesh samples frames, so evaluation looks them up by time."""
        tol = 0.5 / self.fps if tolerance is None else tolerance
        if not tol >= 0:
            raise GroundTruthError(f"tolerance: expected a number >= 0 (seconds), got {tolerance!r}")
        times = self._pts
        if not math.isfinite(pts):
            return None
        i = bisect_left(times, pts)
        best = min((j for j in (i - 1, i) if 0 <= j < len(times)), key=lambda j: abs(times[j] - pts))
        return self.frames[best] if abs(times[best] - pts) <= tol else None
