"""The stages of the Triton models as plain library code.

Triton's python models (``triton_repo/<model>/1/model.py``) are thin wrappers around these
classes, so the same code runs in tests without Triton and behind it:

* :class:`LocatorStage` (Triton model ``face_detect``): decodes the encoded frames and runs
  CenterFace: statuses, boxes, scores, 5 keypoints.
* :class:`CropStage`: from decoded frames and given faces, the FaceXFormer crops (box grown 25% per
  side, 224 bicubic, ImageNet mean/std) and the 5-point aligned 150x150 identity chips.
* :class:`DetectorStage` (``face_detector``, the first step of ``face_pipeline``): both of the
  above on one decode of each frame.
* :class:`CropperStage` (``face_cropper``, the first step of ``face_analyze``): decodes the frames
  the request names and crops exactly the faces it gives, after checking them.
* :class:`FaceModelStage` (``facexformer``): the FaceXFormer ONNX on onnxruntime, heads decoded
  into the contract's tensors (probabilities, frame-pixel landmarks, parsing class ids).
* :class:`EmbedderStage` (``face_embedder``): dlib ResNet descriptors of the chips.

A frame that cannot be decoded, is too large, or has too many faces gets its ``FRAME_STATUS``;
it never fails the batch. A ``face_analyze`` request whose faces do not fit its frames fails as a
whole with :class:`FaceRequestError`, whose message names the face and the rule it breaks.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from faceflow.models.boxes import expand_box
from faceflow.models.centerface_decode import Detections
from faceflow.models.contract import (
    CROP_MARGIN,
    CROP_SIZE,
    FACEXFORMER_INPUT,
    FACEXFORMER_OUTPUTS,
    IDENTITY_CHIP_SIZE,
    IDENTITY_DIM,
    MAX_FRAME_PIXELS,
    FrameStatus,
)
from faceflow.models.crops import crop_faces
from faceflow.models.decode import HeadOutputs, decode_heads

logger = logging.getLogger(__name__)

#: How far (pixels) a given face box may reach outside its frame before face_analyze refuses it.
BOX_TOLERANCE_PX: Final[float] = 1.0

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]


class FaceRequestError(ValueError):
    """A ``face_analyze`` request whose faces do not fit its frames (the request's error)."""


def decode_frame(data: bytes, *, max_pixels: int = MAX_FRAME_PIXELS) -> tuple[FrameStatus, np.ndarray | None]:
    """Encoded bytes -> (status, ``[H,W,3]`` uint8 RGB or None).

    Grayscale, palette, CMYK and alpha images become RGB; EXIF orientation is applied. The pixel
    limit is checked from the header, before anything large is allocated.
    """
    if not data:
        return FrameStatus.UNDECODABLE, None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > max_pixels:
                    return FrameStatus.TOO_LARGE, None
                img.load()
                oriented = ImageOps.exif_transpose(img)
                rgb = np.asarray(oriented.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this frame's status, not a crash
        logger.debug("undecodable frame (%d bytes): %s", len(data), exc)
        return FrameStatus.UNDECODABLE, None
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        return FrameStatus.UNDECODABLE, None
    return FrameStatus.OK, np.ascontiguousarray(rgb)


def _cat(parts: list[np.ndarray], shape: tuple[int, ...], dtype: type[np.generic]) -> np.ndarray:
    if not parts:
        return np.zeros((0, *shape), dtype)
    return np.ascontiguousarray(np.concatenate(parts).astype(dtype, copy=False))


@dataclass(frozen=True)
class LocatedFaces:
    """What ``face_detect`` returns for N frames with F faces in all (F may be 0), plus the decoded
    frames (None where undecodable) for a crop stage in the same process."""

    frame_status: I32  # [N]
    frame_index: I32  # [F]
    boxes: F32  # [F,4]
    scores: F32  # [F]
    keypoints5: F32  # [F,5,2]
    images: tuple[np.ndarray | None, ...]

    def __post_init__(self) -> None:
        f = self.frame_index.shape[0]
        expected = {"boxes": (f, 4), "scores": (f,), "keypoints5": (f, 5, 2)}
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"expected {name} of shape {list(shape)}, got {list(got)}")
        if len(self.images) != self.frame_status.shape[0]:
            raise ValueError(f"expected {self.frame_status.shape[0]} images, got {len(self.images)}")

    def as_tensors(self) -> dict[str, np.ndarray]:
        return {
            "FRAME_STATUS": self.frame_status,
            "FRAME_INDEX": self.frame_index,
            "BOXES": self.boxes,
            "SCORES": self.scores,
            "KEYPOINTS5": self.keypoints5,
        }


@dataclass(frozen=True)
class CroppedFaces:
    """The face model's and the embedder's inputs for F faces."""

    crop_boxes: F32  # [F,4]
    face_crops: F32  # [F,3,224,224]
    id_chips: U8  # [F,150,150,3]

    def __post_init__(self) -> None:
        f = self.crop_boxes.shape[0]
        expected = {
            "crop_boxes": (f, 4),
            "face_crops": (f, 3, CROP_SIZE, CROP_SIZE),
            "id_chips": (f, IDENTITY_CHIP_SIZE, IDENTITY_CHIP_SIZE, 3),
        }
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"expected {name} of shape {list(shape)}, got {list(got)}")

    def as_tensors(self) -> dict[str, np.ndarray]:
        return {"CROP_BOXES": self.crop_boxes, "FACE_CROPS": self.face_crops, "ID_CHIPS": self.id_chips}


@dataclass(frozen=True)
class DetectorOutput:
    """What ``face_detector`` returns: located faces and their crops."""

    located: LocatedFaces
    cropped: CroppedFaces

    def as_tensors(self) -> dict[str, np.ndarray]:
        out = self.located.as_tensors()
        out["CROP_BOXES"] = self.cropped.crop_boxes
        out["FACE_CROPS"] = self.cropped.face_crops
        out["ID_CHIPS"] = self.cropped.id_chips
        return out

    @property
    def frame_status(self) -> I32:
        return self.located.frame_status

    @property
    def frame_index(self) -> I32:
        return self.located.frame_index

    @property
    def crop_boxes(self) -> F32:
        return self.cropped.crop_boxes

    @property
    def face_crops(self) -> F32:
        return self.cropped.face_crops

    @property
    def id_chips(self) -> U8:
        return self.cropped.id_chips


class BatchDetector(Protocol):
    """What :class:`LocatorStage` needs of a detector (:class:`CenterFaceDetector`, or a fake)."""

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]: ...


class LocatorStage:
    """Decode and detect. Thread-safe (no per-call state on ``self``)."""

    def __init__(self, *, detector: BatchDetector, max_pixels: int = MAX_FRAME_PIXELS) -> None:
        if max_pixels < 1:
            raise ValueError(f"expected max_pixels >= 1, got {max_pixels}")
        self.detector = detector
        self.max_pixels = max_pixels

    def run(self, encoded: Sequence[bytes]) -> LocatedFaces:
        statuses = np.zeros(len(encoded), np.int32)
        images: list[np.ndarray | None] = []
        for i, data in enumerate(encoded):
            status, rgb = decode_frame(bytes(data), max_pixels=self.max_pixels)
            statuses[i] = int(status)
            images.append(rgb)
        decoded = [(i, rgb) for i, rgb in enumerate(images) if rgb is not None]
        per_frame = self._detect([rgb for _, rgb in decoded])
        idx: list[np.ndarray] = []
        box: list[np.ndarray] = []
        score: list[np.ndarray] = []
        kp: list[np.ndarray] = []
        for (i, _), det in zip(decoded, per_frame, strict=True):
            if det.truncated:
                statuses[i] = int(FrameStatus.TOO_MANY_FACES)
            if len(det) == 0:
                continue
            idx.append(np.full(len(det), i, np.int32))
            box.append(det.boxes)
            score.append(det.scores)
            kp.append(det.keypoints5)
        return LocatedFaces(
            frame_status=statuses,
            frame_index=_cat(idx, (), np.int32),
            boxes=_cat(box, (4,), np.float32),
            scores=_cat(score, (), np.float32),
            keypoints5=_cat(kp, (5, 2), np.float32),
            images=tuple(images),
        )

    def _detect(self, images: list[np.ndarray]) -> list[Detections]:
        """One ORT call per group of equal-sized frames (padding mixed sizes together wastes work)."""
        results: list[Detections | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(img.shape, []).append(i)
        for indices in groups.values():
            for i, det in zip(indices, self.detector.detect_batch([images[i] for i in indices]), strict=True):
                results[i] = det
        return [r if r is not None else Detections.empty() for r in results]


ChipFn = Callable[[np.ndarray, np.ndarray, np.ndarray], U8]


class CropStage:
    """Face-model crops and identity chips of given faces of decoded frames."""

    def __init__(self, *, chips: ChipFn) -> None:
        self.chips = chips

    def run(
        self, images: Sequence[np.ndarray | None], frame_index: I32, boxes: F32, keypoints5: F32
    ) -> CroppedFaces:
        crop_parts: list[np.ndarray] = []
        face_parts: list[np.ndarray] = []
        chip_parts: list[np.ndarray] = []
        order: list[np.ndarray] = []
        for i in np.unique(frame_index):
            rows = np.flatnonzero(frame_index == i)
            rgb = images[int(i)]
            if rgb is None:
                raise FaceRequestError(f"frame {int(i)} has no pixels (undecodable or too large)")
            h, w = rgb.shape[:2]
            crop_boxes = (
                expand_box(boxes[rows], CROP_MARGIN, width=w, height=h).astype(np.float32).reshape(-1, 4)
            )
            crop_parts.append(crop_boxes)
            face_parts.append(crop_faces(rgb, crop_boxes))
            chip_parts.append(self.chips(rgb, keypoints5[rows], boxes[rows]))
            order.append(rows)
        crops = _cat(crop_parts, (4,), np.float32)
        faces = _cat(face_parts, (3, CROP_SIZE, CROP_SIZE), np.float32)
        chips = _cat(chip_parts, (IDENTITY_CHIP_SIZE, IDENTITY_CHIP_SIZE, 3), np.uint8)
        if order:
            # back to the request's face order (frames were visited in index order)
            inverse = np.argsort(np.concatenate(order), kind="stable")
            crops, faces, chips = crops[inverse], faces[inverse], chips[inverse]
        return CroppedFaces(crop_boxes=crops, face_crops=faces, id_chips=chips)


class DetectorStage:
    """``face_detector``: decode, detect, crop and align, with one decode per frame."""

    def __init__(
        self,
        *,
        detector: BatchDetector,
        chips: ChipFn,
        max_pixels: int = MAX_FRAME_PIXELS,
    ) -> None:
        self.locator = LocatorStage(detector=detector, max_pixels=max_pixels)
        self.cropper = CropStage(chips=chips)

    def run(self, encoded: Sequence[bytes]) -> DetectorOutput:
        located = self.locator.run(encoded)
        cropped = self.cropper.run(located.images, located.frame_index, located.boxes, located.keypoints5)
        return DetectorOutput(located=located, cropped=cropped)


def check_faces(
    frame_status: I32, sizes: Sequence[tuple[int, int] | None], frame_index: I32, boxes: F32, keypoints5: F32
) -> None:
    """Check that the faces given to ``face_analyze`` fit its frames.

    ``sizes`` holds (width, height) of each decoded frame (None when it has no pixels).

    Raises:
        FaceRequestError: naming the first face that breaks a rule and the rule.
    """
    f = frame_index.shape[0] if frame_index.ndim == 1 else -1
    if frame_index.ndim != 1 or boxes.shape != (f, 4) or keypoints5.shape != (f, 5, 2):
        raise FaceRequestError(
            f"expected FRAME_INDEX [F], BOXES [F,4] and KEYPOINTS5 [F,5,2] with one F, got "
            f"{list(frame_index.shape)}, {list(boxes.shape)} and {list(keypoints5.shape)}"
        )
    n = len(sizes)
    for face in range(f):
        index = int(frame_index[face])
        if not 0 <= index < n:
            raise FaceRequestError(
                f"FRAME_INDEX[{face}] = {index}: expected a frame index in 0..{n - 1} ({n} frames)"
            )
        size = sizes[index]
        if size is None:
            raise FaceRequestError(
                f"FRAME_INDEX[{face}] = {index}: frame {index} has FRAME_STATUS {int(frame_status[index])} "
                f"(no pixels to analyze)"
            )
        w, h = size
        x1, y1, x2, y2 = (float(v) for v in boxes[face])
        t = BOX_TOLERANCE_PX
        if not np.isfinite(boxes[face]).all() or not np.isfinite(keypoints5[face]).all():
            raise FaceRequestError(f"face {face}: expected finite BOXES and KEYPOINTS5, got NaN or inf")
        if not (x2 > x1 and y2 > y1):
            raise FaceRequestError(f"BOXES[{face}] = {[x1, y1, x2, y2]}: expected x2 > x1 and y2 > y1")
        if x1 < -t or y1 < -t or x2 > w + t or y2 > h + t:
            raise FaceRequestError(
                f"BOXES[{face}] = {[round(v, 1) for v in (x1, y1, x2, y2)]}: expected a box inside frame "
                f"{index} ({w}x{h})"
            )


class CropperStage:
    """``face_cropper``: decode the frames of a ``face_analyze`` request, check its faces, crop them."""

    def __init__(self, *, chips: ChipFn, max_pixels: int = MAX_FRAME_PIXELS) -> None:
        self.cropper = CropStage(chips=chips)
        self.max_pixels = max_pixels

    def run(self, encoded: Sequence[bytes], frame_index: I32, boxes: F32, keypoints5: F32) -> CroppedFaces:
        wanted = set(int(i) for i in frame_index.reshape(-1)) if frame_index.size else set()
        statuses = np.zeros(len(encoded), np.int32)
        images: list[np.ndarray | None] = []
        for i, data in enumerate(encoded):
            if i not in wanted:
                images.append(None)  # not needed: never decoded
                continue
            status, rgb = decode_frame(bytes(data), max_pixels=self.max_pixels)
            statuses[i] = int(status)
            images.append(rgb)
        sizes = [None if img is None else (int(img.shape[1]), int(img.shape[0])) for img in images]
        check_faces(statuses, sizes, frame_index.astype(np.int32), boxes.astype(np.float32), keypoints5)
        return self.cropper.run(images, frame_index, boxes, keypoints5)


RawHeadsFn = Callable[[F32], Sequence[np.ndarray]]


class FaceModelStage:
    """FaceXFormer heads for a batch of crops, decoded to the contract's tensors."""

    def __init__(self, run_raw: RawHeadsFn, *, max_batch: int = 16) -> None:
        if max_batch < 1:
            raise ValueError(f"expected max_batch >= 1, got {max_batch}")
        self.run_raw = run_raw
        self.max_batch = max_batch

    @classmethod
    def from_onnx(cls, path: Path, *, intra_op_threads: int = 0, max_batch: int = 16) -> FaceModelStage:
        import onnxruntime as ort  # noqa: PLC0415 - the adapter edge

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        logger.info("FaceXFormer ONNX %s loaded (max_batch=%d)", path, max_batch)

        def run_raw(crops: F32) -> Sequence[np.ndarray]:
            outputs: list[np.ndarray] = session.run(list(FACEXFORMER_OUTPUTS), {FACEXFORMER_INPUT: crops})
            return outputs

        return cls(run_raw, max_batch=max_batch)

    def run(self, face_crops: F32, crop_boxes: F32) -> HeadOutputs:
        f = face_crops.shape[0]
        if face_crops.shape[1:] != (3, CROP_SIZE, CROP_SIZE):
            raise ValueError(
                f"expected FACE_CROPS of shape [F,3,{CROP_SIZE},{CROP_SIZE}], got {list(face_crops.shape)}"
            )
        if crop_boxes.shape != (f, 4):
            raise ValueError(f"expected CROP_BOXES of shape [{f},4], got {list(crop_boxes.shape)}")
        if f == 0:
            return HeadOutputs.empty()
        chunks: list[HeadOutputs] = []
        for start in range(0, f, self.max_batch):
            sl = slice(start, start + self.max_batch)
            raw = self.run_raw(np.ascontiguousarray(face_crops[sl], dtype=np.float32))
            named = dict(zip(FACEXFORMER_OUTPUTS, raw, strict=True))
            chunks.append(decode_heads(**named, crop_boxes=crop_boxes[sl]))
        if len(chunks) == 1:
            return chunks[0]
        merged = {
            name: np.concatenate([c.to_triton()[name] for c in chunks]) for name in chunks[0].to_triton()
        }
        return HeadOutputs.from_triton(merged)


class EmbedderStage:
    """128-D dlib ResNet descriptors of 5-point aligned 150x150 chips."""

    def __init__(self, model_path: Path | None = None) -> None:
        import dlib  # noqa: PLC0415 - the adapter edge

        from faceflow.models.identity import model_paths  # noqa: PLC0415

        path = model_path or model_paths()[0]
        self._net = dlib.face_recognition_model_v1(str(path))
        logger.info("dlib ResNet loaded from %s", path)

    def run(self, chips: U8) -> F32:
        if chips.ndim != 4 or chips.shape[1:] != (IDENTITY_CHIP_SIZE, IDENTITY_CHIP_SIZE, 3):
            raise ValueError(
                f"expected ID_CHIPS of shape [F,{IDENTITY_CHIP_SIZE},{IDENTITY_CHIP_SIZE},3], "
                f"got {list(chips.shape)}"
            )
        if chips.shape[0] == 0:
            return np.zeros((0, IDENTITY_DIM), np.float32)
        batch = [np.ascontiguousarray(chip, dtype=np.uint8) for chip in chips]
        vectors = self._net.compute_face_descriptor(batch)
        return np.asarray([np.asarray(v) for v in vectors], np.float32).reshape(-1, IDENTITY_DIM)
