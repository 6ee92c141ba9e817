"""Two replicas of every service on the real broker and the real Triton, one of each killed with
SIGKILL in turn and the broker paused, over four streams: nothing is lost, and the result is the
result of a clean run.

The streams are four pulled sources of one generated clip (8 s of the demo scene at 5 fps: 40
frames of three people; the cameraman leaves and comes back), served over HTTP. In the faulted run
the server paces each file over ``READ_S`` seconds, so an ingest replica is killed mid-read and the
mesh is still busy at every later fault. Faults, in turn, each once the previous one settled:

1. SIGKILL the ingest replica that owns most sources: the other one takes its partitions of the
   sources topic after the session timeout and reads those files again from their beginning (the
   documented at-least-once for a finite file); with ``--seq-start zero`` the frames read twice
   repeat their keys, so the analyzer and the aggregator drop them as repeats;
2. SIGKILL an analyzer, then start a new one (as Kubernetes restarts the pod);
3. SIGKILL an aggregator, then start a new one; a gRPC client asks the survivor, then both;
4. SIGSTOP the broker for ``PAUSE_S`` seconds, then SIGCONT.

The session broker is paused rather than a private one: the tests of one pytest session run one
at a time (``make test`` runs plain ``pytest``), so nothing else uses it meanwhile, and a private
broker would cost its start-up for every run of this suite. Against ``FACEFLOW_TEST_KAFKA_BOOTSTRAP``
the test fails with that reason, as the analyzer's frozen-Triton test does.

Why ``--seq-start zero`` and not the default ``clock``: with clock seqs a file read again by the
new owner gets new keys, so its frames are new frames to every consumer (new tracks after the
cut that the restart looks like), and neither the mesh nor this test could tell them from the
first read. A moved live camera has no such repeat; a moved file does, by design (docs/ingest.md).

Why the ids must equal the clean run's exactly: analyses are per frame; the aggregator drops
repeats by ``(stream_id, seq)`` and restores a killed replica's streams from their checkpoints.
What a restart may change is *which faces the adaptive scheduler analyzes* (its state is soft: a
new analyzer owner starts without it), and so which frames carry embeddings. On this clip that
changes no track or identity decision, so the test asserts equality; a mismatch is reported with
its keys and both values.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from support_aggregator import analysis, produce, walking
from support_faults import (
    AnswerLog,
    MeshTopics,
    Outcome,
    Service,
    Tail,
    aggregator,
    analyzer,
    ask_aggregator,
    create_mesh_topics,
    ended_streams,
    first_after,
    frames_of,
    ingest,
    list_sources,
    membership,
    paced_server,
    read_to_end,
    split_between,
    spread_streams,
    start_sources,
    wait_for,
)

from faceflow.run.democlip import DEMO, generate_clip
from faceflow.runtime.procs import process_start_ticks
from faceflow.runtime.settings import DevSettings
from faceflow.v1 import aggregator_pb2, ingest_pb2

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SESSION_TIMEOUT_MS = 6000  # the lowest the services accept: failover after a kill takes this long
PARTITIONS = 4
STREAMS = spread_streams(4, PARTITIONS)  # one stream per partition: two per replica
CLIP = dataclasses.replace(DEMO, name="faults", seconds=8.0, fps=5.0)  # 40 frames
READ_S = 45.0  # how long the faulted run's ingest takes to read one file
PAUSE_S = 5.0
RUNNING = (ingest_pb2.SOURCE_STATE_RUNNING, ingest_pb2.SOURCE_STATE_ENDED)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fault-clips")
    generate_clip(CLIP, root)
    return root


def broker_pid(runtime: DevSettings) -> int:
    if runtime.external_kafka:
        raise AssertionError(
            "this test pauses the local broker; it cannot run against FACEFLOW_TEST_KAFKA_BOOTSTRAP"
        )
    record = json.loads((runtime.run_dir / "state.json").read_text())["processes"]["kafka"]
    pid = int(record["pid"])
    if process_start_ticks(pid) != int(record["start_ticks"]):
        raise AssertionError(f"pid {pid} is not the session's broker any more")
    return pid


def specs(base: str, speed: str) -> list[ingest_pb2.SourceSpec]:
    return [ingest_pb2.SourceSpec(stream_id=s, uri=f"{base}/{speed}/{CLIP.name}.mp4") for s in STREAMS]


class Clock:
    """Seconds since the faulted run began, for the timeline in the report."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.events: list[tuple[float, str, str]] = []

    def mark(self, what: str) -> None:
        now = time.time()
        wall = time.strftime("%H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"  # as the logs
        self.events.append((round(time.monotonic() - self.t0, 1), wall, what))


def stop_all(services: list[Service]) -> dict[str, int | None]:
    return {s.name: s.stop() for s in services if s.alive}


# -- the clean run: one of each, no faults ----------------------------------------------------------
def clean_run(
    bootstrap: str, triton_url: str, name: str, tmp: Path, base: str
) -> tuple[Outcome, dict[str, aggregator_pb2.StreamInfo], dict[str, int | None]]:
    t = create_mesh_topics(bootstrap, f"{name}.clean", partitions=PARTITIONS)
    services = [
        aggregator("clean-aggregator", tmp, bootstrap, triton_url, t, session_timeout_ms=SESSION_TIMEOUT_MS),
        analyzer("clean-analyzer", tmp, bootstrap, triton_url, t, session_timeout_ms=SESSION_TIMEOUT_MS),
        ingest("clean-ingest", tmp, bootstrap, t, session_timeout_ms=SESSION_TIMEOUT_MS),
    ]
    tail = Tail(bootstrap, [t.faces])
    tail.start()
    try:
        for service in services:
            service.wait_ready()
        start_sources(services[2].address, specs(base, "fast"))
        wait_for(
            lambda: ended_streams(tail.records(t.faces)) == set(STREAMS), "the clean run to end", 240, 0.5
        )
        answers = ask_aggregator(services[0].address, STREAMS)
        codes = stop_all(services)
    finally:
        tail.close()
        stop_all(services)
    outcome = Outcome.of(*(read_to_end(bootstrap, x) for x in (t.frames, t.analyses, t.faces)))
    return outcome, answers.streams, codes


# -- the faulted run --------------------------------------------------------------------------------
class FaultedRun:
    def __init__(self, bootstrap: str, triton_url: str, name: str, tmp: Path, broker: int) -> None:
        self.bootstrap, self.triton_url, self.tmp, self.broker = bootstrap, triton_url, tmp, broker
        self.t: MeshTopics = create_mesh_topics(bootstrap, f"{name}.fault", partitions=PARTITIONS)
        self.clock = Clock()
        self.services: list[Service] = []
        self.answers = AnswerLog(STREAMS)
        self.figures: dict[str, Any] = {}
        self.tail = Tail(bootstrap, [self.t.frames, self.t.analyses, self.t.faces])
        self.broker_paused = False

    def start(self, kind: str, name: str) -> Service:
        b, t, ms = self.bootstrap, self.t, SESSION_TIMEOUT_MS
        if kind == "ingest":
            service = ingest(name, self.tmp, b, t, session_timeout_ms=ms)
        else:
            make = analyzer if kind == "analyzer" else aggregator
            service = make(name, self.tmp, b, self.triton_url, t, session_timeout_ms=ms)
        self.services.append(service)
        return service

    def live(self, kind: str) -> list[Service]:
        return [s for s in self.services if s.kind == kind and s.alive]

    def split(self, kind: str, topic: str) -> None:
        group = f"{self.t.prefix}.{kind}"
        wait_for(
            lambda: split_between(self.bootstrap, group, topic, 2, PARTITIONS),
            f"two {kind} replicas to split the partitions",
            60,
            0.5,
        )

    def flowing(self) -> bool:
        return ended_streams(self.tail.records(self.t.faces)) != set(STREAMS)

    def frames_of_stream(self, stream: str) -> int:
        return sum(1 for r in self.tail.records(self.t.frames) if r.key == stream.encode())

    # -- the steps -----------------------------------------------------------------------------
    def run(self, base: str) -> dict[str, int | None]:
        self.tail.start()
        try:
            aggs = [self.start("aggregator", f"aggregator-{x}") for x in "ab"]
            anas = [self.start("analyzer", f"analyzer-{x}") for x in "ab"]
            ings = [self.start("ingest", f"ingest-{x}") for x in "ab"]
            for service in [*aggs, *anas, *ings]:
                service.wait_ready()
            self.split("ingest", self.t.sources)
            self.split("analyzer", self.t.frames)
            self.split("aggregator", self.t.analyses)
            self.clock.mark("two replicas of each service ready, groups split")
            start_sources(ings[0].address, specs(base, "slow"))
            self.kill_ingest(ings)
            self.kill_analyzer()
            self.kill_aggregator()
            self.pause_broker()
            wait_for(lambda: not self.flowing(), "every stream to end on the faces topic", 300, 0.5)
            self.clock.mark("every stream ended")
            self.answers.until_all_answer(self.live("aggregator"), "at the end")
            self.figures["final_streams"] = {
                s.name: ask_aggregator(s.address, STREAMS).streams for s in self.live("aggregator")
            }
            return stop_all(self.services)
        finally:
            if self.broker_paused:
                os.kill(self.broker, signal.SIGCONT)
            self.tail.close()
            stop_all(self.services)

    def kill_ingest(self, ings: list[Service]) -> None:
        def owners(via: Service = ings[0]) -> dict[str, str]:
            statuses = list_sources(via.address)
            return {s: statuses[s].owner for s in STREAMS if s in statuses and statuses[s].state in RUNNING}

        wait_for(lambda: len(owners()) == len(STREAMS), "every source to run", 60, 0.25)
        by_owner = owners()
        victim = max(ings, key=lambda s: sum(1 for o in by_owner.values() if o == s.address))
        survivor = next(s for s in ings if s is not victim)
        moved = sorted(s for s, o in by_owner.items() if o == victim.address)
        assert moved, f"no source runs on {victim.name}: {by_owner}"
        wait_for(
            lambda: all(self.frames_of_stream(s) >= 5 for s in moved), "frames of the victim's sources", 60
        )
        t_kill = victim.kill()
        ended_before = [s for s in moved if any(f.end_of_stream for _, f in frames_of(self._frames_of(s)))]
        self.clock.mark(f"SIGKILL {victim.name} (sources {moved})")
        wait_for(
            lambda: all(owners(survivor).get(s) == survivor.address for s in moved),
            f"{survivor.name} to run the sources of {victim.name}",
            60,
            0.25,
        )
        listed_s = round((time.time_ns() - t_kill) / 1e9, 2)
        wait_for(
            lambda: all(first_after(self._frames_of(s), t_kill) is not None for s in moved),
            "frames of the moved sources",
            60,
        )
        self.clock.mark(f"{survivor.name} sends frames of {moved}")
        self.figures["ingest_kill"] = {
            "victim": victim.name,
            "moved_streams": moved,
            "ended_before_kill": ended_before,
            "group_takeover_s": survivor.assigned_after(t_kill, set(range(PARTITIONS))),
            "listed_on_survivor_s": listed_s,
            "camera_resume_s": {s: first_after(self._frames_of(s), t_kill) for s in moved},
        }

    def _frames_of(self, stream: str) -> list[Any]:
        return [r for r in self.tail.records(self.t.frames) if r.key == stream.encode()]

    def kill_analyzer(self) -> None:
        victim, survivor = self.live("analyzer")
        partitions = victim.owned()
        assert partitions, f"{victim.name} owns no partition:\n{victim.tail()}"
        flowing = self.flowing()
        t_kill = victim.kill()
        self.clock.mark(f"SIGKILL {victim.name} (partitions {sorted(partitions)})")
        wait_for(
            lambda: first_after(self.tail.records(self.t.analyses), t_kill, partitions) is not None,
            f"analyses of {victim.name}'s partitions from the survivor",
            90,
            0.2,
        )
        resume = first_after(self.tail.records(self.t.analyses), t_kill, partitions)
        self.clock.mark("analyses of the dead analyzer's partitions flow again")
        self.start("analyzer", f"{victim.name}2").wait_ready()
        self.split("analyzer", self.t.frames)
        self.clock.mark(f"{victim.name}2 started, two analyzers split the partitions")
        self.figures["analyzer_kill"] = {
            "victim": victim.name,
            "partitions": sorted(partitions),
            "streams_flowing_at_kill": flowing,
            "group_takeover_s": survivor.assigned_after(t_kill, partitions),
            "analyses_resume_s": resume,
        }

    def kill_aggregator(self) -> None:
        self.answers.until_all_answer(self.live("aggregator"), "before the aggregator kill")
        victim, survivor = self.live("aggregator")
        partitions = victim.owned()
        assert partitions, f"{victim.name} owns no partition:\n{victim.tail()}"
        flowing = self.flowing()
        t_kill = victim.kill()
        self.clock.mark(f"SIGKILL {victim.name} (partitions {sorted(partitions)})")
        settle = self.answers.until_all_answer(self.live("aggregator"), f"after SIGKILL {victim.name}", 90)
        self.clock.mark("the surviving aggregator answers for every stream")
        faces_resume = first_after(self.tail.records(self.t.faces), t_kill, partitions)
        self.start("aggregator", f"{victim.name}2").wait_ready()
        self.split("aggregator", self.t.analyses)
        self.answers.until_all_answer(self.live("aggregator"), f"after {victim.name}2 joined", 90)
        self.clock.mark(f"{victim.name}2 started, both aggregators answer for every stream")
        self.figures["aggregator_kill"] = {
            "victim": victim.name,
            "partitions": sorted(partitions),
            "streams_flowing_at_kill": flowing,
            "group_takeover_s": survivor.assigned_after(t_kill, partitions),
            "survivor_answers_all_after_s": round(settle, 2),
            "faces_resume_s": faces_resume,
        }

    def pause_broker(self) -> None:
        flowing = self.flowing()
        os.kill(self.broker, signal.SIGSTOP)
        self.broker_paused = True
        self.clock.mark(f"SIGSTOP broker (pid {self.broker})")
        time.sleep(PAUSE_S)
        os.kill(self.broker, signal.SIGCONT)
        self.broker_paused = False
        t_cont = time.time_ns()
        self.clock.mark("SIGCONT broker")
        wait_for(
            lambda: first_after(self.tail.records(self.t.faces), t_cont) is not None or not self.flowing(),
            "faces after the broker pause",
            120,
            0.2,
        )
        self.answers.until_all_answer(self.live("aggregator"), "after the broker pause", 90)
        self.clock.mark("faces flow again after the pause")
        self.figures["broker_pause"] = {
            "paused_s": PAUSE_S,
            "streams_flowing_at_pause": flowing,
            "faces_resume_s": first_after(self.tail.records(self.t.faces), t_cont),
        }


def stream_counters(info: aggregator_pb2.StreamInfo) -> dict[str, int]:
    return {
        "frames": info.frames,
        "faces": info.faces,
        "total_tracks": info.total_tracks,
        "last_seq": info.last_seq,
    }


@pytest.mark.xfail(
    strict=False,
    reason="OPEN (issue 20.7): passed in four runs, but failed in the last fresh-clone CI run: the "
    "faulted run held frames with seqs past the 40-frame clip (cam0 66, cam7 76) and lacked others "
    "(cam7 36), so a moved source was read again under new keys; not yet diagnosed",
)
def test_two_replicas_of_each_survive_a_kill_of_each_and_a_broker_pause(
    runtime: DevSettings,
    kafka_bootstrap: str,
    triton_url: str,
    unique_name: str,
    tmp_path: Path,
    clip_dir: Path,
) -> None:
    pid = broker_pid(runtime)
    started = time.monotonic()
    rate = (clip_dir / f"{CLIP.name}.mp4").stat().st_size / READ_S
    with paced_server(clip_dir, rate) as base:
        clean, clean_streams, clean_codes = clean_run(
            kafka_bootstrap, triton_url, unique_name, tmp_path, base
        )
        clean_s = time.monotonic() - started
        run = FaultedRun(kafka_bootstrap, triton_url, unique_name, tmp_path, pid)
        codes = run.run(base)
    fault = Outcome.of(
        *(read_to_end(kafka_bootstrap, x) for x in (run.t.frames, run.t.analyses, run.t.faces))
    )

    # Compare every face's ids with the clean run's.
    mismatched = {
        key: {"clean": sorted(clean.ids.get(key, ())), "faulted": sorted(got)}
        for key, got in fault.ids.items()
        if got != clean.ids.get(key)
    }
    missing_faces = sorted(set(clean.observations) - set(fault.observations))
    final = run.figures.pop("final_streams")
    counters = (
        {
            name: {
                s: stream_counters(i)
                for s, i in infos.items()
                if stream_counters(i) != stream_counters(clean_streams[s])
            }
            for name, infos in final.items()
        }
        if len(clean_streams) == len(STREAMS)
        else {"clean run": "GetStream did not answer at its end"}
    )
    figures = {
        "streams": len(STREAMS),
        "kills": {"ingest": 1, "analyzer": 1, "aggregator": 1, "broker_pauses": 1},
        "frames": {
            "distinct": len(fault.frames),
            "records": sum(fault.frames.values()),
            "clean": len(clean.frames),
        },
        "lost": {
            "frames_without_analysis": len(fault.frames_without_analysis()),
            "analyses_without_observations": len(fault.analyses_without_observations()),
            "frames_missing_vs_clean": len(set(clean.frames) - set(fault.frames)),
            "faces_missing_vs_clean": len(missing_faces),
        },
        "duplicated": {
            "frames": Outcome.duplicates(fault.frames),
            "analyses": Outcome.duplicates(fault.analyses),
            "observations": Outcome.duplicates(fault.observations),
        },
        "disagreeing_copies": {k: len(v) for k, v in fault.inconsistent_copies().items()},
        "faces_compared": len(clean.ids),
        "ids_mismatched_vs_clean": len(mismatched),
        "stream_counters_differing_vs_clean": counters,
        **run.figures,
        "grpc": run.answers.rounds,
        "timeline": run.clock.events,
        "exit_codes": {**clean_codes, **codes},
        "clean_run_s": round(clean_s, 1),
        "test_s": round(time.monotonic() - started, 1),
    }
    report = json.dumps(figures, indent=1, default=str)
    (tmp_path / "multi_replica_figures.json").write_text(report + "\n")
    print(f"\nmulti-replica fault suite ({tmp_path / 'multi_replica_figures.json'}):\n{report}")

    assert clean.frames_without_analysis() == [] and clean.ended == set(STREAMS)
    assert Outcome.duplicates(clean.frames) == 0, "the clean run must read each file once"
    assert set(fault.frames) == set(clean.frames), "the faulted run's frames are the clean run's"
    assert fault.frames_without_analysis() == [], "every frame has an analysis"
    assert fault.analyses_without_observations() == [], "every analysis has its observations"
    assert fault.ended == set(STREAMS)
    assert missing_faces == [], f"faces of the clean run missing: {missing_faces[:10]}"
    assert mismatched == {}, (
        f"{len(mismatched)} faces with other ids than the clean run: {dict(list(mismatched.items())[:10])}"
    )
    assert counters == {name: {} for name in final}, counters
    # Preconditions of a fault suite: each fault hit streams in flight (the pacing makes it so).
    assert figures["ingest_kill"]["ended_before_kill"] == [], "the ingest kill came after its files ended"
    assert figures["analyzer_kill"]["streams_flowing_at_kill"], "the analyzer kill came after the streams"
    assert figures["aggregator_kill"]["streams_flowing_at_kill"], "the aggregator kill came after the streams"
    assert figures["broker_pause"]["streams_flowing_at_pause"], (
        "the broker pause came after every stream ended"
    )
    assert {n: c for n, c in figures["exit_codes"].items() if c != 0} == {}, (
        "SIGTERM must end every survivor with 0"
    )


# A new owner used to restore a partition's checkpoints only when the partition's first record
# after the assignment arrived, so the ended or idle streams of a moved partition answered NOT_FOUND
# on every replica (found by this suite; the processor now restores on assignment).
def test_an_ended_stream_stays_answerable_after_its_aggregator_is_killed(
    kafka_bootstrap: str, unique_name: str, triton_url: str, tmp_path: Path
) -> None:
    t = create_mesh_topics(kafka_bootstrap, unique_name, partitions=2)
    streams = spread_streams(2, 2)
    group, services = f"{t.prefix}.aggregator", []
    try:
        a = aggregator(
            "aggregator-a", tmp_path, kafka_bootstrap, triton_url, t, session_timeout_ms=SESSION_TIMEOUT_MS
        )
        services.append(a.wait_ready())
        eos = [analysis(s, 10, [], eos=True) for s in streams]
        produce(kafka_bootstrap, t.analyses, [m for s in streams for m in walking(s, "ann", range(10))] + eos)
        wait_for(
            lambda: ended_streams(read_to_end(kafka_bootstrap, t.faces)) == set(streams),
            "both streams to end",
        )
        assert ask_aggregator(a.address, streams).ok  # the streams exist, ended, on their one replica
        checkpointed = {r.key for r in read_to_end(kafka_bootstrap, t.state)}
        assert checkpointed >= {s.encode() for s in streams}  # and their state is in the state topic
        b = aggregator(
            "aggregator-b", tmp_path, kafka_bootstrap, triton_url, t, session_timeout_ms=SESSION_TIMEOUT_MS
        )
        services.append(b.wait_ready())
        wait_for(lambda: split_between(kafka_bootstrap, group, t.analyses, 2, 2), "the two replicas to split")
        a.kill()
        wait_for(
            lambda: (
                [set(m.partitions) for m in membership(kafka_bootstrap, group, t.analyses).members]
                == [{0, 1}]
            ),
            "the survivor to own both partitions",
        )
        deadline = time.monotonic() + 2 * SESSION_TIMEOUT_MS / 1000
        answers = ask_aggregator(b.address, streams)
        while not answers.ok and time.monotonic() < deadline:
            time.sleep(0.5)
            answers = ask_aggregator(b.address, streams)
        assert answers.ok, answers.error  # today: GetStream ...: NOT_FOUND: ... not owned by this replica
    finally:
        stop_all(services)
