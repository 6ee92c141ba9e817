"""The analyzer as a real process, with the real broker and the real Triton: nothing lost across a
kill -9, a frozen Triton, poison input and rebalances. Input and output are compared as sets of
(stream_id, seq), as Kafka's own system tests do."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support_analyzer import (
    BLANK,
    FACE,
    AnalyzerProcess,
    analyses_of,
    covers,
    frame_message,
    keys_of,
    make_topics,
    produce_frames,
    read_all,
)

from faceflow.kafka import admin
from faceflow.kafka.clients import make_producer
from faceflow.kafka.headers import TRACEPARENT, message_headers
from faceflow.runtime.settings import DevSettings
from faceflow.service.consume import DLQ_REASON, DLQ_SOURCE

pytestmark = pytest.mark.integration


def test_frames_in_analyses_out_in_order_with_faces_and_traces(
    kafka_bootstrap: str, triton_url: str, unique_name: str, tmp_path: Path
) -> None:
    t = make_topics(kafka_bootstrap, unique_name)
    streams = ["cam-a", "cam-b", "cam-c"]
    sent = produce_frames(
        kafka_bootstrap,
        t.frames,
        streams,
        6,
        image=lambda s, i: FACE if i in (0, 3) else BLANK,
        eos=True,
        shot=lambda s, i: (3 if i >= 3 else 1) if s == "cam-a" else 0,  # cam-a cuts at seq 3
    )
    analyzer = AnalyzerProcess(
        kafka_bootstrap, triton_url, t, unique_name, tmp_path / "a.log", "--schedule", "all"
    )
    try:
        records = read_all(kafka_bootstrap, t.analyses, until=covers(sent), timeout_s=240)
    finally:
        assert analyzer.stop() == 0, analyzer.tail()
    keys = keys_of(records)
    assert set(keys) == sent
    for stream in streams:  # per-stream order is kept; the end marker comes last
        seqs = [seq for s, seq in keys if s == stream]
        assert seqs == sorted(seqs)
    messages = {(a.stream_id, a.seq): a for a in analyses_of(records)}
    face = messages[("cam-a", 3)]
    assert len(face.faces) == 1 and face.faces[0].analyzed
    assert len(face.faces[0].landmarks68) == 68 and len(face.faces[0].embedding) == 128
    assert any(m.name == "facexformer" for m in face.models)
    assert face.timings.batch_size >= 1
    assert messages[("cam-b", 1)].faces == [] and messages[("cam-c", 6)].end_of_stream
    # every analysis carries its frame's shot, the end marker too
    assert [messages[("cam-a", i)].shot_start_seq for i in range(7)] == [1, 1, 1, 3, 3, 3, 3]
    assert {messages[("cam-b", i)].shot_start_seq for i in range(7)} == {0}
    assert all(dict(r.headers).get(TRACEPARENT) for r in records)


def test_kill_9_mid_stream_then_restart_loses_no_frame(
    kafka_bootstrap: str, triton_url: str, unique_name: str, tmp_path: Path
) -> None:
    t = make_topics(kafka_bootstrap, unique_name)
    sent = produce_frames(kafka_bootstrap, t.frames, ["k1", "k2"], 40)
    first = AnalyzerProcess(
        kafka_bootstrap, triton_url, t, unique_name, tmp_path / "a1.log", "--max-batch-frames", "4"
    )
    read_all(kafka_bootstrap, t.analyses, until=lambda r: len(r) >= 12, timeout_s=120)
    first.stop(signal.SIGKILL)
    second = AnalyzerProcess(kafka_bootstrap, triton_url, t, unique_name, tmp_path / "a2.log")
    try:
        records = read_all(kafka_bootstrap, t.analyses, until=covers(sent), timeout_s=180)
    finally:
        assert second.stop() == 0, second.tail()
    keys = keys_of(records)
    assert set(keys) == sent, f"missing: {sorted(sent - set(keys))[:10]}"
    # At least once: what the killed process produced but had not committed may come twice.
    repeats = sum(n - 1 for n in Counter(keys).values())
    print(f"repeats after kill -9: {repeats} of {len(keys)}")


def _triton_pid(runtime: DevSettings) -> int:
    if runtime.external_triton:
        raise AssertionError(
            "this test freezes the local Triton; it cannot run against FACEFLOW_TEST_TRITON_URL"
        )
    state = json.loads((runtime.run_dir / "state.json").read_text())
    return int(state["processes"]["triton"]["pid"])


def _health(port: int) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
        return int(reply.status)


def _grpc_port(log: Path) -> int:
    for line in log.read_text().splitlines():
        if "health gRPC" in line:
            return int(line.split("health gRPC ")[1].split(";")[0].rsplit(":", 1)[1])
    raise AssertionError("no gRPC port in the log")


def test_triton_frozen_for_10_s_loses_nothing_and_consumption_resumes_by_itself(
    runtime: DevSettings, kafka_bootstrap: str, triton_url: str, unique_name: str, tmp_path: Path
) -> None:
    t = make_topics(kafka_bootstrap, unique_name)
    log = tmp_path / "a.log"
    analyzer = AnalyzerProcess(
        kafka_bootstrap, triton_url, t, unique_name, log,
        "--max-batch-frames", "2", "--triton-timeout-s", "4", "--probe-interval-s", "2",
    )  # fmt: skip
    pid = _triton_pid(runtime)
    try:
        analyzer.wait_started()
        before = produce_frames(kafka_bootstrap, t.frames, ["f1"], 4)
        read_all(kafka_bootstrap, t.analyses, until=covers(before), timeout_s=120)
        port = _grpc_port(log)
        assert _health(port) == health_pb2.HealthCheckResponse.SERVING
        os.kill(pid, signal.SIGSTOP)
        try:
            during = produce_frames(kafka_bootstrap, t.frames, ["f1", "f2"], 6, start=4)
            deadline = time.monotonic() + 10
            not_serving = False
            while time.monotonic() < deadline:
                not_serving = not_serving or _health(port) == health_pb2.HealthCheckResponse.NOT_SERVING
                time.sleep(0.5)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert not_serving, "readiness must drop while Triton does not answer"
        records = read_all(kafka_bootstrap, t.analyses, until=covers(before | during), timeout_s=180)
        assert before | during <= set(keys_of(records))
        deadline = time.monotonic() + 30
        while _health(port) != health_pb2.HealthCheckResponse.SERVING and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _health(port) == health_pb2.HealthCheckResponse.SERVING
    finally:
        code = analyzer.stop()
    assert code == 0, analyzer.tail()
    assert "records wait" in log.read_text(), "the analyzer should have said it was waiting for Triton"


def test_poison_frames_go_to_the_dlq_with_reasons_and_original_headers(
    kafka_bootstrap: str, triton_url: str, unique_name: str, tmp_path: Path
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=1)
    producer = make_producer(kafka_bootstrap, client_id="test-poison")
    headers = [*message_headers("faceflow.v1.Frame"), ("x-origin", b"camera-7")]
    producer.send(t.frames, key=b"p1", value=b"\x08\x96\x01garbage", headers=headers)
    producer.send(
        t.frames, key=b"p1", value=frame_message("p1", 1, b"not a jpeg").SerializeToString(), headers=headers
    )
    producer.send(
        t.frames, key=b"zz", value=frame_message("p1", 2, BLANK).SerializeToString(), headers=headers
    )
    producer.flush(10)
    producer.close(5)
    good = produce_frames(kafka_bootstrap, t.frames, ["p1"], 3, start=10)
    analyzer = AnalyzerProcess(kafka_bootstrap, triton_url, t, unique_name, tmp_path / "a.log")
    try:
        analyses = read_all(kafka_bootstrap, t.analyses, until=covers(good), timeout_s=120)
        dead = read_all(kafka_bootstrap, t.dlq, until=lambda r: len(r) >= 3, timeout_s=60)
    finally:
        assert analyzer.stop() == 0, analyzer.tail()
    assert set(keys_of(analyses)) == good
    reasons = [dict(r.headers)[DLQ_REASON].decode() for r in dead]
    assert "not a faceflow.v1.Frame" in reasons[0]
    assert reasons[1] == "FRAME_STATUS 1 (undecodable)"
    assert "record key 'zz' differs" in reasons[2]
    for r in dead:
        h = dict(r.headers)
        assert h["x-origin"] == b"camera-7" and h[DLQ_SOURCE].decode().startswith(f"{t.frames}/0@")


def test_two_analyzers_share_partitions_and_a_third_joining_and_leaving_loses_nothing(
    kafka_bootstrap: str, triton_url: str, unique_name: str, tmp_path: Path
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=6)
    streams = [f"s{i}" for i in range(6)]
    a = AnalyzerProcess(kafka_bootstrap, triton_url, t, unique_name, tmp_path / "a.log")
    b = AnalyzerProcess(kafka_bootstrap, triton_url, t, unique_name, tmp_path / "b.log")
    c: AnalyzerProcess | None = None
    try:
        a.wait_started()
        b.wait_started()
        sent = produce_frames(kafka_bootstrap, t.frames, streams, 8)
        c = AnalyzerProcess(kafka_bootstrap, triton_url, t, unique_name, tmp_path / "c.log")
        sent |= produce_frames(kafka_bootstrap, t.frames, streams, 8, start=8)
        c.wait_started()
        sent |= produce_frames(kafka_bootstrap, t.frames, streams, 8, start=16)
        assert c.stop() == 0, c.tail()
        sent |= produce_frames(kafka_bootstrap, t.frames, streams, 8, start=24)
        records = read_all(kafka_bootstrap, t.analyses, until=covers(sent), timeout_s=240)
    finally:
        codes = [p.stop() for p in (a, b, c) if p is not None]
    assert set(keys_of(records)) == sent
    assert codes == [0, 0, 0] or codes == [0, 0], [p.tail() for p in (a, b)]
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert "revoked" in logs, "the third member's arrival moves partitions away from the first two"


def test_sigterm_commits_what_is_done_leaves_the_group_and_exits_0(
    kafka_bootstrap: str, triton_url: str, unique_name: str, tmp_path: Path
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=2)
    sent = produce_frames(kafka_bootstrap, t.frames, ["t1", "t2"], 5)
    analyzer = AnalyzerProcess(kafka_bootstrap, triton_url, t, unique_name, tmp_path / "a.log")
    read_all(kafka_bootstrap, t.analyses, until=covers(sent), timeout_s=120)
    time.sleep(1.0)  # let the periodic commit and the producer settle
    assert analyzer.stop(signal.SIGTERM) == 0, analyzer.tail()
    client = admin.admin_client(kafka_bootstrap)
    try:
        offsets = client.list_group_offsets(unique_name)[unique_name]
        group = client.describe_groups([unique_name])[unique_name]
    finally:
        client.close()
    assert sum(o.offset for tp, o in offsets.items() if tp.topic == t.frames) == len(sent)
    assert not group.get("members"), f"the analyzer must leave its group on SIGTERM: {group}"
    assert "consumer closed (left the group)" in analyzer.tail(80)
