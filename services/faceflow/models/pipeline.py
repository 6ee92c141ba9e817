"""The three stages of the ``face_pipeline`` ensemble as plain library code.

Triton's python models (``triton_repo/<model>/1/model.py``) are thin wrappers around these
classes, so the same code runs in tests without Triton and behind it.

* :class:`DetectorStage` (Triton model ``face_detector``): decodes the encoded frames, runs
  CenterFace, and prepares what the next stages need from the pixels, since only it holds them:
  the FaceXFormer crops (box grown 25% per side, 224 bicubic, ImageNet mean/std) and the
  5-point aligned 150x150 identity chips.
* :class:`FaceModelStage` (``facexformer``): the FaceXFormer ONNX on onnxruntime, heads decoded
  into the contract's tensors (probabilities, frame-pixel landmarks, parsing class ids).
* :class:`EmbedderStage` (``face_embedder``): dlib ResNet descriptors of the chips.

A frame that cannot be decoded, is too large, or has too many faces gets its ``FRAME_STATUS``;
it never fails the batch.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from faceflow.models.centerface import CenterFaceDetector
from faceflow.models.contract import CROP_MARGIN, CROP_SIZE, IDENTITY_CHIP_SIZE, IDENTITY_DIM, FrameStatus
from faceflow.models.crops import crop_faces, expand_box
from faceflow.models.decode import HeadOutputs, decode_heads

logger = logging.getLogger(__name__)

#: Frames above this many pixels get FRAME_STATUS 2 (too large) without being decoded.
DEFAULT_MAX_PIXELS: Final[int] = 40_000_000
#: CenterFace runs on frames downscaled to this longest side (boxes map back to full resolution).
DEFAULT_DETECT_MAX_SIDE: Final[int] = 1280
#: Faces per frame beyond this are dropped and the frame gets FRAME_STATUS 3.
DEFAULT_MAX_FACES: Final[int] = 64

FACEXFORMER_INPUT: Final[str] = "images"
FACEXFORMER_OUTPUTS: Final[tuple[str, ...]] = (
    "landmarks",
    "head_pose",
    "attributes",
    "visibility",
    "age",
    "gender",
    "race",
    "parsing",
)


def decode_frame(
    data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[FrameStatus, np.ndarray | None]:
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


@dataclass(frozen=True)
class DetectorOutput:
    """What ``face_detector`` returns for N frames with F faces in all (F may be 0)."""

    frame_status: npt.NDArray[np.int32]  # [N]
    frame_index: npt.NDArray[np.int32]  # [F]
    boxes: npt.NDArray[np.float32]  # [F,4]
    scores: npt.NDArray[np.float32]  # [F]
    keypoints5: npt.NDArray[np.float32]  # [F,5,2]
    crop_boxes: npt.NDArray[np.float32]  # [F,4]
    face_crops: npt.NDArray[np.float32]  # [F,3,224,224]
    id_chips: npt.NDArray[np.uint8]  # [F,150,150,3]

    def __post_init__(self) -> None:
        f = self.frame_index.shape[0]
        expected = {
            "boxes": (f, 4),
            "scores": (f,),
            "keypoints5": (f, 5, 2),
            "crop_boxes": (f, 4),
            "face_crops": (f, 3, CROP_SIZE, CROP_SIZE),
            "id_chips": (f, IDENTITY_CHIP_SIZE, IDENTITY_CHIP_SIZE, 3),
        }
        for name, shape in expected.items():
            got = getattr(self, name).shape
            if got != shape:
                raise ValueError(f"expected {name} of shape {list(shape)}, got {list(got)}")

    def as_tensors(self) -> dict[str, np.ndarray]:
        return {
            "FRAME_STATUS": self.frame_status,
            "FRAME_INDEX": self.frame_index,
            "BOXES": self.boxes,
            "SCORES": self.scores,
            "KEYPOINTS5": self.keypoints5,
            "CROP_BOXES": self.crop_boxes,
            "FACE_CROPS": self.face_crops,
            "ID_CHIPS": self.id_chips,
        }


ChipFn = Callable[[np.ndarray, np.ndarray, np.ndarray], npt.NDArray[np.uint8]]


class DetectorStage:
    """Decode, detect, crop and align. Thread-safe (no per-call state on ``self``)."""

    def __init__(
        self,
        *,
        detector: CenterFaceDetector,
        chips: ChipFn,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if max_pixels < 1:
            raise ValueError(f"expected max_pixels >= 1, got {max_pixels}")
        self.detector = detector
        self.chips = chips
        self.max_pixels = max_pixels

    def run(self, encoded: Sequence[bytes]) -> DetectorOutput:
        statuses = np.zeros(len(encoded), np.int32)
        frames: list[tuple[int, np.ndarray]] = []
        for i, data in enumerate(encoded):
            status, rgb = decode_frame(bytes(data), max_pixels=self.max_pixels)
            statuses[i] = int(status)
            if rgb is not None:
                frames.append((i, rgb))
        per_frame = self._detect([rgb for _, rgb in frames])
        parts: dict[str, list[np.ndarray]] = {
            k: [] for k in ("idx", "box", "score", "kp", "crop", "face", "chip")
        }
        for (i, rgb), det in zip(frames, per_frame, strict=True):
            if det.truncated:
                statuses[i] = int(FrameStatus.TOO_MANY_FACES)
            f = len(det)
            if f == 0:
                continue
            h, w = rgb.shape[:2]
            crop_boxes = (
                expand_box(det.boxes, CROP_MARGIN, width=w, height=h).astype(np.float32).reshape(f, 4)
            )
            parts["idx"].append(np.full(f, i, np.int32))
            parts["box"].append(det.boxes)
            parts["score"].append(det.scores)
            parts["kp"].append(det.keypoints5)
            parts["crop"].append(crop_boxes)
            parts["face"].append(crop_faces(rgb, crop_boxes))
            parts["chip"].append(self.chips(rgb, det.keypoints5, det.boxes))

        def cat(key: str, shape: tuple[int, ...], dtype: type[np.generic]) -> np.ndarray:
            if not parts[key]:
                return np.zeros((0, *shape), dtype)
            return np.ascontiguousarray(np.concatenate(parts[key]).astype(dtype, copy=False))

        return DetectorOutput(
            frame_status=statuses,
            frame_index=cat("idx", (), np.int32),
            boxes=cat("box", (4,), np.float32),
            scores=cat("score", (), np.float32),
            keypoints5=cat("kp", (5, 2), np.float32),
            crop_boxes=cat("crop", (4,), np.float32),
            face_crops=cat("face", (3, CROP_SIZE, CROP_SIZE), np.float32),
            id_chips=cat("chip", (IDENTITY_CHIP_SIZE, IDENTITY_CHIP_SIZE, 3), np.uint8),
        )

    def _detect(self, images: list[np.ndarray]) -> list:  # type: ignore[type-arg]
        """One ORT call per group of equal-sized frames (padding mixed sizes together wastes work)."""
        results: list[object] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(img.shape, []).append(i)
        for indices in groups.values():
            for i, det in zip(indices, self.detector.detect_batch([images[i] for i in indices]), strict=True):
                results[i] = det
        return results


RawHeadsFn = Callable[[npt.NDArray[np.float32]], Sequence[np.ndarray]]


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

        def run_raw(crops: npt.NDArray[np.float32]) -> Sequence[np.ndarray]:
            outputs: list[np.ndarray] = session.run(list(FACEXFORMER_OUTPUTS), {FACEXFORMER_INPUT: crops})
            return outputs

        return cls(run_raw, max_batch=max_batch)

    def run(self, face_crops: npt.NDArray[np.float32], crop_boxes: npt.NDArray[np.float32]) -> HeadOutputs:
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

    def run(self, chips: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
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
