"""Generated Triton configs: valid ModelConfig text, one contract, both variants."""

from __future__ import annotations

import json

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from faceflow.models import contract, triton_config
from faceflow.models.triton_config import BuildParameters

PARAMS = BuildParameters(backbone="swin_b", weights="random-init")


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.mark.parametrize("variant", triton_config.VARIANTS)
def test_every_config_parses_as_a_triton_model_config(variant: triton_config.Variant) -> None:
    configs = {c.name: parse(c.text) for c in triton_config.variant_configs(PARAMS, variant)}
    expected = {"face_detector", "facexformer", "face_embedder", "face_pipeline"}
    expected |= {"face_detect", "face_cropper", "face_analyze"}
    if variant == "gpu":
        expected |= {"centerface_onnx", "facexformer_onnx"}
    assert set(configs) == expected
    for name, cfg in configs.items():
        assert cfg.name == name


def test_ensemble_exposes_exactly_the_contract() -> None:
    ens = parse(triton_config.ensemble_config(PARAMS).text)
    assert ens.platform == "ensemble"
    assert [(t.name, list(t.dims)) for t in ens.input] == [("IMAGES", [-1])]
    assert [t.name for t in ens.output] == [t.name for t in contract.FACE_PIPELINE_OUTPUTS]
    for out, spec in zip(ens.output, contract.FACE_PIPELINE_OUTPUTS, strict=True):
        assert list(out.dims) == list(spec.triton_dims), out.name
    produced = {v for step in ens.ensemble_scheduling.step for v in step.output_map.values()}
    assert {t.name for t in ens.output} <= produced


def test_ensemble_parameters_carry_labels_and_provenance() -> None:
    ens = parse(triton_config.ensemble_config(PARAMS).text)
    params = {k: v.string_value for k, v in ens.parameters.items()}
    assert json.loads(params["attributes"]) == list(contract.ATTRIBUTES)
    assert json.loads(params["races"]) == list(contract.RACES)
    assert params["facexformer_weights"] == "random-init"
    assert params["facexformer_random_init"] == "true"


def test_gpu_variant_runs_facexformer_natively_in_fp16_with_dynamic_batching() -> None:
    configs = {c.name: parse(c.text) for c in triton_config.variant_configs(PARAMS, "gpu")}
    native = configs["facexformer_onnx"]
    assert native.platform == "onnxruntime_onnx" and native.max_batch_size >= 16
    assert native.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert native.dynamic_batching.max_queue_delay_microseconds > 0
    accel = native.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accel.name == "tensorrt" and accel.parameters["precision_mode"] == "FP16"
    assert configs["facexformer"].parameters["face_model_backend"].string_value == "bls:facexformer_onnx"
    assert configs["face_detector"].parameters["detector_backend"].string_value == "bls:centerface_onnx"


def test_unknown_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="expected a variant"):
        triton_config.variant_configs(PARAMS, "tpu")  # type: ignore[arg-type]
