"""The real-footage evaluation set (``eval/``) as decoded frames with their labelled faces, for the
benchmarks that run a model directly on it (``precision.py``, ``detector_size.py``).

Frames are decoded with PyAV to RGB, every frame of the clip, as ``eval/tools/make_truth.py``
decoded them when the ground truth was made (the mesh samples them at the manifest's fps and
re-encodes them as JPEG first; these benchmarks measure the model, not ingest).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from identities import MANIFEST, load_manifest

from faceflow.run.democlip_types import GroundTruth

__all__ = ["MANIFEST", "LabelledFrame", "labelled_frames"]


@dataclass(frozen=True)
class LabelledFrame:
    clip: str
    index: int
    rgb: np.ndarray  # [H, W, 3] uint8
    boxes: np.ndarray  # [F, 4] float64, the labelled faces (x1, y1, x2, y2), frame pixels


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def labelled_frames(manifest: Path = MANIFEST, *, every: int = 1) -> Iterator[LabelledFrame]:
    """Every ``every``-th frame of every clip of ``manifest``, with its ground-truth faces.

    Raises:
        ValueError: a clip decodes to another number of frames than its ground truth lists.
    """
    if every < 1:
        raise ValueError(f"every: expected an int >= 1, got {every}")
    for clip in load_manifest(manifest).clips:
        truth = GroundTruth.load(clip.ground_truth)
        frames = _decode(clip.video)
        if len(frames) != truth.frame_count:
            raise ValueError(
                f"{clip.video}: expected {truth.frame_count} frames (its ground truth), got {len(frames)}"
            )
        for gt in truth.frames[::every]:
            boxes = np.array([f.box for f in gt.faces], dtype=np.float64).reshape(-1, 4)
            yield LabelledFrame(clip.id, gt.index, frames[gt.index], boxes)
