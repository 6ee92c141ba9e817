"""Helpers for the multi-replica fault suite (tests/faults): real service processes, a paced file
server, a live tail of the mesh's topics and the coverage checks (tests/ is on the pythonpath).

Everything here talks to the real broker, the real Triton and real gRPC: the suite proves what a
Kubernetes rollout of several replicas does when one of them, or the broker, misbehaves.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc
from kafka import TopicPartition

from faceflow import topics
from faceflow.kafka import admin
from faceflow.kafka.clients import make_consumer
from faceflow.kafka.membership import GroupWatch, Membership, key_partition
from faceflow.v1 import (
    aggregator_pb2,
    aggregator_pb2_grpc,
    analysis_pb2,
    face_event_pb2,
    frame_pb2,
    ingest_pb2,
    ingest_pb2_grpc,
)

FACEFLOW = str(Path(sys.executable).parent / "faceflow")
OBS = face_event_pb2.FACE_EVENT_TYPE_OBSERVATION
ENDED = face_event_pb2.FACE_EVENT_TYPE_STREAM_ENDED
RPC_TIMEOUT_S = 5.0

Key = tuple[str, int]  # (stream_id, seq)
FaceKey = tuple[str, int, int]  # (stream_id, seq, face_index)
#: A replica's log line saying it got partitions: "<time> INFO faceflow.service.consume: analyzer:
#: assigned [0, 1]", or ingest's "... faceflow.ingest.assignments: sources: assigned partitions [1] of T".
_ASSIGNED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO faceflow\.[\w.]+: \w+: "
    r"assigned (?:partitions )?\[([\d, ]*)\]"
)


def wait_for(
    predicate: Callable[[], object], what: str, timeout_s: float = 60.0, every_s: float = 0.1
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


def spread_streams(count: int, partitions: int, prefix: str = "cam") -> list[str]:
    """``count`` stream ids in ``count`` different partitions (murmur2, as every producer)."""
    if count > partitions:
        raise ValueError(f"count: expected at most {partitions} (one stream per partition), got {count}")
    chosen: dict[int, str] = {}
    n = 0
    while len(chosen) < count:
        name = f"{prefix}{n}"
        chosen.setdefault(key_partition(name.encode(), partitions), name)
        n += 1
    return sorted(chosen.values())


# -- topics ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeshTopics:
    """One run's topic set. The gallery, its audit and the sources topic are the run's own too:
    with the shared gallery of ``create_run_topics``, the anonymous identities of one run's
    streams would be "returning strangers" for the next run's streams of the same ids."""

    prefix: str
    frames: str
    analyses: str
    faces: str
    state: str
    dlq: str
    identities: str
    audit: str
    sources: str


def create_mesh_topics(bootstrap: str, prefix: str, *, partitions: int) -> MeshTopics:
    own = topics.run_topics(prefix, partitions=partitions)
    extra = {
        "identities": topics.IDENTITIES.renamed(f"{prefix}.identities"),
        "audit": topics.IDENTITIES_AUDIT.renamed(f"{prefix}.audit"),
        "sources": topics.TopicSpec(
            name=f"{prefix}.sources", partitions=partitions, configs=topics.SOURCES.configs
        ),
    }
    specs = {**own, **extra}
    admin.ensure_topic_set(bootstrap, list(specs.values()), kinds={s.name: k for k, s in specs.items()})
    return MeshTopics(prefix=prefix, **{kind: spec.name for kind, spec in specs.items()})


# -- a paced file server -----------------------------------------------------------------------------
class _Paced(http.server.SimpleHTTPRequestHandler):
    """``/fast/NAME`` at full speed, ``/slow/NAME`` at ``rate`` bytes per second; byte ranges as a
    VOD server has them. A slow file keeps an ingest replica busy long enough to be killed mid-read.
    The first ``burst`` bytes of each answer go at full speed, so that a replica that opens the
    file sees its first frames at once: a camera's resume time is the mesh's, not the pacing's."""

    rate = 0.0
    burst = 128 * 1024

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        speed, _, name = self.path.lstrip("/").partition("/")
        path = Path(self.directory) / name
        if speed not in ("fast", "slow") or "/" in name or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start, end = 0, len(data) - 1
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes="):
            first, _, last = wanted[6:].partition("-")
            start, end = int(first or 0), int(last) if last else len(data) - 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        chunk = 4096
        with suppress(OSError):  # a killed replica's connection
            for at in range(start, end + 1, chunk):
                self.wfile.write(data[at : min(at + chunk, end + 1)])
                if speed == "slow" and at - start >= self.burst:
                    time.sleep(chunk / self.rate)


@contextmanager
def paced_server(root: Path, bytes_per_s: float) -> Iterator[str]:
    """An HTTP server for the files of ``root``; yields its base URL."""
    handler = type("Paced", (_Paced,), {"rate": float(bytes_per_s)})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


# -- service processes ----------------------------------------------------------------------------
class Service:
    """One ``faceflow <kind>`` process with its log and ready file; ``kill`` is SIGKILL."""

    def __init__(
        self, kind: str, name: str, tmp: Path, args: list[str], env: dict[str, str] | None = None
    ) -> None:
        self.kind, self.name = kind, name
        self.log_path = tmp / f"{name}.log"
        self.ready_path = tmp / f"{name}.ready.json"
        self.ready_path.unlink(missing_ok=True)
        environment = {k: v for k, v in os.environ.items() if k != "POD_IP"}
        environment |= {"PYTHONUNBUFFERED": "1", **(env or {})}
        cmd = [FACEFLOW, "--log-level", "INFO", kind, "--grpc-port", "0", "--metrics-port", "0"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*cmd, "--ready-file", str(self.ready_path), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        self.address = ""
        self.killed_at_ns: int | None = None

    def wait_ready(self, timeout_s: float = 90.0) -> Service:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            return self.ready_path.exists()

        wait_for(ready, f"{self.name} to be ready", timeout_s)
        info = json.loads(self.ready_path.read_text())
        self.address = f"127.0.0.1:{info['grpc_port']}"
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def owned(self) -> set[int]:
        """The partitions the consume loop holds now, folded from its ``assigned`` / ``revoked`` lines."""
        owned: set[int] = set()
        for line in self.log_text().splitlines():
            for word, add in ((": assigned [", True), (": revoked [", False)):
                if word in line and "faceflow.service.consume" in line:
                    inside = line.split(word, 1)[1].split("]", 1)[0]
                    parts = {int(p) for p in inside.split(",") if p.strip()}
                    owned = owned | parts if add else owned - parts
        return owned

    def assigned_after(self, t_ns: int, partitions: set[int]) -> float | None:
        """Seconds from ``t_ns`` to the first log line saying this replica was assigned one of
        ``partitions`` (the group's failover, apart from the work that follows); None if none."""
        for line in self.log_text().splitlines():
            match = _ASSIGNED.match(line)
            if match is None or not {int(p) for p in match[2].split(",") if p.strip()} & partitions:
                continue
            at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()  # local time, as logged
            if at * 1e9 > t_ns:
                return round(at - t_ns / 1e9, 2)
        return None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> int:
        self.killed_at_ns = time.time_ns()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        return self.killed_at_ns

    def stop(self, timeout_s: float = 45.0) -> int | None:
        """SIGTERM and wait; the exit code, or None if it had to be killed (a hang on SIGTERM)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None


def ingest(name: str, tmp: Path, bootstrap: str, t: MeshTopics, *, session_timeout_ms: int) -> Service:
    """An ingest replica sharing pulled sources through ``t.sources`` (seq from 0, so that a file
    read again after a kill repeats its keys, and a clean run has the same keys)."""
    args = [
        *("--kafka-bootstrap", bootstrap, "--topic", t.frames, "--sources-topic", t.sources),
        *("--fps", "5", "--max-side", "320", "--seq-start", "zero", "--allow-hosts", "127.0.0.1"),
    ]
    env = {
        "FACEFLOW_INGEST_SESSION_TIMEOUT_MS": str(session_timeout_ms),
        "FACEFLOW_INGEST_SOURCES_GROUP": f"{t.prefix}.ingest",
    }
    return Service("ingest", name, tmp, args, env)


def analyzer(
    name: str, tmp: Path, bootstrap: str, triton_url: str, t: MeshTopics, *, session_timeout_ms: int
) -> Service:
    args = [
        *("--kafka-bootstrap", bootstrap, "--triton-url", triton_url, "--group-id", f"{t.prefix}.analyzer"),
        *("--frames-topic", t.frames, "--analyses-topic", t.analyses, "--dlq-topic", t.dlq),
        *("--session-timeout-ms", str(session_timeout_ms), "--max-wait-ms", "20"),
    ]
    return Service("analyzer", name, tmp, args)


def aggregator(
    name: str, tmp: Path, bootstrap: str, triton_url: str, t: MeshTopics, *, session_timeout_ms: int
) -> Service:
    args = [
        *("--kafka-bootstrap", bootstrap, "--triton-url", triton_url, "--group-id", f"{t.prefix}.aggregator"),
        *("--analyses-topic", t.analyses, "--faces-topic", t.faces, "--state-topic", t.state),
        *("--identities-topic", t.identities, "--audit-topic", t.audit, "--dlq-topic", t.dlq),
        *("--session-timeout-ms", str(session_timeout_ms), "--checkpoint-frames", "10"),
    ]
    return Service("aggregator", name, tmp, args)


def membership(bootstrap: str, group: str, topic: str) -> Membership:
    watch = GroupWatch.of_broker(bootstrap, group, topic)
    try:
        return watch.refresh()
    finally:
        watch.close()


def split_between(bootstrap: str, group: str, topic: str, members: int, partitions: int) -> bool:
    """The group has exactly ``members`` members, each with partitions, together all of them."""
    m = membership(bootstrap, group, topic)
    owned = [set(x.partitions) for x in m.members]
    return (
        len(owned) == members
        and all(owned)
        and set().union(*owned) == set(range(partitions))
        and sum(map(len, owned)) == partitions
    )


# -- gRPC ---------------------------------------------------------------------------------------------
def start_sources(address: str, specs: Iterable[ingest_pb2.SourceSpec]) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = ingest_pb2_grpc.IngestStub(channel)
        for spec in specs:
            reply = stub.StartSource(ingest_pb2.StartSourceRequest(spec=spec), timeout=15)
            if reply.status.state not in (ingest_pb2.SOURCE_STATE_STARTING, ingest_pb2.SOURCE_STATE_WAITING):
                raise AssertionError(f"StartSource {spec.stream_id}: {reply.status}")


def list_sources(address: str) -> dict[str, ingest_pb2.SourceStatus]:
    with grpc.insecure_channel(address) as channel:
        reply = ingest_pb2_grpc.IngestStub(channel).ListSources(ingest_pb2.ListSourcesRequest(), timeout=10)
    return {s.spec.stream_id: s for s in reply.sources}


@dataclass
class Answers:
    """What one aggregator replica answered for every stream: ``ok`` when ListStreams listed them
    all and GetStream answered for each; otherwise the ``call`` that failed, its ``code`` and
    ``detail``. ``streams``: the StreamInfo of each stream that GetStream answered."""

    ok: bool
    streams: dict[str, aggregator_pb2.StreamInfo]
    call: str = ""
    code: str = ""
    detail: str = ""

    @property
    def error(self) -> str:
        return f"{self.call}: {self.code}: {self.detail}"


def ask_aggregator(address: str, stream_ids: Iterable[str]) -> Answers:
    wanted = sorted(stream_ids)
    got: dict[str, aggregator_pb2.StreamInfo] = {}
    call = "ListStreams"
    try:
        with grpc.insecure_channel(address) as channel:
            stub = aggregator_pb2_grpc.AggregatorStub(channel)
            request = aggregator_pb2.ListStreamsRequest()
            listed = {s.stream_id for s in stub.ListStreams(request, timeout=RPC_TIMEOUT_S).streams}
            for sid in wanted:
                call = f"GetStream {sid}"
                got[sid] = stub.GetStream(
                    aggregator_pb2.GetStreamRequest(stream_id=sid), timeout=RPC_TIMEOUT_S
                ).stream
    except grpc.RpcError as exc:
        return Answers(False, got, call, exc.code().name, str(exc.details()))
    missing = [sid for sid in wanted if sid not in listed]
    if missing:
        return Answers(False, got, "ListStreams", "INCOMPLETE", f"lacks {missing}")
    return Answers(True, got)


class AnswerLog:
    """Every call round made to the aggregator replicas, for the report (failures while a kill settles)."""

    def __init__(self, stream_ids: Iterable[str]) -> None:
        self.stream_ids = sorted(stream_ids)
        self.rounds: list[dict[str, Any]] = []

    def until_all_answer(self, replicas: Iterable[Service], when: str, timeout_s: float = 60.0) -> float:
        """Ask every live replica until each answers for every stream; the seconds it took."""
        live = [r for r in replicas if r.alive]
        started = time.monotonic()
        failures: Counter[str] = Counter()
        first: dict[str, str] = {}
        pending = {r.name: r for r in live}
        while pending:
            for name, replica in list(pending.items()):
                answers = ask_aggregator(replica.address, self.stream_ids)
                if answers.ok:
                    del pending[name]
                else:
                    kind = f"{name} {answers.call.split()[0]}: {answers.code}"
                    failures[kind] += 1
                    first.setdefault(kind, f"{round(time.monotonic() - started, 2)} s: {answers.error}")
            if pending:
                if time.monotonic() - started > timeout_s:
                    last = {n: ask_aggregator(r.address, self.stream_ids).error for n, r in pending.items()}
                    raise AssertionError(
                        f"{when}: aggregator replicas do not answer for every stream: {last}"
                    )
                time.sleep(0.25)
        took = time.monotonic() - started
        self.rounds.append(
            {
                "when": when,
                "replicas": [r.name for r in live],
                "settle_s": round(took, 2),
                "failed_calls": dict(failures),
                "first_failures": first,
            }
        )
        return took


# -- topics read back ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes
    value: bytes | None


class Tail(threading.Thread):
    """Reads ``topics`` from their beginning for as long as the test runs (a plain consumer, no
    group, read_committed as every faceflow consumer), keeping every record."""

    def __init__(self, bootstrap: str, names: Iterable[str]) -> None:
        super().__init__(daemon=True, name="fault-tail")
        self.bootstrap, self.names = bootstrap, list(names)
        self._lock = threading.Lock()
        self._records: dict[str, list[Rec]] = {n: [] for n in self.names}
        self._halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with closing(make_consumer(self.bootstrap, group_id=None, client_id="fault-tail")) as consumer:
                tps = [
                    TopicPartition(n, p)
                    for n in self.names
                    for p in sorted(consumer.partitions_for_topic(n) or ())
                ]
                consumer.assign(tps)
                consumer.seek_to_beginning()
                while not self._halt.is_set():
                    for tp, batch in consumer.poll(timeout_ms=200).items():
                        rows = [
                            Rec(tp.topic, tp.partition, r.offset, r.timestamp, r.key, r.value) for r in batch
                        ]
                        with self._lock:
                            self._records[tp.topic].extend(rows)
        except BaseException as exc:  # noqa: BLE001 - reported by records()
            self.error = exc

    def records(self, topic: str) -> list[Rec]:
        if self.error is not None:
            raise AssertionError(f"the topic tail failed: {self.error!r}")
        with self._lock:
            return list(self._records[topic])

    def close(self) -> None:
        self._halt.set()
        self.join(10)


def read_to_end(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Rec]:
    """Every record of ``topic`` up to its end offsets as of now."""
    out: list[Rec] = []
    with closing(make_consumer(bootstrap, group_id=None, client_id="fault-reader")) as consumer:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: could not read to its end offsets {ends} in {timeout_s} s")
            for tp, batch in consumer.poll(timeout_ms=300).items():
                out += [Rec(tp.topic, tp.partition, r.offset, r.timestamp, r.key, r.value) for r in batch]
    return out


def frames_of(records: Iterable[Rec]) -> list[tuple[Rec, frame_pb2.Frame]]:
    return [(r, frame_pb2.Frame.FromString(r.value)) for r in records if r.value is not None]


def analyses_of(records: Iterable[Rec]) -> list[tuple[Rec, analysis_pb2.FrameAnalysis]]:
    return [(r, analysis_pb2.FrameAnalysis.FromString(r.value)) for r in records if r.value is not None]


def events_of(records: Iterable[Rec]) -> list[tuple[Rec, face_event_pb2.FaceEvent]]:
    return [(r, face_event_pb2.FaceEvent.FromString(r.value)) for r in records if r.value is not None]


def ended_streams(records: Iterable[Rec]) -> set[str]:
    return {e.stream_id for _, e in events_of(records) if e.type == ENDED}


# -- what the topics say --------------------------------------------------------------------------
@dataclass
class Outcome:
    """One run's topics, indexed by key, with the counts the report needs."""

    frames: Counter[Key]
    analyses: Counter[Key]
    faces_per_analysis: dict[Key, set[int]]  # the face counts of the copies of each analysis
    observations: Counter[FaceKey]
    ids: dict[FaceKey, set[tuple[str, str]]]  # (track_id, identity_id) of every copy
    ended: set[str]

    @classmethod
    def of(cls, frames: list[Rec], analyses: list[Rec], faces: list[Rec]) -> Outcome:
        f = Counter((m.stream_id, m.seq) for _, m in frames_of(frames))
        a: Counter[Key] = Counter()
        counts: dict[Key, set[int]] = defaultdict(set)
        for _, m in analyses_of(analyses):
            a[(m.stream_id, m.seq)] += 1
            counts[(m.stream_id, m.seq)].add(-1 if m.end_of_stream else len(m.faces))
        obs: Counter[FaceKey] = Counter()
        ids: dict[FaceKey, set[tuple[str, str]]] = defaultdict(set)
        ended = set()
        for _, e in events_of(faces):
            if e.type == OBS:
                key = (e.stream_id, e.seq, e.face_index)
                obs[key] += 1
                ids[key].add((e.track_id, e.identity_id))
            elif e.type == ENDED:
                ended.add(e.stream_id)
        return cls(f, a, dict(counts), obs, dict(ids), ended)

    def frames_without_analysis(self) -> list[Key]:
        return sorted(k for k in self.frames if k not in self.analyses)

    def analyses_without_observations(self) -> list[tuple[Key, int]]:
        """Analyses (of a frame with faces) that lack an observation of some face index."""
        out = []
        for key, counts in self.faces_per_analysis.items():
            for n in counts - {-1}:
                missing = [i for i in range(n) if (*key, i) not in self.observations]
                if missing:
                    out.append((key, len(missing)))
        return sorted(out)

    def inconsistent_copies(self) -> dict[str, list[Any]]:
        """Keys whose duplicates disagree: face counts of one frame, ids of one face."""
        return {
            "analyses": sorted(k for k, c in self.faces_per_analysis.items() if len(c) > 1),
            "observations": sorted(k for k, v in self.ids.items() if len(v) > 1),
        }

    @staticmethod
    def duplicates(counter: Counter[Any]) -> int:
        return sum(n - 1 for n in counter.values())


def first_after(
    records: Iterable[Rec], t_ns: int, partitions: set[int] | None = None, key: bytes | None = None
) -> float | None:
    """Seconds from ``t_ns`` to the first record created after it (by its producer's timestamp),
    in ``partitions`` and/or of ``key``; None if there is none."""
    t_ms = t_ns / 1e6
    times = [
        r.timestamp_ms
        for r in records
        if r.timestamp_ms > t_ms
        and (partitions is None or r.partition in partitions)
        and (key is None or r.key == key)
    ]
    return round((min(times) - t_ms) / 1e3, 2) if times else None
