"""Real footage for shot-cut tests (importable: tests/ is on pytest's pythonpath).

``tests/data/shots/frames.npz`` holds a few continuous shots cut from Intel IoT DevKit
sample-videos (CC-BY 4.0; see the README beside it), point-sampled to 64x36. Joining two of them
makes a hard cut.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

SHOT_FIXTURE = Path(__file__).resolve().parent / "data" / "shots" / "frames.npz"
#: The shots in the fixture: two people in turn before the same grey wall (male, female), a
#: corridor with different people walking (walking, walking_pause), an auto-exposure ramp.
SHOTS = ("male", "female", "walking", "walking_pause", "one_by_one")


@cache
def _shot(name: str) -> np.ndarray:
    with np.load(SHOT_FIXTURE) as data:
        frames = np.asarray(data[name])
    frames.setflags(write=False)
    return frames


def shot_frames(*names: str, scale: int = 1) -> list[np.ndarray]:
    """The frames of the named shots one after the other (``[36*scale, 64*scale, 3]`` uint8 each,
    ``scale`` by pixel repetition)."""
    out = []
    for name in names:
        for frame in _shot(name):
            big = np.repeat(np.repeat(frame, scale, axis=0), scale, axis=1) if scale > 1 else frame.copy()
            out.append(np.ascontiguousarray(big))
    return out
