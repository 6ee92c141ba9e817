"""``faceflow models build``: artefacts, both repositories, provenance, idempotency."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from faceflow.errors import ConfigError
from faceflow.models.build import build
from faceflow.models.facexformer import FaceXFormer, FaceXFormerConfig

REPO = Path(__file__).resolve().parents[2]


def run_build(out: Path, weights: Path | None = None, lines: list[str] | None = None) -> dict[str, Path]:
    return build(
        out=out,
        source=REPO / "triton_repo",
        variants=("cpu", "gpu"),
        backbone="swin_t",
        weights=weights,
        precision="fp32",
        overrides={},
        say=(lines.append if lines is not None else lambda _m: None),
    )


@pytest.mark.slow
def test_build_writes_both_repositories_and_is_idempotent(tmp_path: Path) -> None:
    first: list[str] = []
    repos = run_build(tmp_path, lines=first)
    cpu, gpu = repos["cpu"], repos["gpu"]
    for name in ("face_detector", "facexformer", "face_embedder", "face_pipeline", "frame_info"):
        assert (cpu / name / "config.pbtxt").exists(), name
    assert (cpu / "facexformer" / "1" / "facexformer.onnx").stat().st_size > 50e6
    assert (cpu / "face_detector" / "1" / "centerface.onnx").exists()
    assert (cpu / "face_detector" / "1" / "model.py").exists()
    assert (gpu / "facexformer_onnx" / "1" / "model.onnx").exists()
    info = json.loads((cpu / "build-info.json").read_text())
    assert info["weights"] == "random-init" and info["backbone"] == "swin_t"
    assert any("RANDOM-INIT" in line for line in first), "random-init must be announced loudly"
    onnx = next((tmp_path / "artifacts").glob("facexformer-swin_t-*.onnx"))
    mtime = onnx.stat().st_mtime_ns

    second: list[str] = []
    run_build(tmp_path, lines=second)
    assert onnx.stat().st_mtime_ns == mtime, "an unchanged build must not re-export"
    assert any("facexformer: up to date" in line for line in second)


@pytest.mark.slow
def test_checkpoint_provenance_is_its_sha256(tmp_path: Path) -> None:
    ckpt = tmp_path / "facexformer.pt"
    torch.save({"state_dict_backbone": FaceXFormer(FaceXFormerConfig(backbone="swin_t")).state_dict()}, ckpt)
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    repos = run_build(tmp_path / "out", weights=ckpt)
    config = (repos["cpu"] / "face_pipeline" / "config.pbtxt").read_text()
    assert f"sha256:{digest}" in config
    assert '"facexformer_random_init" value: { string_value: "false" }' in config


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"weights": Path("/nonexistent/ckpt.pt")}, "no such file"),
        ({"source": Path("/nonexistent")}, "does not hold the python models"),
        ({"precision": "int4"}, "expected --precision fp32 or int8"),
    ],
)
def test_bad_build_inputs_are_clear_errors(tmp_path: Path, kwargs: dict[str, object], error: str) -> None:
    args: dict[str, object] = {
        "out": tmp_path, "source": REPO / "triton_repo", "variants": ("cpu",), "backbone": "swin_t",
        "weights": None, "precision": "fp32", "overrides": {}, "say": lambda _m: None,
    }  # fmt: skip
    args.update(kwargs)
    with pytest.raises(ConfigError, match=error):
        build(**args)  # type: ignore[arg-type]
