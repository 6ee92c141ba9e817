"""Benchmark of the ``face_pipeline`` ensemble against the official-style FaceXFormer pipeline.

Issue 3, item 7. Both sides see the same JPEG frames (real photos that installed packages ship,
and 1280x720 composites of them with 3 to 8 faces each), in the same process and the same run:

* **baseline**: what the authors' ``inference.py`` does, for every face: decode the image with PIL,
  MTCNN (facenet-pytorch) boxes, crop = box grown 25% per side (:mod:`faceflow.models.crops`),
  eager FaceXFormer on that ONE crop, heads decoded. Same backbone and weights as the served model
  (the ``--facexformer-weights`` checkpoint, or random-init seed 0 as ``faceflow models build``).
* **ours**: ``face_pipeline`` over gRPC (tritonclient) at 1, 8 and 32 frames per request, counting
  the faces it returns; our side also computes the identity embedding that the baseline lacks.

After a warm-up of each, the two sides alternate in rounds (a baseline pass over the frames, then
ours at every batch size), so that other processes on a shared machine slow both alike; every
round is kept in the JSON with the load average.

Ratio = our best configuration's faces/s / baseline faces/s, for ``swin_b`` on both sides only.
``--backbone swin_t`` writes ``pipeline-swin_t.json`` and ends with ``pipeline-swin_t: ratio=...``,
never the headline line. The int8 section quantizes the FaceXFormer ONNX exactly as
``faceflow models build --precision int8`` does and measures its drift per head against fp32 and its
speed with onnxruntime; a served int8 model counts toward the ratio only with ``--allow-int8`` and
that drift measured in the same run. With a CUDA GPU visible, FaceXFormer fp32 vs fp16 (eager and
ORT-CUDA) by batch size is measured against eager batch 1 and recorded with the GPU's name.

Triton: ``--triton-url`` or ``FACEFLOW_TRITON_URL``; otherwise the local runtime is started (the
equivalent of ``faceflow dev up --only triton``, serving ``build/triton_repo/cpu``: run
``faceflow models build`` first) and left running (``faceflow dev down`` stops it).

Run: ``.venv/bin/python bench/pipeline.py [--quick]``; see bench/README.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from pipeline_gpu import measure_gpu
from tqdm import tqdm

from faceflow.models.boxes import expand_box
from faceflow.models.contract import (
    CROP_SIZE,
    FACE_PIPELINE_OUTPUTS,
    IDENTITY_DIM,
    PRESENCE_THRESHOLD,
    FrameStatus,
)
from faceflow.models.crops import crop_faces
from faceflow.models.decode import HeadOutputs, decode_heads
from faceflow.models.facexformer import (
    FaceXFormer,
    FaceXFormerConfig,
    WeightsInfo,
    load_facexformer,
    weights_path_from_env,
)

logger = logging.getLogger("bench.pipeline")

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
RESULTS_DIR: Final = REPO_ROOT / "bench" / "results"
PIPELINE_MODEL: Final = "face_pipeline"
BATCH_SIZES: Final = (1, 8, 32)
CANVAS: Final = (1280, 720)
JPEG_QUALITY: Final = 90
REQUEST_TIMEOUT_S: Final = 600.0
FACENET_INSTALL: Final = (
    "facenet-pytorch (the baseline's MTCNN) is not installed. Install it into this venv with\n"
    "  .venv/bin/pip install --no-deps facenet-pytorch==2.6.0 requests\n"
    "(--no-deps: it declares torch<2.3 and numpy<2 but runs with ours; see bench/README.md)."
)

FloatArray = npt.NDArray[np.float32]
_DISTRIBUTIONS: Final = ("age", "gender", "race")


class BenchError(Exception):
    """The benchmark cannot run (a prerequisite is missing); the message says what to do."""


# --- Frames ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    name: str
    jpeg: bytes
    width: int
    height: int


def sample_photos() -> dict[str, npt.NDArray[np.uint8]]:
    """The real face photos that scikit-image and matplotlib ship, as RGB uint8."""
    import matplotlib.cbook  # noqa: PLC0415 - heavy, only for the sample photo
    import skimage.data  # noqa: PLC0415

    grace_path = Path(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    with Image.open(grace_path) as img:
        grace = np.asarray(img.convert("RGB"), dtype=np.uint8)
    data: Any = skimage.data  # untyped
    gray = data.camera()
    return {
        "astronaut": np.ascontiguousarray(data.astronaut()),
        "camera": np.ascontiguousarray(np.stack([gray, gray, gray], axis=-1)),
        "grace_hopper": grace,
    }


def composite(tiles: Sequence[npt.NDArray[np.uint8]], cols: int, rows: int) -> npt.NDArray[np.uint8]:
    """Paste ``tiles`` (scaled to fit, centred) into a cols x rows grid on a 1280x720 canvas."""
    width, height = CANVAS
    canvas = Image.new("RGB", CANVAS, (40, 40, 40))
    cell_w, cell_h = width // cols, height // rows
    for k, tile in enumerate(tiles):
        img = Image.fromarray(tile)
        scale = min(cell_w / img.width, cell_h / img.height)
        img = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.BILINEAR)
        row, col = divmod(k, cols)
        canvas.paste(
            img, (col * cell_w + (cell_w - img.width) // 2, row * cell_h + (cell_h - img.height) // 2)
        )
    return np.asarray(canvas, dtype=np.uint8)


def bench_frames() -> list[Frame]:
    """3 single photos and 3 composites (3, 6 and 8 faces; mirrored copies differ from the originals)."""
    photos = sample_photos()
    originals = list(photos.values())
    mirrored = [np.ascontiguousarray(p[:, ::-1]) for p in originals]
    images = dict(photos)
    images["grid3"] = composite(originals, 3, 1)
    images["grid6"] = composite(originals + mirrored, 3, 2)
    images["grid8"] = composite([(originals if i % 2 == 0 else mirrored)[i % 3] for i in range(8)], 4, 2)
    frames = []
    for name, rgb in images.items():
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="JPEG", quality=JPEG_QUALITY)
        frames.append(Frame(name=name, jpeg=buf.getvalue(), width=rgb.shape[1], height=rgb.shape[0]))
    return frames


# --- Timing helpers ------------------------------------------------------------------------------------


@dataclass
class Throughput:
    """Faces and per-request latencies of one measured configuration (warm-up excluded)."""

    faces: int = 0
    frames: int = 0
    seconds: float = 0.0
    latencies_s: list[float] = field(default_factory=list)

    def add(self, seconds: float, *, faces: int, frames: int) -> None:
        self.latencies_s.append(seconds)
        self.seconds += seconds
        self.faces += faces
        self.frames += frames

    @property
    def faces_per_s(self) -> float | None:
        return round(self.faces / self.seconds, 3) if self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_s, np.float64) * 1000.0
        return {
            "faces": self.faces,
            "frames": self.frames,
            "requests": len(self.latencies_s),
            "seconds": round(self.seconds, 3),
            "faces_per_s": self.faces_per_s,
            "frames_per_s": round(self.frames / self.seconds, 3) if self.seconds > 0 else None,
            "p50_request_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            "p90_request_ms": round(float(np.percentile(lat, 90)), 1) if lat.size else None,
        }


def _ms(values: Sequence[float]) -> dict[str, float | None]:
    arr = np.asarray(values, np.float64) * 1000.0
    if not arr.size:
        return {"p50_ms": None, "mean_ms": None}
    return {"p50_ms": round(float(np.percentile(arr, 50)), 2), "mean_ms": round(float(arr.mean()), 2)}


# --- Baseline: MTCNN + eager FaceXFormer, one face at a time ---------------------------------------------


@dataclass(frozen=True)
class FaceSample:
    """One baseline face: the crop the model saw, where it came from, the eager heads."""

    frame: str
    crop: FloatArray  # [3,224,224]
    crop_box: FloatArray  # [4]
    heads: HeadOutputs  # one face


def _mtcnn_class() -> Any:
    try:
        from facenet_pytorch import MTCNN  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415
    except ImportError as exc:
        raise BenchError(FACENET_INSTALL) from exc
    return MTCNN


class OfficialBaseline:
    """The authors' ``inference.py`` flow: PIL image -> MTCNN boxes -> per face: crop, forward, decode."""

    def __init__(self, model: FaceXFormer, device: torch.device) -> None:
        self.mtcnn = _mtcnn_class()(keep_all=True, device=device)
        self.model = model.to(device).eval()
        self.device = device
        self.model_seconds: list[float] = []

    def boxes(self, image: Image.Image) -> npt.NDArray[np.float64]:
        found, _probs = self.mtcnn.detect(image)
        if found is None:
            return np.zeros((0, 4), np.float64)
        # facenet-pytorch 2.6 under numpy 2 returns object arrays.
        return np.asarray(found).astype(np.float64).reshape(-1, 4)

    def analyze(self, frame: Frame) -> list[FaceSample]:
        image = Image.open(io.BytesIO(frame.jpeg)).convert("RGB")
        rgb = np.asarray(image, dtype=np.uint8)
        height, width = rgb.shape[:2]
        faces = []
        for box in self.boxes(image):
            crop_box = expand_box(box, width=width, height=height).reshape(1, 4)
            crop = crop_faces(rgb, crop_box)
            started = time.perf_counter()
            with torch.inference_mode():
                raw = self.model(torch.from_numpy(crop).to(self.device))
            named = {k: v.float().cpu().numpy() for k, v in raw._asdict().items()}
            self.model_seconds.append(time.perf_counter() - started)
            heads = decode_heads(**named, crop_boxes=crop_box)
            faces.append(FaceSample(frame=frame.name, crop=crop[0], crop_box=crop_box[0], heads=heads))
        return faces


def baseline_pass(baseline: OfficialBaseline, frames: Sequence[Frame], result: Throughput) -> None:
    for frame in tqdm(frames, desc="baseline", unit="frame"):
        started = time.perf_counter()
        faces = baseline.analyze(frame)
        result.add(time.perf_counter() - started, faces=len(faces), frames=1)


# --- int8 dynamic quantization: drift per head and speed (onnxruntime, no Triton) ---------------------------


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0


def head_drift(ref: HeadOutputs, other: HeadOutputs, crop_boxes: FloatArray) -> dict[str, Any]:
    """Per-head differences of ``other`` against ``ref`` for the same F faces."""
    lm = np.linalg.norm(ref.landmarks68.astype(np.float64) - other.landmarks68, axis=-1)  # [F,68] frame px
    crop_scale = CROP_SIZE / np.maximum(crop_boxes[:, 2] - crop_boxes[:, 0], 1e-6)
    pose = float(np.abs(ref.head_pose.astype(np.float64) - other.head_pose).max())
    labels = [np.mean(getattr(ref, h).argmax(1) == getattr(other, h).argmax(1)) for h in _DISTRIBUTIONS]
    same_parsing = ref.parsing == other.parsing
    drift: dict[str, Any] = {
        "landmarks_max_px": round(float(lm.max()), 4),
        "landmarks_mean_px": round(float(lm.mean()), 4),
        "landmarks_max_crop_px": round(float((lm * crop_scale[:, None]).max()), 4),
        "head_pose_max_rad": round(pose, 6),
        "head_pose_max_deg": round(float(np.degrees(pose)), 4),
    }
    for head in ("attributes", "visibility", *_DISTRIBUTIONS):
        drift[f"{head}_max_prob"] = round(_max_abs(getattr(ref, head), getattr(other, head)), 6)
    agree = (ref.attributes >= PRESENCE_THRESHOLD) == (other.attributes >= PRESENCE_THRESHOLD)
    drift["attributes_decision_agreement_pct"] = round(float(agree.mean()) * 100, 3)
    drift["age_gender_race_label_agreement_pct"] = round(float(np.mean(labels)) * 100, 3)
    drift["parsing_pixel_agreement_pct"] = round(float(same_parsing.mean()) * 100, 4)
    drift["parsing_min_face_agreement_pct"] = round(float(same_parsing.mean(axis=(1, 2)).min()) * 100, 4)
    return drift


def _merge_heads(parts: Sequence[HeadOutputs]) -> HeadOutputs:
    tensors = [p.to_triton() for p in parts]
    return HeadOutputs.from_triton({k: np.concatenate([t[k] for t in tensors]) for k in tensors[0]})


def measure_int8(
    samples: Sequence[FaceSample],
    *,
    backbone: str,
    weights: Path | None,
    artifacts: Path,
    timed_faces: int,
) -> dict[str, Any]:
    """Quantize (as ``models build --precision int8``), then drift per head and speed against fp32 ORT."""
    from faceflow.models.build import build_facexformer  # noqa: PLC0415 - heavy (onnx, ort quantization)
    from faceflow.models.pipeline import FaceModelStage  # noqa: PLC0415

    if not samples:
        raise BenchError("no baseline faces to measure int8 drift on")
    fp32_path, _ = build_facexformer(
        artifacts, backbone=backbone, weights=weights, precision="fp32", say=print
    )
    int8_path, _ = build_facexformer(
        artifacts, backbone=backbone, weights=weights, precision="int8", say=print
    )
    crops = np.ascontiguousarray(np.stack([s.crop for s in samples]), dtype=np.float32)
    boxes = np.ascontiguousarray(np.stack([s.crop_box for s in samples]), dtype=np.float32)
    eager = _merge_heads([s.heads for s in samples])
    stages = {
        "fp32": FaceModelStage.from_onnx(fp32_path, max_batch=16),
        "int8": FaceModelStage.from_onnx(int8_path, max_batch=16),
    }
    heads = {name: stage.run(crops, boxes) for name, stage in stages.items()}  # also the warm-up
    speed: dict[str, Any] = {}
    for name, stage in stages.items():
        for batch in (1, 8):
            seconds: list[float] = []
            n = len(samples)
            chunks = [np.arange(i, i + batch) % n for i in range(0, max(timed_faces, batch), batch)]
            for index in tqdm(chunks, desc=f"int8 section: {name} ORT batch {batch}", unit="call"):
                started = time.perf_counter()
                stage.run(crops[index], boxes[index])
                seconds.append((time.perf_counter() - started) / batch)
            speed[f"{name}_batch{batch}_per_face"] = _ms(seconds)
    speedup = {
        f"batch{b}": round(
            speed[f"fp32_batch{b}_per_face"]["mean_ms"] / speed[f"int8_batch{b}_per_face"]["mean_ms"], 3
        )
        for b in (1, 8)
    }
    return {
        "measured": True,
        "faces": len(samples),
        "quantization": "onnxruntime quantize_dynamic, QInt8 weights, MatMul/Gemm (as models build)",
        "fp32_onnx": {"path": str(fp32_path), "mb": round(fp32_path.stat().st_size / 1e6, 1)},
        "int8_onnx": {"path": str(int8_path), "mb": round(int8_path.stat().st_size / 1e6, 1)},
        "drift_int8_vs_fp32": head_drift(heads["fp32"], heads["int8"], boxes),
        "drift_fp32_ort_vs_eager": head_drift(eager, heads["fp32"], boxes),
        "speed": speed,
        "int8_speedup_vs_fp32": speedup,
    }


# --- Ours: face_pipeline over gRPC --------------------------------------------------------------------------


def resolve_triton(url: str | None) -> tuple[str, bool]:
    """The gRPC address to use, and whether this run started the local Triton for it."""
    url = url or os.environ.get("FACEFLOW_TRITON_URL") or None
    if url:
        return url, False
    from faceflow.runtime.settings import DevSettings  # noqa: PLC0415 - only when we start it
    from faceflow.runtime.stack import DevStack  # noqa: PLC0415

    env = dict(os.environ)
    env.setdefault("FACEFLOW_HOME", str(REPO_ROOT / ".faceflow"))
    env.setdefault("FACEFLOW_TRITON_REPOSITORY", str(REPO_ROOT / "build" / "triton_repo" / "cpu"))
    settings = DevSettings.from_env(env)
    if not (settings.model_repository / PIPELINE_MODEL / "config.pbtxt").is_file():
        raise BenchError(
            f"no {PIPELINE_MODEL} in {settings.model_repository}: run `faceflow models build` first "
            "(or pass --triton-url / set FACEFLOW_TRITON_URL)"
        )
    print(f"triton: FACEFLOW_TRITON_URL unset; `faceflow dev up --only triton` ({settings.model_repository})")
    started = time.monotonic()
    statuses = DevStack(settings).up(("triton",), quiet=True)
    if not all(s.ready for s in statuses):
        raise BenchError(f"the local Triton did not become ready: {statuses}")
    print(f"triton: ready at {settings.triton_grpc_url} after {time.monotonic() - started:.0f} s")
    return settings.triton_grpc_url, True


def served_parameters(client: Any) -> dict[str, str]:
    """``face_pipeline``'s config parameters (JSON-encoded values decoded where they are JSON)."""
    config = client.get_model_config(PIPELINE_MODEL, as_json=True, client_timeout=30)
    raw = config.get("config", config).get("parameters", {})
    out: dict[str, str] = {}
    for key, value in raw.items():
        text = value.get("string_value", "")
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = text
        out[key] = decoded if isinstance(decoded, str) else text
    return out


class PipelineClient:
    """One blocking ``face_pipeline`` call per request, with a deadline; returns the faces it found."""

    def __init__(self, url: str) -> None:
        import tritonclient.grpc as grpcclient  # noqa: PLC0415 - the adapter edge

        self._grpc = grpcclient
        self.client = grpcclient.InferenceServerClient(url)

    def faces_per_frame(self, frames: Sequence[Frame]) -> npt.NDArray[np.int64]:
        images = self._grpc.InferInput("IMAGES", [len(frames)], "BYTES")
        images.set_data_from_numpy(np.array([f.jpeg for f in frames], dtype=np.object_))
        outputs = [self._grpc.InferRequestedOutput(t.name) for t in FACE_PIPELINE_OUTPUTS]
        result = self.client.infer(
            PIPELINE_MODEL, [images], outputs=outputs, client_timeout=REQUEST_TIMEOUT_S
        )
        status = result.as_numpy("FRAME_STATUS")
        index = result.as_numpy("FRAME_INDEX")
        embedding = result.as_numpy("EMBEDDING")
        if status.shape != (len(frames),) or embedding.shape != (index.shape[0], IDENTITY_DIM):
            raise BenchError(
                f"face_pipeline: expected FRAME_STATUS [{len(frames)}] and EMBEDDING [F,{IDENTITY_DIM}], "
                f"got {list(status.shape)} and {list(embedding.shape)}"
            )
        bad = [
            (frames[i].name, FrameStatus(int(s)).name) for i, s in enumerate(status) if s != FrameStatus.OK
        ]
        if bad:
            logger.warning("face_pipeline frame status not OK: %s", bad)
        return np.bincount(index.astype(np.int64), minlength=len(frames))

    def close(self) -> None:
        self.client.close()


def _cycle(frames: Sequence[Frame], start: int, count: int) -> list[Frame]:
    return [frames[(start + k) % len(frames)] for k in range(count)]


def ours_requests(client: PipelineClient, frames: Sequence[Frame], batch: int, result: Throughput) -> None:
    """Enough requests of ``batch`` frames to cover every frame once (one request from 8 frames up)."""
    count = max(1, -(-len(frames) // batch))
    for k in tqdm(range(count), desc=f"ours batch {batch}", unit="req"):
        request = _cycle(frames, k * batch, batch)
        started = time.perf_counter()
        found = client.faces_per_frame(request)
        result.add(time.perf_counter() - started, faces=int(found.sum()), frames=batch)


def measure_rounds(
    baseline: OfficialBaseline,
    client: PipelineClient | None,
    frames: Sequence[Frame],
    *,
    batch_sizes: Sequence[int],
    rounds: int,
    quick: bool,
) -> tuple[dict[str, Any], dict[str, Any], list[FaceSample]]:
    """Warm both sides up, then alternate them round by round so that load from other processes on a
    shared machine falls on both alike. Returns baseline figures, ours figures, the baseline's faces."""
    samples: list[FaceSample] = []
    for frame in tqdm(frames, desc="baseline warm-up", unit="frame"):
        samples.extend(baseline.analyze(frame))
    baseline.model_seconds.clear()
    ours_faces: dict[str, int] = {}
    if client is not None:
        for frame in tqdm(frames, desc="ours warm-up", unit="frame"):
            ours_faces[frame.name] = int(client.faces_per_frame([frame])[0])
        for batch in batch_sizes if not quick else ():
            if batch > 1:
                client.faces_per_frame(_cycle(frames, 0, batch))
    base_rounds = [Throughput() for _ in range(rounds)]
    ours_rounds: dict[int, list[Throughput]] = {b: [] for b in batch_sizes}
    per_round = []
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}: baseline pass, then ours at client batch {list(batch_sizes)}")
        baseline_pass(baseline, frames, base_rounds[r])
        row: dict[str, Any] = {"round": r, "baseline_faces_per_s": base_rounds[r].faces_per_s}
        for batch in batch_sizes:
            if client is None or (quick and batch >= 8 and r > 0):
                continue  # --quick: batches of 8 and more frames in the first round only
            ours_rounds[batch].append(Throughput())
            ours_requests(client, frames, batch, ours_rounds[batch][-1])
            row[f"ours_batch{batch}_faces_per_s"] = ours_rounds[batch][-1].faces_per_s
        row["loadavg_1min"] = round(os.getloadavg()[0], 2)
        per_round.append(row)
    base = _merged(base_rounds).to_dict()
    base["face_model_per_face"] = _ms(baseline.model_seconds)
    base["faces_per_frame"] = {f.name: sum(s.frame == f.name for s in samples) for f in frames}
    ours: dict[str, Any] = {"faces_per_frame": ours_faces, "rounds": per_round}
    if client is not None:
        ours["configs"] = [
            {"client_batch_frames": b, **_merged(ours_rounds[b]).to_dict()} for b in batch_sizes
        ]
    return base, ours, samples


def _merged(parts: Sequence[Throughput]) -> Throughput:
    return Throughput(
        faces=sum(p.faces for p in parts),
        frames=sum(p.frames for p in parts),
        seconds=sum(p.seconds for p in parts),
        latencies_s=[x for p in parts for x in p.latencies_s],
    )


# --- Report ------------------------------------------------------------------------------------------


def machine_info(device: torch.device) -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    import onnxruntime as ort  # noqa: PLC0415

    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "facenet_pytorch": version("facenet-pytorch"),
        "tritonclient": version("tritonclient"),
        "baseline_device": str(device),
        "cuda": torch.cuda.is_available(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def decide_ratio(
    report: dict[str, Any], *, backbone: str, provenance: str, allow_int8: bool
) -> tuple[float | None, str]:
    """Our best counted configuration / baseline faces/s, and why a configuration was (not) counted."""
    ours = report.get("ours") or {}
    if "configs" not in ours or "error" in ours:
        return None, f"ours not measured: {ours.get('error', 'skipped')}"
    served = ours["served"]
    if served.get("facexformer_backbone") != backbone:
        return None, f"served backbone {served.get('facexformer_backbone')!r} != {backbone!r}"
    if served.get("facexformer_weights") != provenance:
        return None, f"served weights {served.get('facexformer_weights')!r} != baseline's {provenance!r}"
    quantization = served.get("facexformer_quantization", "none")
    if quantization != "none":
        if not allow_int8:
            return None, f"served model is {quantization}: it counts only with --allow-int8"
        if not (report.get("int8") or {}).get("measured"):
            return None, f"served model is {quantization} but its drift was not measured in this run"
    best = max(ours["configs"], key=lambda c: c["faces_per_s"] or 0.0)
    base = report["baseline"]["faces_per_s"]
    if not best["faces_per_s"] or not base:
        return None, "no faces measured"
    why = f"client batch {best['client_batch_frames']} ({quantization}) / baseline, both {backbone}"
    return best["faces_per_s"] / base, why


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="few iterations: under 5 minutes on 2 CPU cores")
    p.add_argument(
        "--backbone",
        choices=["swin_b", "swin_t"],
        default="swin_b",
        help="swin_b (default) gives the headline ratio; swin_t is reported separately",
    )
    p.add_argument(
        "--facexformer-weights",
        type=Path,
        default=weights_path_from_env(),
        help="the released checkpoint (default $FACEFLOW_FACEXFORMER_WEIGHTS; else random-init seed 0)",
    )
    p.add_argument(
        "--triton-url",
        help="gRPC host:port of a running Triton (default $FACEFLOW_TRITON_URL; "
        "else the local runtime is started)",
    )
    p.add_argument("--batch-sizes", default=",".join(map(str, BATCH_SIZES)), help="client batches (frames)")
    p.add_argument(
        "--allow-int8",
        action="store_true",
        help="let a served int8 model count toward the ratio (its drift is measured in this run)",
    )
    p.add_argument("--skip-int8", action="store_true", help="skip the int8 drift/speed section")
    p.add_argument("--skip-ours", action="store_true", help="baseline and int8 only (no ratio)")
    p.add_argument(
        "--artifacts",
        type=Path,
        default=REPO_ROOT / "build" / "bench" / "artifacts",
        help="where the int8 section's ONNX files are cached (default build/bench/artifacts)",
    )
    p.add_argument("--out", type=Path, help="JSON path (default bench/results/pipeline[-swin_t].json)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    label = "pipeline" if args.backbone == "swin_b" else f"pipeline-{args.backbone}"
    out = args.out or RESULTS_DIR / f"{label}.json"
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    rounds = 2 if args.quick else 4
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    began = time.monotonic()
    ratio: float | None = None
    client: PipelineClient | None = None
    try:
        _mtcnn_class()  # fail early, with the install command
        frames = bench_frames()
        model, info = load_facexformer(FaceXFormerConfig(backbone=args.backbone), args.facexformer_weights)
        report: dict[str, Any] = {
            "benchmark": "pipeline",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "backbone": args.backbone,
            "weights": info.provenance,
            "headline": args.backbone == "swin_b",
            "machine": machine_info(device),
            "frames": [
                {"name": f.name, "width": f.width, "height": f.height, "jpeg_bytes": len(f.jpeg)}
                for f in frames
            ],
        }
        print(f"{label}: {len(frames)} frames, FaceXFormer {args.backbone} ({info.provenance}), on {device}")
        baseline = OfficialBaseline(model, device)
        client, report["ours"] = connect_ours(args, info)
        report["baseline"], measured, samples = measure_rounds(
            baseline, client, frames, batch_sizes=batch_sizes, rounds=rounds, quick=args.quick
        )
        report["baseline"]["description"] = (
            "PIL decode + MTCNN (facenet-pytorch, keep_all) + eager FaceXFormer, one face per forward"
        )
        report["ours"].update(measured)
        report["int8"] = run_int8(args, samples, timed_faces=8 if args.quick else 2 * len(samples))
        if torch.cuda.is_available():
            fp32_onnx = (report["int8"].get("fp32_onnx") or {}).get("path")
            crops = np.stack([s.crop for s in samples])
            onnx_path = Path(fp32_onnx) if fp32_onnx else None
            report["gpu"] = measure_gpu(
                model, crops, onnx_path, iters=5 if args.quick else 20, batch_sizes=BATCH_SIZES
            )
        ratio, why = decide_ratio(
            report, backbone=args.backbone, provenance=info.provenance, allow_int8=args.allow_int8
        )
        report["ratio"] = round(ratio, 4) if ratio is not None else None
        report["ratio_definition"] = why
        report["elapsed_s"] = round(time.monotonic() - began, 1)
        report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print_summary(report, out, info)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(f"{label}: ratio=nan")
        return 2
    finally:
        if client is not None:
            client.close()
    print(f"{label}: ratio={ratio:.2f}" if ratio is not None else f"{label}: ratio=nan")
    return 0 if ratio is not None or args.skip_ours else 1


def run_int8(args: argparse.Namespace, samples: Sequence[FaceSample], *, timed_faces: int) -> dict[str, Any]:
    if args.skip_int8:
        return {"measured": False, "reason": "--skip-int8"}
    return measure_int8(
        samples,
        backbone=args.backbone,
        weights=args.facexformer_weights,
        artifacts=args.artifacts,
        timed_faces=timed_faces,
    )


def connect_ours(args: argparse.Namespace, info: WeightsInfo) -> tuple[PipelineClient | None, dict[str, Any]]:
    """A client for the served ``face_pipeline``, or None and why (the baseline is measured anyway)."""
    if args.skip_ours:
        return None, {"error": "--skip-ours"}
    client = None
    try:
        url, started = resolve_triton(args.triton_url)
        client = PipelineClient(url)
        served = served_parameters(client.client)
    except Exception as exc:  # noqa: BLE001 - any failure to reach Triton is reported, baseline kept
        logger.error("face_pipeline unavailable: %s", exc)
        if client is not None:
            client.close()
        return None, {"error": f"{type(exc).__name__}: {exc}"}
    keys = ("facexformer_backbone", "facexformer_weights", "facexformer_quantization", "detector", "embedder")
    figures: dict[str, Any] = {
        "served": {k: served.get(k) for k in keys},
        "triton_url": url,
        "started_by_bench": started,
        "description": "face_pipeline (decode, CenterFace, FaceXFormer, dlib embedder) over gRPC",
    }
    if started:
        print("triton: left running for the next run; `faceflow dev down` stops it")
    want = {"facexformer_backbone": info.backbone, "facexformer_weights": info.provenance}
    wrong = {k: served.get(k) for k, v in want.items() if served.get(k) != v}
    if wrong:
        client.close()
        figures["error"] = (
            f"the served face_pipeline has {wrong}, this run needs {want}: serve a repository built with "
            f"`faceflow models build --backbone {info.backbone}` and the same weights"
        )
        print(f"ours: not measured: {figures['error']}", file=sys.stderr)
        return None, figures
    return client, figures


def print_summary(report: dict[str, Any], out: Path, info: WeightsInfo) -> None:
    base = report["baseline"]
    print(
        f"baseline ({report['backbone']}): {base['faces_per_s']} faces/s, "
        f"p50 {base['p50_request_ms']} ms/frame, "
        f"model {base['face_model_per_face']['p50_ms']} ms/face, faces/frame {base['faces_per_frame']}"
    )
    ours = report["ours"]
    if "configs" in ours:
        print(f"ours served: {ours['served']}; faces/frame {ours['faces_per_frame']}")
        for c in ours["configs"]:
            print(
                f"  batch {c['client_batch_frames']:>2}: {c['faces_per_s']} faces/s, "
                f"p50 {c['p50_request_ms']} ms/request ({c['requests']} requests, {c['faces']} faces)"
            )
    else:
        print(f"ours: not measured ({ours.get('error')})")
    for row in ours.get("rounds", []):
        print(f"  round {row['round']}: " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "round"))
    int8 = report["int8"]
    if int8.get("measured"):
        print(f"int8 drift vs fp32: {int8['drift_int8_vs_fp32']}")
        print(f"int8 speed: {int8['speed']} speedup {int8['int8_speedup_vs_fp32']}")
    if report.get("gpu"):
        print(f"gpu {report['gpu']['gpu']}: {report['gpu']['speedup_vs_eager_fp32_batch1']}")
    if info.random_init:
        print("note: FaceXFormer weights are random-init (same on both sides); speed is what is compared")
    print(f"ratio: {report['ratio_definition']}; written {out}")


if __name__ == "__main__":
    sys.exit(main())
