"""The single-process baseline of ``bench/e2e.py``: the served models in this Python process.

:class:`InProcessModels` has the entry points of :class:`~faceflow.service.triton.FaceModels`
(``detect``, ``analyze``, ``pipeline``), answered by the same library stages the Triton python
models wrap (:class:`LocatorStage`, :class:`CropStage`, :class:`FaceModelStage`,
:class:`EmbedderStage`), on the ONNX files and config parameters of the served repository
(``build/triton_repo/cpu``). So the analyzer's own backends (``ScheduledBackend``,
``PipelineBackend``) run over it and make the same schedule decisions as in the mesh, on the same
detections. What it saves is what a mesh pays: no Kafka, no gRPC, no Triton, no process hops, and
one JPEG decode per frame (``analyze`` reuses the pictures ``detect`` decoded for the same bytes).

Each stage's time is summed in :attr:`InProcessModels.seconds` (decode, detect, crop, facexformer,
embed), so the bench can print where a single process spends its time.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceflow.models.centerface_decode import Detections
from faceflow.models.contract import FACE_DETECT, FACE_MODEL_OUTPUT_NAMES
from faceflow.models.identity import IdentityEmbedder
from faceflow.models.imaging import DecodedPicture
from faceflow.models.pipeline import (
    BatchDetector,
    CropStage,
    EmbedderStage,
    FaceModelStage,
    LocatorStage,
    check_faces,
    decode_request,
)
from faceflow.models.response import DetectedFaces, FaceAnalyses, PipelineResponse
from faceflow.models.triton_detector import detector_from_config, frame_limits
from faceflow.models.triton_support import int_param
from faceflow.service.triton import ServedModel

_PARAM = re.compile(r'parameters \{ key: "([^"]+)" value: \{ string_value: "((?:[^"\\]|\\.)*)" \} \}')


def config_parameters(config: Path) -> dict[str, str]:
    """The ``parameters`` of a generated ``config.pbtxt`` (what the python model reads at load)."""
    try:
        text = config.read_text()
    except OSError as exc:
        raise FileNotFoundError(
            f"{config}: cannot read the served model's config ({exc.strerror}); build the repository "
            f"with `faceflow models build`"
        ) from None
    return {key: value.encode().decode("unicode_escape") for key, value in _PARAM.findall(text)}


class _TimedDetector:
    """A :class:`BatchDetector` that adds its time to a counter (the rest of a locator run is decode)."""

    def __init__(self, inner: BatchDetector, seconds: dict[str, float]) -> None:
        self.inner = inner
        self.seconds = seconds

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        started = time.perf_counter()
        try:
            return self.inner.detect_batch(images)
        finally:
            self.seconds["detect"] += time.perf_counter() - started


class InProcessModels:
    """The served models in this process (see the module docstring).

    Args:
        repository: the served model repository (``build/triton_repo/cpu``).
        threads: onnxruntime intra-op threads of each session (0: what the served config says).
    """

    def __init__(self, repository: Path, *, threads: int = 0) -> None:
        detect_dir = repository / FACE_DETECT
        model_dir = repository / "facexformer"
        detect_params = config_parameters(detect_dir / "config.pbtxt")
        model_params = config_parameters(model_dir / "config.pbtxt")
        if threads:
            detect_params["cpu_threads"] = model_params["cpu_threads"] = str(threads)
        self.seconds: dict[str, float] = defaultdict(float)
        detector = detector_from_config(
            None, {"model_repository": str(detect_dir), "model_version": "1"}, detect_params
        )
        self.limits = frame_limits(detect_params)
        self.locator = LocatorStage(detector=_TimedDetector(detector, self.seconds), limits=self.limits)
        self.cropper = CropStage(chips=IdentityEmbedder().chips)
        self.face_model = FaceModelStage.from_onnx(
            model_dir / "1" / "facexformer.onnx",
            intra_op_threads=int_param(model_params, "cpu_threads", 0),
            max_batch=int_param(model_params, "max_batch", 16),
        )
        self.embedder = EmbedderStage()
        self.parameters = {"face_detect": detect_params, "facexformer": model_params}
        #: The pictures of the last ``detect`` call, by their encoded bytes (one decode per frame).
        self._pictures: dict[bytes, DecodedPicture] = {}

    # -- FaceModels ------------------------------------------------------------------------------
    def detect(self, frames: Sequence[bytes], *, timeout_s: float | None = None) -> DetectedFaces:
        started = time.perf_counter()
        detect_before = self.seconds["detect"]
        located = self.locator.run(frames)
        self.seconds["decode"] += time.perf_counter() - started - (self.seconds["detect"] - detect_before)
        self._pictures = {
            bytes(data): picture for data, picture in zip(frames, located.pictures, strict=True) if picture
        }
        return DetectedFaces.from_triton(located.as_tensors(), frames=len(frames))

    def analyze(
        self,
        frames: Sequence[bytes],
        frame_index: np.ndarray,
        boxes: np.ndarray,
        keypoints5: np.ndarray,
        *,
        timeout_s: float | None = None,
    ) -> FaceAnalyses:
        if frame_index.shape[0] == 0:
            return FaceAnalyses.empty()
        index = np.ascontiguousarray(frame_index, np.int32)
        boxes = np.ascontiguousarray(boxes, np.float32)
        keypoints5 = np.ascontiguousarray(keypoints5, np.float32)
        started = time.perf_counter()
        pictures: list[DecodedPicture | None] = [self._pictures.get(bytes(f)) for f in frames]
        missing = {i for i, p in enumerate(pictures) if p is None and i in set(index.tolist())}
        if missing:  # frames detect did not see (pipeline() always has them): decode those now
            _, decoded = decode_request(frames, self.limits, wanted=missing)
            pictures = [p if p is not None else decoded[i] for i, p in enumerate(pictures)]
        statuses = np.zeros(len(frames), np.int32)
        sizes = [None if p is None else (p.width, p.height) for p in pictures]
        check_faces(statuses, sizes, index, boxes, keypoints5)
        self.seconds["decode"] += time.perf_counter() - started
        started = time.perf_counter()
        cropped = self.cropper.run(pictures, index, boxes, keypoints5)
        self.seconds["crop"] += time.perf_counter() - started
        started = time.perf_counter()
        heads = self.face_model.run(cropped.face_crops, cropped.crop_boxes)
        self.seconds["facexformer"] += time.perf_counter() - started
        started = time.perf_counter()
        embedding = self.embedder.run(cropped.id_chips)
        self.seconds["embed"] += time.perf_counter() - started
        tensors = {"CROP_BOXES": cropped.crop_boxes, **heads.to_triton(), "EMBEDDING": embedding}
        missing_heads = [n for n in FACE_MODEL_OUTPUT_NAMES if n not in tensors]
        if missing_heads:
            raise RuntimeError(f"the face model returned no {missing_heads}")
        return FaceAnalyses.from_triton(tensors, faces=int(index.shape[0]))

    def pipeline(self, frames: Sequence[bytes], *, timeout_s: float | None = None) -> PipelineResponse:
        detected = self.detect(frames)
        analyses = self.analyze(frames, detected.frame_index, detected.boxes, detected.keypoints5)
        return PipelineResponse(detected=detected, analyses=analyses)

    def probe(self, *, timeout_s: float = 30.0) -> PipelineResponse:
        """One pipeline pass on a tiny grey picture (what the analyzer's readiness probe does)."""
        import io  # noqa: PLC0415

        from PIL import Image  # noqa: PLC0415

        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (128, 96, 64)).save(buf, format="JPEG")
        return self.pipeline([buf.getvalue()])

    def model_infos(self, model: str = "face_pipeline") -> list[ServedModel]:
        """What runs here, from the served configs' provenance parameters."""
        params = self.parameters["facexformer"]
        weights = params.get("facexformer_weights", "unknown")
        return [
            ServedModel(name="centerface", version="1", weights="centerface", random_init=False),
            ServedModel(
                name="facexformer", version="1", weights=weights, random_init=weights == "random-init"
            ),
            ServedModel(name="face_embedder", version="1", weights="dlib", random_init=False),
        ]

    def close(self) -> None:
        self._pictures = {}
