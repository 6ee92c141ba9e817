"""Write the prebuilt inference request that Triton's readiness probe sends (k8s/base/triton/probe/).

    python k8s/scripts/gen_probe.py

Triton's own ``/v2/health/ready`` stays green when a python-backend stub has died, so the pod is
judged by a real inference instead: ``probe.sh`` POSTs ``face_pipeline.bin`` to
``/v2/models/face_pipeline/infer`` with curl and looks for every line of ``face_pipeline.expect``
in the answer. The body uses the HTTP/REST binary tensor extension: a JSON header (its length in
``face_pipeline.header-length``, sent as ``Inference-Header-Content-Length``) followed by the BYTES
input as a 4-byte little-endian length and the bytes of a 64x48 grey JPEG. The image has no face,
so the answer is fast and fixed: FRAME_STATUS [0] and empty face outputs; it still runs every step
of the ensemble (decode + CenterFace, FaceXFormer, the embedder), so a dead stub fails the probe.
"""

from __future__ import annotations

import io
import json
import struct
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "k8s" / "base" / "triton" / "probe"
MODEL = "face_pipeline"
#: Outputs returned as JSON (not binary) so that the shell can check them.
OUTPUTS = ("FRAME_STATUS", "FRAME_INDEX", "LANDMARKS68", "EMBEDDING")
#: Substrings the answer must contain (Triton writes compact JSON in this key order).
EXPECT = (
    '"model_name":"face_pipeline"',
    '{"name":"FRAME_STATUS","datatype":"INT32","shape":[1],"data":[0]}',
    '{"name":"FRAME_INDEX","datatype":"INT32","shape":[0],"data":[]}',
    '{"name":"LANDMARKS68","datatype":"FP32","shape":[0,68,2],"data":[]}',
    '{"name":"EMBEDDING","datatype":"FP32","shape":[0,128],"data":[]}',
)


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (128, 128, 128)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def request_body(image: bytes) -> tuple[bytes, int]:
    tensor = struct.pack("<I", len(image)) + image
    header = {
        "inputs": [
            {
                "name": "IMAGES",
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(tensor)},
            }
        ],
        "outputs": [{"name": name, "parameters": {"binary_data": False}} for name in OUTPUTS],
    }
    head = json.dumps(header, separators=(",", ":")).encode()
    return head + tensor, len(head)


def main() -> int:
    body, header_length = request_body(jpeg())
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{MODEL}.bin").write_bytes(body)
    (OUT / f"{MODEL}.header-length").write_text(f"{header_length}\n")
    (OUT / f"{MODEL}.expect").write_text("\n".join(EXPECT) + "\n")
    sys.stdout.write(f"wrote {OUT}/{MODEL}.bin ({len(body)} bytes, header {header_length})\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
