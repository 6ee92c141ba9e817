"""End-to-end benchmark (issue 17): ``faceflow run`` on a fixed clip vs the same models in one process.

**Mesh**: the real command, ``faceflow run demo=CLIP --fps 5 --schedule adaptive`` as a child
process (ingest, analyzer and aggregator as its own child processes, the broker and Triton of a
runtime started for the bench beforehand, so the run finds it warm), with the demo's enrolment
(``astronaut``) and ground truth. Its face events are read back from ``faces.jsonl`` as they are
written. **Steady state**: from the first event of frame ``--warmup-frames`` (seq) to the
``stream_ended`` event, frames per second = seqs covered / seconds between; everything before
(Python start-up, topics, three services, enrolment, the first frames' batches) is start-up,
reported apart as **time to first event** (from starting ``faceflow run`` to its first line of
``faces.jsonl``) with the runtime warm, plus the runtime's own cold start.

**Baseline**, in this process, after the mesh: the analyzer's own backend
(``faceflow.analyzer.service.make_backend`` with the analyzer's default config: the same scheduler
and policy, the same micro-batches of ``max_batch_frames``) over
:class:`e2e_baseline.InProcessModels`: the served repository's ONNX files and config parameters
through the library stages the Triton python models wrap, called directly (no Kafka, no gRPC, no
Triton). Its input is the exact JPEGs ingest produced in the mesh run (read back from the run's
frames topic), so detections and schedule decisions are the same (checked: analyzed faces of both
are printed); one JPEG decode per frame; plus one PyAV decode of the clip (the video decode a
single process needs, timed apart). Why not through Triton: the issue asks for the limit of this
machine, and a single process needs no server; ``bench/analyzer.py`` already measures the Kafka
hop against direct Triton calls.

**Ratio** = mesh steady-state frames/s / baseline frames/s (over the same frames: seq >=
``--warmup-frames``). Also printed: per-stage time (mesh: Triton's per-model compute time from its
metrics endpoint, the analyzer's Triton calls and queue waits from the analyses topic, ingest and
aggregation spans from the run's trace file; baseline: decode, detect, crop, FaceXFormer, embed,
schedule), CPU share of every process (``/proc/<pid>/stat`` over the steady state: the run, its
services, Triton and each python-backend stub, the broker), IDF1 and identity accuracy of the run.

    .venv/bin/python bench/e2e.py --quick     # one round (< 3 min on 2 idle cores, plus the runtime start)
    .venv/bin/python bench/e2e.py             # 2 rounds, the median ratio

Writes bench/results/e2e.json; the last line printed is ``e2e: ratio=<x>``. Kafka and Triton are
``$FACEFLOW_KAFKA_BOOTSTRAP`` / ``$FACEFLOW_TRITON_URL`` if set (then Triton's metrics and CPU are
not measured), else a private runtime serving ``$FACEFLOW_TRITON_REPOSITORY`` or
``build/triton_repo/cpu`` (``faceflow models build``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import av
import benchlib
from e2e_baseline import InProcessModels
from kafka import TopicPartition

from faceflow.analyzer.backends import FrameInput
from faceflow.analyzer.config import AnalyzerConfig
from faceflow.analyzer.service import make_backend
from faceflow.kafka import admin
from faceflow.kafka.clients import make_consumer
from faceflow.run.democlip import DEMO, generate_clip
from faceflow.runtime.settings import DevSettings
from faceflow.runtime.stack import DevStack
from faceflow.topics import run_topics
from faceflow.v1 import analysis_pb2, frame_pb2

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "e2e.json"
FACEFLOW = str(Path(sys.executable).parent / "faceflow")
CLK_TCK = os.sysconf("SC_CLK_TCK")
STREAM = "demo"


# -- processes and their CPU -------------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, utime + stime ticks) of ``pid``, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return int(fields[1]), int(fields[11]) + int(fields[12])


def _label(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    words = [a.decode(errors="replace") for a in argv if a]
    if not words:
        return f"pid {pid}"
    exe = Path(words[0]).name
    if "triton_python_backend_stub" in exe:
        model = next((Path(w).parents[1].name for w in words[1:] if w.endswith("model.py")), "?")
        return f"triton stub {model}"
    if exe.startswith("java"):
        return "kafka broker" if any("kafka" in w for w in words) else "java"
    if exe == "tritonserver":
        return "tritonserver"
    if "faceflow" in exe or (len(words) > 1 and "faceflow" in Path(words[1]).name):
        service = next((w for w in words[1:] if w in ("run", "ingest", "analyzer", "aggregator")), "")
        return f"faceflow {service}".strip()
    return exe


def process_tree(roots: list[int]) -> dict[int, str]:
    """``roots`` and all their descendants, labelled."""
    parents: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                parents[st[0]].append(int(entry.name))
    out: dict[int, str] = {}
    todo = [r for r in roots if r]
    while todo:
        pid = todo.pop()
        if pid in out or _stat(pid) is None:
            continue
        out[pid] = _label(pid)
        todo.extend(parents.get(pid, []))
    return out


def cpu_ticks(pids: dict[int, str]) -> dict[int, int]:
    return {pid: st[1] for pid in pids if (st := _stat(pid)) is not None}


def cpu_shares(
    pids: dict[int, str], before: dict[int, int], after: dict[int, int], wall: float
) -> dict[str, float]:
    """Cores used by each process over ``wall`` seconds (1.0 = one core busy), by label; the
    bench's own process is left out (it only reads ``faces.jsonl`` meanwhile)."""
    shares: dict[str, float] = defaultdict(float)
    for pid, label in pids.items():
        if pid in before and pid in after and pid != os.getpid():
            shares[label] += (after[pid] - before[pid]) / CLK_TCK / wall
    return dict(sorted(((k, round(v, 3)) for k, v in shares.items()), key=lambda kv: -kv[1]))


# -- Triton metrics ----------------------------------------------------------------------------------
_METRIC = re.compile(r'^(nv_inference_[a-z_]+)\{model="([^"]+)",version="[^"]*"\} ([0-9.e+]+)$')


def triton_metrics(port: int | None) -> Metrics:
    if port is None:
        return {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m:
            out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


Metrics = dict[tuple[str, str], float]


def triton_stages(before: Metrics, after: Metrics) -> dict[str, dict[str, float]]:
    """Per model over the run: requests, executions, compute and queue time (ms, summed and per request)."""
    models = sorted({model for _, model in after})
    out = {}
    for model in models:

        def delta(name: str, model: str = model) -> float:
            return float(after.get((name, model), 0.0) - before.get((name, model), 0.0))

        requests = delta("nv_inference_request_success")
        if not requests:
            continue
        compute = delta("nv_inference_compute_infer_duration_us") / 1e3
        queue = delta("nv_inference_queue_duration_us") / 1e3
        out[model] = {
            "requests": int(requests),
            "compute_ms": round(compute, 1),
            "compute_ms_per_request": round(compute / requests, 1),
            "queue_ms_per_request": round(queue / requests, 1),
        }
    return out


# -- the mesh run ------------------------------------------------------------------------------------
def runtime_env(settings: DevSettings) -> dict[str, str]:
    """The environment under which ``faceflow run`` finds the bench's runtime (already up: warm)."""
    env = dict(
        os.environ,
        FACEFLOW_HOME=str(settings.home),
        FACEFLOW_CACHE=str(settings.cache),
        FACEFLOW_DEV_KAFKA_PORT=str(settings.kafka_port),
        FACEFLOW_DEV_CONTROLLER_PORT=str(settings.controller_port),
        FACEFLOW_DEV_TRITON_HTTP_PORT=str(settings.triton_http_port),
        FACEFLOW_DEV_TRITON_GRPC_PORT=str(settings.triton_grpc_port),
        FACEFLOW_DEV_TRITON_METRICS_PORT=str(settings.triton_metrics_port),
        FACEFLOW_TRITON_REPOSITORY=str(settings.model_repository),
        PYTHONUNBUFFERED="1",
    )
    for name, value in (("FACEFLOW_KAFKA_BOOTSTRAP", settings.external_kafka),
                        ("FACEFLOW_TRITON_URL", settings.external_triton)):  # fmt: skip
        if value:
            env[name] = value
    return env


def runtime_roots(settings: DevSettings) -> list[int]:
    return [st.pid for st in DevStack(settings).status() if st.pid]


def mesh_run(settings: DevSettings, clip: Any, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One ``faceflow run``: steady-state frames/s, time to first event, CPU shares, stage times."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*"):
        if old.is_file():
            old.unlink()
    trace = out / "trace.jsonl"
    jsonl = out / "faces.jsonl"
    photo = clip.enroll["astronaut"]
    argv = [
        FACEFLOW, "run", f"{STREAM}={clip.video}", "--out", str(out), "--fps", f"{args.fps:g}",
        "--schedule", args.schedule, "--no-video", "--keep-topics", "--keep-runtime", "--quiet",
        "--trace-file", str(trace), "--ground-truth", str(clip.ground_truth),
        "--enroll", f"astronaut={photo}",
    ]  # fmt: skip
    metrics_port = None if settings.external_triton else settings.triton_metrics_port
    metrics_before = triton_metrics(metrics_port)
    roots = runtime_roots(settings)
    log = (out / "run.log").open("wb")
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=runtime_env(settings))
    first_event: float | None = None
    seq_seen: dict[int, float] = {}
    ended_at: float | None = None
    steady_from: float | None = None
    pids: dict[int, str] = {}
    ticks_before: dict[int, int] = {}
    ticks_after: dict[int, int] = {}
    offset, pending = 0, b""
    try:
        while True:
            now = time.monotonic()
            if jsonl.exists():
                with jsonl.open("rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                offset += len(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    first_event = first_event if first_event is not None else now - started
                    if event["type"] == "observation":
                        seq_seen.setdefault(int(event["seq"]), now)
                    elif event["type"] == "stream_ended":
                        ended_at = now
                    if steady_from is None and event.get("seq", -1) >= args.warmup_frames:
                        steady_from = now
                        pids = process_tree([proc.pid, os.getpid(), *roots])
                        ticks_before = cpu_ticks(pids)
            if ended_at is not None and not ticks_after:
                ticks_after = cpu_ticks(pids)
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    except BaseException:
        proc.terminate()
        proc.wait(30)
        raise
    finally:
        log.close()
    if proc.returncode != 0:
        tail = (out / "run.log").read_text(errors="replace").splitlines()[-10:]
        raise RuntimeError(f"faceflow run exited with {proc.returncode}:\n" + "\n".join(tail))
    if steady_from is None or ended_at is None:
        raise RuntimeError(f"faceflow run ended without steady state (events seen for {len(seq_seen)} seqs)")
    summary = json.loads((out / "summary.json").read_text())
    frames = int(summary["counts"]["frames"])
    steady_s = ended_at - steady_from
    steady_frames = frames - args.warmup_frames
    metrics_after = triton_metrics(metrics_port)
    topics = {k: s.name for k, s in run_topics(f"faceflow.run.{summary['run']['id']}").items()}
    frames_in, analyses = read_topics(settings.kafka_bootstrap, topics)
    scores = summary.get("scores") or {}
    cores = cpu_shares(pids, ticks_before, ticks_after, steady_s)
    result = {
        "frames": frames,
        "faces": int(summary["counts"]["faces"]),
        "analyzed_faces": sum(a.timings.faces_analyzed for a in analyses),
        "time_to_first_event_s": round(first_event or float("nan"), 2),
        "wall_s": round(time.monotonic() - started, 2),
        "analysis_seconds": summary["run"]["analysis_seconds"],
        "frames_per_second_whole_run": round(frames / summary["run"]["analysis_seconds"], 3),
        "steady_frames": steady_frames,
        "steady_seconds": round(steady_s, 2),
        "frames_per_second": steady_frames / steady_s,
        "idf1": scores.get("idf1"),
        "identity_accuracy": scores.get("identity_accuracy"),
        "cpu_cores": cores,
        "cpu_cores_total": round(sum(cores.values()), 3),
        "cpu_seconds_per_frame": round(sum(cores.values()) * steady_s / steady_frames, 3),
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "triton": triton_stages(metrics_before, metrics_after),
        "analyzer": analyzer_stages(analyses),
        "spans": span_stages(trace),
    }
    admin.delete_topics(settings.kafka_bootstrap, list(topics.values()))
    result["_frames"] = frames_in
    return result


def read_topics(
    bootstrap: str, topics: dict[str, str]
) -> tuple[list[frame_pb2.Frame], list[analysis_pb2.FrameAnalysis]]:
    """The run's frames (what ingest produced) and analyses, every record from the beginning."""

    def read(topic: str, parse: Any) -> list[Any]:
        consumer = make_consumer(bootstrap, group_id=None, client_id="bench-e2e")
        try:
            parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
            consumer.assign(parts)
            consumer.seek_to_beginning(*parts)
            ends = consumer.end_offsets(parts)
            records: list[Any] = []
            deadline = time.monotonic() + 60
            while any(consumer.position(p) < ends[p] for p in parts) and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(parse(r.value) for r in batch if r.value)
            return records
        finally:
            consumer.close()

    frames = [f for f in read(topics["frames"], frame_pb2.Frame.FromString) if not f.end_of_stream]
    analyses = [
        a for a in read(topics["analyses"], analysis_pb2.FrameAnalysis.FromString) if not a.end_of_stream
    ]
    return sorted(frames, key=lambda f: f.seq), analyses


def _p50(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def analyzer_stages(analyses: list[analysis_pb2.FrameAnalysis]) -> dict[str, Any]:
    """What the analyzer saw per frame: its Triton calls (per batch) and the wait before them."""
    ms = 1e-6
    return {
        "batch_size_p50": _p50([a.timings.batch_size for a in analyses]),
        "detect_ms_per_batch_p50": _p50([a.timings.detect.ToNanoseconds() * ms for a in analyses]),
        "analyze_ms_per_batch_p50": _p50([a.timings.analyze.ToNanoseconds() * ms for a in analyses]),
        "queue_delay_ms_p50": _p50([a.timings.queue_delay.ToNanoseconds() * ms for a in analyses]),
    }


def span_stages(trace: Path) -> dict[str, Any]:
    """Per-frame span times from the run's trace file: ingest, the Kafka hops, aggregation."""
    if not trace.exists():
        return {}
    spans = [json.loads(line) for line in trace.read_text().splitlines() if line.strip()]
    by_id = {s["span_id"]: s for s in spans}
    out: dict[str, list[float]] = defaultdict(list)
    for s in spans:
        ms = (s["end_ns"] - s["start_ns"]) / 1e6
        parent = by_id.get(s.get("parent_span_id") or "")
        if s["name"] == "ingest frame":
            out["ingest_ms"].append(ms)
        elif s["name"] == "aggregate frame":
            out["aggregate_ms"].append(ms)
            if parent is not None and parent["name"] == "analyze frame":
                out["analyses_kafka_ms"].append((s["start_ns"] - parent["end_ns"]) / 1e6)
        elif s["name"] == "analyze frame" and parent is not None and parent["name"] == "ingest frame":
            out["frames_kafka_and_queue_ms"].append((s["start_ns"] - parent["end_ns"]) / 1e6)
    return {f"{k}_p50": _p50(v) for k, v in sorted(out.items())} | {"spans": len(spans)}


# -- the baseline ------------------------------------------------------------------------------------
def video_decode_seconds(video: Path, fps: float) -> tuple[float, int]:
    """One PyAV decode of the clip, the sampled frames converted to RGB (what one process needs)."""
    started = time.perf_counter()
    kept, next_t = 0, 0.0
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            base = frame.time_base
            t = float(frame.pts * base) if frame.pts is not None and base is not None else next_t
            if fps <= 0 or t + 1e-6 >= next_t:
                frame.to_ndarray(format="rgb24")
                kept += 1
                next_t += 1.0 / fps if fps > 0 else 0.0
    return time.perf_counter() - started, kept


def baseline(
    models: InProcessModels, frames: list[frame_pb2.Frame], args: argparse.Namespace, clip: Any
) -> dict[str, Any]:
    """The analyzer's backend over the in-process models, in micro-batches, timed per frame."""
    config = AnalyzerConfig(schedule=args.schedule)
    batch = config.max_batch_frames
    inputs = [
        FrameInput(STREAM, f.seq, f.pts.ToNanoseconds() / 1e9, f.image, f.shot_start_seq) for f in frames
    ]
    warm = make_backend(config, models)  # warm-up: ORT's first runs, outside the timed pass
    warm.run([FrameInput("warmup", i.seq, i.pts_s, i.image, i.shot_start_seq) for i in inputs[:batch]])
    models.seconds.clear()
    backend = make_backend(config, models)
    done: dict[int, float] = {}
    analyzed = 0
    schedule_s = 0.0
    load_start = [round(x, 2) for x in os.getloadavg()]
    cpu_start = time.process_time()
    started = time.perf_counter()
    for i in range(0, len(inputs), batch):
        chunk = inputs[i : i + batch]
        before = sum(models.seconds.values())
        t0 = time.perf_counter()
        answer = backend.run(chunk)
        schedule_s += (time.perf_counter() - t0) - (sum(models.seconds.values()) - before)
        analyzed += answer.faces_analyzed
        now = time.perf_counter()
        for item in chunk:
            done[item.seq] = now - started
    cpu_s = time.process_time() - cpu_start
    wall_s = time.perf_counter() - started
    decode_cpu_start = time.process_time()
    decode_s, _ = video_decode_seconds(clip.video, args.fps)
    cpu_s += time.process_time() - decode_cpu_start
    wall_s += decode_s
    steady = [s for s in done if s >= args.warmup_frames]
    first_batch_end = min(done[s] for s in steady)
    first_in = [s for s in steady if done[s] == first_batch_end]
    # seconds for the steady frames: from the end of the batch before the first steady one
    previous = max((t for s, t in done.items() if s < min(first_in)), default=0.0)
    model_s = max(done.values()) - previous
    share = len(steady) / len(inputs)
    seconds = model_s + decode_s * share
    stages = {k: round(v * 1e3 / len(inputs), 1) for k, v in sorted(models.seconds.items())}
    stages["schedule"] = round(schedule_s * 1e3 / len(inputs), 1)
    stages["video_decode"] = round(decode_s * 1e3 / len(inputs), 1)
    return {
        "frames": len(inputs),
        "analyzed_faces": analyzed,
        "steady_frames": len(steady),
        "steady_seconds": round(seconds, 2),
        "frames_per_second": len(steady) / seconds,
        "ms_per_frame": stages,
        "batch_frames": batch,
        "cpu_cores_total": round(cpu_s / wall_s, 3),
        "cpu_seconds_per_frame": round(cpu_s / len(inputs), 3),
        "load_average": [load_start, [round(x, 2) for x in os.getloadavg()]],
    }


# -- main ----------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    benchlib.stop_on_sigterm()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one round (default: 2, the median ratio)")
    parser.add_argument("--fps", type=float, default=5.0, help="sampling rate (default 5, as `make demo`)")
    parser.add_argument("--schedule", choices=("adaptive", "all"), default="adaptive")
    parser.add_argument(
        "--warmup-frames", type=int, default=8, help="frames (seqs) before the steady state (default 8)"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="baseline onnxruntime threads (0: the config's)"
    )
    args = parser.parse_args(argv)
    if args.warmup_frames < 0:
        parser.error(f"--warmup-frames: expected >= 0, got {args.warmup_frames}")
    logging.basicConfig(level=logging.WARNING)
    for name in ("kafka", "faceflow"):
        logging.getLogger(name).setLevel(logging.ERROR)
    clip = generate_clip(DEMO, REPO / "out" / "clips")
    repository = Path(os.environ.get("FACEFLOW_TRITON_REPOSITORY") or REPO / "build" / "triton_repo" / "cpu")
    rounds = 1 if args.quick else 2
    t0 = time.monotonic()
    with benchlib.private_runtime(
        model_repository=repository.absolute(),
        external_kafka=os.environ.get("FACEFLOW_KAFKA_BOOTSTRAP") or None,
        external_triton=os.environ.get("FACEFLOW_TRITON_URL") or None,
    ) as settings:
        runtime_start_s = time.monotonic() - t0
        print(f"runtime: Kafka {settings.kafka_bootstrap}, Triton {settings.triton_grpc_url} "
              f"(started in {runtime_start_s:.1f} s: the cold part of a first run)", flush=True)  # fmt: skip
        started = time.perf_counter()
        models = InProcessModels(repository, threads=args.threads)
        baseline_load_s = time.perf_counter() - started
        results = []
        with tempfile.TemporaryDirectory(prefix="faceflow-e2e-") as scratch:
            for r in range(rounds):
                mesh = mesh_run(settings, clip, args, Path(scratch) / f"run{r}")
                frames = mesh.pop("_frames")
                base = baseline(models, frames, args, clip)
                ratio = mesh["frames_per_second"] / base["frames_per_second"]
                # frames per CPU-second, mesh over baseline: what the mesh costs in work, whatever
                # share of the cores other jobs left each side (the wall-clock ratio is the headline)
                cpu_ratio = base["cpu_seconds_per_frame"] / mesh["cpu_seconds_per_frame"]
                results.append({"mesh": mesh, "baseline": base, "ratio": ratio, "cpu_ratio": cpu_ratio})
                report_round(r, mesh, base, ratio, cpu_ratio)
    ratio = statistics.median(x["ratio"] for x in results)
    benchlib.write_results(
        RESULTS,
        {
            "benchmark": "e2e",
            "ratio": round(ratio, 3),
            "targets": {"ratio": 0.8, "time_to_first_event_warm_s": 10.0},
            "clip": str(clip.video.relative_to(REPO)),
            "fps": args.fps,
            "schedule": args.schedule,
            "warmup_frames": args.warmup_frames,
            "runtime_start_s": round(runtime_start_s, 1),
            "baseline_load_s": round(baseline_load_s, 1),
            "baseline": "in process: the served ONNX files, the library stages, the analyzer's backend",
            "cpu_ratio": round(statistics.median(x["cpu_ratio"] for x in results), 3),
            "rounds": [
                {**x, "ratio": round(x["ratio"], 3), "cpu_ratio": round(x["cpu_ratio"], 3)}
                | {
                    side: {**x[side], "frames_per_second": round(x[side]["frames_per_second"], 3)}
                    for side in ("mesh", "baseline")
                }
                for x in results
            ],
            "model_parameters": models.parameters,
            "machine": benchlib.machine(),
        },
    )
    print(f"e2e: ratio={ratio:.3f}")
    return 0


def report_round(r: int, mesh: dict[str, Any], base: dict[str, Any], ratio: float, cpu_ratio: float) -> None:
    print(
        f"round {r + 1}: mesh {mesh['frames_per_second']:.2f} frames/s steady ({mesh['steady_frames']} "
        f"frames in {mesh['steady_seconds']:.1f} s; {mesh['frames_per_second_whole_run']:.2f} over the "
        f"whole analysis), baseline {base['frames_per_second']:.2f} frames/s; ratio {ratio:.3f}",
        flush=True,
    )
    print(
        f"  CPU: mesh {mesh['cpu_seconds_per_frame']:.3f} CPU-s per frame on {mesh['cpu_cores_total']:.2f} "
        f"cores, baseline {base['cpu_seconds_per_frame']:.3f} on {base['cpu_cores_total']:.2f} cores "
        f"(frames per CPU-second ratio {cpu_ratio:.3f}); load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    print(
        f"  time to first event {mesh['time_to_first_event_s']:.1f} s (runtime warm); run wall "
        f"{mesh['wall_s']:.1f} s; IDF1 {mesh['idf1']}, identity accuracy {mesh['identity_accuracy']}",
        flush=True,
    )
    print(
        f"  schedule decisions: mesh analyzed {mesh['analyzed_faces']} faces, baseline "
        f"{base['analyzed_faces']} (of {mesh['faces']} detected)",
        flush=True,
    )
    print(f"  baseline ms per frame: {base['ms_per_frame']}", flush=True)
    for model, row in mesh["triton"].items():
        print(f"  triton {model:14} {row}", flush=True)
    print(f"  analyzer: {mesh['analyzer']}", flush=True)
    print(f"  spans: {mesh['spans']}", flush=True)
    print(f"  CPU cores used in steady state: {mesh['cpu_cores']}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
