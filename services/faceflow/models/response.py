"""The answers of ``face_pipeline``, ``face_detect`` and ``face_analyze`` as validated types (pure numpy).

Every client of the served models (the analyzer, enrolment, tests) builds these with
``from_triton`` from the output tensors, so a missing tensor, a wrong dtype, a face count that
differs between tensors, or a ``FRAME_INDEX`` out of order or range is caught once, here, with a
message naming the tensor: "BOXES: expected shape [3,4], got [2,4]".

* :class:`DetectedFaces`: per-frame statuses and every face's box, score and 5 keypoints;
* :class:`FaceAnalyses`: for F faces, the crop box, every task's tensors
  (:class:`~faceflow.models.decode.HeadOutputs`) and the identity embedding;
* :class:`PipelineResponse`: both, for ``face_pipeline``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faceflow.models.contract import (
    FACE_ANALYZE_OUTPUT_NAMES,
    FACE_DETECT_OUTPUT_NAMES,
    FACE_MODEL_OUTPUT_NAMES,
    FrameStatus,
    tensor_spec,
)
from faceflow.models.decode import HeadOutputs

__all__ = ["DetectedFaces", "FaceAnalyses", "PipelineResponse", "ResponseError"]

_STATUS_CODES = frozenset(int(s) for s in FrameStatus)


class ResponseError(ValueError):
    """The served model's answer breaks its contract (a server-side bug or version mismatch)."""


def _tensor(
    outputs: Mapping[str, np.ndarray | None], name: str, *, n: int | None, f: int | None
) -> np.ndarray:
    """The output ``name`` checked against its contract spec (symbolic dims N and F)."""
    if name not in outputs or outputs[name] is None:
        raise ResponseError(f"{name}: expected the output tensor, got none (outputs: {sorted(outputs)})")
    value = np.asarray(outputs[name])
    spec = tensor_spec(name)
    if value.dtype != np.dtype(spec.numpy_dtype):
        raise ResponseError(f"{name}: expected dtype {spec.numpy_dtype}, got {value.dtype}")
    dims = []
    for d, got in zip(spec.shape, value.shape, strict=False):
        if d == "N":
            dims.append(got if n is None else n)
        elif d == "F":
            dims.append(got if f is None else f)
        else:
            dims.append(d)
    if value.ndim != len(spec.shape) or list(value.shape) != dims:
        shown = (
            ",".join(str(d) for d in dims)
            if value.ndim == len(spec.shape)
            else ",".join(map(str, spec.shape))
        )
        raise ResponseError(f"{name}: expected shape [{shown}], got {list(value.shape)}")
    return value


@dataclass(frozen=True)
class DetectedFaces:
    """Statuses of N frames and the F faces found in them (``face_detect``'s outputs).

    ``frame_index`` is non-decreasing (faces come in frame order) and in ``0..N-1``.
    """

    frame_status: npt.NDArray[np.int32]
    frame_index: npt.NDArray[np.int32]
    boxes: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    keypoints5: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        n, f = self.frame_status.shape[0], self.frame_index.shape[0]
        bad = set(int(s) for s in np.unique(self.frame_status)) - _STATUS_CODES
        if bad:
            raise ResponseError(f"FRAME_STATUS: expected codes {sorted(_STATUS_CODES)}, got {sorted(bad)}")
        if f and (self.frame_index.min() < 0 or self.frame_index.max() >= n):
            raise ResponseError(
                f"FRAME_INDEX: expected values in 0..{n - 1}, got {self.frame_index.tolist()[:8]}"
            )
        if f > 1 and bool((np.diff(self.frame_index) < 0).any()):
            raise ResponseError("FRAME_INDEX: expected faces in frame order, got a decreasing index")
        no_pixels = [int(i) for i in np.unique(self.frame_index) if self.frame_status[i] in (1, 2)]
        if no_pixels:
            raise ResponseError(f"FRAME_INDEX: faces of frames without pixels (status 1 or 2): {no_pixels}")

    @classmethod
    def from_triton(cls, outputs: Mapping[str, np.ndarray | None], *, frames: int) -> DetectedFaces:
        status = _tensor(outputs, "FRAME_STATUS", n=frames, f=None)
        index = _tensor(outputs, "FRAME_INDEX", n=frames, f=None)
        f = index.shape[0]
        return cls(
            frame_status=status,
            frame_index=index,
            boxes=_tensor(outputs, "BOXES", n=frames, f=f),
            scores=_tensor(outputs, "SCORES", n=frames, f=f),
            keypoints5=_tensor(outputs, "KEYPOINTS5", n=frames, f=f),
        )

    def __len__(self) -> int:
        return int(self.frame_index.shape[0])

    @property
    def frames(self) -> int:
        return int(self.frame_status.shape[0])

    def status(self, frame: int) -> FrameStatus:
        return FrameStatus(int(self.frame_status[frame]))

    def faces_of(self, frame: int) -> npt.NDArray[np.intp]:
        """Indices (into the F faces) of the faces of ``frame``, in detector order."""
        return np.flatnonzero(self.frame_index == frame)

    def to_triton(self) -> dict[str, np.ndarray]:
        return dict(zip(FACE_DETECT_OUTPUT_NAMES, self._arrays(), strict=True))

    def _arrays(self) -> tuple[np.ndarray, ...]:
        return (self.frame_status, self.frame_index, self.boxes, self.scores, self.keypoints5)


@dataclass(frozen=True)
class FaceAnalyses:
    """Every task's result for F faces (``face_analyze``'s outputs, or face_pipeline's share)."""

    crop_boxes: npt.NDArray[np.float32]
    heads: HeadOutputs
    embedding: npt.NDArray[np.float32]

    def __post_init__(self) -> None:
        f = self.crop_boxes.shape[0]
        if len(self.heads) != f or self.embedding.shape[0] != f:
            raise ResponseError(
                f"expected {f} faces in every analysis tensor, got {len(self.heads)} heads and "
                f"{self.embedding.shape[0]} embeddings"
            )
        if f and not np.isfinite(self.embedding).all():
            raise ResponseError("EMBEDDING: expected finite values, got NaN or inf")

    @classmethod
    def from_triton(
        cls, outputs: Mapping[str, np.ndarray | None], *, faces: int | None = None
    ) -> FaceAnalyses:
        crop = _tensor(outputs, "CROP_BOXES", n=None, f=faces)
        f = crop.shape[0]
        named = {name: _tensor(outputs, name, n=None, f=f) for name in FACE_MODEL_OUTPUT_NAMES}
        try:
            heads = HeadOutputs.from_triton(named)
        except (ValueError, TypeError, KeyError) as exc:
            raise ResponseError(str(exc)) from exc
        return cls(crop_boxes=crop, heads=heads, embedding=_tensor(outputs, "EMBEDDING", n=None, f=f))

    @classmethod
    def empty(cls) -> FaceAnalyses:
        return cls(
            crop_boxes=np.zeros((0, 4), np.float32),
            heads=HeadOutputs.empty(),
            embedding=np.zeros((0, tensor_spec("EMBEDDING").shape[1]), np.float32),  # type: ignore[arg-type]
        )

    def __len__(self) -> int:
        return int(self.crop_boxes.shape[0])

    def take(self, indices: Sequence[int] | npt.NDArray[np.intp]) -> FaceAnalyses:
        """The analyses of these faces, in this order."""
        idx = np.asarray(indices, dtype=np.intp)
        heads = {name: value[idx] for name, value in self.heads.to_triton().items()}
        return FaceAnalyses(
            crop_boxes=self.crop_boxes[idx],
            heads=HeadOutputs.from_triton(heads),
            embedding=self.embedding[idx],
        )

    def to_triton(self) -> dict[str, np.ndarray]:
        out = {"CROP_BOXES": self.crop_boxes, **self.heads.to_triton(), "EMBEDDING": self.embedding}
        return {name: out[name] for name in FACE_ANALYZE_OUTPUT_NAMES}


@dataclass(frozen=True)
class PipelineResponse:
    """``face_pipeline``'s answer: detections and the analyses of every face, in the same order."""

    detected: DetectedFaces
    analyses: FaceAnalyses

    def __post_init__(self) -> None:
        if len(self.detected) != len(self.analyses):
            raise ResponseError(
                f"expected one analysis per face, got {len(self.detected)} faces and "
                f"{len(self.analyses)} analyses"
            )

    @classmethod
    def from_triton(cls, outputs: Mapping[str, np.ndarray | None], *, frames: int) -> PipelineResponse:
        detected = DetectedFaces.from_triton(outputs, frames=frames)
        return cls(detected=detected, analyses=FaceAnalyses.from_triton(outputs, faces=len(detected)))
