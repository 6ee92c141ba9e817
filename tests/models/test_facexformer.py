"""Tests for faceflow.models.facexformer: heads, checkpoint layout and loading, threads, TorchScript, ONNX.

Most tests use the swin_t backbone with random weights (same decoder, about 3x faster); the key
layout test builds swin_b, the architecture of the released checkpoint.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from faceflow.errors import ConfigError
from faceflow.models.facexformer import (
    INPUT_NAME,
    OUTPUT_NAMES,
    WEIGHTS_ENV_VAR,
    FaceXFormer,
    FaceXFormerConfig,
    FaceXFormerOutput,
    WeightsError,
    WeightsInfo,
    export_onnx,
    load_facexformer,
    weights_path_from_env,
)

SWIN_T = FaceXFormerConfig(backbone="swin_t")
SWIN_B = FaceXFormerConfig(backbone="swin_b")

#: Per-face shape of every head, in output order (DESIGN.md, "Model semantics").
HEAD_SHAPES: dict[str, tuple[int, ...]] = {
    "landmarks": (136,),
    "head_pose": (3,),
    "attributes": (40,),
    "visibility": (29,),
    "age": (8,),
    "gender": (2,),
    "race": (5,),
    "parsing": (11, 224, 224),
}


def images(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(seed))


def run(model: FaceXFormer, x: torch.Tensor) -> FaceXFormerOutput:
    with torch.no_grad():
        out: FaceXFormerOutput = model(x)
    return out


def save_checkpoint(path: Path, state: object, key: str = "state_dict_backbone") -> Path:
    torch.save({key: state}, path)
    return path


@pytest.fixture(scope="module")
def swin_t() -> FaceXFormer:
    model, _ = load_facexformer(SWIN_T, None, seed=0)
    return model


@pytest.fixture(scope="module")
def swin_b_checkpoint(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, dict[str, torch.Tensor]]]:
    """A swin_b state dict saved the way the authors' release stores it (deleted afterwards: ~370 MB)."""
    torch.manual_seed(7)
    state = FaceXFormer(SWIN_B).state_dict()
    path = save_checkpoint(tmp_path_factory.mktemp("facexformer") / "swin_b.pt", state)
    yield path, state
    path.unlink(missing_ok=True)


# --- heads ------------------------------------------------------------------------------------


def test_output_fields_are_the_documented_heads_in_order() -> None:
    assert FaceXFormerOutput._fields == tuple(HEAD_SHAPES)
    assert tuple(HEAD_SHAPES) == OUTPUT_NAMES


@pytest.mark.parametrize("batch", [1, 3])
def test_every_head_has_its_shape_and_no_nans(swin_t: FaceXFormer, batch: int) -> None:
    out = run(swin_t, images(batch, seed=batch))
    assert isinstance(out, FaceXFormerOutput)
    for name, per_face in HEAD_SHAPES.items():
        tensor = getattr(out, name)
        assert tuple(tensor.shape) == (batch, *per_face), name
        assert tensor.dtype == torch.float32, name
        assert torch.isfinite(tensor).all(), name


def test_batch_rows_are_independent(swin_t: FaceXFormer) -> None:
    x = images(3, seed=11)
    batched = run(swin_t, x)
    single = run(swin_t, x[1:2])
    for name, a, b in zip(OUTPUT_NAMES, batched, single, strict=True):
        torch.testing.assert_close(a[1:2], b, rtol=1e-4, atol=1e-4, msg=name)


def test_features_come_from_stages_1_3_5_7(swin_t: FaceXFormer) -> None:
    """The hook-free feature loop sees exactly what the authors' forward hooks on 0.1/0.3/0.5/0.7 saw."""
    hooked: list[torch.Tensor] = []
    stages = dict(swin_t.backbone.named_modules())
    handles = [
        stages[name].register_forward_hook(lambda _m, _i, out: hooked.append(out.permute(0, 3, 1, 2)))
        for name in ("0.1", "0.3", "0.5", "0.7")
    ]
    try:
        with torch.no_grad():
            features = swin_t._multi_scale_features(images(1, seed=5))
    finally:
        for handle in handles:
            handle.remove()
    assert [tuple(f.shape[1:]) for f in features] == [(96, 56, 56), (192, 28, 28), (384, 14, 14), (768, 7, 7)]
    for ours, theirs in zip(features, hooked, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_forward_rejects_images_without_a_batch_axis(swin_t: FaceXFormer) -> None:
    with pytest.raises(ValueError, match=r"expected images of shape \[B, 3, H, W\], got \[3, 224, 224\]"):
        swin_t(torch.zeros(3, 224, 224))


# --- checkpoint layout and loading ----------------------------------------------------------


def test_swin_b_state_dict_has_the_released_layout(
    swin_b_checkpoint: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    _, state = swin_b_checkpoint
    keys = list(state)
    assert keys[:4] == [
        "backbone.0.0.0.weight",
        "backbone.0.0.0.bias",
        "backbone.0.0.2.weight",
        "backbone.0.0.2.bias",
    ]
    assert "backbone.0.1.0.attn.relative_position_bias_table" in keys
    assert keys.index("backbone.0.1.0.attn.relative_position_bias_table") < 10
    assert len(keys) == 505
    assert {key.split(".")[0] for key in keys} == {
        "backbone",
        "pe_layer",
        "face_decoder",
        "linear_c",
        "linear_fuse",
    }
    assert keys[-1] == "linear_fuse.weight"
    # Parameters: every entry except Swin's relative_position_index and pe_layer's random matrix.
    buffers = {k for k in keys if k.endswith("relative_position_index") or k.startswith("pe_layer.")}
    assert sum(state[k].numel() for k in keys if k not in buffers) == 91_985_943


def test_released_layout_loads_strictly_with_its_sha256(
    swin_b_checkpoint: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    path, state = swin_b_checkpoint
    model, info = load_facexformer(SWIN_B, path, seed=123)
    assert sum(p.numel() for p in model.parameters()) == 91_985_943
    assert info == WeightsInfo(
        provenance="sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(),
        random_init=False,
        backbone="swin_b",
    )
    assert not model.training
    loaded = model.state_dict()
    assert list(loaded) == list(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def _missing_file(tmp_path: Path, swin_t: FaceXFormer) -> Path:
    return tmp_path / "absent.pt"


def _not_a_checkpoint(tmp_path: Path, swin_t: FaceXFormer) -> Path:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a torch checkpoint")
    return path


def _wrong_top_level_key(tmp_path: Path, swin_t: FaceXFormer) -> Path:
    return save_checkpoint(tmp_path / "key.pt", {"linear_fuse.weight": torch.zeros(1)}, key="state_dict")


def _missing_entry(tmp_path: Path, swin_t: FaceXFormer) -> Path:
    state = swin_t.state_dict()
    del state["face_decoder.race_token.weight"]
    return save_checkpoint(tmp_path / "missing.pt", state)


def _wrong_shape(tmp_path: Path, swin_t: FaceXFormer) -> Path:
    state = swin_t.state_dict()
    state["linear_fuse.weight"] = torch.zeros(256, 512, 1, 1)
    return save_checkpoint(tmp_path / "shape.pt", state)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (_missing_file, r"expected a torch\.save dict .*'state_dict_backbone', got no such file"),
        (_not_a_checkpoint, r"loadable with weights_only=True\), got \w+Error"),
        (_wrong_top_level_key, r"expected a torch\.save dict .*got a dict with keys \['state_dict'\]"),
        (_missing_entry, r"expected the swin_t key layout .*1 missing \(face_decoder\.race_token\.weight\)"),
        (
            _wrong_shape,
            r"1 wrong shape \(linear_fuse\.weight: expected \[256, 1024, 1, 1\], got \[256, 512, 1, 1\]\)",
        ),
    ],
    ids=["missing-file", "not-a-checkpoint", "wrong-top-level-key", "missing-entry", "wrong-shape"],
)
def test_bad_checkpoints_fail_naming_the_file_and_what_was_expected(
    tmp_path: Path, swin_t: FaceXFormer, build: Callable[[Path, FaceXFormer], Path], message: str
) -> None:
    path = build(tmp_path, swin_t)
    with pytest.raises(WeightsError, match=message) as excinfo:
        load_facexformer(SWIN_T, path)
    assert str(path) in str(excinfo.value)


def test_swin_b_checkpoint_into_swin_t_says_which_backbone_it_is(
    swin_b_checkpoint: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    path, _ = swin_b_checkpoint
    with pytest.raises(WeightsError, match=r"looks like a swin_b checkpoint") as excinfo:
        load_facexformer(SWIN_T, path)
    assert "unexpected" in str(excinfo.value)
    assert "wrong shape" in str(excinfo.value)


def test_random_init_is_seeded_labelled_and_leaves_the_global_rng_alone(swin_t: FaceXFormer) -> None:
    rng_before = torch.get_rng_state()
    model, info = load_facexformer(SWIN_T, None, seed=0)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert info == WeightsInfo(provenance="random-init", random_init=True, backbone="swin_t")
    assert not model.training
    ours, reference = model.state_dict(), swin_t.state_dict()
    assert all(torch.equal(ours[k], reference[k]) for k in reference)
    other, _ = load_facexformer(SWIN_T, None, seed=1)
    assert not torch.equal(other.state_dict()["linear_fuse.weight"], reference["linear_fuse.weight"])


# --- config and provenance validation -------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected", "error"),
    [
        ({}, "swin_b", None),
        ({"FACEFLOW_FACEXFORMER_BACKBONE": "swin_t"}, "swin_t", None),
        ({"FACEFLOW_FACEXFORMER_BACKBONE": " "}, "swin_b", None),
        (
            {"FACEFLOW_FACEXFORMER_BACKBONE": "resnet50"},
            None,
            r"expected one of swin_b, swin_t, got 'resnet50'",
        ),
    ],
)
def test_config_from_env(environ: dict[str, str], expected: str | None, error: str | None) -> None:
    if error is not None:
        with pytest.raises(ConfigError, match=error):
            FaceXFormerConfig.from_env(environ)
    else:
        assert FaceXFormerConfig.from_env(environ).backbone == expected


@pytest.mark.parametrize("backbone", ["swin_s", "", None, 3])
def test_config_rejects_unknown_backbones(backbone: object) -> None:
    with pytest.raises(ConfigError, match=r"expected one of swin_b, swin_t, got"):
        FaceXFormerConfig(backbone=backbone)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({WEIGHTS_ENV_VAR: ""}, None),
        ({WEIGHTS_ENV_VAR: "/models/facexformer/ckpts/model.pt"}, Path("/models/facexformer/ckpts/model.pt")),
    ],
)
def test_weights_path_from_env(environ: dict[str, str], expected: Path | None) -> None:
    assert weights_path_from_env(environ) == expected


@pytest.mark.parametrize(
    ("provenance", "random_init", "error"),
    [
        ("random-init", True, None),
        ("sha256:" + "0" * 64, False, None),
        ("sha256:" + "0" * 64, True, r"expected 'random-init' for random weights"),
        ("random-init", False, r"expected 'sha256:' and 64 lowercase hex digits, got 'random-init'"),
        ("sha256:ABC", False, r"expected 'sha256:' and 64 lowercase hex digits"),
    ],
)
def test_weights_info_validation(provenance: str, random_init: bool, error: str | None) -> None:
    if error is None:
        assert WeightsInfo(provenance=provenance, random_init=random_init, backbone="swin_b").provenance
    else:
        with pytest.raises(ValueError, match=error):
            WeightsInfo(provenance=provenance, random_init=random_init, backbone="swin_b")


# --- threads, TorchScript, ONNX -------------------------------------------------------------


def test_concurrent_forwards_match_serial_ones(swin_t: FaceXFormer) -> None:
    """Two threads, different inputs (and batch sizes), started together: each gets its serial result."""
    inputs = [images(1, seed=21), images(2, seed=22)]
    serial = [run(swin_t, x) for x in inputs]
    barrier = threading.Barrier(len(inputs))

    def work(x: torch.Tensor) -> FaceXFormerOutput:
        barrier.wait(timeout=30)
        return run(swin_t, x)

    with ThreadPoolExecutor(max_workers=len(inputs)) as pool:
        futures = [pool.submit(work, x) for x in inputs]
        concurrent = [future.result(timeout=120) for future in futures]
    for expected, got in zip(serial, concurrent, strict=True):
        for name, a, b in zip(OUTPUT_NAMES, expected, got, strict=True):
            torch.testing.assert_close(b, a, msg=name)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_torchscript_matches_eager(swin_t: FaceXFormer) -> None:
    scripted = torch.jit.script(swin_t)
    x = images(1, seed=31)
    with torch.no_grad():
        got = scripted(x)
    for name, a, b in zip(OUTPUT_NAMES, run(swin_t, x), got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.slow
def test_onnx_export_has_a_dynamic_batch_and_matches_eager(swin_t: FaceXFormer, tmp_path: Path) -> None:
    path = export_onnx(swin_t, tmp_path / "facexformer_swin_t.onnx")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in session.get_inputs()] == [(INPUT_NAME, ["batch", 3, 224, 224])]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [
        (name, ["batch", *shape]) for name, shape in HEAD_SHAPES.items()
    ]
    for batch in (1, 2):
        x = images(batch, seed=40 + batch)
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
        for name, eager, onnx_out in zip(OUTPUT_NAMES, run(swin_t, x), got, strict=True):
            assert onnx_out.shape == tuple(eager.shape), name
            assert float(np.abs(onnx_out - eager.numpy()).max()) <= 1e-4, name


def test_half_precision_forward_matches_fp32() -> None:
    """model.half() works (the positional encoding is computed in fp32 and cast)."""
    model = FaceXFormer(FaceXFormerConfig(backbone="swin_t")).eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(x)
        half = model.half()(x.half())
    for name, a, b in zip(OUTPUT_NAMES, full, half, strict=True):
        assert b.dtype == torch.float16, name
        torch.testing.assert_close(b.float(), a, atol=5e-2, rtol=5e-2, msg=name)
