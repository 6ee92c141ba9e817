"""State recovery with the real broker: a killed aggregator, a SIGTERM, a rebalance. The new owner
resumes with the same track and identity ids (the changelog topic), and drops repeats."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support_aggregator import AggTopics, make_topics, produce, walking
from support_analyzer import read_all

from faceflow.kafka import admin
from faceflow.v1 import face_event_pb2

pytestmark = pytest.mark.integration

FACEFLOW = str(Path(sys.executable).parent / "faceflow")
OBS = face_event_pb2.FACE_EVENT_TYPE_OBSERVATION
STREAMS = [f"cam{i}" for i in range(8)]


class Aggregator:
    def __init__(self, bootstrap: str, t: AggTopics, group: str, log: Path) -> None:
        self.log = log
        args = [
            FACEFLOW, "--log-level", "INFO", "aggregator",
            "--kafka-bootstrap", bootstrap, "--group-id", group,
            "--analyses-topic", t.analyses, "--faces-topic", t.faces, "--state-topic", t.state,
            "--identities-topic", t.identities, "--dlq-topic", t.dlq,
            "--grpc-port", "0", "--metrics-port", "0", "--checkpoint-frames", "5",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=dict(os.environ)
        )

    def wait_assigned(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while "assigned" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"aggregator not assigned (exit {self.proc.poll()}):\n{self.log.read_text()[-3000:]}"
                )
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(60)


def frames(start: int, count: int) -> list:
    out = []
    for i, stream in enumerate(STREAMS):
        out += walking(
            stream,
            ["ann", "bob", "cy", "dee", "eve"][i % 5],
            range(start, start + count),
            x0=10.0 + 2 * start,
        )
    return out


def observations(records: list) -> list[face_event_pb2.FaceEvent]:
    events = [face_event_pb2.FaceEvent.FromString(r.value) for r in records]
    return [e for e in events if e.type == OBS]


def ids_at(events: list[face_event_pb2.FaceEvent], seq: int) -> dict[str, tuple[str, str]]:
    return {e.stream_id: (e.track_id, e.identity_id) for e in events if e.seq == seq}


def seen(seq: int) -> object:
    return lambda records: set(ids_at(observations(records), seq)) == set(STREAMS)


def test_kill_9_then_restart_resumes_with_the_same_track_and_identity_ids(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    t = make_topics(kafka_bootstrap, unique_name)
    first = Aggregator(kafka_bootstrap, t, unique_name, tmp_path / "a1.log")
    first.wait_assigned()
    produce(kafka_bootstrap, t.analyses, frames(0, 22))
    before = read_all(kafka_bootstrap, t.faces, until=seen(21), timeout_s=120)
    first.stop(signal.SIGKILL)
    second = Aggregator(kafka_bootstrap, t, unique_name, tmp_path / "a2.log")
    try:
        second.wait_assigned()
        produce(kafka_bootstrap, t.analyses, frames(22, 10))
        after = read_all(kafka_bootstrap, t.faces, until=seen(31), timeout_s=120)
    finally:
        assert second.stop() == 0, (tmp_path / "a2.log").read_text()[-3000:]
    old = ids_at(observations(before), 21)
    new = ids_at(observations(after), 31)
    kept = sum(1 for s in STREAMS if old[s] == new[s])
    assert kept / len(STREAMS) >= 0.99, {s: (old[s], new[s]) for s in STREAMS}
    assert all(track_id == "t1" for track_id, _ in new.values())
    assert "restored" in (tmp_path / "a2.log").read_text()


def test_a_second_aggregator_takes_partitions_over_with_their_state(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=6)
    a = Aggregator(kafka_bootstrap, t, unique_name, tmp_path / "a.log")
    b: Aggregator | None = None
    try:
        a.wait_assigned()
        produce(kafka_bootstrap, t.analyses, frames(0, 15))
        before = read_all(kafka_bootstrap, t.faces, until=seen(14), timeout_s=120)
        b = Aggregator(kafka_bootstrap, t, unique_name, tmp_path / "b.log")
        b.wait_assigned()
        time.sleep(3.0)  # the cooperative rebalance's second round
        produce(kafka_bootstrap, t.analyses, frames(15, 10))
        after = read_all(kafka_bootstrap, t.faces, until=seen(24), timeout_s=120)
    finally:
        codes = [p.stop() for p in (a, b) if p is not None]
    assert codes == [0, 0]
    assert "revoked" in (tmp_path / "a.log").read_text(), "the second member takes partitions from the first"
    old, new = ids_at(observations(before), 14), ids_at(observations(after), 24)
    assert old == new


def test_sigterm_commits_leaves_the_group_and_exits_0(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    t = make_topics(kafka_bootstrap, unique_name, partitions=2)
    agg = Aggregator(kafka_bootstrap, t, unique_name, tmp_path / "a.log")
    agg.wait_assigned()
    produce(kafka_bootstrap, t.analyses, frames(0, 10))
    read_all(kafka_bootstrap, t.faces, until=seen(9), timeout_s=120)
    assert agg.stop(signal.SIGTERM) == 0  # the last checkpoints are written on the way out
    client = admin.admin_client(kafka_bootstrap)
    try:
        offsets = client.list_group_offsets(unique_name)[unique_name]
        group = client.describe_groups([unique_name])[unique_name]
    finally:
        client.close()
    assert sum(o.offset for tp, o in offsets.items() if tp.topic == t.analyses) == 10 * len(STREAMS)
    assert not group.get("members")
