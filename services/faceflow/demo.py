"""``faceflow demo``: one frame's round trip through the real Kafka broker and the real Triton.

Until the end-to-end job lands (``faceflow run``), this is what ``make demo`` shows: it starts the
local runtime if needed, produces a real photo (scikit-image's astronaut) as a keyed ``Frame`` with
headers to ``faceflow.frames.v1``, consumes it back from the broker, analyzes it with Triton's
``face_pipeline`` ensemble, prints every hop with its latency and where everything runs, and saves
the frame annotated with boxes and landmarks to ``out/demo/roundtrip.png``.
"""

from __future__ import annotations

import argparse
import io
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from faceflow import topics
from faceflow.errors import FaceflowError
from faceflow.kafka.clients import header_dict, make_consumer, make_producer
from faceflow.kafka.headers import TRACEPARENT, TraceParent, message_headers
from faceflow.models.contract import FACE_PIPELINE_OUTPUTS
from faceflow.models.decode import HeadOutputs
from faceflow.runtime.cli import settings_from_args
from faceflow.runtime.stack import DevStack, format_status, require_ready
from faceflow.v1 import frame_pb2


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="start the local runtime and show a frame's round trip")
    p.add_argument("--home", type=Path, help="runtime folder (default ./.faceflow)")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="where the annotated picture goes")
    p.add_argument("--stream-id", default="demo-astronaut")
    p.set_defaults(
        handler=_demo,
        kafka_port=None,
        controller_port=None,
        triton_http_port=None,
        triton_grpc_port=None,
        triton_metrics_port=None,
        model_repository=None,
    )


def _demo(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    stack = DevStack(settings)
    print("== 1. local runtime")
    statuses = stack.up()
    require_ready(statuses)
    result = round_trip(
        settings.kafka_bootstrap, settings.triton_grpc_url, stream_id=args.stream_id, out_dir=args.out
    )
    print("== 5. where everything is")
    print(format_status(stack.status()))
    print(f"   runtime folder: {settings.home}   stop it with: faceflow dev down")
    return 0 if result["triton_status"] == 0 else 1


def demo_jpeg() -> tuple[bytes, int, int]:
    from PIL import Image  # noqa: PLC0415
    from skimage import data  # noqa: PLC0415

    rgb = np.asarray(data.astronaut())  # type: ignore[no-untyped-call]
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue(), rgb.shape[1], rgb.shape[0]


def annotate(jpeg: bytes, outputs: dict[str, np.ndarray], path: Path) -> Path:
    """Draw boxes, crop boxes, 5 keypoints and 68 landmarks on the frame; save a PNG."""
    from PIL import Image, ImageDraw  # noqa: PLC0415

    img = Image.open(io.BytesIO(jpeg)).convert("RGB")
    draw = ImageDraw.Draw(img)
    for i in range(len(outputs["FRAME_INDEX"])):
        draw.rectangle(outputs["CROP_BOXES"][i].tolist(), outline=(90, 90, 255), width=1)
        draw.rectangle(outputs["BOXES"][i].tolist(), outline=(0, 255, 0), width=3)
        for x, y in outputs["LANDMARKS68"][i]:
            draw.ellipse((x - 1.5, y - 1.5, x + 1.5, y + 1.5), fill=(255, 220, 0))
        for x, y in outputs["KEYPOINTS5"][i]:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=(255, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def round_trip(bootstrap: str, triton_url: str, *, stream_id: str, out_dir: Path) -> dict[str, Any]:
    import tritonclient.grpc as grpcclient  # noqa: PLC0415

    jpeg, width, height = demo_jpeg()
    trace = TraceParent.new()
    frame = frame_pb2.Frame(
        stream_id=stream_id,
        seq=time.time_ns(),
        image=jpeg,
        content_type="image/jpeg",
        width=width,
        height=height,
        source_uri="skimage:astronaut",
    )
    frame.capture_time.GetCurrentTime()
    payload = frame.SerializeToString()

    print(f"== 2. produce a {width}x{height} JPEG ({len(jpeg) / 1024:.0f} KiB) to {topics.FRAMES.name}")
    t0 = time.perf_counter()
    with closing(make_producer(bootstrap, client_id="faceflow-demo")) as producer:
        meta = producer.send(
            topics.FRAMES.name,
            key=stream_id.encode(),
            value=payload,
            headers=message_headers(frame_pb2.Frame.DESCRIPTOR.full_name, trace),
        ).get(timeout=30)
    produce_ms = (time.perf_counter() - t0) * 1e3
    print(f"   acked (acks=all) at partition {meta.partition} offset {meta.offset} in {produce_ms:.0f} ms")

    print("== 3. consume it back from the broker")
    from kafka import TopicPartition  # noqa: PLC0415

    t0 = time.perf_counter()
    tp = TopicPartition(topics.FRAMES.name, meta.partition)
    with closing(make_consumer(bootstrap, group_id=None, client_id="faceflow-demo")) as consumer:
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        record = None
        deadline = time.monotonic() + 30
        while record is None and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=1000).values():
                record = next((r for r in batch if r.offset == meta.offset), record)
    if record is None:
        raise FaceflowError(f"the frame produced at offset {meta.offset} did not come back within 30 s")
    got = frame_pb2.Frame.FromString(record.value)
    headers = header_dict(record.headers)
    consume_ms = (time.perf_counter() - t0) * 1e3
    same = got == frame and record.key == stream_id.encode()
    print(
        f"   key={record.key.decode()} seq={got.seq} identical={same} "
        f"traceparent={headers[TRACEPARENT].decode()} in {consume_ms:.0f} ms"
    )
    if not same:
        raise FaceflowError("the consumed frame differs from the produced one")

    print(f"== 4. analyze it with Triton's face_pipeline at {triton_url}")
    t0 = time.perf_counter()
    client = grpcclient.InferenceServerClient(triton_url)
    try:
        images = grpcclient.InferInput("IMAGES", [1], "BYTES")
        images.set_data_from_numpy(np.array([got.image], dtype=object))
        answer = client.infer("face_pipeline", [images], client_timeout=120)
        params = client.get_model_config("face_pipeline", as_json=True)["config"]["parameters"]
    finally:
        client.close()
    infer_ms = (time.perf_counter() - t0) * 1e3
    outputs = {t.name: answer.as_numpy(t.name) for t in FACE_PIPELINE_OUTPUTS}
    status = int(outputs["FRAME_STATUS"][0])
    weights = params["facexformer_weights"]["string_value"]
    print(f"   FRAME_STATUS={status}, {len(outputs['FRAME_INDEX'])} face(s) in {infer_ms:.0f} ms")
    if weights == "random-init":
        print(
            "   !! FaceXFormer weights are RANDOM-INIT: the face results below are meaningless (no checkpoint"
        )
        print(
            "   !! was given to `faceflow models build --facexformer-weights`); boxes and identity are real."
        )
    for i, face in enumerate(HeadOutputs.from_triton(outputs).results()):
        box = ", ".join(f"{v:.0f}" for v in outputs["BOXES"][i])
        print(
            f"   face {i}: box [{box}] score {outputs['SCORES'][i]:.2f}  age {face.age.label}  "
            f"gender {face.gender.label}  yaw {face.head_pose.degrees()[1]:.0f} deg  weights {weights}"
        )
    picture = annotate(got.image, outputs, out_dir / "roundtrip.png")
    print(f"   picture: {picture}")
    w, h = got.width, got.height
    return {
        "partition": meta.partition,
        "offset": meta.offset,
        "triton_status": status,
        "width": w,
        "height": h,
    }
