"""``faceflow aggregator`` (the service) and ``faceflow identities`` (the gallery, over gRPC).

Aggregator settings come from ``FACEFLOW_AGGREGATOR_*`` variables (and ``FACEFLOW_KAFKA_BOOTSTRAP``,
``FACEFLOW_TRITON_URL``), then these flags. On SIGTERM it reports NOT_SERVING, finishes the batch,
commits what its checkpoints cover, leaves its group and exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from faceflow.aggregator.config import AggregatorConfig

AGGREGATOR_URL_ENV = "FACEFLOW_AGGREGATOR_URL"
DEFAULT_AGGREGATOR_URL = "127.0.0.1:50053"


def register(sub: Any) -> None:
    from faceflow.service.config import add_consumer_timeout_arguments  # noqa: PLC0415
    from faceflow.service.ready_file import add_ready_file_argument  # noqa: PLC0415

    p = sub.add_parser(
        "aggregator",
        help="analyses topic -> tracks, identities, fused results -> faces topic and the Aggregator gRPC API",
        description="Track faces per stream, link tracks to enrolled or anonymous identities, fuse results "
        "per track, publish FaceEvents to faceflow.faces.v1 and serve faceflow.v1.Aggregator. Flags override "
        "FACEFLOW_AGGREGATOR_* variables.",
    )
    p.add_argument(
        "--kafka-bootstrap", help="broker list (default $FACEFLOW_KAFKA_BOOTSTRAP or 127.0.0.1:9092)"
    )
    p.add_argument(
        "--triton-url", help="Triton gRPC for enrolment (default $FACEFLOW_TRITON_URL or 127.0.0.1:8001)"
    )
    p.add_argument("--group-id", help="consumer group (default faceflow-aggregator)")
    p.add_argument("--instance-id", help="static group membership id")
    for topic in ("analyses", "faces", "faces-json", "state", "identities", "audit", "dlq"):
        p.add_argument(f"--{topic}-topic", help=f"the {topic} topic (default: faceflow's)")
    p.add_argument(
        "--faces-json-mirror",
        action="store_true",
        help="also write every faces record as proto3 JSON to the faces-json topic (faceflow.faces.json.v1)",
    )
    p.add_argument("--cross-stream", action="store_true", help="link anonymous identities across streams")
    p.add_argument("--publish-embeddings", action="store_true", help="put embeddings on the faces topic")
    p.add_argument(
        "--match-threshold",
        type=float,
        help="naming operating point: evidence distance to name a track as an enrolled person (default 0.55)",
    )
    p.add_argument(
        "--name-margin", type=float, help="how much nearer than any other name it must be (default 0.05)"
    )
    p.add_argument(
        "--anon-threshold", type=float, help="distance to join an anonymous identity (default 0.5)"
    )
    p.add_argument(
        "--checkpoint-frames", type=int, help="checkpoint a partition every this many frames (default 50)"
    )
    p.add_argument("--grpc-host", help="gRPC listen address (default 127.0.0.1)")
    p.add_argument("--grpc-port", type=int, help="gRPC port, 0 picks a free one (default 50053)")
    p.add_argument(
        "--advertise-address",
        help="host or host:port the other replicas forward calls for this replica's streams to "
        "(default: $POD_IP, else --grpc-host unless a wildcard, else the host name; the bound port)",
    )
    p.add_argument("--metrics-host", help="metrics listen address (default 127.0.0.1)")
    p.add_argument(
        "--metrics-port", type=int, help="Prometheus /metrics port, 0 picks a free one (default 9466)"
    )
    add_consumer_timeout_arguments(p)
    p.add_argument("--grace-s", type=float, help="seconds to finish on SIGTERM (default 10)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    add_ready_file_argument(p)
    p.set_defaults(handler=run)

    ids = sub.add_parser(
        "identities", help="the gallery: enroll from photos, name, list, forget (over gRPC); its audit trail"
    )
    ids.add_argument(
        "--aggregator",
        default=os.environ.get(AGGREGATOR_URL_ENV, DEFAULT_AGGREGATOR_URL),
        help=f"an aggregator's gRPC host:port (default ${AGGREGATOR_URL_ENV} or {DEFAULT_AGGREGATOR_URL})",
    )
    ids.add_argument(
        "--timeout", type=float, default=120.0, help="deadline of the call, seconds (default 120)"
    )
    actions = ids.add_subparsers(dest="identities_command", metavar="ACTION", required=True)
    enroll = actions.add_parser("enroll", help="build an identity from photos (one face each)")
    enroll.add_argument("name")
    enroll.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    enroll.set_defaults(handler=_enroll)
    name = actions.add_parser("name", help="name an anonymous identity (with what the cameras collected)")
    name.add_argument("identity_id")
    name.add_argument("name")
    name.set_defaults(handler=_name)
    show = actions.add_parser("list", help="enrolled and named identities (--all: anonymous too)")
    show.add_argument("--all", action="store_true", help="include anonymous identities")
    show.set_defaults(handler=_list)
    forget = actions.add_parser(
        "forget", help="erase an identity (id or name) from the gallery and the trackers"
    )
    forget.add_argument("identity", metavar="NAME|ID")
    forget.set_defaults(handler=_forget)
    audit = actions.add_parser(
        "audit",
        help="who enrolled, named or forgot which identity, and when (read from the audit topic)",
        description="Read the gallery's audit topic from the beginning (no consumer group, nothing "
        "committed) and print one line per change: time, action, identity, name, subject. Reads Kafka, "
        "not the aggregator: FACEFLOW_KAFKA_* say how to connect (docs/security.md).",
    )
    audit.add_argument(
        "--kafka-bootstrap", help="broker list (default $FACEFLOW_KAFKA_BOOTSTRAP or 127.0.0.1:9092)"
    )
    audit.add_argument(
        "--topic",
        help="the audit topic (default $FACEFLOW_AGGREGATOR_AUDIT_TOPIC or faceflow.identities.audit.v1)",
    )
    audit.add_argument("--identity", metavar="ID", help="only the records of this identity id")
    audit.add_argument(
        "--since",
        metavar="WHEN",
        help="only records from then on: an ISO 8601 time (2026-12-01, 2026-12-01T08:00:00Z) or an age "
        "(90m, 12h, 7d)",
    )
    audit.add_argument("--json", action="store_true", help="one JSON object per line (proto3 JSON)")
    audit.set_defaults(handler=_audit)


def config_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> AggregatorConfig:
    from faceflow.aggregator.config import AggregatorConfig  # noqa: PLC0415 - fast --help

    return AggregatorConfig.from_env(env).with_overrides(
        kafka_bootstrap=args.kafka_bootstrap,
        triton_url=args.triton_url,
        group_id=args.group_id,
        instance_id=args.instance_id,
        analyses_topic=args.analyses_topic,
        faces_topic=args.faces_topic,
        faces_json_mirror=True if args.faces_json_mirror else None,
        faces_json_topic=args.faces_json_topic,
        state_topic=args.state_topic,
        identities_topic=args.identities_topic,
        audit_topic=args.audit_topic,
        dlq_topic=args.dlq_topic,
        cross_stream=True if args.cross_stream else None,
        publish_embeddings=True if args.publish_embeddings else None,
        match_threshold=args.match_threshold,
        name_margin=args.name_margin,
        anon_threshold=args.anon_threshold,
        checkpoint_frames=args.checkpoint_frames,
        grpc_host=args.grpc_host,
        grpc_port=args.grpc_port,
        advertise_address=args.advertise_address,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port,
        session_timeout_ms=args.session_timeout_ms,
        max_poll_interval_ms=args.max_poll_interval_ms,
        grace_s=args.grace_s,
    )


def run(args: argparse.Namespace) -> int:
    from faceflow.aggregator.service import AggregatorService  # noqa: PLC0415 - fast --help
    from faceflow.service.main import run_served  # noqa: PLC0415
    from faceflow.service.ready_file import ready_file_path  # noqa: PLC0415

    ready_path = ready_file_path(args.ready_file)
    config = config_from_args(args)
    service = AggregatorService(config)

    def banner() -> str:
        port = service.server.port if service.server else config.grpc_port
        mirror = f" + {config.faces_json_topic}" if config.faces_json_mirror else ""
        return (
            f"{config.analyses_topic} -> {config.faces_topic}{mirror}; gRPC {config.grpc_host}:{port}; "
            f"metrics http://{config.metrics_host}:{service.metrics.port}/metrics"
        )

    return run_served(
        service,
        name="aggregator",
        banner=banner,
        metrics_port=lambda: service.metrics.port,
        ready_path=ready_path,
        duration_s=args.duration,
    )


# -- faceflow identities --------------------------------------------------------------------------


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    import grpc  # noqa: PLC0415

    from faceflow.errors import FaceflowError  # noqa: PLC0415
    from faceflow.service.security import channel_for  # noqa: PLC0415
    from faceflow.v1 import aggregator_pb2_grpc  # noqa: PLC0415

    with channel_for(
        args.aggregator, options=[("grpc.max_send_message_length", 200 * 1024 * 1024)]
    ) as channel:
        stub = aggregator_pb2_grpc.AggregatorStub(channel)
        try:
            return getattr(stub, method)(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            code = exc.code().name if exc.code() else "UNKNOWN"
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                detail = f"no aggregator answers at {args.aggregator} ({exc.details()}): is it running?"
            else:
                detail = exc.details() or code
            raise FaceflowError(f"{method}: {code}: {detail}") from None


def _describe(identity: Any) -> str:
    from faceflow.v1 import identity_pb2  # noqa: PLC0415

    kind = identity_pb2.IdentityKind.Name(identity.kind).removeprefix("IDENTITY_KIND_").lower()
    name = identity.name or "(anonymous)"
    return f"{identity.identity_id}  {name}  {kind}, {identity.embeddings} embeddings, {identity.source}"


def _enroll(args: argparse.Namespace) -> int:
    from faceflow.errors import FaceflowError  # noqa: PLC0415
    from faceflow.v1 import aggregator_pb2  # noqa: PLC0415

    images = []
    for path in args.images:
        try:
            images.append(path.read_bytes())
        except OSError as exc:
            raise FaceflowError(f"{path}: cannot read the photo: {exc.strerror or exc}") from exc
    reply = _call(args, "EnrollIdentity", aggregator_pb2.EnrollIdentityRequest(name=args.name, images=images))
    print(f"enrolled {_describe(reply.identity)}")  # noqa: T201
    return 0


def _name(args: argparse.Namespace) -> int:
    from faceflow.v1 import aggregator_pb2  # noqa: PLC0415

    reply = _call(
        args, "NameIdentity", aggregator_pb2.NameIdentityRequest(identity_id=args.identity_id, name=args.name)
    )
    print(f"named {_describe(reply.identity)}")  # noqa: T201
    return 0


def _list(args: argparse.Namespace) -> int:
    from faceflow.v1 import aggregator_pb2  # noqa: PLC0415

    reply = _call(args, "ListIdentities", aggregator_pb2.ListIdentitiesRequest(include_anonymous=args.all))
    for identity in reply.identities:
        print(_describe(identity))  # noqa: T201
    if not reply.identities:
        print("no identities" + ("" if args.all else " (--all shows anonymous ones)"), file=sys.stderr)  # noqa: T201
    return 0


def _forget(args: argparse.Namespace) -> int:
    from faceflow.v1 import aggregator_pb2  # noqa: PLC0415

    reply = _call(args, "ForgetIdentity", aggregator_pb2.ForgetIdentityRequest(identity=args.identity))
    print(f"forgot {', '.join(reply.forgotten_ids)}")  # noqa: T201
    return 0


def parse_since(value: str, *, now_s: float) -> int:
    """``--since``: an ISO 8601 date or time (UTC unless it names a zone) or an age ``<n>m``,
    ``<n>h``, ``<n>d`` before ``now_s``; as epoch nanoseconds.

    Raises:
        ConfigError: neither form.
    """
    import datetime as dt  # noqa: PLC0415
    import re  # noqa: PLC0415

    from faceflow.errors import ConfigError  # noqa: PLC0415

    text = value.strip()
    age = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text)
    if age:
        seconds = float(age.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[age.group(2)]
        return round((now_s - seconds) * 1e9)
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            "--since: expected an ISO 8601 time (2026-12-01, 2026-12-01T08:00:00Z) or an age "
            f"(90m, 12h, 7d), got {value!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return round(when.timestamp() * 1e9)


def _audit(args: argparse.Namespace) -> int:
    import datetime as dt  # noqa: PLC0415
    import json  # noqa: PLC0415
    import time  # noqa: PLC0415

    from faceflow import topics  # noqa: PLC0415
    from faceflow.aggregator.audit import AuditAction, as_json, read_audit  # noqa: PLC0415
    from faceflow.service.config import DEFAULT_BOOTSTRAP, KAFKA_BOOTSTRAP_ENV  # noqa: PLC0415

    bootstrap = args.kafka_bootstrap or os.environ.get(KAFKA_BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP
    topic = args.topic or os.environ.get("FACEFLOW_AGGREGATOR_AUDIT_TOPIC") or topics.IDENTITIES_AUDIT.name
    since = None if args.since is None else parse_since(args.since, now_s=time.time())
    rows = []
    for _, record in read_audit(bootstrap, topic, since_ns=since):
        if args.identity and record.identity_id != args.identity:
            continue
        if args.json:
            print(json.dumps(as_json(record), sort_keys=True))  # noqa: T201
            continue
        when = dt.datetime.fromtimestamp(record.time.ToNanoseconds() / 1e9, dt.UTC)
        rows.append(
            (
                when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                AuditAction(record.action).label,
                record.identity_id,
                record.name or "-",
                record.subject or "(none)",
            )
        )
    if not args.json:
        if rows:
            header = ("TIME", "ACTION", "IDENTITY", "NAME", "SUBJECT")
            widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header) - 1)]
            for row in (header, *rows):
                print("  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]]))  # noqa: T201
        else:
            matching = " that match" if args.identity or since is not None else ""
            print(f"no audit records in {topic}{matching}", file=sys.stderr)  # noqa: T201
    return 0
