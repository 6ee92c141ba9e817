"""``faceflow run SOURCE... --out DIR``: the whole mesh on some sources, and its outputs.

What a run does, in order:

1. starts whatever of the local runtime is missing (Kafka, Triton: ``faceflow dev``), or uses the
   configured external ones;
2. creates the run's own topics (``faceflow.run.<id>.frames|analyses|faces|state|dlq``), so runs
   never mix; the gallery (``faceflow.identities.v1``) is shared, so enrolments and anonymous
   identities persist from run to run;
3. starts the three services as real processes (``faceflow aggregator``, ``faceflow analyzer``,
   ``faceflow ingest``; their logs in ``DIR/logs``), enrolls ``--enroll NAME=IMAGE`` first;
4. feeds the sources (files to their end; live URLs until ``--duration`` or Ctrl-C), showing a
   progress bar (frames analyzed of total, fps, faces), and waits for the results of the last frame;
5. writes ``faces.jsonl`` (as events arrive), an annotated video per stream, ``report.html`` and
   ``summary.json``, prints a short summary, stops what it started and deletes its topics.

Ctrl-C stops cleanly and still writes what it has. Every failure is one clear line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from faceflow import topics
from faceflow.errors import FaceflowError
from faceflow.kafka import admin
from faceflow.run.collect import Collector
from faceflow.run.democlip import GroundTruth, GroundTruthError
from faceflow.run.events_json import JsonlWriter
from faceflow.run.outputs import write_outputs
from faceflow.runtime.settings import DevSettings
from faceflow.runtime.stack import DevStack, require_ready
from faceflow.streams import validate_stream_id

logger = logging.getLogger(__name__)

FACEFLOW = str(Path(sys.executable).parent / "faceflow")
URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class RunError(FaceflowError):
    """The run cannot go on (a source, a service, the runtime); the message says what to do."""


@dataclass(frozen=True)
class RunSource:
    stream_id: str
    uri: str
    live: bool
    expected_frames: int | None
    ground_truth: Path | None = None
    #: This stream's sampling rate when it differs from the run's (``RunOptions.fps``); None: the run's.
    fps: float | None = None

    def sampling_fps(self, run_fps: float) -> float:
        """Frames per second this stream is sampled at (0: every frame)."""
        return run_fps if self.fps is None else self.fps


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    sources: tuple[RunSource, ...]
    out_dir: Path
    enroll: tuple[tuple[str, Path], ...] = ()
    duration_s: float | None = None
    fps: float = 5.0
    schedule: str = "adaptive"
    blur: bool = False
    parsing_overlay: bool = False
    include_embeddings: bool = False
    include_parsing_masks: bool = False
    video: bool = True
    keep_topics: bool = False
    keep_runtime: bool = False
    progress: bool = True
    trace_file: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)


def _duration(path: Path) -> float | None:
    import av  # noqa: PLC0415 - only to size the progress bar

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration:
                return container.duration / 1e6
    except Exception:  # noqa: BLE001 - unknown length: the bar counts without a total
        return None
    return None


def _expected_frames(path: Path, fps: float) -> int | None:
    seconds = _duration(path) if path.is_file() else None
    return None if seconds is None else max(1, int(seconds * fps + 0.5) if fps > 0 else int(seconds * 25))


def with_stream_fps(sources: Sequence[RunSource], fps: Mapping[str, float]) -> tuple[RunSource, ...]:
    """``sources`` with their own sampling rates (stream id -> frames per second, >= 0).

    Raises:
        RunError: an unknown stream id or a rate < 0.
    """
    known = {source.stream_id for source in sources}
    for stream_id, value in fps.items():
        if stream_id not in known:
            raise RunError(f"fps for stream {stream_id!r}: no such stream; expected one of {sorted(known)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise RunError(f"fps for stream {stream_id!r}: expected a number >= 0, got {value!r}")
    out = []
    for source in sources:
        rate = fps.get(source.stream_id)
        if rate is None:
            out.append(source)
            continue
        frames = None if source.live else _expected_frames(Path(source.uri), float(rate))
        out.append(replace(source, fps=float(rate), expected_frames=frames))
    return tuple(out)


def parse_sources(
    values: Sequence[str], *, fps: float, ground_truth: Path | None = None
) -> tuple[RunSource, ...]:
    """``[ID=]PATH_OR_URL`` arguments -> sources (an id defaults to the file's stem).

    Raises:
        RunError: a missing file, an unsupported URL, a bad or repeated stream id.
    """
    out: list[RunSource] = []
    for value in values:
        stream_id, sep, uri = value.partition("=")
        if not sep or URL_RE.match(value):
            stream_id, uri = "", value
        if uri.lower().startswith("file://"):
            uri = unquote(urlsplit(uri).path)  # a local file, finite: not a live URL
        if URL_RE.match(uri):
            from faceflow.ingest.uris import URL_SCHEMES, is_supported_scheme, url_scheme  # noqa: PLC0415

            scheme = url_scheme(uri) or ""
            if not is_supported_scheme(scheme):
                raise RunError(
                    f"{uri}: unsupported URL scheme {scheme!r}; expected one of {sorted(URL_SCHEMES)}"
                )
            stream_id = (
                stream_id
                or re.sub(r"[^A-Za-z0-9._-]+", "-", uri.split("://", 1)[1]).strip("-.")[:64]
                or "live"
            )
            out.append(RunSource(stream_id, uri, live=True, expected_frames=None))
            continue
        path = Path(uri).expanduser()
        if not path.exists():
            raise RunError(f"{uri}: no such file or folder")
        stream_id = stream_id or re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem)[:64] or "video"
        frames = _expected_frames(path, fps)
        truth = ground_truth
        if truth is None:
            candidate = path.with_name(f"{path.stem}.ground_truth.json")
            truth = candidate if candidate.exists() else None
        out.append(
            RunSource(stream_id, str(path.absolute()), live=False, expected_frames=frames, ground_truth=truth)
        )
    seen: set[str] = set()
    for source in out:
        try:
            validate_stream_id(source.stream_id)
        except ValueError as exc:
            raise RunError(f"{source.uri}: {exc}; name it with ID={source.uri}") from None
        if source.stream_id in seen:
            raise RunError(f"stream id {source.stream_id!r} is used twice; name the sources with ID=PATH")
        seen.add(source.stream_id)
    if not out:
        raise RunError("expected at least one source (a video file, a folder of images or a URL)")
    return tuple(out)


def assign_ground_truths(sources: Sequence[RunSource], values: Sequence[str]) -> tuple[RunSource, ...]:
    """``--ground-truth [ID=]FILE`` values applied to ``sources``: stream ID is scored against FILE.

    A bare FILE (no ``=``, or an existing file whose name holds one) is the ground truth of the only
    stream. Every file is read and validated now, before anything starts. Sources not named keep
    the ground truth they had (a video's ``<name>.ground_truth.json`` beside it).

    Raises:
        RunError: an unknown stream id, a stream named twice, a bare FILE with several streams, or
            a file that is missing, unreadable or not a ground truth.
    """
    ids = [source.stream_id for source in sources]
    shown = ", ".join(ids)
    chosen: dict[str, Path] = {}
    for value in values:
        stream_id, sep, path = value.partition("=")
        if not sep or Path(value).expanduser().is_file():
            if len(ids) != 1:
                raise RunError(
                    f"--ground-truth {value}: expected ID=FILE with {len(ids)} streams (the streams: {shown})"
                )
            stream_id, path = ids[0], value
        if stream_id not in ids:
            raise RunError(
                f"--ground-truth {value}: no stream {stream_id!r} in this run; expected ID=FILE with ID one "
                f"of: {shown}"
            )
        if stream_id in chosen:
            raise RunError(
                f"--ground-truth {value}: stream {stream_id!r} is given a ground truth twice "
                f"(first {chosen[stream_id]})"
            )
        file = Path(path).expanduser()
        try:
            GroundTruth.load(file)
        except (GroundTruthError, ValueError, TypeError) as exc:
            raise RunError(f"--ground-truth {value}: {exc}") from None
        chosen[stream_id] = file.absolute()
    return tuple(replace(s, ground_truth=chosen.get(s.stream_id, s.ground_truth)) for s in sources)


class ServiceProcess:
    """One service of the mesh as a real process, its output in a log file (this run's only: an
    earlier run's log in the same place is replaced, so :meth:`wait_for` never matches its lines)."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        self._file = log.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._file, stderr=subprocess.STDOUT, env=env)

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        regex = re.compile(pattern)
        while True:
            match = regex.search(self.text())
            if match:
                return match
            if self.proc.poll() is not None:
                raise RunError(
                    f"{self.name} exited with {self.proc.returncode} while starting: {self.last_error()} "
                    f"(log {self.log})"
                )
            if time.monotonic() > deadline:
                raise RunError(f"{self.name} did not start within {timeout_s:.0f} s (log {self.log})")
            time.sleep(0.1)

    def last_error(self) -> str:
        for line in reversed(self.text().splitlines()):
            if "error" in line.lower():
                return line.strip()[-300:]
        return "no error line in its log"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._file.close()
        return int(self.proc.returncode or 0)


class Run:
    """One ``faceflow run`` (see the module docstring)."""

    def __init__(self, options: RunOptions, *, settings: DevSettings | None = None, say: Any = print) -> None:
        self.options = options
        self.settings = settings or DevSettings.from_env()
        self.say = say
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
        self.topic_prefix = f"faceflow.run.{self.run_id}"
        self.topics = {kind: spec.name for kind, spec in topics.run_topics(self.topic_prefix).items()}
        self.services: list[ServiceProcess] = []
        self.started_runtime = False
        #: From feeding the first frame to the results of the last (the mesh's own time, no start-up).
        self.analysis_seconds = 0.0

    # -- the run -------------------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        o = self.options
        o.out_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        stack = DevStack(self.settings)
        before = {s.name: s.ready for s in stack.status()}
        self.say("== 1/4 runtime: Kafka and Triton")
        require_ready(stack.up())
        self.started_runtime = not all(before.values())
        bootstrap = self.settings.kafka_bootstrap
        collector: Collector | None = None
        interrupted = False
        jsonl = JsonlWriter(o.out_dir / "faces.jsonl")
        try:
            self._create_topics(bootstrap)
            self.say(
                "== 2/4 services: aggregator, analyzer, ingest (logs in " + str(o.out_dir / "logs") + ")"
            )
            aggregator_url = self._start_mesh(bootstrap)
            for name, image in o.enroll:
                self._enroll(aggregator_url, name, image)
            spill = o.out_dir / ".frames"
            shutil.rmtree(spill, ignore_errors=True)
            collector = Collector(
                bootstrap,
                frames_topic=self.topics["frames"],
                analyses_topic=self.topics["analyses"],
                spill_dir=spill,
                jsonl=jsonl,
                keep_frames=o.video,
                include_parsing_mask=o.include_parsing_masks or o.blur or o.parsing_overlay,
                include_embedding=o.include_embeddings,
            )
            collector.start(aggregator_url, [source.stream_id for source in o.sources])
            self._start_ingest(bootstrap)
            self.say("== 3/4 analyzing")
            feeding = time.monotonic()
            try:
                self._watch(collector, started)
            except KeyboardInterrupt:
                interrupted = True
                self.say("\ninterrupted: stopping and writing what there is")
            self.analysis_seconds = time.monotonic() - feeding
        finally:
            if collector is not None:
                deadline = time.monotonic() + 10
                while collector.idle_for() < 1.0 and time.monotonic() < deadline:
                    time.sleep(0.1)  # the last events of the last frames
                collector.stop()
            for service in reversed(self.services):
                code = service.stop()
                if code not in (0, -signal.SIGTERM):
                    logger.warning("%s exited with %d (log %s)", service.name, code, service.log)
            jsonl.close()
        assert collector is not None
        self.say("== 4/4 outputs")
        summary = write_outputs(
            self, collector.data, wall_seconds=time.monotonic() - started, interrupted=interrupted
        )
        self._cleanup(bootstrap, stack)
        return summary

    def _create_topics(self, bootstrap: str) -> None:
        """The run's own topics and the shared gallery, as ``faceflow topics create`` makes them."""
        admin.create_run_topics(bootstrap, self.topic_prefix)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.options.extra_env)
        env.pop("FACEFLOW_TRACE_FILE", None)
        env.pop("FACEFLOW_READY_FILE", None)  # one file per service: three would overwrite each other
        if self.options.trace_file is not None:
            env["FACEFLOW_TRACE_FILE"] = str(self.options.trace_file)
        return env

    def _spawn(self, name: str, *args: str) -> ServiceProcess:
        argv = [FACEFLOW, "--log-level", "INFO", name, *args]
        service = ServiceProcess(name, argv, self.options.out_dir / "logs" / f"{name}.log", self._env())
        self.services.append(service)
        return service

    def _start_mesh(self, bootstrap: str) -> str:
        t = self.topics
        common = ("--kafka-bootstrap", bootstrap, "--grpc-port", "0", "--metrics-port", "0")
        group = f"faceflow-run-{self.run_id}"
        aggregator = self._spawn(
            "aggregator",
            *common,
            "--triton-url",
            self.settings.triton_grpc_url,
            "--group-id",
            f"{group}-aggregator",
            "--analyses-topic",
            t["analyses"],
            "--faces-topic",
            t["faces"],
            "--state-topic",
            t["state"],
            "--dlq-topic",
            t["dlq"],
            *(("--publish-embeddings",) if self.options.include_embeddings else ()),
        )
        analyzer = self._spawn(
            "analyzer",
            *common,
            "--triton-url",
            self.settings.triton_grpc_url,
            "--group-id",
            f"{group}-analyzer",
            "--frames-topic",
            t["frames"],
            "--analyses-topic",
            t["analyses"],
            "--dlq-topic",
            t["dlq"],
            "--schedule",
            self.options.schedule,
        )
        match = aggregator.wait_for(r"faceflow aggregator: .*gRPC ([\d.]+:\d+);", 120)
        aggregator.wait_for(r"aggregator: assigned", 60)
        analyzer.wait_for(r"analyzer: assigned", 120)
        return match.group(1)

    def _enroll(self, url: str, name: str, image: Path) -> None:
        import grpc  # noqa: PLC0415

        from faceflow.service.security import channel_for  # noqa: PLC0415
        from faceflow.v1 import aggregator_pb2, aggregator_pb2_grpc, identity_pb2  # noqa: PLC0415

        try:
            data = image.read_bytes()
        except OSError as exc:
            raise RunError(f"--enroll {name}={image}: cannot read the photo: {exc.strerror or exc}") from exc
        with channel_for(url, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]) as channel:
            stub = aggregator_pb2_grpc.AggregatorStub(channel)
            try:
                # the gallery outlives runs: enrolling NAME again adds the photo to the NAME enrolled
                # before (a repeat adds nothing new), instead of a second identity of the same name
                listed = stub.ListIdentities(aggregator_pb2.ListIdentitiesRequest(), timeout=60)
                earlier = sorted(
                    i.identity_id
                    for i in listed.identities
                    if i.name == name and i.kind == identity_pb2.IDENTITY_KIND_ENROLLED
                )
                request = aggregator_pb2.EnrollIdentityRequest(
                    name=name, images=[data], identity_id=earlier[0] if earlier else ""
                )
                reply = stub.EnrollIdentity(request, timeout=180)
            except grpc.RpcError as exc:
                raise RunError(f"--enroll {name}={image}: {exc.details()}") from None
        how = "kept" if earlier else "enrolled"
        self.say(f"   {how} {name} as {reply.identity.identity_id} from {image.name}")

    def _start_ingest(self, bootstrap: str) -> None:
        o = self.options
        args = ["--kafka-bootstrap", bootstrap, "--topic", self.topics["frames"], "--grpc-port", "0"]
        args += ["--metrics-port", "0", "--fps", f"{o.fps:g}", "--seq-start", "zero"]
        own_rate = []
        for source in o.sources:
            if source.fps is None:
                args += ["--source", f"{source.stream_id}={source.uri}"]
            else:
                own_rate.append({"stream_id": source.stream_id, "uri": source.uri, "fps": source.fps})
        if own_rate:  # a stream sampled at its own rate: a sources file (JSON is YAML) says so
            listing = o.out_dir / "logs" / "ingest-sources.yaml"
            listing.parent.mkdir(parents=True, exist_ok=True)
            listing.write_text(json.dumps({"sources": own_rate}, indent=1) + "\n")
            args += ["--sources-file", str(listing)]
        if all(not s.live for s in o.sources):
            args.append("--until-done")
        self._spawn("ingest", *args).wait_for(r"faceflow ingest: ", 60)

    def _watch(self, collector: Collector, started: float) -> None:
        from tqdm import tqdm  # noqa: PLC0415

        o = self.options
        total = (
            sum(s.expected_frames or 0 for s in o.sources)
            if all(s.expected_frames for s in o.sources)
            else None
        )
        deadline = None if o.duration_s is None else time.monotonic() + o.duration_s
        interval = 0.5 if sys.stderr.isatty() else 10.0  # a log file gets a line every 10 s, not a flood
        shown = 0
        with tqdm(
            total=total,
            unit="frame",
            disable=not o.progress,
            dynamic_ncols=True,
            desc="frames",
            mininterval=interval,
        ) as bar:
            while True:
                with collector.data.lock:
                    streams = {s.stream_id: collector.data.streams[s.stream_id] for s in o.sources}
                    done = sum(p.frames for p in streams.values())
                    faces = sum(p.faces for p in streams.values())
                    random_init = collector.data.random_init
                    ended = all(p.ended for p in streams.values())
                elapsed = max(1e-6, time.monotonic() - started)
                postfix = {"fps": f"{done / elapsed:.1f}", "faces": faces}
                if random_init:
                    postfix["face model"] = "RANDOM-INIT"
                bar.set_postfix(postfix, refresh=False)
                target = done if total is None else min(done, total)
                if target > shown:
                    bar.update(target - shown)
                    shown = target
                if ended:
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    self.say("\nduration reached: stopping the sources")
                    self._drain(collector)
                    return
                for service in self.services:
                    if not service.alive():
                        if service.name == "ingest" and service.proc.returncode == 0:
                            continue
                        raise RunError(
                            f"{service.name} stopped (exit {service.proc.returncode}): "
                            f"{service.last_error()} (log {service.log})"
                        )
                time.sleep(0.25)

    def _drain(self, collector: Collector, quiet_s: float = 5.0) -> None:
        """Stop ingest, then wait until no new analysis has arrived for ``quiet_s``."""
        for service in self.services:
            if service.name == "ingest":
                service.stop()
        last, changed = -1, time.monotonic()
        while time.monotonic() - changed < quiet_s:
            with collector.data.lock:
                now = sum(p.frames for p in collector.data.streams.values())
            if now != last:
                last, changed = now, time.monotonic()
            time.sleep(0.2)

    def _cleanup(self, bootstrap: str, stack: DevStack) -> None:
        if not self.options.keep_topics:
            with suppress(Exception):
                admin.delete_topics(bootstrap, list(self.topics.values()))
        if self.started_runtime and not self.options.keep_runtime:
            stack.down(quiet=True)
            self.say("   stopped the local runtime this run started (keep it with --keep-runtime)")
