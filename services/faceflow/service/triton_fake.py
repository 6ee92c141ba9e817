"""A fake Triton client for fast unit tests of code that calls the face models (it ships with the
code, STYLE.md #11; the real Triton is tested too).

:class:`FakeTritonClient` has the entry points of :class:`~faceflow.service.triton.TritonClient`
and answers by looking at the bytes it is given, deterministically:

* an image starting with ``b"FACE"`` has one face (``b"FACE2"``: two), the box derived from the
  image's length; any other image has none;
* ``b"JUNK"`` is undecodable (FRAME_STATUS 1), ``b"HUGE"`` too large (2);
* an image containing ``b"POISON"`` makes the whole call fail with :class:`TritonRefused`;
* :attr:`unavailable` set to True makes every call fail with :class:`TritonUnavailable`.

Every call is recorded in :attr:`calls` (entry point, number of frames, number of faces analyzed).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from faceflow.models.contract import (
    AGE_BINS,
    ATTRIBUTES,
    CROP_SIZE,
    GENDERS,
    IDENTITY_DIM,
    NUM_LANDMARKS,
    RACES,
    VISIBILITY_POINTS,
    FrameStatus,
)
from faceflow.models.decode import HeadOutputs
from faceflow.models.response import DetectedFaces, FaceAnalyses, PipelineResponse
from faceflow.service.triton import ServedModel, TritonRefused, TritonUnavailable


def _faces_in(image: bytes) -> tuple[FrameStatus, int]:
    if image.startswith(b"JUNK"):
        return FrameStatus.UNDECODABLE, 0
    if image.startswith(b"HUGE"):
        return FrameStatus.TOO_LARGE, 0
    if image.startswith(b"FACE2"):
        return FrameStatus.OK, 2
    if image.startswith(b"FACE"):
        return FrameStatus.OK, 1
    return FrameStatus.OK, 0


class FakeTritonClient:
    """See the module docstring."""

    def __init__(self, *, random_init: bool = True) -> None:
        self.unavailable = False
        self.random_init = random_init
        self.calls: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()

    def _check(self, frames: Sequence[bytes]) -> None:
        if self.unavailable:
            raise TritonUnavailable("Triton fake: unavailable (as configured)")
        for i, image in enumerate(frames):
            if b"POISON" in image:
                raise TritonRefused(f"Triton fake: a model failed on frame {i} of the request")

    def detect(self, frames: Sequence[bytes], *, timeout_s: float | None = None) -> DetectedFaces:
        self._check(frames)
        statuses, index, boxes, scores, kps = [], [], [], [], []
        for i, image in enumerate(frames):
            status, n = _faces_in(image)
            statuses.append(int(status))
            for k in range(n):
                x = 10.0 + 100.0 * k + (len(image) % 7)
                index.append(i)
                boxes.append([x, 20.0, x + 80.0, 120.0])
                scores.append(0.9)
                kps.append([[x + 25, 55], [x + 55, 55], [x + 40, 75], [x + 28, 95], [x + 52, 95]])
        with self._lock:
            self.calls.append(("detect", len(frames), 0))
        return DetectedFaces(
            frame_status=np.array(statuses, np.int32),
            frame_index=np.array(index, np.int32),
            boxes=np.array(boxes, np.float32).reshape(-1, 4),
            scores=np.array(scores, np.float32),
            keypoints5=np.array(kps, np.float32).reshape(-1, 5, 2),
        )

    def analyze(
        self,
        frames: Sequence[bytes],
        frame_index: np.ndarray,
        boxes: np.ndarray,
        keypoints5: np.ndarray,
        *,
        timeout_s: float | None = None,
    ) -> FaceAnalyses:
        self._check(frames)
        f = int(frame_index.shape[0])
        with self._lock:
            self.calls.append(("analyze", len(frames), f))
        return _analyses(frames, frame_index, boxes)

    def pipeline(self, frames: Sequence[bytes], *, timeout_s: float | None = None) -> PipelineResponse:
        detected = self.detect(frames)
        with self._lock:
            self.calls[-1] = ("pipeline", len(frames), len(detected))
        return PipelineResponse(
            detected=detected, analyses=_analyses(frames, detected.frame_index, detected.boxes)
        )

    def probe(self, *, timeout_s: float = 30.0) -> PipelineResponse:
        return self.pipeline([b"probe"])

    def model_infos(self, model: str = "face_pipeline") -> list[ServedModel]:
        weights = "random-init" if self.random_init else "sha256:" + "0" * 64
        return [
            ServedModel(name="centerface", version="1", weights="centerface (fake)", random_init=False),
            ServedModel(
                name="facexformer",
                version="1",
                weights=weights,
                random_init=self.random_init,
                variant="swin_b",
            ),
            ServedModel(
                name="dlib_resnet", version="1", weights="dlib (fake)", random_init=False, variant="128d"
            ),
        ]

    def close(self) -> None:
        return None


def _analyses(frames: Sequence[bytes], frame_index: np.ndarray, boxes: np.ndarray) -> FaceAnalyses:
    f = int(frame_index.shape[0])
    heads = HeadOutputs(
        landmarks68=np.tile(boxes[:, None, :2], (1, NUM_LANDMARKS, 1)).astype(np.float32),
        head_pose=np.zeros((f, 3), np.float32),
        attributes=np.full((f, len(ATTRIBUTES)), 0.25, np.float32),
        visibility=np.full((f, len(VISIBILITY_POINTS)), 0.1, np.float32),
        age=np.full((f, len(AGE_BINS)), 1 / len(AGE_BINS), np.float32),
        gender=np.full((f, len(GENDERS)), 0.5, np.float32),
        race=np.full((f, len(RACES)), 1 / len(RACES), np.float32),
        parsing=np.zeros((f, CROP_SIZE, CROP_SIZE), np.uint8),
    )
    # one embedding per distinct image prefix: the same "person" gives the same descriptor
    embedding = np.zeros((f, IDENTITY_DIM), np.float32)
    for row, i in enumerate(frame_index):
        seed = sum(frames[int(i)][:6]) % 1000
        embedding[row] = np.random.default_rng(seed).standard_normal(IDENTITY_DIM).astype(np.float32) * 0.1
    return FaceAnalyses(crop_boxes=boxes.astype(np.float32), heads=heads, embedding=embedding)
