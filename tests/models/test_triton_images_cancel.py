"""The python models ``face_detect``, ``face_detector`` and ``face_cropper``
(triton_repo/*/1/model.py) under a fake ``triton_python_backend_utils``: cancelled requests are
answered with CANCELLED and stop between frames, the other requests of the batch are still
answered, bombs get their FRAME_STATUS.

The real Triton is exercised by tests/models/test_triton_images.py; these run the same model files
without a server, with a fake request whose ``is_cancelled`` turns True at a chosen call.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from models.test_imaging_samples import astronaut, encode, iou, png_header

from faceflow.models.centerface import default_onnx_path
from faceflow.models.contract import FrameStatus

REPO = Path(__file__).resolve().parents[2]
ASTRONAUT_BOX = (181.5, 58.2, 269.9, 177.8)


class FakeTensor:
    def __init__(self, name: str, value: np.ndarray) -> None:
        self.name, self.value = name, value

    def as_numpy(self) -> np.ndarray:
        return self.value


class FakeError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message: str, code: int = 0) -> None:
        self.text, self.code = message, code

    def message(self) -> str:
        return self.text


class FakeResponse:
    def __init__(
        self, output_tensors: list[FakeTensor] | None = None, error: FakeError | None = None
    ) -> None:
        self.outputs = {t.name: t.value for t in output_tensors or []}
        self.error = error


class FakeLogger:
    """``pb_utils.Logger``: what the models send to Triton's log, by level."""

    lines: ClassVar[list[tuple[str, str]]] = []

    @classmethod
    def log_info(cls, message: str) -> None:
        cls.lines.append(("info", message))

    @classmethod
    def log_warn(cls, message: str) -> None:
        cls.lines.append(("warn", message))

    @classmethod
    def log_error(cls, message: str) -> None:
        cls.lines.append(("error", message))

    @classmethod
    def log_verbose(cls, message: str) -> None:
        cls.lines.append(("verbose", message))


class FakeRequest:
    """A request with an IMAGES tensor whose ``is_cancelled`` answers True from call ``cancel_at`` on."""

    def __init__(self, frames: list[bytes], cancel_at: int | None = None) -> None:
        self.inputs = {"IMAGES": FakeTensor("IMAGES", np.array(frames, dtype=object))}
        self.cancel_at, self.checks = cancel_at, 0

    def is_cancelled(self) -> bool:
        self.checks += 1
        return self.cancel_at is not None and self.checks >= self.cancel_at


def fake_pb() -> types.ModuleType:
    pb = types.ModuleType("triton_python_backend_utils")
    pb.Tensor = FakeTensor  # type: ignore[attr-defined]
    pb.TritonError = FakeError  # type: ignore[attr-defined]
    pb.InferenceResponse = FakeResponse  # type: ignore[attr-defined]
    pb.TritonModelException = RuntimeError  # type: ignore[attr-defined]
    pb.Logger = FakeLogger  # type: ignore[attr-defined]
    pb.get_input_tensor_by_name = lambda request, name: request.inputs.get(name)  # type: ignore[attr-defined]
    return pb


def load_model(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **params: str) -> Any:
    """``triton_repo/<name>/1/model.py``, initialized as Triton would with ``params`` in its config."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb())
    spec = importlib.util.spec_from_file_location(
        f"fake_triton_{name}", REPO / "triton_repo" / name / "1" / "model.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    version = tmp_path / name / "1"
    version.mkdir(parents=True)
    (version / "centerface.onnx").symlink_to(default_onnx_path())
    config = {
        "parameters": {
            k: {"string_value": v} for k, v in {"detector_backend": "onnxruntime", **params}.items()
        }
    }
    model = module.TritonPythonModel()
    model.initialize(
        {"model_config": json.dumps(config), "model_repository": str(tmp_path / name), "model_version": "1"}
    )
    return model


FACE = encode(astronaut(), "JPEG")
SMALL_FACE = encode(astronaut(256), "JPEG")  # three of them fit the 400000-pixel budget below


@pytest.fixture(scope="module")
def monkeymodule() -> Any:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module", params=["face_detect", "face_detector"])
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeymodule: Any) -> Any:
    return load_model(
        request.param, tmp_path_factory.mktemp(request.param), monkeymodule, request_pixels="400000"
    )


def test_a_good_request_is_answered(model: Any) -> None:
    (response,) = model.execute([FakeRequest([FACE])])
    assert response.error is None
    assert response.outputs["FRAME_STATUS"].tolist() == [0]
    assert response.outputs["FRAME_INDEX"].tolist() == [0]
    assert iou(response.outputs["BOXES"][0].tolist(), ASTRONAUT_BOX) > 0.8


@pytest.mark.parametrize(
    ("cancel_at", "where"),
    [
        (1, "request cancelled before it ran"),  # answer_each's own check, before any work
        (2, "request cancelled before frame 0 of 3"),
        (4, "request cancelled before frame 2 of 3"),
        (5, "request cancelled before detecting 3 of 3 frames"),
    ],
)
def test_a_cancelled_request_is_answered_cancelled_and_the_next_one_in_full(
    model: Any, cancel_at: int, where: str
) -> None:
    cancelled = FakeRequest([SMALL_FACE] * 3, cancel_at=cancel_at)
    good = FakeRequest([FACE])
    first, second = model.execute([cancelled, good])
    assert first.error is not None and first.error.code == FakeError.CANCELLED
    assert where in first.error.message()
    assert cancelled.checks == cancel_at  # nothing ran after the check that said cancelled
    assert second.error is None and second.outputs["FRAME_INDEX"].tolist() == [0]
    level, line = FakeLogger.lines[-1]
    assert level == "info" and "stopped a request: " + where in line  # in Triton's log


def test_the_config_budget_applies_and_bombs_get_their_status(model: Any) -> None:
    # request_pixels=400000 in the config: a second 512x512 frame (262144 pixels) would pass it
    frames = [png_header(50_000, 50_000), FACE, FACE, b"garbage"]
    (response,) = model.execute([FakeRequest(frames)])
    assert response.error is None
    assert response.outputs["FRAME_STATUS"].tolist() == [
        FrameStatus.TOO_LARGE, FrameStatus.OK, FrameStatus.TOO_LARGE, FrameStatus.UNDECODABLE
    ]  # fmt: skip
    assert response.outputs["FRAME_INDEX"].tolist() == [1]


def test_a_request_without_is_cancelled_is_answered(model: Any) -> None:
    plain = types.SimpleNamespace(inputs=FakeRequest([FACE]).inputs)  # an older backend's request
    (response,) = model.execute([plain])
    assert response.error is None and response.outputs["FRAME_INDEX"].tolist() == [0]


@pytest.mark.parametrize(
    ("level", "expected"),
    [(logging.ERROR, "error"), (logging.WARNING, "warn"), (logging.INFO, "info"), (logging.DEBUG, "verbose")],
)
def test_model_logs_reach_triton_at_their_level(level: int, expected: str) -> None:
    from faceflow.models.triton_support import log_to_triton  # noqa: PLC0415

    log = logging.getLogger(f"faceflow.triton.test_{expected}")
    log_to_triton(fake_pb(), log, logging.DEBUG)
    log_to_triton(fake_pb(), log, logging.DEBUG)  # once only
    log.log(level, "frame %d refused", 3)
    assert FakeLogger.lines[-1] == (expected, "frame 3 refused")
    assert FakeLogger.lines[-2:-1] != [(expected, "frame 3 refused")]


class FakeAnalyzeRequest(FakeRequest):
    """A ``face_analyze`` request: frames plus the faces to crop from them."""

    def __init__(self, frames: list[bytes], faces: list[int], cancel_at: int | None = None) -> None:
        super().__init__(frames, cancel_at)
        n = len(faces)
        box = np.array([ASTRONAUT_BOX], np.float32).repeat(n, axis=0)
        x1, y1, x2, y2 = ASTRONAUT_BOX
        where = ((0.3, 0.4), (0.7, 0.4), (0.5, 0.6), (0.35, 0.8), (0.65, 0.8))
        kps = np.array([[[x1 + (x2 - x1) * fx, y1 + (y2 - y1) * fy] for fx, fy in where]], np.float32)
        self.inputs |= {
            "FRAME_INDEX": FakeTensor("FRAME_INDEX", np.array(faces, np.int32)),
            "BOXES": FakeTensor("BOXES", box),
            "KEYPOINTS5": FakeTensor("KEYPOINTS5", kps.repeat(n, axis=0)),
        }


@pytest.fixture(scope="module")
def cropper(tmp_path_factory: pytest.TempPathFactory, monkeymodule: Any) -> Any:
    return load_model(
        "face_cropper", tmp_path_factory.mktemp("face_cropper"), monkeymodule, request_pixels="400000"
    )


def test_face_cropper_reads_the_same_limits_and_stops_when_cancelled(cropper: Any) -> None:
    (good,) = cropper.execute([FakeAnalyzeRequest([FACE], [0])])
    assert good.error is None and good.outputs["CROP_BOXES"].shape == (1, 4)
    # the config's budget (400000 pixels) reaches face_cropper: frame 1 is past it, its face refused
    (over,) = cropper.execute([FakeAnalyzeRequest([FACE, FACE], [0, 1])])
    assert over.error is not None and over.error.code == FakeError.INVALID_ARG
    assert "frame 1 has FRAME_STATUS 2" in over.error.message()
    cancelled = FakeAnalyzeRequest([SMALL_FACE] * 3, [0, 1, 2], cancel_at=3)
    first, second = cropper.execute([cancelled, FakeAnalyzeRequest([FACE], [0])])
    assert first.error is not None and first.error.code == FakeError.CANCELLED
    assert second.error is None and second.outputs["CROP_BOXES"].shape == (1, 4)
