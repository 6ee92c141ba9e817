"""Pulled sources shared by ingest replicas through the sources topic (faceflow.ingest.assignments).

The replicas are real ``faceflow ingest`` processes against the real broker; a crash is SIGKILL,
so the group only learns of it when the session (6 s here) times out.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import grpc
import numpy as np
import pytest
from support_ingest import (
    consume,
    create_frames_topic,
    has_end,
    ingest_config,
    of_stream,
    running_service,
    wait_until,
)

from faceflow import topics
from faceflow.ingest.assignments import SourceRecord
from faceflow.ingest.config import IngestConfig, SourceConfig
from faceflow.ingest.errors import IngestConfigError
from faceflow.ingest.runner import SourceState
from faceflow.ingest.service import SourceExists
from faceflow.ingest.sources import container_is_live, open_source
from faceflow.kafka import admin
from faceflow.kafka.membership import key_partition
from faceflow.v1 import ingest_pb2, ingest_pb2_grpc

SESSION_TIMEOUT_MS = 6000
S = ingest_pb2  # short names for the states


# -- records and the liveness rule (no broker) ---------------------------------------------------
def test_a_record_keeps_the_password_and_the_final_state() -> None:
    spec = IngestConfig().source("cam1", "rtsp://admin:s3cret@cam/1", live=None)
    record = SourceRecord(
        spec=spec, final_state=SourceState.ENDED, last_error="", written_by="10.0.0.7:50051"
    )
    again = SourceRecord.decode(record.encode())
    assert again == record
    assert again.spec.uri == "rtsp://admin:s3cret@cam/1"  # the owner has to open it
    assert again.spec.to_proto().uri == "rtsp://admin:***@cam/1"  # status replies stay redacted


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xff\xff", "expected a SourceAssignment"),
        (
            ingest_pb2.SourceAssignment(
                spec=ingest_pb2.SourceSpec(stream_id="bad id!", uri="/x")
            ).SerializeToString(),
            "stream",
        ),
        (
            ingest_pb2.SourceAssignment(
                spec=ingest_pb2.SourceSpec(stream_id="a", uri="/x", jpeg_quality=85, folder_fps=1),
                final_state=ingest_pb2.SOURCE_STATE_RUNNING,
            ).SerializeToString(),
            "final_state: expected ENDED, FAILED or unset",
        ),
        (b"x" * 70_000, "at most"),
    ],
)
def test_a_bad_record_is_refused_with_the_reason(data: bytes, message: str) -> None:
    with pytest.raises(Exception, match=message):
        SourceRecord.decode(data)


@pytest.mark.parametrize(
    ("mode", "live"),
    [
        (ingest_pb2.SOURCE_MODE_UNSPECIFIED, None),
        (ingest_pb2.SOURCE_MODE_LIVE, True),
        (ingest_pb2.SOURCE_MODE_FINITE, False),
    ],
)
def test_the_spec_mode_is_the_explicit_live_choice(mode: int, live: bool | None) -> None:
    spec = SourceConfig.from_proto(
        ingest_pb2.SourceSpec(stream_id="a", uri="/x.mp4", mode=mode), IngestConfig()
    )  # type: ignore[arg-type]
    assert spec.live is live
    assert spec.to_proto().mode == mode


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(IngestConfigError, match="mode: expected a SourceMode"):
        SourceConfig.from_proto(ingest_pb2.SourceSpec(stream_id="a", uri="/x.mp4", mode=9), IngestConfig())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("scheme", "duration_us", "live"),
    [
        ("http", 2_000_000, False),  # an MP4 over HTTP, HLS with ENDLIST
        ("https", None, True),  # MPEG-TS of unknown size, live HLS
        ("http", 0, True),
        ("rtsp", 2_000_000, True),  # a stream protocol is live whatever it declares
        ("srt", None, True),
    ],
)
def test_container_is_live(scheme: str, duration_us: int | None, live: bool) -> None:
    assert container_is_live(scheme, duration_us) is live


@pytest.mark.parametrize(("name", "value"), [("max_sources", 0), ("session_timeout_ms", 10)])
def test_bad_settings_are_refused(name: str, value: int) -> None:
    with pytest.raises(IngestConfigError, match=name):
        IngestConfig(**{name: value})  # type: ignore[arg-type]


# -- liveness decided by the container, over real HTTP --------------------------------------------
class _Ranged(http.server.SimpleHTTPRequestHandler):
    """Static files with byte ranges, as nginx or S3 serve a VOD."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def send_head(self) -> io.BytesIO | None:  # type: ignore[override]
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return None
        data = path.read_bytes()
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes="):
            first, _, last = wanted[6:].partition("-")
            start, end = int(first), int(last) if last else len(data) - 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            data = data[start : end + 1]
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        return io.BytesIO(data)


def _write_hls(playlist: Path, frames: int = 75) -> None:
    """A VOD HLS playlist of 1 s segments of grey frames (25 fps, 320x240), with PyAV."""
    options = {"hls_time": "1", "hls_playlist_type": "vod"}
    with av.open(str(playlist), mode="w", format="hls", options=options) as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(frames):
            rgb = np.full((240, 320, 3), (i * 3) % 256, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def vod_server(tmp_path_factory: pytest.TempPathFactory, media: object) -> Iterator[str]:
    root = tmp_path_factory.mktemp("vod")
    shutil.copy(media.mp4, root / "bars.mp4")  # type: ignore[attr-defined]
    shutil.copy(media.ts, root / "bars.ts")  # type: ignore[attr-defined]
    hls = root / "hls"
    hls.mkdir()
    _write_hls(hls / "vod.m3u8")
    live = (
        (hls / "vod.m3u8")
        .read_text()
        .replace("#EXT-X-PLAYLIST-TYPE:VOD\n", "")
        .replace("#EXT-X-ENDLIST\n", "")
    )
    (hls / "live.m3u8").write_text(live)  # the same segments, as a live playlist sees them
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Ranged, directory=str(root)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    ("path", "live"),
    [("/bars.mp4", False), ("/bars.ts", False), ("/hls/vod.m3u8", False), ("/hls/live.m3u8", True)],
)
def test_live_or_finite_is_decided_by_the_container(vod_server: str, path: str, live: bool) -> None:
    source = open_source(vod_server + path, "cam1", open_timeout_s=5, read_timeout_s=5)
    try:
        assert source.is_live is live
    finally:
        source.close()


def test_an_mpegts_stream_of_unknown_length_is_live(stream_server: object) -> None:
    source = open_source(stream_server.url("/live"), "cam1", open_timeout_s=5, read_timeout_s=5)  # type: ignore[attr-defined]
    try:
        assert source.is_live  # no ranges: FFmpeg declares no duration
    finally:
        source.close()


def test_an_http_vod_ends_once_instead_of_looping(
    kafka_bootstrap: str, unique_name: str, vod_server: str
) -> None:
    topic = create_frames_topic(kafka_bootstrap, unique_name)
    config = ingest_config(kafka_bootstrap, topic, target_fps=5.0, seq_start="zero")
    with running_service(config) as service:
        service.start_source(config.source("vod", vod_server + "/bars.mp4"))
        wait_until(lambda: not service.source("vod").state.active, timeout_s=30, what="the VOD to end")
        status = service.source("vod")
    assert (status.state, status.reconnects, status.live) == (SourceState.ENDED, 0, False)
    frames = of_stream(consume(kafka_bootstrap, topic, until=has_end("vod")), "vod")
    assert [f.end_of_stream for f in frames] == [False] * 10 + [True]


# -- in one process: the topic as the desired state ------------------------------------------------
def _sources_topic(bootstrap: str, name: str) -> str:
    admin.ensure_topics(bootstrap, [topics.SOURCES.renamed(f"{name}.sources")])
    return f"{name}.sources"


def test_a_finished_configured_file_is_not_read_again_after_a_restart(
    kafka_bootstrap: str, unique_name: str, media: object
) -> None:
    topic = create_frames_topic(kafka_bootstrap, unique_name)
    base = ingest_config(
        kafka_bootstrap, topic, target_fps=5.0, sources_topic=_sources_topic(kafka_bootstrap, unique_name)
    )
    config = base.with_overrides(sources=(base.source("clip", str(media.mp4)),))  # type: ignore[attr-defined]
    for attempt in range(2):
        with running_service(config) as service:
            service.join_sources_group("127.0.0.1:1")
            assert service.assignments is not None
            wait_until(
                lambda: (e := service.assignments.table.get("clip")) is not None and e.record.finished,  # type: ignore[union-attr]
                timeout_s=60,
                what="the file to be recorded as finished",
            )
            busy = config.source(f"busy-{attempt}", str(media.mp4), live=True)  # type: ignore[attr-defined]
            service.start_source(busy)
            with pytest.raises(SourceExists, match="taken by a recorded source"):
                service.start_source(busy)
    frames = of_stream(consume(kafka_bootstrap, topic, until=has_end("clip"), timeout_s=10), "clip")
    assert [f.end_of_stream for f in frames] == [False] * 10 + [True]  # once, not twice


# -- replicas as processes ------------------------------------------------------------------------
class Replica:
    """One ``faceflow ingest`` process with a sources topic, and a gRPC stub to it."""

    def __init__(self, tmp: Path, name: str, args: list[str]) -> None:
        self.name = name
        self.ready_path = tmp / f"{name}.ready.json"
        self.log = (tmp / f"{name}.log").open("w")
        env = {k: v for k, v in os.environ.items() if k != "POD_IP"}
        env |= {
            "FACEFLOW_LOG_LEVEL": "INFO",
            "FACEFLOW_INGEST_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
            "FACEFLOW_INGEST_RECONNECT_INITIAL_S": "0.5",
            "FACEFLOW_INGEST_RECONNECT_MAX_S": "1",
            "FACEFLOW_INGEST_MAX_RECONNECT_ATTEMPTS": "0",
        }
        cmd = [sys.executable, "-m", "faceflow", "ingest", "--grpc-port", "0", "--metrics-port", "0"]
        self.process = subprocess.Popen(
            [*cmd, "--ready-file", str(self.ready_path), *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        wait_until(self._ready, timeout_s=60, what=f"replica {name} to be ready")
        info = json.loads(self.ready_path.read_text())
        self.address = f"127.0.0.1:{info['grpc_port']}"
        self.channel = grpc.insecure_channel(self.address)
        self.stub = ingest_pb2_grpc.IngestStub(self.channel)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"replica {self.name} exited with {self.process.returncode}")
        return self.ready_path.exists()

    def sources(self) -> dict[str, ingest_pb2.SourceStatus]:
        reply = self.stub.ListSources(ingest_pb2.ListSourcesRequest(), timeout=10)
        return {s.spec.stream_id: s for s in reply.sources}

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def close(self) -> None:
        self.channel.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


@contextmanager
def replicas(tmp: Path, args: list[str]) -> Iterator[dict[str, Replica]]:
    running: dict[str, Replica] = {}
    try:
        yield running
    finally:
        for replica in running.values():
            replica.close()


def spread_ids(count: int, partitions: int) -> list[str]:
    """``count`` stream ids that land in ``count`` different partitions."""
    out: dict[int, str] = {}
    n = 0
    while len(out) < count:
        stream_id = f"cam-{n}"
        out.setdefault(key_partition(stream_id.encode(), partitions), stream_id)
        n += 1
    return sorted(out.values())


def running_on(
    statuses: dict[str, ingest_pb2.SourceStatus], ids: list[str], owner: str | None = None
) -> bool:
    return all(
        sid in statuses
        and statuses[sid].state == S.SOURCE_STATE_RUNNING
        and (statuses[sid].owner != "" if owner is None else statuses[sid].owner == owner)
        for sid in ids
    )


def first_frame_after(records: list[object], stream_id: str, t_ns: int) -> int | None:
    times = [f.capture_time.ToNanoseconds() for f in of_stream(records, stream_id)]  # type: ignore[arg-type]
    later = [t for t in times if t > t_ns]
    return min(later) if later else None


def test_replicas_split_sources_and_take_over_a_killed_one(
    kafka_bootstrap: str, unique_name: str, media: object, stream_server: object, tmp_path: Path
) -> None:
    frames_topic = create_frames_topic(kafka_bootstrap, unique_name)
    sources_topic = _sources_topic(kafka_bootstrap, unique_name)
    media_root = str(Path(media.mp4).parent)  # type: ignore[attr-defined]
    common = [
        *("--kafka-bootstrap", kafka_bootstrap, "--topic", frames_topic, "--sources-topic", sources_topic),
        *("--fps", "5", "--max-side", "160", "--allow-hosts", "127.0.0.1", "--allow-file-roots", media_root),
    ]
    ids = spread_ids(6, topics.SOURCES.partitions)
    with replicas(tmp_path, common) as group:
        group["a"] = Replica(tmp_path, "a", common)
        group["b"] = Replica(tmp_path, "b", common)
        a, b = group["a"], group["b"]
        for index, sid in enumerate(ids):
            if index % 2:  # an MPEG-TS stream over HTTP: live by its container
                spec = ingest_pb2.SourceSpec(stream_id=sid, uri=stream_server.url("/live"))  # type: ignore[attr-defined]
            else:  # a file asked to be live: it loops
                spec = ingest_pb2.SourceSpec(stream_id=sid, uri=str(media.mp4), mode=S.SOURCE_MODE_LIVE)  # type: ignore[attr-defined]
            reply = a.stub.StartSource(ingest_pb2.StartSourceRequest(spec=spec), timeout=15)
            assert reply.status.state in (S.SOURCE_STATE_STARTING, S.SOURCE_STATE_WAITING)
        with pytest.raises(grpc.RpcError) as taken:
            b.stub.StartSource(
                ingest_pb2.StartSourceRequest(
                    spec=ingest_pb2.SourceSpec(stream_id=ids[0], uri=str(media.mp4))
                ),  # type: ignore[attr-defined]
                timeout=15,
            )
        assert taken.value.code() is grpc.StatusCode.ALREADY_EXISTS

        # Split: both replicas run some, and either one lists all six with their owners.
        wait_until(lambda: running_on(b.sources(), ids), timeout_s=60, what="all six sources to run")
        for replica in (a, b):
            statuses = replica.sources()
            assert {statuses[s].owner for s in ids} == {a.address, b.address}
            assert all(statuses[s].live for s in ids)
        on_a = [s for s in ids if b.sources()[s].owner == a.address]

        # A crash: SIGKILL, no goodbye to the group. A's cameras resume on B after the session times out.
        t_kill = time.time_ns()
        a.kill()
        wait_until(
            lambda: running_on(b.sources(), ids, owner=b.address), timeout_s=60, what="B to run all six"
        )
        t_listed = time.time_ns()
        records = consume(
            kafka_bootstrap,
            frames_topic,
            until=lambda rs: all(first_frame_after(rs, s, t_listed) for s in ids),
            timeout_s=60,
        )
        resumed = {s: first_frame_after(records, s, t_kill) for s in on_a}
        assert all(resumed.values()), resumed
        delays = {s: round((t - t_kill) / 1e9, 2) for s, t in resumed.items() if t is not None}
        print(f"\nresume after SIGKILL (session timeout {SESSION_TIMEOUT_MS} ms): {delays}")

        # A finite file on B ends once and is recorded so; then B dies and C (cap 4) takes over.
        clip = ingest_pb2.SourceSpec(stream_id="clip-once", uri=str(media.mp4), target_fps=5)  # type: ignore[attr-defined]
        b.stub.StartSource(ingest_pb2.StartSourceRequest(spec=clip), timeout=15)
        wait_until(
            lambda: b.sources().get("clip-once", ingest_pb2.SourceStatus()).state == S.SOURCE_STATE_ENDED,
            timeout_s=60,
            what="the file to end",
        )
        group["c"] = Replica(tmp_path, "c", [*common, "--max-sources", "4"])
        c = group["c"]
        t_kill_b = time.time_ns()
        b.kill()

        def settled() -> bool:
            statuses = c.sources()
            states = [statuses[s].state for s in ids if s in statuses]
            return (
                states.count(S.SOURCE_STATE_RUNNING) == 4
                and states.count(S.SOURCE_STATE_WAITING) == 2
                and all(statuses[s].owner == c.address for s in ids)
            )

        wait_until(settled, timeout_s=60, what="C to run four sources and keep two waiting")
        statuses = c.sources()
        waiting = [s for s in ids if statuses[s].state == S.SOURCE_STATE_WAITING]
        assert all("max_sources" in statuses[s].last_error for s in waiting)
        assert statuses["clip-once"].state == S.SOURCE_STATE_ENDED  # recorded, not started again
        print(f"C took over {round((time.time_ns() - t_kill_b) / 1e9, 2)} s after B was killed")

        # Stopping a running source frees a slot: a waiting one starts.
        running = next(s for s in ids if statuses[s].state == S.SOURCE_STATE_RUNNING)
        stopped = c.stub.StopSource(ingest_pb2.StopSourceRequest(stream_id=running), timeout=15)
        assert stopped.status.state == S.SOURCE_STATE_STOPPED
        wait_until(
            lambda: [c.sources()[s].state for s in ids if s != running].count(S.SOURCE_STATE_RUNNING) == 4,
            timeout_s=30,
            what="a waiting source to start in the freed slot",
        )
        assert running not in c.sources()

    records = consume(kafka_bootstrap, frames_topic, until=has_end("clip-once"), timeout_s=30)
    clip_frames = of_stream(records, "clip-once")
    assert [f.end_of_stream for f in clip_frames] == [False] * 10 + [True]  # not looped, not restarted
