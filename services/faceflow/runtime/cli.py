"""``faceflow dev up | down | status``: manage the local Kafka broker and Triton server."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from faceflow.runtime import kafka_broker, triton_server
from faceflow.runtime.settings import DevSettings
from faceflow.runtime.stack import COMPONENTS, DevStack, format_status, require_ready


def register(sub: Any) -> None:
    dev = sub.add_parser("dev", help="the local runtime: a real Kafka broker and Triton server")
    dev_sub = dev.add_subparsers(dest="dev_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--home",
            type=Path,
            help="runtime folder: pids, logs, broker data (default: $FACEFLOW_HOME or ./.faceflow); "
            "it does not move the cache",
        )
        p.add_argument(
            "--cache",
            type=Path,
            help="downloads shared by every home: broker jars, tritonserver, Triton's model env "
            "(default: $FACEFLOW_CACHE, else $FACEFLOW_HOME/cache or ./.faceflow/cache)",
        )
        p.add_argument("--kafka-port", type=int, help="local broker port (default 9092)")
        p.add_argument("--controller-port", type=int, help="local KRaft controller port (default 9093)")
        p.add_argument("--triton-http-port", type=int, help="local Triton HTTP port (default 8000)")
        p.add_argument("--triton-grpc-port", type=int, help="local Triton gRPC port (default 8001)")
        p.add_argument("--triton-metrics-port", type=int, help="local Triton metrics port (default 8002)")
        p.add_argument(
            "--model-repository", type=Path, help="Triton model repository (default ./build/triton_repo/cpu)"
        )

    prepare = dev_sub.add_parser(
        "prepare", help="fetch what the runtime needs (broker jars, tritonserver, model env); starts nothing"
    )
    common(prepare)
    prepare.set_defaults(handler=_prepare)
    up = dev_sub.add_parser("up", help="start what is not running; returns when everything answers")
    common(up)
    up.add_argument("--only", choices=COMPONENTS, action="append", help="start only this component")
    up.set_defaults(handler=_up)
    down = dev_sub.add_parser("down", help="stop what `dev up` started (never an external component)")
    common(down)
    down.set_defaults(handler=_down)
    status = dev_sub.add_parser("status", help="say what runs where")
    common(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)


def settings_from_args(args: argparse.Namespace) -> DevSettings:
    """The environment's settings, then the flags. ``--home`` keeps the environment's cache, so a
    fresh home (a second stack, a test harness) reuses the downloads instead of fetching them."""
    settings = DevSettings.from_env()
    return settings.with_overrides(
        home=args.home.absolute() if args.home is not None else None,
        cache=args.cache.absolute() if args.cache is not None else None,
        kafka_port=args.kafka_port,
        controller_port=args.controller_port,
        triton_http_port=args.triton_http_port,
        triton_grpc_port=args.triton_grpc_port,
        triton_metrics_port=args.triton_metrics_port,
        model_repository=args.model_repository.absolute() if args.model_repository else None,
    )


def _prepare(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    print(f"preparing the local runtime in {settings.cache}")
    kafka = kafka_broker.ensure_jars(settings.cache, say=print)
    print(f"  kafka {kafka_broker.KAFKA_VERSION}: {kafka.libs} (java {kafka.java})")
    triton = triton_server.ensure_tritonserver(settings.cache, say=print)
    print(f"  tritonserver: {triton.binary}")
    env_bin = triton_server.ensure_model_env(settings.cache, say=print)
    print(f"  Triton model environment: {env_bin.parent}")
    return 0


def _up(args: argparse.Namespace) -> int:
    stack = DevStack(settings_from_args(args))
    statuses = stack.up(args.only or COMPONENTS)
    print(format_status(statuses))
    require_ready(statuses)
    return 0


def _down(args: argparse.Namespace) -> int:
    DevStack(settings_from_args(args)).down()
    return 0


def _status(args: argparse.Namespace) -> int:
    statuses = DevStack(settings_from_args(args)).status()
    if args.json:
        print(json.dumps([asdict(s) for s in statuses], indent=2))
    else:
        print(format_status(statuses))
    return 0 if all(s.ready for s in statuses) else 1
