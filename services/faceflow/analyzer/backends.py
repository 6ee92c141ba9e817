"""How the analyzer gets results for a batch of frames from Triton: every face, or face-aware.

* :class:`PipelineBackend` (``--schedule all``, the reference): one ``face_pipeline`` call; every
  face of every frame is analyzed.
* :class:`ScheduledBackend` (``--schedule adaptive``, the default): ``face_detect`` on every frame,
  then the :class:`~faceflow.core.scheduling.Scheduler` picks the faces worth analyzing (new or
  returning, last analysis older than ``max_age_s``, or a clearly better shot) and one
  ``face_analyze`` call analyzes exactly those, sending only the frames they are on (a frame
  none of whose faces is chosen is neither sent nor decoded a second time). A skipped face is
  still reported, with the seq of the analysis that stands for it. A frame whose
  ``shot_start_seq`` differs from its stream's previous frame's starts a new shot (a hard cut):
  every face of it is analyzed. If the analysis fails, the streams' scheduling state is dropped:
  the batch is retried and its faces are analyzed again (extra work, never a wrong result).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from faceflow.analyzer.messages import FrameFaces
from faceflow.core.quality import detection_qualities
from faceflow.core.scheduling import ScheduleMode, SchedulePolicy, Scheduler
from faceflow.models.response import DetectedFaces, FaceAnalyses
from faceflow.service.triton import FaceModels

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameInput:
    """One frame to analyze (``shot_start_seq``: ``Frame.shot_start_seq``, 0 = unknown)."""

    stream_id: str
    seq: int
    pts_s: float
    image: bytes
    shot_start_seq: int = 0


@dataclass(frozen=True)
class BatchAnalysis:
    """A batch's answer: detections of every frame, analyses of the chosen faces, and per frame
    which is which."""

    detected: DetectedFaces
    analyses: FaceAnalyses
    frames: tuple[FrameFaces, ...]
    detect_s: float
    analyze_s: float

    @property
    def faces_analyzed(self) -> int:
        return len(self.analyses)


class Backend(Protocol):
    schedule: str

    def run(self, frames: Sequence[FrameInput]) -> BatchAnalysis: ...

    def forget(self, stream_ids: set[str]) -> None: ...


def _share(detected: DetectedFaces, frame: int, rows: np.ndarray, seqs: np.ndarray) -> FrameFaces:
    faces = detected.faces_of(frame)
    return FrameFaces(
        status=detected.status(frame), faces=faces, analysis_rows=rows[faces], results_seq=seqs[faces]
    )


def _frames_of(frame_index: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The batch's frames that ``frame_index`` names (ascending), and ``frame_index`` renumbered
    into that list: what ``face_analyze`` needs, without the frames none of its faces are on."""
    sent = np.unique(frame_index)
    return [int(i) for i in sent], np.searchsorted(sent, frame_index).astype(np.int32)


class PipelineBackend:
    """Every face of every frame, in one ``face_pipeline`` call."""

    schedule = "all"

    def __init__(self, client: FaceModels) -> None:
        self.client = client

    def run(self, frames: Sequence[FrameInput]) -> BatchAnalysis:
        started = time.monotonic()
        answer = self.client.pipeline([f.image for f in frames])
        elapsed = time.monotonic() - started
        detected = answer.detected
        rows = np.arange(len(detected), dtype=np.int64)
        seqs = np.array([frames[int(i)].seq for i in detected.frame_index], dtype=np.uint64)
        shares = tuple(_share(detected, i, rows, seqs) for i in range(len(frames)))
        return BatchAnalysis(
            detected=detected, analyses=answer.analyses, frames=shares, detect_s=elapsed, analyze_s=0.0
        )

    def forget(self, stream_ids: set[str]) -> None:
        return None


class ScheduledBackend:
    """``face_detect`` for every frame, ``face_analyze`` for the faces the scheduler picks."""

    schedule = "adaptive"

    def __init__(self, client: FaceModels, policy: SchedulePolicy) -> None:
        if policy.mode is not ScheduleMode.ADAPTIVE:
            raise ValueError(f"policy: expected mode adaptive for the scheduled backend, got {policy.mode}")
        self.client = client
        self.scheduler = Scheduler(policy)
        self._lock = threading.Lock()  # the scheduler is pure and unlocked; batches may run concurrently

    def run(self, frames: Sequence[FrameInput]) -> BatchAnalysis:
        images = [f.image for f in frames]
        started = time.monotonic()
        detected = self.client.detect(images)
        detect_s = time.monotonic() - started
        f = len(detected)
        rows = np.full(f, -1, dtype=np.int64)
        seqs = np.zeros(f, dtype=np.uint64)
        qualities = (
            detection_qualities(detected.boxes, detected.scores, detected.keypoints5) if f else np.zeros(0)
        )
        chosen: list[int] = []
        with self._lock:
            for i, frame in enumerate(frames):  # frame order: a stream's later frame sees its earlier one
                faces = detected.faces_of(i)
                decisions = self.scheduler.decide(
                    frame.stream_id,
                    seq=frame.seq,
                    t=frame.pts_s,
                    boxes=detected.boxes[faces],
                    qualities=qualities[faces],
                    shot_start_seq=frame.shot_start_seq,
                )
                for face, decision in zip(faces, decisions, strict=True):
                    seqs[face] = decision.results_seq
                    if decision.analyze:
                        rows[face] = len(chosen)
                        chosen.append(int(face))
        started = time.monotonic()
        try:
            index = np.asarray(chosen, dtype=np.intp)
            # only the frames that hold a chosen face travel (and are decoded) a second time
            sent, frame_index = _frames_of(detected.frame_index[index])
            analyses = (
                self.client.analyze(
                    [images[i] for i in sent], frame_index, detected.boxes[index], detected.keypoints5[index]
                )
                if chosen
                else FaceAnalyses.empty()
            )
        except Exception:
            self.forget({f.stream_id for f in frames})
            raise
        analyze_s = time.monotonic() - started
        shares = tuple(_share(detected, i, rows, seqs) for i in range(len(frames)))
        return BatchAnalysis(
            detected=detected, analyses=analyses, frames=shares, detect_s=detect_s, analyze_s=analyze_s
        )

    def forget(self, stream_ids: set[str]) -> None:
        with self._lock:
            for stream_id in stream_ids:
                self.scheduler.forget_stream(stream_id)
