"""``faceflow analyzer``: run the analyzer until SIGTERM / SIGINT.

Settings come from ``FACEFLOW_ANALYZER_*`` variables (and the mesh-wide ``FACEFLOW_KAFKA_BOOTSTRAP``
and ``FACEFLOW_TRITON_URL``), then from these flags. On SIGTERM the analyzer reports NOT_SERVING,
finishes the batch in Triton within ``--grace-s``, produces its results, commits, leaves its group
and exits 0.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faceflow.analyzer.config import AnalyzerConfig

SCHEDULES = ("adaptive", "all")  # ScheduleMode's values (a test checks); literal so --help stays fast


def register(sub: Any) -> None:
    from faceflow.service.config import add_consumer_timeout_arguments  # noqa: PLC0415
    from faceflow.service.ready_file import add_ready_file_argument  # noqa: PLC0415

    p = sub.add_parser(
        "analyzer",
        help="frames topic -> Triton (face detector, face model, embedder) -> analyses topic",
        description="Consume faceflow.frames.v1 in a consumer group, analyze micro-batches with Triton, "
        "produce faceflow.analyses.v1 (at least once; poison frames to the DLQ). Flags override "
        "FACEFLOW_ANALYZER_* variables.",
    )
    p.add_argument(
        "--kafka-bootstrap", help="broker list (default $FACEFLOW_KAFKA_BOOTSTRAP or 127.0.0.1:9092)"
    )
    p.add_argument(
        "--triton-url", help="Triton gRPC host:port (default $FACEFLOW_TRITON_URL or 127.0.0.1:8001)"
    )
    p.add_argument("--group-id", help="consumer group (default faceflow-analyzer)")
    p.add_argument("--instance-id", help="static group membership id (a restart keeps the assignment)")
    p.add_argument("--frames-topic", help="input topic (default faceflow.frames.v1)")
    p.add_argument("--analyses-topic", help="output topic (default faceflow.analyses.v1)")
    p.add_argument("--dlq-topic", help="poison frames (default faceflow.frames.dlq.v1)")
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        help="adaptive (default): detect every frame, analyze a face only when it pays; all: every face",
    )
    p.add_argument("--max-age-s", type=float, help="re-analyze a face after this much media time (default 1)")
    p.add_argument("--max-batch-frames", type=int, help="frames per Triton call (default 8)")
    p.add_argument("--max-wait-ms", type=int, help="how long to wait to fill a batch (default 50)")
    p.add_argument("--concurrency", type=int, help="Triton calls in flight (default 1)")
    p.add_argument("--triton-timeout-s", type=float, help="deadline of one Triton call (default 60)")
    p.add_argument(
        "--probe-interval-s",
        type=float,
        help="prove Triton with a real inference when idle this long (default 10)",
    )
    p.add_argument("--no-parsing", action="store_true", help="leave the parsing masks out of the analyses")
    p.add_argument("--grpc-host", help="health/reflection listen address (default 127.0.0.1)")
    p.add_argument("--grpc-port", type=int, help="health/reflection port, 0 picks a free one (default 50052)")
    p.add_argument("--metrics-host", help="metrics listen address (default 127.0.0.1)")
    p.add_argument(
        "--metrics-port", type=int, help="Prometheus /metrics port, 0 picks a free one (default 9465)"
    )
    add_consumer_timeout_arguments(p)
    p.add_argument("--grace-s", type=float, help="seconds to finish on SIGTERM (default 10)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    add_ready_file_argument(p)
    p.set_defaults(handler=run)


def config_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> AnalyzerConfig:
    from faceflow.analyzer.config import AnalyzerConfig  # noqa: PLC0415 - fast --help

    return AnalyzerConfig.from_env(env).with_overrides(
        kafka_bootstrap=args.kafka_bootstrap,
        triton_url=args.triton_url,
        group_id=args.group_id,
        instance_id=args.instance_id,
        frames_topic=args.frames_topic,
        analyses_topic=args.analyses_topic,
        dlq_topic=args.dlq_topic,
        schedule=args.schedule,
        max_age_s=args.max_age_s,
        max_batch_frames=args.max_batch_frames,
        max_wait_ms=args.max_wait_ms,
        concurrency=args.concurrency,
        include_parsing=False if args.no_parsing else None,
        triton_timeout_s=args.triton_timeout_s,
        probe_interval_s=args.probe_interval_s,
        grpc_host=args.grpc_host,
        grpc_port=args.grpc_port,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        session_timeout_ms=args.session_timeout_ms,
        max_poll_interval_ms=args.max_poll_interval_ms,
        grace_s=args.grace_s,
    )


def run(args: argparse.Namespace) -> int:
    from faceflow.analyzer.service import AnalyzerService  # noqa: PLC0415 - fast --help
    from faceflow.service.main import run_served  # noqa: PLC0415
    from faceflow.service.ready_file import ready_file_path  # noqa: PLC0415

    ready_path = ready_file_path(args.ready_file)
    config = config_from_args(args)
    service = AnalyzerService(config)

    def banner() -> str:
        assert service.server is not None
        return (
            f"{config.frames_topic} -> {config.analyses_topic} via Triton {config.triton_url} "
            f"(schedule {config.schedule}); health gRPC {config.grpc_host}:{service.server.port}; "
            f"metrics http://{config.metrics_host}:{service.metrics.base.port}/metrics"
        )

    return run_served(
        service,
        name="analyzer",
        banner=banner,
        metrics_port=lambda: service.metrics.base.port,
        ready_path=ready_path,
        duration_s=args.duration,
    )
