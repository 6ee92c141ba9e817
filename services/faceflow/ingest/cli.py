"""``faceflow ingest``: run the ingest service until SIGTERM / SIGINT (or until its files end).

Settings come from ``FACEFLOW_INGEST_*`` variables (and ``FACEFLOW_KAFKA_BOOTSTRAP``), then from
these flags; sources from ``--source STREAM_ID=URI`` (repeatable), ``--sources-file FILE`` and
``FACEFLOW_INGEST_SOURCES``; these are the operator's choice and are not limited by the source
policy (``--allow-schemes``, ``--allow-hosts``, ``--allow-file-roots``), which applies only to
sources that clients start over gRPC (:mod:`faceflow.ingest.policy`). With ``--sources-topic``
(``FACEFLOW_INGEST_SOURCES_TOPIC``), pulled sources are recorded in that topic and split among the
replicas of one consumer group (:mod:`faceflow.ingest.assignments`); the configured ones are
written there at start-up. On SIGTERM or SIGINT the
service reports NOT_SERVING on its health endpoint, stops its sources, sends what is queued within
``--grace-s`` seconds and exits 0.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faceflow.ingest.config import IngestConfig
    from faceflow.service.grpc_server import GrpcServer

# Kept in step with PolicyChoice / SeqStart (a test checks); literal so `faceflow --help` stays fast.
QUEUE_POLICIES = ("auto", "drop-oldest", "block")
SEQ_STARTS = ("clock", "zero")


def register(sub: Any) -> None:
    from faceflow.service.ready_file import add_ready_file_argument  # noqa: PLC0415

    p = sub.add_parser(
        "ingest",
        help="pull video files, RTSP/HTTP streams and image folders (and pushed frames) into Kafka",
        description="Decode, sample, bound and JPEG-encode frames of every source into the frames topic; "
        "serve the faceflow.v1.Ingest gRPC API and Prometheus metrics. Flags override FACEFLOW_INGEST_* "
        "variables.",
    )
    p.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="STREAM_ID=URI",
        help="a source: video file, folder of images, or rtsp:// / http(s):// URL (repeatable)",
    )
    p.add_argument("--sources-file", type=Path, help="YAML file of sources (see docs/ingest.md)")
    p.add_argument(
        "--fps", type=float, help="frames per second to keep, by timestamp; 0 keeps all (default 5)"
    )
    p.add_argument("--max-side", type=int, help="longest side in pixels; 0 keeps the size (default 1280)")
    p.add_argument("--jpeg-quality", type=int, help="JPEG quality 1..100 (default 85)")
    p.add_argument("--folder-fps", type=float, help="frame rate of an image folder's timeline (default 1)")
    p.add_argument(
        "--kafka-bootstrap", help="broker list (default $FACEFLOW_KAFKA_BOOTSTRAP or 127.0.0.1:9092)"
    )
    p.add_argument("--topic", help="frames topic (default faceflow.frames.v1)")
    p.add_argument("--grpc-host", help="gRPC listen address (default 127.0.0.1)")
    p.add_argument("--grpc-port", type=int, help="gRPC port, 0 picks a free one (default 50051)")
    p.add_argument("--metrics-host", help="metrics listen address (default 127.0.0.1)")
    p.add_argument(
        "--metrics-port", type=int, help="Prometheus /metrics port, 0 picks a free one (default 9464)"
    )
    p.add_argument("--queue-size", type=int, help="frames queued per source between decoding and Kafka")
    p.add_argument(
        "--queue-policy",
        choices=QUEUE_POLICIES,
        help="what a full queue does: auto (default: drop-oldest for live sources, block for files)",
    )
    p.add_argument("--seq-start", choices=SEQ_STARTS, help="where seq starts (default clock)")
    p.add_argument("--grace-s", type=float, help="seconds to finish sending on SIGTERM (default 10)")
    p.add_argument(
        "--allow-schemes",
        metavar="LIST",
        help="URL schemes a StartSource call may use, comma-separated or 'none' "
        "(default rtsp,rtsps,http,https)",
    )
    p.add_argument(
        "--allow-hosts",
        metavar="LIST",
        help="hosts a StartSource call may name: names, *.suffix, IP addresses, CIDR networks (default none)",
    )
    p.add_argument(
        "--allow-file-roots",
        metavar="LIST",
        help="folders a StartSource call may read below, comma-separated or 'none' (default ., the working "
        "folder); --source and FACEFLOW_INGEST_SOURCES are not limited by these three",
    )
    p.add_argument(
        "--sources-topic",
        metavar="TOPIC",
        help="share pulled sources with the other replicas through this compacted topic "
        "(faceflow.sources.v1); default none: sources live in this process",
    )
    p.add_argument("--max-sources", type=int, help="most sources this replica runs; more wait (default 16)")
    p.add_argument(
        "--advertise-address",
        metavar="HOST[:PORT]",
        help="where the other replicas reach this one's gRPC (default $POD_IP or --grpc-host, bound port)",
    )
    p.add_argument(
        "--until-done", action="store_true", help="exit once every source has ended (files, folders)"
    )
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    add_ready_file_argument(p)
    p.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> IngestConfig:
    """The config from the environment, then the flags (sources from every place, added up)."""
    from faceflow.ingest.config import IngestConfig, parse_source_flag  # noqa: PLC0415 - fast --help
    from faceflow.ingest.sources_file import load_sources_file  # noqa: PLC0415

    config = IngestConfig.from_env(env).with_overrides(
        kafka_bootstrap=args.kafka_bootstrap,
        topic=args.topic,
        grpc_host=args.grpc_host,
        grpc_port=args.grpc_port,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        target_fps=args.fps,
        jpeg_quality=args.jpeg_quality,
        folder_fps=args.folder_fps,
        queue_size=args.queue_size,
        queue_policy=args.queue_policy,
        seq_start=args.seq_start,
        grace_s=args.grace_s,
        allow_schemes=args.allow_schemes,
        allow_hosts=args.allow_hosts,
        allow_file_roots=args.allow_file_roots,
        sources_topic=args.sources_topic,
        max_sources=args.max_sources,
        advertise_address=args.advertise_address,
    )
    if args.max_side is not None:
        config = replace(config, max_side=args.max_side or None)
    sources = list(config.sources)
    sources += [config.source(*parse_source_flag(text)) for text in args.source]
    if args.sources_file is not None:
        sources += load_sources_file(args.sources_file, config)
    return replace(config, sources=tuple(sources))


class _IngestProcess:
    """The ingest service and its gRPC server as one :class:`~faceflow.service.main.Served`."""

    def __init__(self, config: IngestConfig) -> None:
        from faceflow.ingest.grpc_server import IngestServer  # noqa: PLC0415 - fast --help
        from faceflow.ingest.service import IngestService  # noqa: PLC0415

        self.config = config
        self.service = IngestService(config)
        self.ingest_server = IngestServer(
            self.service, config.grpc_host, config.grpc_port, workers=config.grpc_workers
        )

    @property
    def server(self) -> GrpcServer:
        """The gRPC server itself (its health, the bound port): what ``run_served`` waits on."""
        return self.ingest_server.server

    def start(self) -> None:
        import os  # noqa: PLC0415

        from faceflow.service.peers import advertised_address  # noqa: PLC0415

        self.service.start()
        try:
            self.ingest_server.start()
            c = self.config
            self.service.join_sources_group(
                advertised_address(
                    c.advertise_address, grpc_host=c.grpc_host, port=self.ingest_server.port, env=os.environ
                )
            )
        except Exception:
            self.service.stop(0)
            raise

    def stop(self, grace_s: float) -> None:
        stopped = self.ingest_server.stop(grace_s)
        self.service.stop(grace_s)
        stopped.wait(grace_s)

    def failure(self) -> BaseException | None:
        return None


def run(args: argparse.Namespace) -> int:
    from faceflow.ingest.runner import SourceState  # noqa: PLC0415 - fast --help
    from faceflow.service.main import run_served  # noqa: PLC0415
    from faceflow.service.ready_file import ready_file_path  # noqa: PLC0415

    ready_path = ready_file_path(args.ready_file)
    config = config_from_args(args)
    process = _IngestProcess(config)

    def banner() -> str:
        return (
            f"{len(config.sources)} sources -> {config.topic} at {config.kafka_bootstrap}; "
            f"gRPC {config.grpc_host}:{process.server.port}; "
            f"metrics http://{config.metrics_host}:{process.service.metrics_port}/metrics"
        )

    code = run_served(
        process,
        name="ingest",
        banner=banner,
        metrics_port=lambda: process.service.metrics_port,
        ready_path=ready_path,
        duration_s=args.duration,
        until=(lambda: process.service.wait_sources(0)) if args.until_done else None,
    )
    failed = 0
    for s in process.service.list_sources():
        failed += s.state is SourceState.FAILED
        error = f" ({s.last_error})" if s.last_error and s.state is SourceState.FAILED else ""
        print(  # noqa: T201
            f"  {s.spec.stream_id}: {s.state}, {s.frames_produced} produced, {s.frames_dropped} dropped, "
            f"{s.reconnects} reconnects{error}"
        )
    return code or (1 if failed and args.until_done else 0)
