"""The demo clip: a generated, deterministic video of real faces, with ground-truth tracks.

``make demo`` runs the mesh on it, the tracking-quality tests score the aggregator against its
ground truth (IDF1) and the scheduling benchmark replays it. The people are cut from the real face
photos that installed packages ship (scikit-image's astronaut and cameraman, matplotlib's Grace
Hopper) and composited over a plausible room: they walk, cross with one occluding the other, pass
behind a pillar, leave the frame and come back. :mod:`faceflow.run.democlip_types` holds the spec
and ground-truth types, :mod:`faceflow.run.democlip_scene` the renderer; this module the two clips,
the writer and the CLI.

Two clips are defined: :data:`DEMO` (640x360, 10 fps, 15 s, three people) and :data:`CROWD`
(960x540, 10 fps, 12 s, each person twice: six faces at once most of the time).
:func:`generate_clip` writes into a folder:

* ``<name>.mp4``: H.264 (libx264, one thread, fixed GOP, no B-frames), yuv420p, constant frame rate;
  the RGB -> YUV conversion is our own integer BT.601 arithmetic, so decoded pixels are the same on
  every machine;
* ``<name>.ground_truth.json``: per frame, every face's box, visible fraction and occlusion flag,
  with stable instance ids and appearance ids that change when an instance returns (format in
  :class:`GroundTruth`);
* ``enroll/<person>.jpg``: each person's original photo, for enrolment;
* ``<name>.preview.png``: a contact sheet of 12 frames with the ground-truth boxes drawn;
* ``<name>.stamp.json``: the hash of the spec, the generator code and the library versions, with
  the hashes of the outputs; a second call with the same inputs rewrites nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from importlib import metadata
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from faceflow.files import atomic_write, file_sha256
from faceflow.run.democlip_scene import SceneRenderer, load_photo
from faceflow.run.democlip_types import (
    PHOTOS,
    Actor,
    Backdrop,
    ClipSpec,
    ClipSpecError,
    DemoClipError,
    GroundTruth,
    GroundTruthError,
    GTFace,
    GTFrame,
    Keyframe,
    Occluder,
    Waypoint,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CLIPS",
    "CROWD",
    "DEMO",
    "Actor",
    "Backdrop",
    "ClipSpec",
    "ClipSpecError",
    "DemoClipError",
    "GTFace",
    "GTFrame",
    "GeneratedClip",
    "GroundTruth",
    "GroundTruthError",
    "Keyframe",
    "Occluder",
    "Waypoint",
    "generate_clip",
    "register",
    "rgb_to_yuv420p",
    "scene_ground_truth",
]

_STAMP_FORMAT: Final[int] = 1
_PREVIEW_TILES: Final[int] = 12
_LIBRARIES: Final[tuple[str, ...]] = ("numpy", "pillow", "av", "scikit-image", "matplotlib")


# --- The two clips ---------------------------------------------------------------------------------


def _walk(*points: tuple[float, float, float, float]) -> tuple[Waypoint, ...]:
    """Waypoints from (t, x, y, face_height) tuples."""
    return tuple(Waypoint(t=t, x=x, y=y, face_height=h) for t, x, y, h in points)


def _still(x: float, y: float, width: float, height: float) -> tuple[Keyframe, ...]:
    return (Keyframe(t=0.0, x=x + width / 2, y=y + height / 2),)


#: 640x360, 10 fps, 15 s, three people behind a planter (which hides their legs), a pillar in front:
#: the cameraman walks right, his face hidden by the pillar at 0.6-1.1 s, leaves the frame at 2.7 s
#: and comes back from the right at 6.9 s (absent 4.2 s: appearance "cameraman/2"); Grace Hopper
#: walks in from the left at 1.6 s and crosses behind the astronaut (who walks left), occluded at
#: 4.5-5.4 s. Fully visible faces are 92-108 px tall.
DEMO: Final = ClipSpec(
    name="demo",
    width=640,
    height=360,
    fps=10.0,
    seconds=15.0,
    seed=20261201,
    actors=(
        Actor(
            instance="cameraman",
            person="cameraman",
            z=1,
            path=_walk(
                (0.0, 430.0, 150.0, 92.0),
                (3.0, 700.0, 152.0, 94.0),
                (6.5, 700.0, 152.0, 96.0),
                (8.0, 575.0, 150.0, 98.0),
                (15.0, 560.0, 150.0, 100.0),
            ),
        ),
        Actor(
            instance="grace_hopper",
            person="grace_hopper",
            z=2,
            path=_walk(
                (1.0, -80.0, 160.0, 94.0),
                (4.0, 150.0, 158.0, 96.0),
                (6.0, 320.0, 157.0, 99.0),
                (9.0, 395.0, 156.0, 102.0),
                (15.0, 395.0, 156.0, 102.0),
            ),
        ),
        Actor(
            instance="astronaut",
            person="astronaut",
            z=3,
            path=_walk(
                (0.0, 300.0, 146.0, 108.0),
                (5.0, 240.0, 148.0, 105.0),
                (6.0, 210.0, 148.0, 104.0),
                (10.0, 110.0, 150.0, 98.0),
                (15.0, 105.0, 150.0, 98.0),
            ),
        ),
    ),
    occluders=(
        Occluder(
            name="planter", material="planter", z=10, width=640.0, height=82.0, path=_still(0, 278, 640, 82)
        ),
        Occluder(
            name="pillar", material="concrete", z=11, width=50.0, height=360.0, path=_still(480, 0, 50, 360)
        ),
    ),
)

#: 960x540, 10 fps, 12 s: each person twice (the "-2" copy mirrored, recoloured, smaller, in the
#: back row), six faces in 76% of the frames and never fewer than five. Back row: grace_hopper-2
#: crosses in front of astronaut-2 (occluded 2.4-3.3 s); cameraman-2 leaves at the right edge at
#: 2.0 s and returns at 4.9 s. Front row: the astronaut crosses in front of Grace Hopper (occluded
#: 3.8-4.8 s); the pillar hides Grace Hopper at 1.9-2.5 s and the astronaut at 6.2-7.0 s; a panel
#: carried across the frame at 8.5-11.5 s hides each face in turn. Faces are 78-114 px tall.
CROWD: Final = ClipSpec(
    name="crowd",
    width=960,
    height=540,
    fps=10.0,
    seconds=12.0,
    seed=20261202,
    actors=(
        Actor(
            instance="astronaut-2",
            person="astronaut",
            z=1,
            mirror=True,
            tint=(0.92, 1.0, 1.08),
            brightness=0.92,
            path=_walk((0.0, 560.0, 185.0, 78.0), (6.0, 330.0, 187.0, 80.0), (12.0, 380.0, 186.0, 80.0)),
        ),
        Actor(
            instance="cameraman-2",
            person="cameraman",
            z=2,
            mirror=True,
            tint=(1.08, 1.0, 0.9),
            brightness=1.05,
            path=_walk(
                (0.0, 780.0, 190.0, 80.0),
                (2.2, 1020.0, 190.0, 80.0),
                (4.6, 1020.0, 190.0, 82.0),
                (6.6, 800.0, 188.0, 82.0),
                (12.0, 790.0, 188.0, 82.0),
            ),
        ),
        Actor(
            instance="grace_hopper-2",
            person="grace_hopper",
            z=3,
            mirror=True,
            brightness=1.1,
            tint=(1.0, 0.95, 0.92),
            path=_walk((0.0, 350.0, 186.0, 82.0), (6.0, 560.0, 185.0, 84.0), (12.0, 530.0, 185.0, 84.0)),
        ),
        Actor(
            instance="grace_hopper",
            person="grace_hopper",
            z=5,
            path=_walk(
                (0.0, 900.0, 322.0, 108.0),
                (4.0, 560.0, 320.0, 110.0),
                (8.0, 450.0, 320.0, 112.0),
                (12.0, 450.0, 320.0, 112.0),
            ),
        ),
        Actor(
            instance="cameraman",
            person="cameraman",
            z=6,
            path=_walk((0.0, 170.0, 318.0, 110.0), (12.0, 230.0, 318.0, 112.0)),
        ),
        Actor(
            instance="astronaut",
            person="astronaut",
            z=7,
            path=_walk(
                (0.0, 400.0, 320.0, 110.0),
                (4.0, 540.0, 321.0, 112.0),
                (8.0, 800.0, 322.0, 114.0),
                (12.0, 810.0, 322.0, 114.0),
            ),
        ),
    ),
    occluders=(
        Occluder(
            name="planter", material="planter", z=20, width=960.0, height=118.0, path=_still(0, 422, 960, 118)
        ),
        Occluder(
            name="pillar", material="concrete", z=21, width=60.0, height=540.0, path=_still(680, 0, 60, 540)
        ),
        Occluder(
            name="panel",
            material="panel",
            z=22,
            width=150.0,
            height=210.0,
            path=(Keyframe(t=8.5, x=-100.0, y=240.0), Keyframe(t=11.5, x=1060.0, y=236.0)),
        ),
    ),
)

CLIPS: Final = MappingProxyType({"demo": DEMO, "crowd": CROWD})


def scene_ground_truth(spec: ClipSpec) -> GroundTruth:
    """The ground truth of ``spec`` computed from the scene alone (no pixels, no encoding)."""
    return _truth(spec, SceneRenderer(spec))


def _truth(spec: ClipSpec, renderer: SceneRenderer) -> GroundTruth:
    return GroundTruth(
        clip=spec.name,
        width=spec.width,
        height=spec.height,
        fps=spec.fps,
        frame_count=spec.frame_count,
        people={p: PHOTOS[p].source for p in spec.people},
        instances={a.instance: a.person for a in spec.actors},
        frames=renderer.truth(),
    )


# --- Writing the clip ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GeneratedClip:
    """Where a generated clip's files are."""

    video: Path
    ground_truth: Path
    enroll: Mapping[str, Path]
    preview: Path
    frame_count: int
    fps: float

    def __post_init__(self) -> None:
        for field in ("video", "ground_truth", "preview"):
            if not isinstance(getattr(self, field), Path):
                raise DemoClipError(f"{field}: expected a Path, got {type(getattr(self, field)).__name__}")
        if not self.enroll or not all(isinstance(p, Path) for p in self.enroll.values()):
            raise DemoClipError(f"enroll: expected a Path per person, got {dict(self.enroll)!r}")
        object.__setattr__(self, "enroll", MappingProxyType(dict(self.enroll)))
        if (
            isinstance(self.frame_count, bool)
            or not isinstance(self.frame_count, int)
            or self.frame_count < 1
        ):
            raise DemoClipError(f"frame_count: expected an int >= 1, got {self.frame_count!r}")


def _stamp_key(spec: ClipSpec) -> str:
    """Hash of everything that decides the outputs: spec, generator code, library versions."""
    here = Path(__file__).parent
    sources = ("democlip.py", "democlip_scene.py", "democlip_types.py")
    code = {name: file_sha256(here / name) for name in sources}
    versions = {}
    for lib in _LIBRARIES:
        try:
            versions[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            versions[lib] = "missing"
    payload = {"format": _STAMP_FORMAT, "spec": dataclasses.asdict(spec), "code": code, "versions": versions}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _save_jpeg(rgb: npt.NDArray[np.uint8], path: Path) -> None:
    from PIL import Image  # noqa: PLC0415

    Image.fromarray(rgb).save(path, format="JPEG", quality=95)


def rgb_to_yuv420p(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """BT.601 limited-range YUV 4:2:0 in integer arithmetic (the same on every machine), as the
    ``(H * 3 / 2, W)`` plane layout PyAV's ``VideoFrame.from_ndarray(..., format="yuv420p")`` takes."""
    h, w = rgb.shape[:2]
    c = rgb.astype(np.int32)
    r, g, b = c[:, :, 0], c[:, :, 1], c[:, :, 2]
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16

    def quarter(x: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
        return (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2] + 2) >> 2

    r2, g2, b2 = quarter(r), quarter(g), quarter(b)
    u = ((-38 * r2 - 74 * g2 + 112 * b2 + 128) >> 8) + 128
    v = ((112 * r2 - 94 * g2 - 18 * b2 + 128) >> 8) + 128
    planes = np.concatenate([y.reshape(-1), u.reshape(-1), v.reshape(-1)])
    return np.ascontiguousarray(planes.astype(np.uint8).reshape(h * 3 // 2, w))


def _encode(
    spec: ClipSpec, renderer: SceneRenderer, path: Path, keep: Iterable[int], *, progress: bool
) -> dict[int, npt.NDArray[np.uint8]]:
    """Render and encode every frame into ``path``; return the RGB frames whose index is in ``keep``."""
    import av  # noqa: PLC0415 - PyAV is the video adapter

    wanted, kept = set(keep), {}
    rate = Fraction(spec.fps).limit_denominator(1001)
    gop = max(1, round(2 * spec.fps))
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415

        bar = tqdm(total=spec.frame_count, unit="frame", desc=f"{spec.name}.mp4")
    try:
        with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
            stream.codec_context.thread_count = 1
            stream.codec_context.options = {
                "preset": "medium",
                "crf": "18",
                "x264-params": (
                    f"threads=1:lookahead-threads=1:sliced-threads=0:keyint={gop}:min-keyint={gop}:"
                    "scenecut=0:bframes=0:colorprim=smpte170m:transfer=smpte170m:colormatrix=smpte170m"
                ),
            }
            for index in range(spec.frame_count):
                rgb = renderer.render(index)
                if index in wanted:
                    kept[index] = rgb
                frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(rgb), format="yuv420p")
                frame.pts, frame.time_base = index, 1 / rate
                container.mux(stream.encode(frame))
                if bar is not None:
                    bar.update(1)
            container.mux(stream.encode(None))
    finally:
        if bar is not None:
            bar.close()
    return kept


_PALETTE: Final = (
    (80, 220, 80),
    (80, 170, 255),
    (255, 200, 40),
    (230, 110, 255),
    (60, 230, 230),
    (255, 140, 90),
)


def _preview(truth: GroundTruth, frames: Mapping[int, npt.NDArray[np.uint8]], path: Path) -> None:
    """A contact sheet: the kept frames in a 4-column grid with the ground-truth boxes drawn."""
    from PIL import Image, ImageDraw, ImageFont  # noqa: PLC0415

    tile_w = 320
    scale = tile_w / truth.width
    tile_h = round(truth.height * scale)
    cols = 4
    rows = math.ceil(len(frames) / cols)
    sheet = Image.new("RGB", (cols * tile_w, rows * tile_h), (20, 20, 20))
    font = ImageFont.load_default(size=10)
    colours = {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(sorted(truth.instances))}
    for n, index in enumerate(sorted(frames)):
        tile = Image.fromarray(frames[index]).resize((tile_w, tile_h), Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(tile)
        gt = truth.frames[index]
        for face in gt.faces:
            box = [v * scale for v in face.box]
            colour = (255, 60, 60) if face.occluded else colours[face.instance]
            draw.rectangle(box, outline=colour, width=2)
            label = f"{face.appearance} {face.visible:.2f}"
            draw.text((box[0] + 1, max(0.0, box[1] - 11)), label, fill=colour, font=font)
        draw.text((4, 3), f"#{index}  t={gt.pts:.1f}s", fill=(255, 255, 255), font=font)
        sheet.paste(tile, ((n % cols) * tile_w, (n // cols) * tile_h))
    sheet.save(path, format="PNG")


def _outputs(spec: ClipSpec, out_dir: Path) -> GeneratedClip:
    return GeneratedClip(
        video=out_dir / f"{spec.name}.mp4",
        ground_truth=out_dir / f"{spec.name}.ground_truth.json",
        enroll={p: out_dir / "enroll" / f"{p}.jpg" for p in spec.people},
        preview=out_dir / f"{spec.name}.preview.png",
        frame_count=spec.frame_count,
        fps=spec.fps,
    )


def _files(clip: GeneratedClip) -> list[Path]:
    return [clip.video, clip.ground_truth, clip.preview, *clip.enroll.values()]


def _up_to_date(stamp: Path, key: str, clip: GeneratedClip, out_dir: Path) -> bool:
    try:
        recorded = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict) or recorded.get("key") != key:
        return False
    hashes = recorded.get("outputs", {})
    for path in _files(clip):
        rel = path.relative_to(out_dir).as_posix()
        if not path.is_file() or not isinstance(hashes, dict) or hashes.get(rel) != file_sha256(path):
            return False
    return True


def generate_clip(spec: ClipSpec, out_dir: Path, *, progress: bool = False) -> GeneratedClip:
    """Write the clip of ``spec`` with its ground truth, enrolment photos and preview into
    ``out_dir``; return where they are. Idempotent: when the stamp says the outputs were made from
    the same spec, code and libraries and they are unchanged, nothing is rewritten."""
    if not isinstance(spec, ClipSpec):
        raise ClipSpecError(f"spec: expected a ClipSpec, got {type(spec).__name__}")
    out_dir = Path(out_dir)
    clip = _outputs(spec, out_dir)
    stamp = out_dir / f"{spec.name}.stamp.json"
    key = _stamp_key(spec)
    if _up_to_date(stamp, key, clip, out_dir):
        logger.info("clip %s: up to date in %s (stamp %s)", spec.name, out_dir, key[:12])
        return clip
    started = time.perf_counter()
    try:
        (out_dir / "enroll").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoClipError(f"{out_dir}: expected a writable folder, got {exc.strerror}") from exc
    stamp.unlink(missing_ok=True)
    logger.info(
        "clip %s: generating %d frames of %dx%d into %s",
        spec.name,
        spec.frame_count,
        spec.width,
        spec.height,
        out_dir,
    )
    renderer = SceneRenderer(spec)
    truth = _truth(spec, renderer)
    for person, path in clip.enroll.items():
        atomic_write(path, functools.partial(_save_jpeg, load_photo(person)))
    n = spec.frame_count
    tiles = sorted({round(i * (n - 1) / (_PREVIEW_TILES - 1)) for i in range(_PREVIEW_TILES)})
    kept: dict[int, npt.NDArray[np.uint8]] = {}

    def encode(tmp: Path) -> None:
        kept.update(_encode(spec, renderer, tmp, tiles, progress=progress))

    atomic_write(clip.video, encode)
    document = json.dumps(truth.to_json(), indent=1) + "\n"
    atomic_write(clip.ground_truth, lambda tmp: tmp.write_text(document, encoding="utf-8"))
    atomic_write(clip.preview, lambda tmp: _preview(truth, kept, tmp))
    outputs = {p.relative_to(out_dir).as_posix(): file_sha256(p) for p in _files(clip)}
    record = json.dumps({"key": key, "clip": spec.name, "outputs": outputs}, indent=1, sort_keys=True)
    atomic_write(stamp, lambda tmp: tmp.write_text(record + "\n", encoding="utf-8"))
    logger.info("clip %s: wrote %s in %.1f s", spec.name, clip.video, time.perf_counter() - started)
    return clip


# --- CLI -------------------------------------------------------------------------------------------


def register(sub: Any) -> None:
    """Add ``faceflow democlip [--clip demo|crowd] [--out DIR]`` to the ``faceflow`` subcommands."""
    p = sub.add_parser("democlip", help="generate the demo clip (real faces, ground truth) into a folder")
    p.add_argument("--clip", choices=sorted(CLIPS), default="demo", help="which clip (default demo)")
    p.add_argument("--out", type=Path, default=Path("out/clips"), help="output folder (default out/clips)")
    p.set_defaults(handler=_democlip_command)


def _democlip_command(args: argparse.Namespace) -> int:
    spec = CLIPS[args.clip]
    started = time.perf_counter()
    clip = generate_clip(spec, args.out, progress=True)
    took = time.perf_counter() - started
    size = f"{spec.width}x{spec.height}"
    print(f"{spec.name}: {clip.frame_count} frames at {clip.fps:g} fps, {size} ({took:.1f} s)")  # noqa: T201
    print(f"  video:        {clip.video}")  # noqa: T201
    print(f"  ground truth: {clip.ground_truth}")  # noqa: T201
    print(f"  preview:      {clip.preview}")  # noqa: T201
    for person, path in clip.enroll.items():
        print(f"  enroll {person}: {path}")  # noqa: T201
    return 0
