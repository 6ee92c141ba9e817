"""The served models' answers as validated types: every contract break is named."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from faceflow.models import contract
from faceflow.models.response import DetectedFaces, FaceAnalyses, PipelineResponse, ResponseError


def outputs(frames: int = 2, faces_per_frame: tuple[int, ...] = (2, 1)) -> dict[str, np.ndarray]:
    """A consistent face_pipeline answer (random but valid values)."""
    rng = np.random.default_rng(0)
    f = sum(faces_per_frame)
    out: dict[str, np.ndarray] = {
        "FRAME_STATUS": np.zeros(frames, np.int32),
        "FRAME_INDEX": np.repeat(np.arange(len(faces_per_frame)), faces_per_frame).astype(np.int32),
    }
    for spec in contract.FACE_PIPELINE_OUTPUTS:
        if spec.name in out:
            continue
        shape = tuple(f if d == "F" else d for d in spec.shape)
        if spec.dtype == "UINT8":
            out[spec.name] = rng.integers(0, len(contract.PARSING_CLASSES), shape).astype(np.uint8)
        else:
            value = rng.random(shape).astype(np.float32)
            if spec.name in ("AGE", "GENDER", "RACE"):
                value = (value / value.sum(axis=1, keepdims=True)).astype(np.float32)
            out[spec.name] = value
    return out


def test_a_consistent_answer_splits_per_frame() -> None:
    answer = PipelineResponse.from_triton(outputs(), frames=2)
    assert len(answer.detected) == 3
    assert answer.detected.faces_of(0).tolist() == [0, 1] and answer.detected.faces_of(1).tolist() == [2]
    assert answer.detected.status(1) is contract.FrameStatus.OK
    sub = answer.analyses.take([2, 0])
    np.testing.assert_array_equal(sub.embedding, answer.analyses.embedding[[2, 0]])
    assert set(sub.to_triton()) == set(contract.FACE_ANALYZE_OUTPUT_NAMES)


def broken(change: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = outputs()
    for key, value in change.items():
        if value is None:
            out.pop(key)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"BOXES": None}, "BOXES: expected the output tensor, got none"),
        ({"BOXES": np.zeros((2, 4), np.float32)}, r"BOXES: expected shape \[3,4\], got \[2, 4\]"),
        ({"SCORES": np.zeros(3, np.float64)}, "SCORES: expected dtype float32, got float64"),
        ({"FRAME_STATUS": np.zeros(3, np.int32)}, r"FRAME_STATUS: expected shape \[2\]"),
        (
            {"FRAME_STATUS": np.array([0, 7], np.int32)},
            r"FRAME_STATUS: expected codes \[0, 1, 2, 3\], got \[7\]",
        ),
        ({"FRAME_INDEX": np.array([0, 0, 5], np.int32)}, r"FRAME_INDEX: expected values in 0..1"),
        ({"FRAME_INDEX": np.array([1, 0, 0], np.int32)}, "expected faces in frame order"),
        (
            {"FRAME_STATUS": np.array([0, 1], np.int32)},
            r"faces of frames without pixels \(status 1 or 2\): \[1\]",
        ),
        ({"EMBEDDING": np.zeros((2, 128), np.float32)}, r"EMBEDDING: expected shape \[3,128\]"),
        ({"AGE": np.full((3, 8), 1.5, np.float32)}, r"expected age probabilities in \[0, 1\]"),
        ({"EMBEDDING": np.full((3, 128), np.nan, np.float32)}, "EMBEDDING: expected finite values"),
        ({"PARSING": np.full((3, 224, 224), 42, np.uint8)}, "expected parsing class ids < 11"),
    ],
)
def test_each_contract_break_is_named(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ResponseError, match=message):
        PipelineResponse.from_triton(broken(change), frames=2)


def test_zero_faces_and_empty_analyses() -> None:
    out = outputs(frames=2, faces_per_frame=(0, 0))
    answer = PipelineResponse.from_triton(out, frames=2)
    assert len(answer.detected) == 0 and len(answer.analyses) == 0
    assert len(FaceAnalyses.empty()) == 0
    detected = DetectedFaces.from_triton(out, frames=2)
    assert detected.faces_of(0).tolist() == []
