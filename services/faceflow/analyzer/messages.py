"""``FrameAnalysis`` messages from the served models' validated answers (the wire format of
faceflow.analyses.v1; see protos/faceflow/v1/analysis.proto)."""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faceflow.models.contract import FrameStatus
from faceflow.models.response import DetectedFaces, FaceAnalyses
from faceflow.service.triton import ServedModel
from faceflow.v1 import analysis_pb2, common_pb2, frame_pb2

#: face_pipeline's FRAME_STATUS code -> the proto enum (wire value = code + 1).
PROTO_STATUS = {s: analysis_pb2.FrameStatus.Value(f"FRAME_STATUS_{s.name}") for s in FrameStatus}
STATUS_DETAIL = {
    FrameStatus.OK: "",
    FrameStatus.UNDECODABLE: "the image could not be decoded",
    FrameStatus.TOO_LARGE: "the image has more pixels than the face detector's limit",
    FrameStatus.TOO_MANY_FACES: "more faces than the per-frame limit: the lowest-scoring were dropped",
}


@dataclass(frozen=True)
class FrameFaces:
    """One frame's share of a batch: which faces, and for each the analysis row or -1 with the seq
    whose results stand for it."""

    status: FrameStatus
    faces: np.ndarray  # [k] indices into the batch's DetectedFaces
    analysis_rows: np.ndarray  # [k] indices into the batch's FaceAnalyses, -1 when not analyzed
    results_seq: np.ndarray  # [k] uint64


def box(values: np.ndarray) -> common_pb2.BoundingBox:
    x1, y1, x2, y2 = (float(v) for v in values)
    return common_pb2.BoundingBox(x1=x1, y1=y1, x2=x2, y2=y2)


def points(values: np.ndarray) -> list[common_pb2.Point]:
    return [common_pb2.Point(x=float(x), y=float(y)) for x, y in values]


def model_infos(models: Sequence[ServedModel]) -> list[common_pb2.ModelInfo]:
    return [
        common_pb2.ModelInfo(
            name=m.name, version=m.version, weights=m.weights, random_init=m.random_init, variant=m.variant
        )
        for m in models
    ]


def face_analysis(
    detected: DetectedFaces,
    analyses: FaceAnalyses,
    face: int,
    row: int,
    results_seq: int,
    *,
    face_index: int,
    include_parsing: bool,
) -> analysis_pb2.FaceAnalysis:
    """One face: its detection, and every task result when ``row`` >= 0 (analyzed)."""
    out = analysis_pb2.FaceAnalysis(
        face_index=face_index,
        box=box(detected.boxes[face]),
        score=float(detected.scores[face]),
        keypoints5=points(detected.keypoints5[face]),
        analyzed=row >= 0,
        results_seq=results_seq,
    )
    if row < 0:
        return out
    heads = analyses.heads
    out.crop_box.CopyFrom(box(analyses.crop_boxes[row]))
    out.landmarks68.extend(points(heads.landmarks68[row]))
    pitch, yaw, roll = (float(v) for v in heads.head_pose[row])
    out.head_pose.CopyFrom(common_pb2.HeadPose(pitch=pitch, yaw=yaw, roll=roll))
    out.attributes.extend(heads.attributes[row].tolist())
    out.visibility.extend(heads.visibility[row].tolist())
    out.age.extend(heads.age[row].tolist())
    out.gender.extend(heads.gender[row].tolist())
    out.race.extend(heads.race[row].tolist())
    out.embedding.extend(analyses.embedding[row].tolist())
    if include_parsing:
        mask = np.ascontiguousarray(heads.parsing[row], np.uint8)
        out.parsing.CopyFrom(
            common_pb2.ParsingMask(
                width=int(mask.shape[1]),
                height=int(mask.shape[0]),
                class_ids=zlib.compress(mask.tobytes(), 6),
                compression=common_pb2.MASK_COMPRESSION_ZLIB,
                crop_box=box(analyses.crop_boxes[row]),
            )
        )
    return out


def frame_analysis(
    frame: frame_pb2.Frame,
    *,
    detected: DetectedFaces | None,
    analyses: FaceAnalyses | None,
    share: FrameFaces | None,
    models: Sequence[ServedModel],
    schedule: str,
    batch_size: int,
    detect_s: float,
    analyze_s: float,
    started_ns: int,
    include_parsing: bool,
) -> analysis_pb2.FrameAnalysis:
    """The analysis of one frame (or the forwarded end-of-stream marker when ``share`` is None)."""
    message = analysis_pb2.FrameAnalysis(
        stream_id=frame.stream_id,
        seq=frame.seq,
        width=frame.width,
        height=frame.height,
        end_of_stream=frame.end_of_stream,
        schedule=schedule,
        shot_start_seq=frame.shot_start_seq,
    )
    message.pts.CopyFrom(frame.pts)
    message.capture_time.CopyFrom(frame.capture_time)
    if share is None or detected is None or analyses is None:
        message.status = analysis_pb2.FRAME_STATUS_OK
        return message
    message.status = PROTO_STATUS[share.status]
    message.status_detail = STATUS_DETAIL[share.status]
    for k, (face, row, rseq) in enumerate(
        zip(share.faces, share.analysis_rows, share.results_seq, strict=True)
    ):
        message.faces.append(
            face_analysis(
                detected,
                analyses,
                int(face),
                int(row),
                int(rseq),
                face_index=k,
                include_parsing=include_parsing,
            )
        )
    message.models.extend(model_infos(models))
    timings = message.timings
    timings.queue_delay.FromNanoseconds(max(0, started_ns - frame.capture_time.ToNanoseconds()))
    timings.inference.FromNanoseconds(round((detect_s + analyze_s) * 1e9))
    timings.detect.FromNanoseconds(round(detect_s * 1e9))
    timings.analyze.FromNanoseconds(round(analyze_s * 1e9))
    timings.batch_size = batch_size
    timings.faces_analyzed = int((share.analysis_rows >= 0).sum())
    timings.analyzed_time.FromNanoseconds(time.time_ns())
    return message
