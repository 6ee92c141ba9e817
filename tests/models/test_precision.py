"""``faceflow models build --precision int8`` and ``--detector-size``: the int8 file, where the
repositories point, what the configs say, and the agreement of int8 with fp32."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from faceflow.errors import ConfigError
from faceflow.models import build as models_build
from faceflow.models import triton_config
from faceflow.models.agreement import detection_recall, head_agreement
from faceflow.models.build import build, int8_path, quantize_facexformer, write_repository
from faceflow.models.contract import (
    AGE_BINS,
    ATTRIBUTES,
    CROP_SIZE,
    DETECT_MAX_SIDE,
    FACEXFORMER_INPUT,
    FACEXFORMER_OUTPUTS,
    GENDERS,
    PARSING_CLASSES,
    RACES,
    VISIBILITY_POINTS,
)
from faceflow.models.decode import HeadOutputs, decode_heads
from faceflow.models.threads import session_options
from faceflow.models.triton_config import BuildParameters

REPO = Path(__file__).resolve().parents[2]


def config_params(text: str) -> dict[str, str]:
    from google.protobuf import text_format  # noqa: PLC0415
    from tritonclient.grpc import model_config_pb2  # noqa: PLC0415

    cfg = text_format.Parse(text, model_config_pb2.ModelConfig())
    return {k: v.string_value for k, v in cfg.parameters.items()}


def tiny_matmul_onnx(path: Path) -> Path:
    """A two-layer MatMul network (64 -> 32 -> 4) with fixed weights: what int8 quantizes."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((32, 4)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 4])],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def io_signature(session: ort.InferenceSession) -> list[tuple[str, str, list[object]]]:
    return [(t.name, t.type, list(t.shape)) for t in (*session.get_inputs(), *session.get_outputs())]


# --- BuildParameters and the configs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("quantization", "precision", "variant", "error"),
    [
        ("none", "fp32", "swin_b", None),
        ("int8-dynamic", "int8", "swin_b-int8", None),
        ("int4", None, None, "quantization: expected one of"),
    ],
)
def test_build_parameters_name_the_precision(
    quantization: str, precision: str | None, variant: str | None, error: str | None
) -> None:
    if error is not None:
        with pytest.raises(ValueError, match=error):
            BuildParameters(backbone="swin_b", weights="random-init", quantization=quantization)
        return
    params = BuildParameters(backbone="swin_b", weights="random-init", quantization=quantization)
    assert (params.precision, params.face_model_variant) == (precision, variant)
    assert params.provenance()["facexformer_variant"] == variant
    assert params.provenance()["facexformer_precision"] == precision


@pytest.mark.parametrize(("size", "ok"), [(DETECT_MAX_SIDE, True), (320, True), (0, True), (16, False)])
def test_detector_size_is_checked_and_reaches_both_detector_configs(size: int, ok: bool) -> None:
    if not ok:
        with pytest.raises(ValueError, match="detect_max_side: expected 0"):
            BuildParameters(backbone="swin_b", weights="random-init", detect_max_side=size)
        return
    params = BuildParameters(backbone="swin_b", weights="random-init", detect_max_side=size)
    configs = {c.name: c for c in triton_config.variant_configs(params, "cpu")}
    for name in (triton_config.DETECTOR, triton_config.LOCATOR):
        assert config_params(configs[name].text)["detect_max_side"] == str(size)


def test_int8_is_served_and_announced_by_the_cpu_variant_only() -> None:
    params = BuildParameters(backbone="swin_t", weights="random-init", quantization="int8-dynamic")
    cpu = {c.name: config_params(c.text) for c in triton_config.variant_configs(params, "cpu")}
    gpu = {c.name: config_params(c.text) for c in triton_config.variant_configs(params, "gpu")}
    for model in (triton_config.ENSEMBLE, triton_config.ANALYZE_ENSEMBLE, triton_config.FACE_MODEL):
        assert cpu[model]["facexformer_variant"] == "swin_t-int8", model
        assert cpu[model]["facexformer_quantization"] == "int8-dynamic", model
        assert gpu[model]["facexformer_variant"] == "swin_t", model
        assert gpu[model]["facexformer_precision"] == "fp32", model
    assert gpu[triton_config.FACEXFORMER_NATIVE]["facexformer_quantization"] == "none"


def test_repositories_point_facexformer_at_the_chosen_file(tmp_path: Path) -> None:
    fp32 = tmp_path / "fx.onnx"
    fp32.write_bytes(b"fp32 weights")
    int8 = int8_path(fp32)
    int8.write_bytes(b"int8 weights")
    centerface = tmp_path / "centerface.onnx"
    centerface.write_bytes(b"centerface")
    params = BuildParameters(backbone="swin_t", weights="random-init", quantization="int8-dynamic")
    source = REPO / "triton_repo"
    cpu, gpu = tmp_path / "repo" / "cpu", tmp_path / "repo" / "gpu"
    _, changed = write_repository(cpu, "cpu", params, {"centerface": centerface, "facexformer": int8}, source)
    assert changed
    write_repository(gpu, "gpu", params, {"centerface": centerface, "facexformer": fp32}, source)
    assert (cpu / "facexformer" / "1" / "facexformer.onnx").read_bytes() == b"int8 weights"
    assert (gpu / "facexformer_onnx" / "1" / "model.onnx").read_bytes() == b"fp32 weights"
    assert json.loads((cpu / "build-info.json").read_text())["precision"] == "int8"
    gpu_info = json.loads((gpu / "build-info.json").read_text())
    assert (gpu_info["precision"], gpu_info["quantization"]) == ("fp32", "none")
    config = cpu / "face_pipeline" / "config.pbtxt"
    mtime = config.stat().st_mtime_ns
    _, changed = write_repository(cpu, "cpu", params, {"centerface": centerface, "facexformer": int8}, source)
    assert not changed and config.stat().st_mtime_ns == mtime, "the same build must leave the repository"
    fp32_params = BuildParameters(backbone="swin_t", weights="random-init")
    _, changed = write_repository(
        cpu, "cpu", fp32_params, {"centerface": centerface, "facexformer": fp32}, source
    )
    assert changed
    assert (cpu / "facexformer" / "1" / "facexformer.onnx").read_bytes() == b"fp32 weights"


# --- The int8 file ---------------------------------------------------------------------------------


def test_quantize_writes_a_loadable_int8_model_beside_fp32_once(tmp_path: Path) -> None:
    fp32 = tiny_matmul_onnx(tmp_path / "tiny.onnx")
    lines: list[str] = []
    int8 = quantize_facexformer(fp32, lines.append)
    assert int8 == tmp_path / "tiny-int8.onnx" and int8.is_file()
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert "MatMulInteger" in ops and "MatMul" not in ops, ops
    ref = ort.InferenceSession(str(fp32), sess_options=session_options(1), providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(str(int8), sess_options=session_options(1), providers=["CPUExecutionProvider"])
    assert io_signature(q) == io_signature(ref)
    x = np.random.default_rng(1).standard_normal((16, 64)).astype(np.float32)
    a, b = ref.run(None, {"x": x})[0], q.run(None, {"x": x})[0]
    assert a.shape == b.shape and np.isfinite(b).all()
    assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.8
    assert np.abs(a - b).max() < 0.1 * np.abs(a).max()

    mtime = int8.stat().st_mtime_ns
    quantize_facexformer(fp32, lines.append)
    assert int8.stat().st_mtime_ns == mtime and "up to date" in lines[-1]
    tiny_matmul_onnx(fp32)  # same bytes: still up to date
    quantize_facexformer(fp32, lines.append)
    assert "up to date" in lines[-1]
    graph = onnx.load(str(fp32))
    graph.graph.initializer[0].float_data[:] = []
    graph.graph.initializer[0].raw_data = (np.ones((64, 32), np.float32)).tobytes()
    onnx.save(graph, str(fp32))
    quantize_facexformer(fp32, lines.append)
    assert "wrote" in lines[-1], "a changed fp32 model must be quantized again"


def test_quantize_without_the_fp32_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected the fp32 model at"):
        quantize_facexformer(tmp_path / "missing.onnx", lambda _m: None)


# --- The command line ------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    models_build.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["models", "build", *argv])


@pytest.mark.parametrize(
    ("argv", "precision", "error"),
    [
        ((), "fp32", None),
        (("--precision", "int8"), "int8", None),
        (("--quantize", "int8"), "int8", None),  # the old flag still works
        (("--quantize", "none"), "fp32", None),
        (("--precision", "fp32", "--quantize", "int8"), None, "contradicts --quantize int8"),
    ],
)
def test_precision_flag(argv: tuple[str, ...], precision: str | None, error: str | None) -> None:
    args = parse(*argv)
    if error is not None:
        with pytest.raises(ConfigError, match=error):
            models_build._precision(args.precision, args.quantize)
        return
    assert models_build._precision(args.precision, args.quantize) == precision


def test_unknown_precision_is_refused_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        parse("--precision", "int4")


def test_bad_detector_size_is_a_clear_error_before_anything_is_built(tmp_path: Path) -> None:
    args = parse("--detector-size", "16", "--out", str(tmp_path / "out"))
    with pytest.raises(
        ConfigError, match=re.escape("expected --detector-size 0 (full frame) or >= 32, got 16")
    ):
        args.handler(args)
    assert not (tmp_path / "out").exists()


def test_build_refuses_an_unknown_precision(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected --precision fp32 or int8, got 'int4'"):
        build(
            out=tmp_path, source=REPO / "triton_repo", variants=("cpu",), backbone="swin_t", weights=None,
            precision="int4", overrides={}, say=lambda _m: None,
        )  # fmt: skip


# --- Agreement ----------------------------------------------------------------------------------------


def heads(seed: int, faces: int = 6) -> HeadOutputs:
    rng = np.random.default_rng(seed)

    def raw(width: int) -> np.ndarray:
        return rng.standard_normal((faces, width)).astype(np.float32) * 3

    return decode_heads(
        landmarks=np.tanh(raw(136)), head_pose=raw(3), attributes=raw(len(ATTRIBUTES)),
        visibility=raw(len(VISIBILITY_POINTS)), age=raw(len(AGE_BINS)), gender=raw(len(GENDERS)),
        race=raw(len(RACES)),
        parsing=rng.standard_normal((faces, len(PARSING_CLASSES), CROP_SIZE, CROP_SIZE)).astype(np.float32),
        crop_boxes=np.tile(np.array([[0, 0, CROP_SIZE, CROP_SIZE]], np.float32), (faces, 1)),
    )  # fmt: skip


def test_identical_heads_agree_fully() -> None:
    a = head_agreement(heads(0), heads(0))
    assert a.faces == 6 and a.worst_label_agreement == 1.0
    assert a.attributes_agreement == a.visibility_agreement == 1.0
    assert a.parsing_pixel_agreement == a.parsing_mean_iou == 1.0
    assert a.landmarks_max_px == a.head_pose_max_deg == 0.0
    assert json.loads(json.dumps(a.to_json()))["faces"] == 6


def test_unrelated_heads_disagree() -> None:
    a = head_agreement(heads(0), heads(1))
    assert a.worst_label_agreement < 1.0
    assert a.parsing_pixel_agreement < 0.2 and a.parsing_mean_iou < 0.2  # 11 classes at random
    assert a.landmarks_mean_px > 1.0 and a.head_pose_mean_deg > 1.0
    assert 0.3 < a.attributes_agreement < 0.7


@pytest.mark.parametrize(
    ("ref", "other", "error"),
    [(heads(0, 3), heads(0, 4), "expected the same faces in both runs, got 3 and 4"),
     (HeadOutputs.empty(), HeadOutputs.empty(), "expected at least one face")],
)  # fmt: skip
def test_agreement_refuses_runs_it_cannot_compare(ref: HeadOutputs, other: HeadOutputs, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        head_agreement(ref, other)


@pytest.mark.parametrize(
    ("truth", "detected", "iou", "matched", "found"),
    [
        ([[0, 0, 10, 10], [20, 20, 30, 30]], [[0, 0, 10, 10]], 0.5, 1, [True, False]),
        ([[0, 0, 10, 10]], [[0, 0, 10, 10], [1, 1, 11, 11]], 0.5, 1, [True]),  # one-to-one
        ([[0, 0, 10, 10]], [[5, 0, 15, 10]], 0.5, 0, [False]),  # IoU 1/3
        ([[0, 0, 10, 10]], [[5, 0, 15, 10]], 0.3, 1, [True]),
        (np.zeros((0, 4)), [[0, 0, 10, 10]], 0.5, 0, []),
        ([[0, 0, 10, 10]], np.zeros((0, 4)), 0.5, 0, [False]),
    ],
)
def test_detection_recall(
    truth: object, detected: object, iou: float, matched: int, found: list[bool]
) -> None:
    assert detection_recall(truth, detected, iou_threshold=iou) == (matched, found)  # type: ignore[arg-type]


@pytest.mark.parametrize("iou", [0.0, 1.5, float("nan")])
def test_detection_recall_refuses_a_bad_threshold(iou: float) -> None:
    with pytest.raises(ValueError, match="iou_threshold: expected a number in"):
        detection_recall([[0, 0, 1, 1]], [[0, 0, 1, 1]], iou_threshold=iou)


# --- The real build (swin_t): int8 beside fp32, served by cpu, agreeing with fp32 ----------------------


def face_crops() -> np.ndarray:
    """Fixed inputs: real faces (skimage's astronaut, matplotlib's Grace Hopper) and their mirrors."""
    from matplotlib import cbook  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415
    from skimage import data  # noqa: PLC0415

    from faceflow.models.boxes import expand_box  # noqa: PLC0415
    from faceflow.models.crops import crop_faces  # noqa: PLC0415

    astronaut = np.ascontiguousarray(data.astronaut())
    grace = np.asarray(
        Image.open(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))).convert("RGB")
    )
    crops = []
    for image, box in ((astronaut, [181.5, 58.2, 269.9, 177.8]), (grace, [170.0, 90.0, 350.0, 330.0])):
        h, w = image.shape[:2]
        crop = crop_faces(image, expand_box(np.array([box]), width=w, height=h))
        crops += [crop, crop[:, :, :, ::-1]]
    return np.ascontiguousarray(np.concatenate(crops))


def decoded(session: ort.InferenceSession, crops: np.ndarray) -> tuple[HeadOutputs, list[np.ndarray]]:
    raw = session.run(list(FACEXFORMER_OUTPUTS), {FACEXFORMER_INPUT: crops})
    unit = np.tile(np.array([[0, 0, CROP_SIZE, CROP_SIZE]], np.float32), (len(crops), 1))
    return decode_heads(**dict(zip(FACEXFORMER_OUTPUTS, raw, strict=True)), crop_boxes=unit), raw


@pytest.mark.slow
def test_int8_build_serves_a_quantized_model_that_agrees_with_fp32(tmp_path: Path) -> None:
    def run(lines: list[str]) -> dict[str, Path]:
        return build(
            out=tmp_path, source=REPO / "triton_repo", variants=("cpu", "gpu"), backbone="swin_t",
            weights=None, precision="int8", overrides={"detect_max_side": 640}, say=lines.append,
        )  # fmt: skip

    first: list[str] = []
    repos = run(first)
    fp32 = tmp_path / "artifacts" / "facexformer-swin_t-random-init.onnx"
    int8 = tmp_path / "artifacts" / "facexformer-swin_t-random-init-int8.onnx"
    assert fp32.is_file() and int8.is_file() and int8.stat().st_size < 0.5 * fp32.stat().st_size
    served = repos["cpu"] / "facexformer" / "1" / "facexformer.onnx"
    assert served.samefile(int8) or served.read_bytes() == int8.read_bytes()
    gpu_served = repos["gpu"] / "facexformer_onnx" / "1" / "model.onnx"
    assert gpu_served.stat().st_size == fp32.stat().st_size
    params = config_params((repos["cpu"] / "face_pipeline" / "config.pbtxt").read_text())
    assert params["facexformer_variant"] == "swin_t-int8" and params["facexformer_random_init"] == "true"
    detector = config_params((repos["cpu"] / "face_detect" / "config.pbtxt").read_text())
    assert detector["detect_max_side"] == "640"

    mtimes = [p.stat().st_mtime_ns for p in (fp32, int8, repos["cpu"] / "build-info.json")]
    second: list[str] = []
    run(second)
    assert [p.stat().st_mtime_ns for p in (fp32, int8, repos["cpu"] / "build-info.json")] == mtimes
    assert any("facexformer int8: up to date" in line for line in second), second
    assert sum("up to date (facexformer" in line for line in second) == 2, second

    options = session_options(2)
    ref = ort.InferenceSession(str(fp32), sess_options=options, providers=["CPUExecutionProvider"])
    q = ort.InferenceSession(str(served), sess_options=options, providers=["CPUExecutionProvider"])
    assert io_signature(q) == io_signature(ref)
    crops = face_crops()
    (ref_heads, ref_raw), (q_heads, q_raw) = decoded(ref, crops), decoded(q, crops)
    for name, a, b in zip(FACEXFORMER_OUTPUTS, ref_raw, q_raw, strict=True):
        assert a.shape == b.shape and np.isfinite(b).all(), name
    agreement = head_agreement(ref_heads, q_heads)
    # loose floors (random-init weights): an int8 graph that computes something else fails them
    assert agreement.worst_label_agreement >= 0.75, agreement
    assert agreement.attributes_agreement >= 0.8 and agreement.visibility_agreement >= 0.8, agreement
    assert agreement.parsing_pixel_agreement >= 0.8, agreement
    assert agreement.landmarks_mean_px < 5.0 and agreement.head_pose_mean_deg < 5.0, agreement
