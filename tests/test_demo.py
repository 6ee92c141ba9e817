"""`faceflow demo`'s round trip against the real broker and Triton (what `make demo` shows)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from faceflow.demo import round_trip
from faceflow.runtime.settings import DevSettings

pytestmark = pytest.mark.integration


def test_round_trip_through_kafka_and_face_pipeline(runtime: DevSettings, tmp_path: Path) -> None:
    result = round_trip(
        runtime.kafka_bootstrap, runtime.triton_grpc_url, stream_id="demo-test", out_dir=tmp_path
    )
    assert result["triton_status"] == 0
    assert (result["width"], result["height"]) == (512, 512)
    with Image.open(tmp_path / "roundtrip.png") as img:
        assert img.size == (512, 512)
