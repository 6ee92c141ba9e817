"""``faceflow ingest`` as a process: flags, the end of files, SIGTERM, /metrics, clear start-up errors."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from support_ingest import consume, create_frames_topic, has_end, of_stream, wait_until

from faceflow.cli import build_parser
from faceflow.ingest.cli import config_from_args
from faceflow.ingest.config import PolicyChoice

pytestmark = pytest.mark.integration


def faceflow(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {**os.environ, "FACEFLOW_LOG_LEVEL": "INFO", "FACEFLOW_INGEST_BROKER_TIMEOUT_S": "5"}
    return subprocess.Popen(
        [sys.executable, "-m", "faceflow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,  # type: ignore[call-overload]
    )


def test_flags_override_the_environment(tmp_path: Path) -> None:
    sources_file = tmp_path / "s.yaml"
    sources_file.write_text("sources:\n  - {stream_id: lobby, uri: rtsp://cam/1}\n")
    args = build_parser().parse_args(
        [
            *("ingest", "--source", "a=/x.mp4", "--sources-file", str(sources_file)),
            *("--fps", "2", "--max-side", "0", "--queue-policy", "block", "--grpc-port", "0"),
        ]
    )
    config = config_from_args(args, {"FACEFLOW_INGEST_TARGET_FPS": "7", "FACEFLOW_INGEST_GRPC_PORT": "7000"})
    assert (config.target_fps, config.max_side, config.grpc_port) == (2.0, None, 0)
    assert config.queue_policy is PolicyChoice.BLOCK
    assert [(s.stream_id, s.target_fps, s.max_side) for s in config.sources] == [
        ("a", 2.0, None),
        ("lobby", 2.0, None),
    ]


def test_files_until_done(kafka_bootstrap: str, unique_name: str, media: object) -> None:
    topic = create_frames_topic(kafka_bootstrap, unique_name)
    process = faceflow(
        "ingest",
        "--kafka-bootstrap",
        kafka_bootstrap,
        "--topic",
        topic,
        "--source",
        f"clip={media.mp4}",  # type: ignore[attr-defined]
        "--source",
        f"photos={media.folder}",  # type: ignore[attr-defined]
        "--fps",
        "5",
        "--max-side",
        "160",
        "--jpeg-quality",
        "60",
        "--grpc-port",
        "0",
        "--metrics-port",
        "0",
        "--until-done",
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "ingest config: kafka_bootstrap=" in err  # the resolved config is logged at start-up
    assert "clip: ended, 10 produced, 0 dropped" in out
    assert "photos: ended, 3 produced, 0 dropped" in out
    records = consume(kafka_bootstrap, topic, until=lambda rs: has_end("clip")(rs) and has_end("photos")(rs))
    clip = of_stream(records, "clip")
    assert len(clip) == 11 and clip[-1].end_of_stream
    assert max(clip[0].width, clip[0].height) == 160


def test_sigterm_stops_gracefully_and_metrics_show_the_counters(
    kafka_bootstrap: str, unique_name: str, stream_server: object
) -> None:
    topic = create_frames_topic(kafka_bootstrap, unique_name)
    process = faceflow(
        "ingest",
        "--kafka-bootstrap",
        kafka_bootstrap,
        "--topic",
        topic,
        "--source",
        f"live={stream_server.url('/live')}",  # type: ignore[attr-defined]
        "--grpc-port",
        "0",
        "--metrics-port",
        "0",
        "--grace-s",
        "5",
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        match = re.search(r"metrics http://127\.0\.0\.1:(\d+)/metrics", banner)
        assert match, banner
        url = f"http://127.0.0.1:{match.group(1)}/metrics"

        def scrape() -> str:
            with urllib.request.urlopen(url, timeout=10) as reply:
                return str(reply.read().decode())

        wait_until(
            lambda: 'faceflow_ingest_frames_produced_total{stream_id="live"}' in scrape(), what="produced"
        )
        text = scrape()
        for name in ("frames_in_total", "produce_latency_seconds_count", "queue_depth", "decode_fps"):
            assert f'faceflow_ingest_{name}{{stream_id="live"}}' in text, name
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "stopping (on SIGTERM; grace 5 s)" in out
    assert "live: stopped" in out
    assert "ingest stopped" in err


@pytest.mark.parametrize(
    ("flags", "message_part"),
    [
        (["--source", "bad id=/x.mp4"], "stream id: expected 1 to 64 characters"),
        (["--source", "cam=/no/such/file.mp4"], "/no/such/file.mp4: no such file or folder"),
        (["--jpeg-quality", "0"], "jpeg_quality: expected an int in 1..100, got 0"),
        (["--kafka-bootstrap", "127.0.0.1:9", "--source", "cam=rtsp://x/y"], "cannot reach the Kafka broker"),
    ],
)
def test_start_up_errors_are_one_clear_line(
    kafka_bootstrap: str, flags: list[str], message_part: str
) -> None:
    env_bootstrap = ["--kafka-bootstrap", kafka_bootstrap] if "--kafka-bootstrap" not in flags else []
    process = faceflow("ingest", *env_bootstrap, *flags, "--grpc-port", "0", "--metrics-port", "0")
    _, err = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "faceflow: error: " in err and message_part in err
    assert "Traceback" not in err
