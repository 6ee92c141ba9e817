"""Rebuild the real-footage evaluation clips from their sources (provenance, not run by tests).

The sources are the animated previews of Intel's IoT DevKit sample videos (CC-BY 4.0, see
../README.md): 480x270 GIFs of real people filmed by a real camera. The clips in ../clips/ are
cut from them as described in ``CLIPS`` below and encoded as H.264 (the files a camera or an
editor would hand over). Run with the folder of the GIFs (a checkout of the sources'
``preview/`` folder)::

    .venv/bin/python eval/tools/make_clips.py /path/to/sample-videos/preview

It writes ``eval/clips/*.mp4``, ``eval/enroll/*.png`` (frames of the sources that are in no clip)
and ``eval/tools/segments.json`` (which source frames each clip frame came from), which
``make_truth.py`` reads.
"""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
EVAL = HERE.parent

SOURCES = {
    "F": "head-pose-face-detection-female.gif",
    "M": "head-pose-face-detection-male.gif",
    "P": "head-pose-face-detection-female-and-male.gif",
    "W3": "face-demographics-walking-and-pause.gif",
    "W2": "face-demographics-walking.gif",
    "C": "classroom.gif",
}

#: clip -> (fps, [(source, first frame, end frame)]): each tuple is one shot; a new tuple is a
#: hard cut. "interview" is edited like a TV interview: shot / reverse shot of two people in front
#: of the same wall (the hard case for a tracker), the two together, then three other people.
CLIPS: dict[str, tuple[int, list[tuple[str, int, int]]]] = {
    "interview": (
        12,
        [("M", 10, 34), ("F", 11, 23), ("M", 34, 62), ("P", 0, 28), ("W3", 0, 24), ("F", 0, 7), ("P", 28, 56)],
    ),
    "trio": (12, [("W3", 0, 41)]),
    "walkers": (12, [("W2", 0, 35)]),
    "classroom": (15, [("C", 0, 45)]),
}

#: enrolment photos: frames of the sources that no clip contains.
ENROLL = {"man": [("M", 0), ("M", 6)], "woman": [("F", 8), ("F", 10)]}


def gif_frames(path: Path) -> list[np.ndarray]:
    im = Image.open(path)
    frames = []
    try:
        while True:
            frames.append(np.asarray(im.convert("RGB")).copy())
            im.seek(im.tell() + 1)
    except EOFError:
        pass
    return frames


def write_mp4(path: Path, frames: list[np.ndarray], fps: int) -> None:
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(fps, 1))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18", "preset": "slow", "g": str(fps)}
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def main(src_dir: Path) -> None:
    frames = {key: gif_frames(src_dir / name) for key, name in SOURCES.items()}
    segments: dict[str, dict[str, object]] = {}
    for clip, (fps, shots) in CLIPS.items():
        out: list[np.ndarray] = []
        index = []
        for shot, (key, a, b) in enumerate(shots):
            for i in range(a, b):
                out.append(frames[key][i])
                index.append([shot, key, i])
        write_mp4(EVAL / "clips" / f"{clip}.mp4", out, fps)
        segments[clip] = {"fps": fps, "frames": index}
        print(f"{clip}: {len(out)} frames, {len(shots)} shots, {len(out) / fps:.2f} s")
    for name, picks in ENROLL.items():
        for n, (key, i) in enumerate(picks, 1):
            Image.fromarray(frames[key][i]).save(EVAL / "enroll" / f"{name}-{n}.png")
    (HERE / "segments.json").write_text(json.dumps(segments) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
